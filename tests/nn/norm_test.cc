// RMSNorm (with the fused residual add) and LayerNorm: forward against naive f64 loops, the
// Hugging Face rounding order in bf16, f64 finite-difference gradient checks of every input and
// both outputs, the module wrappers, error cases, and (with a GPU) the CUDA kernels against the
// CPU reference over dtypes x hidden sizes x row counts, non-contiguous inputs and determinism.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "cuda/rms_norm.h"
#include "nn/layer_norm.h"
#include "nn/rms_norm.h"
#include "tests/nn/norm_test_util.h"
#include "tests/testing/testing.h"

namespace lyra::nn::norm_testing {
namespace {

using autograd::GradCheck;
using autograd::GradCheckResult;
using autograd::Variable;

// --- Naive f64 references ---------------------------------------------------------------------

struct Naive {
  std::vector<double> y, residual_out;
};

// rows x H row-major; residual and bias may be empty.
Naive NaiveNorm(bool layer, const std::vector<double>& x, const std::vector<double>& residual,
                const std::vector<double>& weight, const std::vector<double>& bias, int64_t H,
                double eps) {
  Naive out;
  out.y.resize(x.size());
  out.residual_out.resize(x.size());
  const int64_t rows = static_cast<int64_t>(x.size()) / H;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> h(H);
    for (int64_t j = 0; j < H; ++j) {
      h[j] = x[r * H + j] + (residual.empty() ? 0.0 : residual[r * H + j]);
    }
    double mean = 0;
    if (layer) {
      for (double v : h) mean += v / H;
    }
    double var = 0;
    for (double v : h) var += (v - mean) * (v - mean) / H;
    const double rstd = 1 / std::sqrt(var + eps);
    for (int64_t j = 0; j < H; ++j) {
      out.residual_out[r * H + j] = h[j];
      out.y[r * H + j] =
          (h[j] - mean) * rstd * weight[j] + (bias.empty() ? 0.0 : bias[j]);
    }
  }
  return out;
}

// --- Forward vs naive loops -------------------------------------------------------------------

TEST(RmsNormTest, ForwardMatchesNaiveLoop) {
  for (DType dtype : {DType::kF64, DType::kF32}) {
    const DType stat = dtype == DType::kF64 ? DType::kF64 : DType::kF32;
    for (int64_t H : {1, 7, 64, 257}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " H=", H));
      const Tensor x = Rand({2, 3, H}, dtype, 1);
      const Tensor res = Rand({2, 3, H}, stat, 2);
      const Tensor w = Rand({H}, stat, 3, 0.5, 1.5);
      ASSERT_OK_AND_ASSIGN(functional::NormForwardResult f,
                           functional::RmsNormForward(x, res, w, kEps, true));
      const Naive naive = NaiveNorm(false, Doubles(x), Doubles(res), Doubles(w), {}, H, kEps);
      const Tolerance tol = DefaultTolerance(dtype);
      EXPECT_EQ(f.y.dtype(), dtype);
      EXPECT_EQ(f.residual_out.dtype(), stat);
      EXPECT_EQ(f.rstd.shape(), (Shape{6}));
      EXPECT_TRUE(AllClose(Doubles(f.y), naive.y, tol));
      EXPECT_TRUE(AllClose(Doubles(f.residual_out), naive.residual_out, tol));
      // Without a residual: h = x.
      ASSERT_OK_AND_ASSIGN(f, functional::RmsNormForward(x, Tensor(), w, kEps, false));
      EXPECT_FALSE(f.residual_out.defined());
      EXPECT_TRUE(AllClose(Doubles(f.y), NaiveNorm(false, Doubles(x), {}, Doubles(w), {}, H, kEps).y,
                           tol));
    }
  }
}

TEST(LayerNormTest, ForwardMatchesNaiveLoop) {
  for (DType dtype : {DType::kF64, DType::kF32}) {
    const DType stat = dtype == DType::kF64 ? DType::kF64 : DType::kF32;
    for (int64_t H : {1, 7, 64, 257}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " H=", H));
      // An offset from zero (10x the spread): a one-pass E[h^2] - E[h]^2 would cancel.
      const Tensor x = Rand({4, H}, dtype, 4, 9, 11);
      const Tensor res = Rand({4, H}, stat, 5);
      const Tensor w = Rand({H}, stat, 6, 0.5, 1.5);
      const Tensor b = Rand({H}, stat, 7);
      ASSERT_OK_AND_ASSIGN(functional::NormForwardResult f,
                           functional::LayerNormForward(x, res, w, b, kEps, true));
      const Naive naive =
          NaiveNorm(true, Doubles(x), Doubles(res), Doubles(w), Doubles(b), H, kEps);
      const Tolerance tol = dtype == DType::kF64 ? Tolerance{1e-10, 1e-10} : Tolerance{1e-4, 1e-4};
      EXPECT_TRUE(AllClose(Doubles(f.y), naive.y, tol));
      EXPECT_TRUE(AllClose(Doubles(f.residual_out), naive.residual_out, tol));
      ASSERT_OK_AND_ASSIGN(f, functional::LayerNormForward(x, Tensor(), w, Tensor(), kEps, false));
      EXPECT_TRUE(AllClose(Doubles(f.y),
                           NaiveNorm(true, Doubles(x), {}, Doubles(w), {}, H, kEps).y, tol));
    }
  }
}

// --- Hugging Face's rounding order in bf16 ----------------------------------------------------

// MambaRMSNorm: h = x.float() (+ residual); h = h * rsqrt(mean(h^2) + eps); weight * h.to(bf16),
// in f32 arithmetic with one rounding to bf16 before and after the weight multiply.
std::vector<double> HfRmsNormBf16(const std::vector<double>& x, const std::vector<double>& res,
                                  const std::vector<double>& w, int64_t H, bool round_first) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / H; ++r) {
    float sum_sq = 0;
    std::vector<float> h(H);
    for (int64_t j = 0; j < H; ++j) {
      h[j] = static_cast<float>(x[r * H + j]) + static_cast<float>(res[r * H + j]);
      sum_sq += h[j] * h[j];
    }
    const float rstd = 1.0f / std::sqrt(sum_sq / static_cast<float>(H) + static_cast<float>(kEps));
    for (int64_t j = 0; j < H; ++j) {
      float n = h[j] * rstd;
      if (round_first) n = static_cast<float>(BFloat16(n));
      y[r * H + j] = static_cast<float>(BFloat16(n * static_cast<float>(w[j])));
    }
  }
  return y;
}

TEST(RmsNormTest, Bf16RoundsBeforeTheWeightAsHuggingFace) {
  const int64_t H = 768;
  const Tensor x = Rand({8, H}, DType::kBF16, 11, -3, 3);
  const Tensor res = Rand({8, H}, DType::kF32, 12);
  const Tensor w = Rand({H}, DType::kF32, 13, 0.3, 3.0);
  ASSERT_OK_AND_ASSIGN(functional::NormForwardResult f,
                       functional::RmsNormForward(x, res, w, kEps, false));
  const std::vector<double> y = Doubles(f.y);
  const std::vector<double> hf = HfRmsNormBf16(Doubles(x), Doubles(res), Doubles(w), H, true);
  EXPECT_TRUE(AllClose(y, hf, Tolerance{0, 0}));
  // The other order (round only at the end) differs somewhere: the test can tell them apart.
  const std::vector<double> fused = HfRmsNormBf16(Doubles(x), Doubles(res), Doubles(w), H, false);
  int differ = 0;
  for (size_t i = 0; i < y.size(); ++i) differ += y[i] != fused[i];
  EXPECT_GT(differ, 0);
  // A bf16 weight (a model loaded in bf16) gives the same result: it converts exactly.
  ASSERT_OK_AND_ASSIGN(Tensor w16, w.To(DType::kBF16));
  ASSERT_OK_AND_ASSIGN(f, functional::RmsNormForward(x, res, w16, kEps, false));
  EXPECT_TRUE(AllClose(Doubles(f.y),
                       HfRmsNormBf16(Doubles(x), Doubles(res), Doubles(w16), H, true),
                       Tolerance{0, 0}));
}

// --- Gradient checks (f64, CPU) ---------------------------------------------------------------

void ExpectGradOk(const std::string& what, const autograd::GradCheckFn& fn,
                  const std::vector<Tensor>& inputs) {
  GradCheckResult r = GradCheck(fn, inputs);
  EXPECT_TRUE(r.ok) << what << ": " << r.message << " (max abs error " << r.max_abs_error << ")";
}

// y + 0.7 * residual_out: a loss that uses both outputs.
absl::StatusOr<Variable> BothOutputs(const functional::ResidualNormResult& r) {
  LYRA_ASSIGN_OR_RETURN(Variable scaled, autograd::MulScalar(r.residual_out, 0.7));
  return autograd::Add(r.y, scaled);
}

TEST(RmsNormTest, GradCheck) {
  for (int64_t H : {1, 5}) {
    const Tensor x = Rand({3, H}, DType::kF64, 21);
    const Tensor res = Rand({3, H}, DType::kF64, 22);
    const Tensor w = Rand({H}, DType::kF64, 23, 0.5, 1.5);
    ExpectGradOk("RmsNorm", [](const std::vector<Variable>& v) {
      return functional::RmsNorm(v[0], v[1], kEps);
    }, {x, w});
    ExpectGradOk("WithResidual: y", [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
      LYRA_ASSIGN_OR_RETURN(auto r, functional::RmsNormWithResidual(v[0], v[1], v[2], kEps));
      return r.y;
    }, {x, res, w});
    ExpectGradOk("WithResidual: residual_out",
                 [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
      LYRA_ASSIGN_OR_RETURN(auto r, functional::RmsNormWithResidual(v[0], v[1], v[2], kEps));
      return r.residual_out;
    }, {x, res, w});
    ExpectGradOk("WithResidual: both", [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
      LYRA_ASSIGN_OR_RETURN(auto r, functional::RmsNormWithResidual(v[0], v[1], v[2], kEps));
      return BothOutputs(r);
    }, {x, res, w});
    ExpectGradOk("WithResidual, no residual: both",
                 [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
      LYRA_ASSIGN_OR_RETURN(auto r, functional::RmsNormWithResidual(v[0], Variable(), v[1], kEps));
      return BothOutputs(r);
    }, {x, w});
  }
}

TEST(LayerNormTest, GradCheck) {
  for (int64_t H : {2, 6}) {
    const Tensor x = Rand({3, H}, DType::kF64, 31);
    const Tensor res = Rand({3, H}, DType::kF64, 32);
    const Tensor w = Rand({H}, DType::kF64, 33, 0.5, 1.5);
    const Tensor b = Rand({H}, DType::kF64, 34);
    ExpectGradOk("LayerNorm", [](const std::vector<Variable>& v) {
      return functional::LayerNorm(v[0], v[1], v[2], kEps);
    }, {x, w, b});
    ExpectGradOk("LayerNorm, no bias", [](const std::vector<Variable>& v) {
      return functional::LayerNorm(v[0], v[1], Variable(), kEps);
    }, {x, w});
    ExpectGradOk("WithResidual: y", [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
      LYRA_ASSIGN_OR_RETURN(auto r,
                            functional::LayerNormWithResidual(v[0], v[1], v[2], v[3], kEps));
      return r.y;
    }, {x, res, w, b});
    ExpectGradOk("WithResidual: both", [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
      LYRA_ASSIGN_OR_RETURN(auto r,
                            functional::LayerNormWithResidual(v[0], v[1], v[2], v[3], kEps));
      return BothOutputs(r);
    }, {x, res, w, b});
    ExpectGradOk("WithResidual, no residual, no bias: both",
                 [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
      LYRA_ASSIGN_OR_RETURN(auto r, functional::LayerNormWithResidual(v[0], Variable(), v[1],
                                                                      Variable(), kEps));
      return BothOutputs(r);
    }, {x, w});
  }
}

// --- Mixed precision and the modules ----------------------------------------------------------

TEST(RmsNormTest, Bf16InputWithFp32MasterGivesFp32WeightAndResidualGradients) {
  RMSNorm norm(16);
  ASSERT_OK(norm.weight().set_data(Rand({16}, DType::kF32, 41, 0.5, 1.5)));
  Variable x(Rand({4, 16}, DType::kBF16, 42), true);
  Variable res(Rand({4, 16}, DType::kF32, 43), true);
  ASSERT_OK_AND_ASSIGN(functional::ResidualNormResult r, norm.ForwardWithResidual(x, res));
  EXPECT_EQ(r.y.dtype(), DType::kBF16);
  EXPECT_EQ(r.residual_out.dtype(), DType::kF32);
  ASSERT_OK_AND_ASSIGN(Variable y32, autograd::Cast(r.y, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Add(y32, r.residual_out));
  ASSERT_OK_AND_ASSIGN(loss, autograd::Sum(loss));
  ASSERT_OK(loss.Backward());
  EXPECT_EQ(x.grad().dtype(), DType::kBF16);
  EXPECT_EQ(res.grad().dtype(), DType::kF32);
  EXPECT_EQ(norm.weight().grad().dtype(), DType::kF32);
  // x and residual receive the same gradient (rounded to bf16 for x).
  ASSERT_OK_AND_ASSIGN(Tensor dres16, res.grad().To(DType::kBF16));
  EXPECT_TRUE(AllClose(x.grad(), dres16, Tolerance{0, 0}));

  // The same computation in f64 (HF rounding aside) gives the same gradients within bf16 error.
  Variable x64(x.data().To(DType::kF64).value(), true);
  Variable res64(res.data().To(DType::kF64).value(), true);
  Variable w64(norm.weight().data().To(DType::kF64).value(), true);
  ASSERT_OK_AND_ASSIGN(auto r64, functional::RmsNormWithResidual(x64, res64, w64, kEps));
  ASSERT_OK_AND_ASSIGN(Variable loss64, autograd::Add(r64.y, r64.residual_out));
  ASSERT_OK_AND_ASSIGN(loss64, autograd::Sum(loss64));
  ASSERT_OK(loss64.Backward());
  EXPECT_TRUE(AllClose(res.grad(), res64.grad(), Tolerance{2e-2, 2e-2}));
  EXPECT_TRUE(AllClose(norm.weight().grad(), w64.grad(), Tolerance{5e-2, 2e-2}));
}

TEST(RmsNormTest, ModuleParametersAndForward) {
  RMSNorm norm(8, 1e-6);
  const auto params = norm.NamedParameters();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[0].second.dtype(), DType::kF32);
  EXPECT_EQ(Doubles(params[0].second.data()), std::vector<double>(8, 1.0));
  EXPECT_EQ(norm.eps(), 1e-6);
  Variable x(Rand({3, 8}, DType::kF32, 51), true);
  ASSERT_OK_AND_ASSIGN(Variable y, norm.Forward(x));
  EXPECT_TRUE(AllClose(Doubles(y.data()), NaiveNorm(false, Doubles(x.data()), {},
                                                    std::vector<double>(8, 1.0), {}, 8, 1e-6).y,
                       Tolerance{1e-5, 1e-5}));
  // The first block has no residual: residual_out is x in f32.
  ASSERT_OK_AND_ASSIGN(functional::ResidualNormResult r, norm.ForwardWithResidual(x, Variable()));
  EXPECT_TRUE(AllClose(r.residual_out.data(), x.data(), Tolerance{0, 0}));
  EXPECT_TRUE(AllClose(r.y.data(), y.data(), Tolerance{0, 0}));
  ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(r.y));
  ASSERT_OK(loss.Backward());
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(norm.weight().grad().defined());
  EXPECT_STATUS_IS(RMSNorm::Create(0), absl::StatusCode::kInvalidArgument, "hidden >= 1");
  EXPECT_STATUS_IS(RMSNorm::Create(4, -1), absl::StatusCode::kInvalidArgument, "eps");
}

TEST(LayerNormTest, ModuleParametersAndGradientsReachEveryInput) {
  LayerNorm norm(6);
  const auto params = norm.NamedParameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[1].first, "bias");
  EXPECT_EQ(Doubles(norm.bias().data()), std::vector<double>(6, 0.0));
  LayerNorm no_bias(6, 1e-5, /*bias=*/false);
  EXPECT_EQ(no_bias.NamedParameters().size(), 1u);
  EXPECT_FALSE(no_bias.bias().defined());

  Variable x(Rand({2, 6}, DType::kF32, 61), true);
  Variable res(Rand({2, 6}, DType::kF32, 62), true);
  ASSERT_OK_AND_ASSIGN(functional::ResidualNormResult r, norm.ForwardWithResidual(x, res));
  ASSERT_OK_AND_ASSIGN(Variable w, autograd::Mul(r.y, r.y));  // non-trivial dy
  ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(w));
  ASSERT_OK(loss.Backward());
  for (const Variable* v : std::vector<const Variable*>{&x, &res, &norm.weight(), &norm.bias()}) {
    ASSERT_TRUE(v->grad().defined()) << v->Describe();
    double norm1 = 0;
    for (double g : Doubles(v->grad())) norm1 += std::fabs(g);
    EXPECT_GT(norm1, 0) << v->Describe();
  }
  EXPECT_STATUS_IS(LayerNorm::Create(-3), absl::StatusCode::kInvalidArgument, "hidden >= 1");
}

// --- Layouts ----------------------------------------------------------------------------------

// Non-contiguous inputs are handled: transposed views are copied, narrowed and broadcast views
// are read in place; all give the contiguous result.
void ExpectLayoutsHandled(Device device) {
  const int64_t H = 24;
  const Tensor base = Rand({H, 10}, DType::kF32, 71).To(device).value();
  const Tensor xt = base.Transpose(0, 1).value();                       // [10, H], strides (1, 10)
  const Tensor wide = Rand({10, H + 5}, DType::kF32, 72).To(device).value();
  const Tensor xn = wide.Narrow(1, 1, H).value();                       // row stride H + 5, offset 1
  const Tensor res_row = Rand({1, H}, DType::kF32, 73).To(device).value();
  const Tensor res_b = res_row.Expand({10, H}).value();                 // row stride 0
  const Tensor w = Rand({H}, DType::kF32, 74, 0.5, 1.5).To(device).value();
  const Tensor b = Rand({H}, DType::kF32, 75).To(device).value();
  // Bit-exact on the CPU (one loop order). On CUDA the contiguous input takes the 16-byte vector
  // path and the narrowed one the scalar path, which sum a row in another order: f32 rounding.
  const Tolerance same = device.is_cpu() ? Tolerance{0, 0} : DefaultTolerance(DType::kF32);
  for (const Tensor* x : {&xt, &xn}) {
    const Tensor xc = x->Contiguous().value();
    const Tensor rc = res_b.Contiguous().value();
    for (bool layer : {false, true}) {
      SCOPED_TRACE(absl::StrCat(layer ? "LayerNorm " : "RmsNorm ", x->Describe()));
      auto run = [&](const Tensor& xx, const Tensor& rr) {
        return layer ? functional::LayerNormForward(xx, rr, w, b, kEps, true)
                     : functional::RmsNormForward(xx, rr, w, kEps, true);
      };
      ASSERT_OK_AND_ASSIGN(functional::NormForwardResult got, run(*x, res_b));
      ASSERT_OK_AND_ASSIGN(functional::NormForwardResult want, run(xc, rc));
      EXPECT_TRUE(AllClose(got.y, want.y, same));
      EXPECT_TRUE(AllClose(got.residual_out, want.residual_out, same));
      // The backward with a non-contiguous dy.
      const Tensor dy = Rand({H, 10}, DType::kF32, 76).To(device).value().Transpose(0, 1).value();
      const Tensor dyc = dy.Contiguous().value();
      auto back = [&](const Tensor& g) {
        return layer ? functional::LayerNormBackward(g, Tensor(), want.residual_out, w, want.mean,
                                                     want.rstd, b, true)
                     : functional::RmsNormBackward(g, Tensor(), want.residual_out, w, want.rstd,
                                                   true);
      };
      ASSERT_OK_AND_ASSIGN(functional::NormGradients g1, back(dy));
      ASSERT_OK_AND_ASSIGN(functional::NormGradients g2, back(dyc));
      EXPECT_TRUE(AllClose(g1.dx, g2.dx, same));
      EXPECT_TRUE(AllClose(g1.dweight, g2.dweight, same));
    }
  }
}

TEST(NormTest, NonContiguousInputsHandledCpu) { ExpectLayoutsHandled(Device::Cpu()); }

TEST(NormTest, EmptyRows) {
  const Tensor x = Tensor::Zeros({0, 8}, DType::kF32).value();
  const Tensor w = Tensor::Ones({8}, DType::kF32).value();
  ASSERT_OK_AND_ASSIGN(functional::NormForwardResult f,
                       functional::RmsNormForward(x, Tensor(), w, kEps, true));
  EXPECT_EQ(f.y.shape(), (Shape{0, 8}));
  ASSERT_OK_AND_ASSIGN(functional::NormGradients g,
                       functional::RmsNormBackward(x, Tensor(), x, w, f.rstd, false));
  EXPECT_EQ(Doubles(g.dweight), std::vector<double>(8, 0.0));
}

// --- Errors -----------------------------------------------------------------------------------

TEST(NormTest, Errors) {
  const Tensor x = Rand({3, 8}, DType::kBF16, 81);
  const Tensor res = Rand({3, 8}, DType::kF32, 82);
  const Tensor w = Tensor::Ones({8}, DType::kF32).value();
  const Tensor w7 = Tensor::Ones({7}, DType::kF32).value();
  EXPECT_STATUS_IS(functional::RmsNormForward(x, res, w7, kEps, true),
                   absl::StatusCode::kInvalidArgument, "weight f32[7]");
  EXPECT_STATUS_IS(functional::LayerNormForward(x, res, w, w7, kEps, true),
                   absl::StatusCode::kInvalidArgument, "bias f32[7]");
  EXPECT_STATUS_IS(functional::RmsNormForward(x, res, Tensor::Ones({8}, DType::kF16).value(),
                                              kEps, true),
                   absl::StatusCode::kInvalidArgument, "must be f32 or the dtype");
  EXPECT_STATUS_IS(functional::RmsNormForward(x, Rand({3, 9}, DType::kF32, 83), w, kEps, true),
                   absl::StatusCode::kInvalidArgument, "residual f32[3, 9]");
  EXPECT_STATUS_IS(functional::LayerNormForward(x, res.To(DType::kBF16).value(), w, Tensor(),
                                                kEps, true),
                   absl::StatusCode::kInvalidArgument, "residual bf16[3, 8]");
  EXPECT_STATUS_IS(functional::RmsNormForward(Tensor::Ones({3, 8}, DType::kI32).value(), Tensor(),
                                              w, kEps, false),
                   absl::StatusCode::kInvalidArgument, "floating-point");
  EXPECT_STATUS_IS(functional::RmsNormForward(x, res, w, -1, true),
                   absl::StatusCode::kInvalidArgument, "eps");
  EXPECT_STATUS_IS(functional::LayerNormForward(x, res, w, Tensor(), std::nan(""), true),
                   absl::StatusCode::kInvalidArgument, "eps");
  // Rows wider than the CUDA backward's shared memory: refused on every device alike.
  const int64_t wide = cuda::kNormMaxGradSharedBytes / 4 + 1;
  EXPECT_STATUS_IS(functional::RmsNormForward(Tensor::Ones({1, wide}, DType::kF32).value(),
                                              Tensor(), Tensor::Ones({wide}, DType::kF32).value(),
                                              kEps, false),
                   absl::StatusCode::kUnimplemented, "hidden size");
  // Backward: gradients of the wrong shape.
  ASSERT_OK_AND_ASSIGN(functional::NormForwardResult f,
                       functional::RmsNormForward(x, res, w, kEps, true));
  EXPECT_STATUS_IS(functional::RmsNormBackward(Rand({3, 7}, DType::kBF16, 84), Tensor(),
                                               f.residual_out, w, f.rstd, true),
                   absl::StatusCode::kInvalidArgument, "does not match dy");
  EXPECT_STATUS_IS(functional::RmsNormBackward(f.y, Rand({3, 8}, DType::kBF16, 85),
                                               f.residual_out, w, f.rstd, true),
                   absl::StatusCode::kInvalidArgument, "dresidual_out");
  EXPECT_STATUS_IS(functional::RmsNormBackward(f.y, Tensor(), f.residual_out, w,
                                               Rand({2}, DType::kF32, 86), true),
                   absl::StatusCode::kInvalidArgument, "row statistic");
}

// --- CUDA vs CPU ------------------------------------------------------------------------------

void CompareCudaToCpu(bool layer, DType dtype, int64_t rows, int64_t H, bool with_residual) {
  SCOPED_TRACE(absl::StrCat(layer ? "LayerNorm " : "RmsNorm ", DTypeName(dtype), " rows=", rows,
                            " H=", H, with_residual ? " +residual" : ""));
  const uint64_t seed = static_cast<uint64_t>(rows * 7919 + H);
  const Tensor x = Rand({rows, H}, dtype, seed);
  const Tensor res = with_residual ? Rand({rows, H}, DType::kF32, seed + 1) : Tensor();
  const Tensor w = Rand({H}, DType::kF32, seed + 2, 0.5, 1.5);
  const Tensor b = layer ? Rand({H}, DType::kF32, seed + 3) : Tensor();
  auto forward = [&](const Tensor& xx, const Tensor& rr, const Tensor& ww, const Tensor& bb) {
    return layer ? functional::LayerNormForward(xx, rr, ww, bb, kEps, true)
                 : functional::RmsNormForward(xx, rr, ww, kEps, true);
  };
  ASSERT_OK_AND_ASSIGN(functional::NormForwardResult cpu, forward(x, res, w, b));
  ASSERT_OK_AND_ASSIGN(functional::NormForwardResult gpu,
                       forward(OnGpu(x), OnGpu(res), OnGpu(w), OnGpu(b)));
  EXPECT_TRUE(AllClose(OnCpu(gpu.y), cpu.y, OutputTolerance(dtype)));
  EXPECT_TRUE(AllClose(OnCpu(gpu.residual_out), cpu.residual_out, Tolerance{0, 0}));
  EXPECT_TRUE(AllClose(OnCpu(gpu.rstd), cpu.rstd, Tolerance{1e-5, 1e-5}));
  if (layer) {
    EXPECT_TRUE(AllClose(OnCpu(gpu.mean), cpu.mean, Tolerance{1e-5, 1e-5}));
  }

  // The backward from the CPU forward's statistics on both devices.
  const Tensor dy = Rand({rows, H}, dtype, seed + 4);
  const Tensor dres_out = Rand({rows, H}, DType::kF32, seed + 5);
  auto backward = [&](const Tensor& g, const Tensor& gr, const Tensor& h, const Tensor& ww,
                      const Tensor& mean, const Tensor& rstd, const Tensor& bb) {
    return layer ? functional::LayerNormBackward(g, gr, h, ww, mean, rstd, bb, with_residual)
                 : functional::RmsNormBackward(g, gr, h, ww, rstd, with_residual);
  };
  ASSERT_OK_AND_ASSIGN(functional::NormGradients want,
                       backward(dy, dres_out, cpu.residual_out, w, cpu.mean, cpu.rstd, b));
  ASSERT_OK_AND_ASSIGN(
      functional::NormGradients got,
      backward(OnGpu(dy), OnGpu(dres_out), OnGpu(cpu.residual_out), OnGpu(w), OnGpu(cpu.mean),
               OnGpu(cpu.rstd), OnGpu(b)));
  EXPECT_TRUE(AllClose(OnCpu(got.dx), want.dx, GradTolerance(dtype)));
  if (with_residual) {
    EXPECT_TRUE(AllClose(OnCpu(got.dresidual), want.dresidual, Tolerance{1e-4, 1e-4}));
  }
  EXPECT_TRUE(AllClose(OnCpu(got.dweight), want.dweight, WeightGradTolerance(dtype)));
  if (layer) {
    EXPECT_TRUE(AllClose(OnCpu(got.dbias), want.dbias, WeightGradTolerance(dtype)));
  }

  // No dresidual_out, and h = x (the forward without a residual): x is converted to f32 first.
  ASSERT_OK_AND_ASSIGN(want, backward(dy, Tensor(), x, w, cpu.mean, cpu.rstd, b));
  ASSERT_OK_AND_ASSIGN(got, backward(OnGpu(dy), Tensor(), OnGpu(x), OnGpu(w), OnGpu(cpu.mean),
                                     OnGpu(cpu.rstd), OnGpu(b)));
  EXPECT_TRUE(AllClose(OnCpu(got.dx), want.dx, GradTolerance(dtype)));
  EXPECT_TRUE(AllClose(OnCpu(got.dweight), want.dweight, WeightGradTolerance(dtype)));
}

TEST(NormCudaTest, MatchesCpuOverDtypesAndSizes) {
  LYRA_REQUIRE_GPU();
  for (bool layer : {false, true}) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (int64_t H : {1, 7, 768, 1536, 2560, 4099}) {
        for (int64_t rows : {1, 3, 1000}) {
          CompareCudaToCpu(layer, dtype, rows, H, /*with_residual=*/true);
          if (::testing::Test::HasFailure()) return;
        }
      }
      CompareCudaToCpu(layer, dtype, 5, 768, /*with_residual=*/false);
    }
  }
}

TEST(NormCudaTest, F64MatchesCpu) {
  LYRA_REQUIRE_GPU();
  for (bool layer : {false, true}) {
    const Tensor x = Rand({37, 300}, DType::kF64, 91);
    const Tensor res = Rand({37, 300}, DType::kF64, 92);
    const Tensor w = Rand({300}, DType::kF64, 93, 0.5, 1.5);
    auto run = [&](Device d) {
      return layer ? functional::LayerNormForward(x.To(d).value(), res.To(d).value(),
                                                  w.To(d).value(), Tensor(), kEps, true)
                   : functional::RmsNormForward(x.To(d).value(), res.To(d).value(),
                                                w.To(d).value(), kEps, true);
    };
    ASSERT_OK_AND_ASSIGN(functional::NormForwardResult cpu, run(Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(functional::NormForwardResult gpu, run(kGpu));
    EXPECT_TRUE(AllClose(OnCpu(gpu.y), cpu.y, Tolerance{1e-12, 1e-12}));
  }
}

TEST(NormCudaTest, Bf16MatchesHuggingFaceOrder) {
  LYRA_REQUIRE_GPU();
  const int64_t H = 2560;  // mamba-2.8b
  const Tensor x = Rand({64, H}, DType::kBF16, 101, -3, 3);
  const Tensor res = Rand({64, H}, DType::kF32, 102);
  const Tensor w = Rand({H}, DType::kF32, 103, 0.3, 3.0);
  ASSERT_OK_AND_ASSIGN(functional::NormForwardResult f,
                       functional::RmsNormForward(OnGpu(x), OnGpu(res), OnGpu(w), kEps, false));
  // One bf16 ulp: the GPU's sum of squares runs in another order than the reference's.
  EXPECT_TRUE(AllClose(Doubles(OnCpu(f.y)),
                       HfRmsNormBf16(Doubles(x), Doubles(res), Doubles(w), H, true),
                       Tolerance{1e-2, 8e-3}));
}

TEST(NormCudaTest, NonContiguousInputsHandled) {
  LYRA_REQUIRE_GPU();
  ExpectLayoutsHandled(kGpu);
  // Rows that are not 16-byte aligned (the scalar path) against the aligned (vector) path.
  const Tensor wide = OnGpu(Rand({100, 769}, DType::kBF16, 111));
  const Tensor unaligned = wide.Narrow(1, 1, 768).value();
  const Tensor aligned = unaligned.Contiguous().value();
  const Tensor w = OnGpu(Rand({768}, DType::kF32, 112, 0.5, 1.5));
  ASSERT_OK_AND_ASSIGN(auto a, functional::RmsNormForward(unaligned, Tensor(), w, kEps, true));
  ASSERT_OK_AND_ASSIGN(auto b, functional::RmsNormForward(aligned, Tensor(), w, kEps, true));
  EXPECT_TRUE(AllClose(OnCpu(a.y), OnCpu(b.y), DefaultTolerance(DType::kBF16)));
  EXPECT_TRUE(AllClose(OnCpu(a.residual_out), OnCpu(b.residual_out), Tolerance{0, 0}));
}

TEST(NormCudaTest, WeightGradientIsDeterministic) {
  LYRA_REQUIRE_GPU();
  const int64_t rows = 4096, H = 2048;
  const Tensor x = OnGpu(Rand({rows, H}, DType::kBF16, 121));
  const Tensor res = OnGpu(Rand({rows, H}, DType::kF32, 122));
  const Tensor w = OnGpu(Rand({H}, DType::kF32, 123, 0.5, 1.5));
  const Tensor dy = OnGpu(Rand({rows, H}, DType::kBF16, 124));
  ASSERT_OK_AND_ASSIGN(auto f, functional::LayerNormForward(x, res, w, w, kEps, true));
  ASSERT_OK_AND_ASSIGN(auto g1, functional::LayerNormBackward(dy, Tensor(), f.residual_out, w,
                                                              f.mean, f.rstd, w, true));
  ASSERT_OK_AND_ASSIGN(auto g2, functional::LayerNormBackward(dy, Tensor(), f.residual_out, w,
                                                              f.mean, f.rstd, w, true));
  EXPECT_EQ(Doubles(OnCpu(g1.dweight)), Doubles(OnCpu(g2.dweight)));
  EXPECT_EQ(Doubles(OnCpu(g1.dbias)), Doubles(OnCpu(g2.dbias)));
  ASSERT_OK_AND_ASSIGN(auto r, functional::RmsNormForward(x, res, w, kEps, true));
  ASSERT_OK_AND_ASSIGN(auto h1, functional::RmsNormBackward(dy, Tensor(), r.residual_out, w,
                                                            r.rstd, true));
  ASSERT_OK_AND_ASSIGN(auto h2, functional::RmsNormBackward(dy, Tensor(), r.residual_out, w,
                                                            r.rstd, true));
  EXPECT_EQ(Doubles(OnCpu(h1.dweight)), Doubles(OnCpu(h2.dweight)));
}

TEST(NormCudaTest, EmptyRowsZeroTheWeightGradient) {
  LYRA_REQUIRE_GPU();
  const Tensor x = Tensor::Zeros({0, 8}, DType::kF32, kGpu).value();
  const Tensor w = Tensor::Ones({8}, DType::kF32, kGpu).value();
  ASSERT_OK_AND_ASSIGN(auto f, functional::LayerNormForward(x, Tensor(), w, w, kEps, false));
  ASSERT_OK_AND_ASSIGN(auto g, functional::LayerNormBackward(x, Tensor(), x, w, f.mean, f.rstd,
                                                             w, false));
  EXPECT_EQ(Doubles(OnCpu(g.dweight)), std::vector<double>(8, 0.0));
  EXPECT_EQ(Doubles(OnCpu(g.dbias)), std::vector<double>(8, 0.0));
}

}  // namespace
}  // namespace lyra::nn::norm_testing
