// Gated, grouped RMSNorm (Mamba-2's norm): the fused op against the same math composed of
// separate autograd ops (values and every gradient, f64), Hugging Face's rounding order in bf16,
// f64 finite-difference gradient checks with and without the gate over group counts, the module,
// layouts, error cases, and (with a GPU) the CUDA kernels against the CPU reference over dtypes x
// sizes x group counts, non-contiguous inputs and determinism.
#include "nn/gated_rms_norm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "cuda/gated_rms_norm.h"
#include "cuda/rms_norm.h"
#include "tests/nn/norm_test_util.h"
#include "tests/testing/testing.h"

namespace lyra::nn::norm_testing {
namespace {

using autograd::GradCheck;
using autograd::GradCheckResult;
using autograd::Variable;
using ::lyra::testing::RandomTensor;

// (H, S) pairs: one group, several, odd sizes, a group of one channel.
struct Sizes {
  int64_t hidden, group_size;
};
const Sizes kSizes[] = {{8, 8}, {8, 4}, {12, 3}, {15, 5}, {7, 7}, {4, 1}, {40, 10}};

// --- The composed-ops oracle --------------------------------------------------------------------

// y = weight * (h * rsqrt(mean_group(h^2) + eps)), h = x * silu(z), from separate autograd ops.
absl::StatusOr<Variable> Composed(const Variable& x, const Variable& z, const Variable& weight,
                                  int64_t group_size, double eps) {
  using namespace autograd;
  Variable h = x;
  if (z.defined()) {
    LYRA_ASSIGN_OR_RETURN(Variable gate, Silu(z));
    LYRA_ASSIGN_OR_RETURN(h, Mul(x, gate));
  }
  const Shape shape = x.shape();
  const int64_t hidden = shape.back();
  Shape grouped(shape.begin(), shape.end() - 1);
  grouped.push_back(hidden / group_size);
  grouped.push_back(group_size);
  LYRA_ASSIGN_OR_RETURN(Variable hg, Reshape(h, grouped));
  LYRA_ASSIGN_OR_RETURN(Variable sq, Square(hg));
  LYRA_ASSIGN_OR_RETURN(Variable ms, Mean(sq, {static_cast<int>(grouped.size()) - 1}, true));
  LYRA_ASSIGN_OR_RETURN(ms, AddScalar(ms, eps));
  LYRA_ASSIGN_OR_RETURN(Variable rstd, Rsqrt(ms));
  LYRA_ASSIGN_OR_RETURN(Variable n, Mul(hg, rstd));
  LYRA_ASSIGN_OR_RETURN(n, Reshape(n, shape));
  return Mul(n, weight);
}

struct NormRun {
  std::vector<double> y, dx, dz, dweight;
};

// Forward, then the backward of sum(y * w) with fixed weights w.
absl::StatusOr<NormRun> Evaluate(const Tensor& x, const Tensor& z, const Tensor& weight,
                             int64_t group_size, bool fused) {
  Variable xv(x, true), zv = z.defined() ? Variable(z, true) : Variable(), wv(weight, true);
  LYRA_ASSIGN_OR_RETURN(Variable y, fused ? functional::GatedRmsNorm(xv, zv, wv, group_size, kEps)
                                          : Composed(xv, zv, wv, group_size, kEps));
  LYRA_ASSIGN_OR_RETURN(Tensor w, RandomTensor(y.shape(), y.dtype(), 77, 0.5, 1.5));
  LYRA_ASSIGN_OR_RETURN(w, w.To(y.device()));
  LYRA_ASSIGN_OR_RETURN(Variable weighted, autograd::Mul(y, Variable(w)));
  LYRA_ASSIGN_OR_RETURN(Variable loss, autograd::Sum(weighted));
  LYRA_RETURN_IF_ERROR(loss.Backward());
  NormRun r;
  LYRA_ASSIGN_OR_RETURN(r.y, y.data().ToDoubles());
  LYRA_ASSIGN_OR_RETURN(r.dx, xv.grad().ToDoubles());
  if (zv.defined()) {
    LYRA_ASSIGN_OR_RETURN(r.dz, zv.grad().ToDoubles());
  }
  LYRA_ASSIGN_OR_RETURN(r.dweight, wv.grad().ToDoubles());
  return r;
}

TEST(GatedRmsNormTest, FusedEqualsComposedOpsInF64) {
  for (const Sizes& s : kSizes) {
    for (bool gated : {true, false}) {
      SCOPED_TRACE(absl::StrCat("H=", s.hidden, " S=", s.group_size, gated ? " gated" : ""));
      const Tensor x = Rand({2, 3, s.hidden}, DType::kF64, 1, -2, 2);
      const Tensor z = gated ? Rand({2, 3, s.hidden}, DType::kF64, 2, -3, 3) : Tensor();
      const Tensor w = Rand({s.hidden}, DType::kF64, 3, 0.5, 1.5);
      ASSERT_OK_AND_ASSIGN(NormRun fused, Evaluate(x, z, w, s.group_size, true));
      ASSERT_OK_AND_ASSIGN(NormRun composed, Evaluate(x, z, w, s.group_size, false));
      const Tolerance tol{1e-12, 1e-12};
      EXPECT_TRUE(AllClose(fused.y, composed.y, tol)) << "y";
      EXPECT_TRUE(AllClose(fused.dx, composed.dx, tol)) << "dx";
      EXPECT_TRUE(AllClose(fused.dz, composed.dz, tol)) << "dz";
      EXPECT_TRUE(AllClose(fused.dweight, composed.dweight, tol)) << "dweight";
    }
  }
}

TEST(GatedRmsNormTest, F32MatchesF64) {
  for (const Sizes& s : kSizes) {
    SCOPED_TRACE(absl::StrCat("H=", s.hidden, " S=", s.group_size));
    const Tensor x = Rand({5, s.hidden}, DType::kF32, 4, -2, 2);
    const Tensor z = Rand({5, s.hidden}, DType::kF32, 5, -3, 3);
    const Tensor w = Rand({s.hidden}, DType::kF32, 6, 0.5, 1.5);
    ASSERT_OK_AND_ASSIGN(NormRun r32, Evaluate(x, z, w, s.group_size, true));
    ASSERT_OK_AND_ASSIGN(NormRun r64, Evaluate(x.To(DType::kF64).value(), z.To(DType::kF64).value(),
                                           w.To(DType::kF64).value(), s.group_size, true));
    const Tolerance tol{1e-4, 1e-4};
    EXPECT_TRUE(AllClose(r32.y, r64.y, tol));
    EXPECT_TRUE(AllClose(r32.dx, r64.dx, tol));
    EXPECT_TRUE(AllClose(r32.dz, r64.dz, tol));
    EXPECT_TRUE(AllClose(r32.dweight, r64.dweight, tol));
  }
}

// --- Hugging Face's rounding order in bf16 ------------------------------------------------------

// MambaRMSNormGated on bf16 x and gate: h = x.float() * silu(gate.float()); h * rsqrt(mean(h^2) +
// eps) in f32 (the mean summed in f64 here, as the reference does: HF's f32 sum order is torch's);
// then weight * h.to(bf16), the product rounded to bf16 (or, with round_first false, the
// normalised value not rounded before the multiply).
std::vector<double> HfGatedBf16(const std::vector<double>& x, const std::vector<double>& z,
                                const std::vector<double>& w, int64_t H, int64_t S,
                                bool round_first) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / H; ++r) {
    for (int64_t g = 0; g < H / S; ++g) {
      std::vector<float> h(S);
      double sum_sq = 0;
      for (int64_t j = 0; j < S; ++j) {
        const size_t i = r * H + g * S + j;
        const float zf = static_cast<float>(z[i]);
        h[j] = static_cast<float>(x[i]) * (zf / (1.0f + std::exp(-zf)));
        sum_sq += static_cast<double>(h[j]) * h[j];
      }
      const float mean_sq = static_cast<float>(sum_sq / static_cast<double>(S));
      const float rstd = 1.0f / std::sqrt(mean_sq + static_cast<float>(kEps));
      for (int64_t j = 0; j < S; ++j) {
        const size_t i = r * H + g * S + j;
        float n = h[j] * rstd;
        if (round_first) n = static_cast<float>(BFloat16(n));
        y[i] = static_cast<float>(BFloat16(n * static_cast<float>(w[g * S + j])));
      }
    }
  }
  return y;
}

TEST(GatedRmsNormTest, Bf16RoundsBeforeTheWeightAsHuggingFace) {
  const int64_t H = 768;
  for (int64_t S : {H, H / 4}) {
    SCOPED_TRACE(absl::StrCat("S=", S));
    const Tensor x = Rand({8, H}, DType::kBF16, 11, -3, 3);
    const Tensor z = Rand({8, H}, DType::kBF16, 12, -4, 4);
    const Tensor w = Rand({H}, DType::kF32, 13, 0.3, 3.0);
    ASSERT_OK_AND_ASSIGN(functional::GatedNormForwardResult f,
                         functional::GatedRmsNormForward(x, z, w, S, kEps));
    EXPECT_EQ(f.y.dtype(), DType::kBF16);
    EXPECT_EQ(f.rstd.shape(), (Shape{8, H / S}));
    const std::vector<double> y = Doubles(f.y);
    EXPECT_TRUE(AllClose(y, HfGatedBf16(Doubles(x), Doubles(z), Doubles(w), H, S, true),
                         Tolerance{0, 0}));
    // The other order (one rounding at the end) differs somewhere: the test tells them apart.
    const std::vector<double> once = HfGatedBf16(Doubles(x), Doubles(z), Doubles(w), H, S, false);
    int differ = 0;
    for (size_t i = 0; i < y.size(); ++i) differ += y[i] != once[i];
    EXPECT_GT(differ, 0);
  }
}

// --- Gradient checks (f64, CPU) -----------------------------------------------------------------

TEST(GatedRmsNormTest, GradCheck) {
  for (const Sizes& s : {Sizes{6, 6}, Sizes{6, 3}, Sizes{8, 2}, Sizes{5, 5}}) {
    SCOPED_TRACE(absl::StrCat("H=", s.hidden, " S=", s.group_size));
    const Tensor x = Rand({3, s.hidden}, DType::kF64, 21, -2, 2);
    const Tensor z = Rand({3, s.hidden}, DType::kF64, 22, -3, 3);
    const Tensor w = Rand({s.hidden}, DType::kF64, 23, 0.5, 1.5);
    const int64_t S = s.group_size;
    GradCheckResult r = GradCheck(
        [S](const std::vector<Variable>& v) {
          return functional::GatedRmsNorm(v[0], v[1], v[2], S, kEps);
        },
        {x, z, w});
    EXPECT_TRUE(r.ok) << "gated: " << r.message << " (max abs error " << r.max_abs_error << ")";
    r = GradCheck(
        [S](const std::vector<Variable>& v) {
          return functional::GatedRmsNorm(v[0], Variable(), v[1], S, kEps);
        },
        {x, w});
    EXPECT_TRUE(r.ok) << "no gate: " << r.message << " (max abs error " << r.max_abs_error << ")";
  }
}

// --- Mixed precision and the module -------------------------------------------------------------

TEST(GatedRmsNormTest, Bf16InputsWithFp32MasterGiveBf16InputAndFp32WeightGradients) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GatedRMSNorm> norm, GatedRMSNorm::Create(16, 8));
  ASSERT_OK(norm->weight().set_data(Rand({16}, DType::kF32, 41, 0.5, 1.5)));
  Variable x(Rand({4, 16}, DType::kBF16, 42), true);
  Variable z(Rand({4, 16}, DType::kBF16, 43, -2, 2), true);
  ASSERT_OK_AND_ASSIGN(Variable y, norm->Forward(x, z));
  EXPECT_EQ(y.dtype(), DType::kBF16);
  ASSERT_OK_AND_ASSIGN(Variable y32, autograd::Cast(y, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(y32));
  ASSERT_OK(loss.Backward());
  EXPECT_EQ(x.grad().dtype(), DType::kBF16);
  EXPECT_EQ(z.grad().dtype(), DType::kBF16);
  EXPECT_EQ(norm->weight().grad().dtype(), DType::kF32);

  // The same in f64 gives the same gradients within bf16 error.
  Variable x64(x.data().To(DType::kF64).value(), true);
  Variable z64(z.data().To(DType::kF64).value(), true);
  Variable w64(norm->weight().data().To(DType::kF64).value(), true);
  ASSERT_OK_AND_ASSIGN(Variable y64, functional::GatedRmsNorm(x64, z64, w64, 8, kEps));
  ASSERT_OK_AND_ASSIGN(Variable loss64, autograd::Sum(y64));
  ASSERT_OK(loss64.Backward());
  EXPECT_TRUE(AllClose(x.grad(), x64.grad(), Tolerance{3e-2, 2e-2}));
  EXPECT_TRUE(AllClose(z.grad(), z64.grad(), Tolerance{3e-2, 2e-2}));
  EXPECT_TRUE(AllClose(norm->weight().grad(), w64.grad(), Tolerance{5e-2, 2e-2}));
  // A bf16 weight (a model loaded in bf16) gives the same forward and a bf16 weight gradient.
  ASSERT_OK_AND_ASSIGN(Tensor w16, norm->weight().data().To(DType::kBF16));
  Variable w16v(w16, true);
  ASSERT_OK_AND_ASSIGN(Variable y16, functional::GatedRmsNorm(x.Detach(), z.Detach(), w16v, 8,
                                                              kEps));
  ASSERT_OK_AND_ASSIGN(functional::GatedNormForwardResult f,
                       functional::GatedRmsNormForward(x.data(), z.data(),
                                                       w16.To(DType::kF32).value(), 8, kEps));
  EXPECT_TRUE(AllClose(y16.data(), f.y, Tolerance{0, 0}));
  ASSERT_OK_AND_ASSIGN(Variable s16, autograd::Sum(y16));
  ASSERT_OK(s16.Backward());
  EXPECT_EQ(w16v.grad().dtype(), DType::kBF16);
}

TEST(GatedRmsNormTest, ModuleParametersAndGradientsReachEveryInput) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GatedRMSNorm> norm, GatedRMSNorm::Create(12, 4, 1e-6));
  EXPECT_EQ(norm->hidden(), 12);
  EXPECT_EQ(norm->group_size(), 4);
  EXPECT_EQ(norm->eps(), 1e-6);
  const auto params = norm->NamedParameters();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[0].second.dtype(), DType::kF32);
  EXPECT_EQ(Doubles(params[0].second.data()), std::vector<double>(12, 1.0));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<GatedRMSNorm> n64,
                       GatedRMSNorm::Create(12, 4, 1e-6, DType::kF64));
  EXPECT_EQ(n64->weight().dtype(), DType::kF64);

  Variable x(Rand({2, 3, 12}, DType::kF32, 51), true);
  Variable z(Rand({2, 3, 12}, DType::kF32, 52), true);
  ASSERT_OK_AND_ASSIGN(Variable y, norm->Forward(x, z));
  ASSERT_OK_AND_ASSIGN(Variable sq, autograd::Mul(y, y));  // a non-trivial dy
  ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(sq));
  ASSERT_OK(loss.Backward());
  for (const Variable* v : std::vector<const Variable*>{&x, &z, &norm->weight()}) {
    ASSERT_TRUE(v->grad().defined()) << v->Describe();
    double norm1 = 0;
    for (double g : Doubles(v->grad())) norm1 += std::fabs(g);
    EXPECT_GT(norm1, 0) << v->Describe();
  }
  // Without the gate: plain grouped RMSNorm.
  ASSERT_OK_AND_ASSIGN(Variable plain, norm->Forward(x));
  ASSERT_OK_AND_ASSIGN(Variable oracle, Composed(x, Variable(), norm->weight(), 4, 1e-6));
  EXPECT_TRUE(AllClose(plain.data(), oracle.data(), Tolerance{1e-6, 1e-6}));

  EXPECT_STATUS_IS(GatedRMSNorm::Create(0, 1), absl::StatusCode::kInvalidArgument, "hidden >= 1");
  EXPECT_STATUS_IS(GatedRMSNorm::Create(12, 5), absl::StatusCode::kInvalidArgument, "group size");
  EXPECT_STATUS_IS(GatedRMSNorm::Create(12, 4, -1), absl::StatusCode::kInvalidArgument, "eps");
  EXPECT_STATUS_IS(GatedRMSNorm::Create(12, 4, 1e-5, DType::kI32),
                   absl::StatusCode::kInvalidArgument, "floating");
}

// --- Layouts ------------------------------------------------------------------------------------

// x and z narrowed out of one wider row (as from Mamba-2's in_proj output) and transposed views
// give the contiguous result, forward and backward.
void ExpectLayoutsHandled(Device device, DType dtype) {
  const int64_t H = 24, rows = 10;
  const Tensor wide = Rand({rows, 2 * H + 5}, dtype, 61).To(device).value();
  const Tensor zn = wide.Narrow(1, 1, H).value();      // row stride 2H + 5, offset 1
  const Tensor xn = wide.Narrow(1, H + 3, H).value();  // offset H + 3
  const Tensor xt = Rand({H, rows}, dtype, 62).To(device).value().Transpose(0, 1).value();
  const Tensor w = Rand({H}, DType::kF32, 63, 0.5, 1.5).To(device).value();
  const Tensor dy = Rand({H, rows}, dtype, 64).To(device).value().Transpose(0, 1).value();
  // Bit-exact on the CPU (one loop order). On CUDA the contiguous input takes the 16-byte vector
  // path and the narrowed one the scalar path, which sum in another order.
  const Tolerance same = device.is_cpu() ? Tolerance{0, 0} : DefaultTolerance(dtype);
  for (int64_t S : {H, H / 3}) {
    for (const Tensor* x : {&xn, &xt}) {
      SCOPED_TRACE(absl::StrCat(x->Describe(), " S=", S));
      const Tensor xc = x->Contiguous().value(), zc = zn.Contiguous().value();
      ASSERT_OK_AND_ASSIGN(auto got, functional::GatedRmsNormForward(*x, zn, w, S, kEps));
      ASSERT_OK_AND_ASSIGN(auto want, functional::GatedRmsNormForward(xc, zc, w, S, kEps));
      EXPECT_TRUE(AllClose(got.y, want.y, same));
      ASSERT_OK_AND_ASSIGN(auto g1, functional::GatedRmsNormBackward(dy, *x, zn, w, want.rstd, S));
      ASSERT_OK_AND_ASSIGN(auto g2, functional::GatedRmsNormBackward(dy.Contiguous().value(), xc,
                                                                     zc, w, want.rstd, S));
      EXPECT_TRUE(AllClose(g1.dx, g2.dx, same));
      EXPECT_TRUE(AllClose(g1.dz, g2.dz, same));
      EXPECT_TRUE(AllClose(g1.dweight, g2.dweight,
                           device.is_cpu() ? Tolerance{0, 0} : Tolerance{1e-4, 1e-4}));
    }
  }
}

TEST(GatedRmsNormTest, NonContiguousInputsHandledCpu) {
  ExpectLayoutsHandled(Device::Cpu(), DType::kF32);
}

TEST(GatedRmsNormTest, EmptyRows) {
  const Tensor x = Tensor::Zeros({0, 8}, DType::kF32).value();
  const Tensor w = Tensor::Ones({8}, DType::kF32).value();
  ASSERT_OK_AND_ASSIGN(auto f, functional::GatedRmsNormForward(x, x, w, 4, kEps));
  EXPECT_EQ(f.y.shape(), (Shape{0, 8}));
  EXPECT_EQ(f.rstd.shape(), (Shape{0, 2}));
  ASSERT_OK_AND_ASSIGN(auto g, functional::GatedRmsNormBackward(x, x, x, w, f.rstd, 4));
  EXPECT_EQ(Doubles(g.dweight), std::vector<double>(8, 0.0));
}

// --- Errors -------------------------------------------------------------------------------------

TEST(GatedRmsNormTest, Errors) {
  const Tensor x = Rand({3, 8}, DType::kBF16, 81);
  const Tensor z = Rand({3, 8}, DType::kBF16, 82);
  const Tensor w = Tensor::Ones({8}, DType::kF32).value();
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(x, z, Tensor::Ones({7}, DType::kF32).value(),
                                                   8, kEps),
                   absl::StatusCode::kInvalidArgument, "weight f32[7]");
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(x, z, Tensor::Ones({8}, DType::kF16).value(),
                                                   8, kEps),
                   absl::StatusCode::kInvalidArgument, "must be f32 or the dtype");
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(x, Rand({3, 9}, DType::kBF16, 83), w, 8, kEps),
                   absl::StatusCode::kInvalidArgument, "z bf16[3, 9]");
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(x, z.To(DType::kF32).value(), w, 8, kEps),
                   absl::StatusCode::kInvalidArgument, "z f32[3, 8]");
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(x, z, w, 3, kEps),
                   absl::StatusCode::kInvalidArgument, "group size 3");
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(x, z, w, 0, kEps),
                   absl::StatusCode::kInvalidArgument, "group size 0");
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(Tensor::Ones({3, 8}, DType::kI32).value(),
                                                   Tensor(), w, 8, kEps),
                   absl::StatusCode::kInvalidArgument, "floating-point");
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(x, z, w, 8, -1),
                   absl::StatusCode::kInvalidArgument, "eps");
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(x, z, w, 8, std::nan("")),
                   absl::StatusCode::kInvalidArgument, "eps");
  EXPECT_STATUS_IS(functional::GatedRmsNorm(Variable(x), Variable(z), Variable(), 8, kEps),
                   absl::StatusCode::kInvalidArgument, "must be defined");
  // Groups wider than the CUDA backward's shared memory: refused on every device alike; the same
  // row width in smaller groups is fine.
  const int64_t wide = cuda::kNormMaxGradSharedBytes / 4 + 4;
  const Tensor xw = Tensor::Ones({1, wide}, DType::kF32).value();
  const Tensor ww = Tensor::Ones({wide}, DType::kF32).value();
  EXPECT_STATUS_IS(functional::GatedRmsNormForward(xw, Tensor(), ww, wide, kEps),
                   absl::StatusCode::kUnimplemented, "group size");
  EXPECT_OK(functional::GatedRmsNormForward(xw, Tensor(), ww, wide / 4, kEps).status());
  // Backward: operands that do not match dy, statistics of the wrong size.
  ASSERT_OK_AND_ASSIGN(auto f, functional::GatedRmsNormForward(x, z, w, 4, kEps));
  EXPECT_STATUS_IS(functional::GatedRmsNormBackward(Rand({3, 7}, DType::kBF16, 84), x, z, w,
                                                    f.rstd, 4),
                   absl::StatusCode::kInvalidArgument, "x bf16[3, 8]");
  EXPECT_STATUS_IS(functional::GatedRmsNormBackward(f.y, x, Rand({3, 4}, DType::kBF16, 85), w,
                                                    f.rstd, 4),
                   absl::StatusCode::kInvalidArgument, "z bf16[3, 4]");
  EXPECT_STATUS_IS(functional::GatedRmsNormBackward(f.y, x, z, w, f.rstd, 8),
                   absl::StatusCode::kInvalidArgument, "rstd");
}

// --- CUDA vs CPU --------------------------------------------------------------------------------

void CompareCudaToCpu(DType dtype, int64_t rows, int64_t H, int64_t S, bool gated) {
  SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " rows=", rows, " H=", H, " S=", S,
                            gated ? " gated" : ""));
  const uint64_t seed = static_cast<uint64_t>(rows * 7919 + H * 13 + S);
  const Tensor x = Rand({rows, H}, dtype, seed, -2, 2);
  const Tensor z = gated ? Rand({rows, H}, dtype, seed + 1, -4, 4) : Tensor();
  const Tensor w = Rand({H}, DType::kF32, seed + 2, 0.5, 1.5);
  ASSERT_OK_AND_ASSIGN(auto cpu, functional::GatedRmsNormForward(x, z, w, S, kEps));
  ASSERT_OK_AND_ASSIGN(auto gpu,
                       functional::GatedRmsNormForward(OnGpu(x), OnGpu(z), OnGpu(w), S, kEps));
  EXPECT_TRUE(AllClose(OnCpu(gpu.y), cpu.y, OutputTolerance(dtype)));
  EXPECT_TRUE(AllClose(OnCpu(gpu.rstd), cpu.rstd, Tolerance{1e-5, 1e-5}));

  const Tensor dy = Rand({rows, H}, dtype, seed + 3);
  ASSERT_OK_AND_ASSIGN(auto want, functional::GatedRmsNormBackward(dy, x, z, w, cpu.rstd, S));
  ASSERT_OK_AND_ASSIGN(auto got, functional::GatedRmsNormBackward(
                                     OnGpu(dy), OnGpu(x), OnGpu(z), OnGpu(w), OnGpu(cpu.rstd), S));
  EXPECT_TRUE(AllClose(OnCpu(got.dx), want.dx, GradTolerance(dtype)));
  if (gated) {
    EXPECT_TRUE(AllClose(OnCpu(got.dz), want.dz, GradTolerance(dtype)));
  }
  EXPECT_TRUE(AllClose(OnCpu(got.dweight), want.dweight, WeightGradTolerance(dtype)));
}

TEST(GatedRmsNormCudaTest, MatchesCpuOverDtypesSizesAndGroups) {
  LYRA_REQUIRE_GPU();
  // (H, S): odd sizes, mamba2-130m (D = 1536, one group), groups of 2 and 4, mamba2-2.7b
  // (D = 5120), a group size that is not a multiple of the vector width.
  const Sizes sizes[] = {{1, 1},       {7, 7},       {30, 10},     {1536, 1536}, {1536, 768},
                         {1536, 384},  {5120, 5120}, {4099, 4099}, {804, 201}};
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (const Sizes& s : sizes) {
      for (int64_t rows : {1, 3, 1000}) {
        CompareCudaToCpu(dtype, rows, s.hidden, s.group_size, /*gated=*/true);
        if (::testing::Test::HasFailure()) return;
      }
    }
    CompareCudaToCpu(dtype, 5, 1536, 384, /*gated=*/false);
    CompareCudaToCpu(dtype, 5, 7, 7, /*gated=*/false);
  }
}

TEST(GatedRmsNormCudaTest, F64MatchesCpu) {
  LYRA_REQUIRE_GPU();
  const Tensor x = Rand({37, 300}, DType::kF64, 91);
  const Tensor z = Rand({37, 300}, DType::kF64, 92, -3, 3);
  const Tensor w = Rand({300}, DType::kF64, 93, 0.5, 1.5);
  const Tensor dy = Rand({37, 300}, DType::kF64, 94);
  ASSERT_OK_AND_ASSIGN(auto cpu, functional::GatedRmsNormForward(x, z, w, 100, kEps));
  ASSERT_OK_AND_ASSIGN(auto gpu,
                       functional::GatedRmsNormForward(OnGpu(x), OnGpu(z), OnGpu(w), 100, kEps));
  EXPECT_TRUE(AllClose(OnCpu(gpu.y), cpu.y, Tolerance{1e-12, 1e-12}));
  ASSERT_OK_AND_ASSIGN(auto want, functional::GatedRmsNormBackward(dy, x, z, w, cpu.rstd, 100));
  ASSERT_OK_AND_ASSIGN(auto got, functional::GatedRmsNormBackward(
                                     OnGpu(dy), OnGpu(x), OnGpu(z), OnGpu(w), OnGpu(cpu.rstd), 100));
  EXPECT_TRUE(AllClose(OnCpu(got.dx), want.dx, Tolerance{1e-12, 1e-12}));
  EXPECT_TRUE(AllClose(OnCpu(got.dz), want.dz, Tolerance{1e-12, 1e-12}));
  EXPECT_TRUE(AllClose(OnCpu(got.dweight), want.dweight, Tolerance{1e-11, 1e-11}));
}

TEST(GatedRmsNormCudaTest, Bf16MatchesHuggingFaceOrder) {
  LYRA_REQUIRE_GPU();
  const int64_t H = 1536;  // mamba2-130m d_inner
  const Tensor x = Rand({64, H}, DType::kBF16, 101, -3, 3);
  const Tensor z = Rand({64, H}, DType::kBF16, 102, -4, 4);
  const Tensor w = Rand({H}, DType::kF32, 103, 0.3, 3.0);
  ASSERT_OK_AND_ASSIGN(auto f,
                       functional::GatedRmsNormForward(OnGpu(x), OnGpu(z), OnGpu(w), H, kEps));
  // One bf16 ulp: the GPU sums the squares in f32 in another order.
  EXPECT_TRUE(AllClose(Doubles(OnCpu(f.y)),
                       HfGatedBf16(Doubles(x), Doubles(z), Doubles(w), H, H, true),
                       Tolerance{1e-2, 8e-3}));
}

TEST(GatedRmsNormCudaTest, NonContiguousInputsHandled) {
  LYRA_REQUIRE_GPU();
  ExpectLayoutsHandled(kGpu, DType::kF32);
  ExpectLayoutsHandled(kGpu, DType::kBF16);
}

TEST(GatedRmsNormCudaTest, AutogradOnGpuMatchesCpu) {
  LYRA_REQUIRE_GPU();
  const Tensor x = Rand({6, 5, 64}, DType::kBF16, 111);
  const Tensor z = Rand({6, 5, 64}, DType::kBF16, 112, -3, 3);
  const Tensor w = Rand({64}, DType::kF32, 113, 0.5, 1.5);
  ASSERT_OK_AND_ASSIGN(NormRun cpu, Evaluate(x, z, w, 16, true));
  ASSERT_OK_AND_ASSIGN(NormRun gpu, Evaluate(OnGpu(x), OnGpu(z), OnGpu(w), 16, true));
  EXPECT_TRUE(AllClose(gpu.y, cpu.y, OutputTolerance(DType::kBF16)));
  EXPECT_TRUE(AllClose(gpu.dx, cpu.dx, GradTolerance(DType::kBF16)));
  EXPECT_TRUE(AllClose(gpu.dz, cpu.dz, GradTolerance(DType::kBF16)));
  EXPECT_TRUE(AllClose(gpu.dweight, cpu.dweight, WeightGradTolerance(DType::kBF16)));
}

TEST(GatedRmsNormCudaTest, WeightGradientIsDeterministic) {
  LYRA_REQUIRE_GPU();
  const int64_t rows = 4096, H = 2048;
  for (int64_t S : {H, H / 8}) {
    const Tensor x = OnGpu(Rand({rows, H}, DType::kBF16, 121));
    const Tensor z = OnGpu(Rand({rows, H}, DType::kBF16, 122));
    const Tensor w = OnGpu(Rand({H}, DType::kF32, 123, 0.5, 1.5));
    const Tensor dy = OnGpu(Rand({rows, H}, DType::kBF16, 124));
    ASSERT_OK_AND_ASSIGN(auto f, functional::GatedRmsNormForward(x, z, w, S, kEps));
    ASSERT_OK_AND_ASSIGN(auto g1, functional::GatedRmsNormBackward(dy, x, z, w, f.rstd, S));
    ASSERT_OK_AND_ASSIGN(auto g2, functional::GatedRmsNormBackward(dy, x, z, w, f.rstd, S));
    EXPECT_EQ(Doubles(OnCpu(g1.dweight)), Doubles(OnCpu(g2.dweight)));
  }
}

TEST(GatedRmsNormCudaTest, EmptyRowsZeroTheWeightGradient) {
  LYRA_REQUIRE_GPU();
  const Tensor x = Tensor::Zeros({0, 8}, DType::kF32, kGpu).value();
  const Tensor w = Tensor::Ones({8}, DType::kF32, kGpu).value();
  ASSERT_OK_AND_ASSIGN(auto f, functional::GatedRmsNormForward(x, x, w, 4, kEps));
  ASSERT_OK_AND_ASSIGN(auto g, functional::GatedRmsNormBackward(x, x, x, w, f.rstd, 4));
  EXPECT_EQ(Doubles(OnCpu(g.dweight)), std::vector<double>(8, 0.0));
}

}  // namespace
}  // namespace lyra::nn::norm_testing
