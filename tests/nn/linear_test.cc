// Linear: the bias-epilogue matmul (MatmulBias / MatmulBiasInto) against a naive f64 loop, the
// fused functional::Linear against the autograd composition Matmul(x, W^T) + b and f64 finite
// differences, the nn::Linear module (names, torch's initialisation, autocast with FP32 master
// gradients), and CUDA against CPU for all of it when a GPU is present.
#include "nn/linear.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/autocast.h"
#include "nn/functional_linear.h"
#include "tensor/matmul.h"
#include "tests/testing/testing.h"

namespace lyra::nn {
namespace {

using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kF64, DType::kF16, DType::kBF16};

// A k-term dot product in a 16-bit dtype: the per-dtype tolerance grown with sqrt(k).
Tolerance DotTolerance(DType dtype, int64_t k) {
  const Tolerance base = DefaultTolerance(dtype);
  return {base.abs * std::sqrt(static_cast<double>(std::max<int64_t>(k, 1))), base.rel};
}

absl::StatusOr<Tensor> Rand(const Shape& shape, DType dtype, Device device, uint64_t seed) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, RandomTensor(shape, dtype, seed));
  return t.To(device);
}

// alpha * a @ b + beta * out0 + bias[j] for 2-D a [m, k], b [k, n], in f64 from the values.
std::vector<double> NaiveMatmulBias(const Tensor& a, const Tensor& b, const Tensor& bias,
                                    double alpha = 1, double beta = 0,
                                    const Tensor& out0 = Tensor()) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const std::vector<double> av = a.ToDoubles().value(), bv = b.ToDoubles().value();
  const std::vector<double> cv = bias.ToDoubles().value();
  const std::vector<double> ov = out0.defined() ? out0.ToDoubles().value()
                                                : std::vector<double>(m * n, 0.0);
  std::vector<double> out(m * n);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0;
      for (int64_t kk = 0; kk < k; ++kk) acc += av[i * k + kk] * bv[kk * n + j];
      out[i * n + j] = alpha * acc + (beta == 0 ? 0 : beta * ov[i * n + j]) + cv[j];
    }
  }
  return out;
}

// --- MatmulBias --------------------------------------------------------------------------

struct MatmulCase {
  int64_t m, k, n;
};
constexpr MatmulCase kMatmulCases[] = {{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {64, 128, 96}};

TEST(MatmulBiasTest, CpuMatchesNaiveLoop) {
  for (DType dtype : kFloatDTypes) {
    for (const MatmulCase& c : kMatmulCases) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ", c.m, "x", c.k, "x", c.n));
      ASSERT_OK_AND_ASSIGN(Tensor a, Rand({c.m, c.k}, dtype, Device::Cpu(), 1));
      ASSERT_OK_AND_ASSIGN(Tensor b, Rand({c.k, c.n}, dtype, Device::Cpu(), 2));
      ASSERT_OK_AND_ASSIGN(Tensor bias, Rand({c.n}, dtype, Device::Cpu(), 3));
      ASSERT_OK_AND_ASSIGN(Tensor y, MatmulBias(a, b, bias));
      EXPECT_EQ(y.shape(), (Shape{c.m, c.n}));
      EXPECT_EQ(y.dtype(), dtype);
      EXPECT_TRUE(AllClose(y.ToDoubles().value(), NaiveMatmulBias(a, b, bias),
                           DotTolerance(dtype, c.k)));
    }
  }
}

TEST(MatmulBiasTest, BatchedStridedBiasAndTransposedOperands) {
  // a [2, 9, 11] (a transposed view), b [11, 6] shared by the batch, bias a stride-2 slice.
  ASSERT_OK_AND_ASSIGN(Tensor at, Rand({2, 11, 9}, DType::kF32, Device::Cpu(), 4));
  ASSERT_OK_AND_ASSIGN(Tensor a, at.Transpose(1, 2));
  ASSERT_OK_AND_ASSIGN(Tensor b, Rand({11, 6}, DType::kF32, Device::Cpu(), 5));
  ASSERT_OK_AND_ASSIGN(Tensor wide, Rand({12}, DType::kF32, Device::Cpu(), 6));
  ASSERT_OK_AND_ASSIGN(Tensor bias, wide.Slice(0, 0, 12, 2));
  ASSERT_OK_AND_ASSIGN(Tensor y, MatmulBias(a, b, bias));
  ASSERT_EQ(y.shape(), (Shape{2, 9, 6}));
  for (int64_t batch = 0; batch < 2; ++batch) {
    ASSERT_OK_AND_ASSIGN(Tensor a_b, a.Select(0, batch));
    ASSERT_OK_AND_ASSIGN(Tensor y_b, y.Select(0, batch));
    EXPECT_TRUE(AllClose(y_b.ToDoubles().value(), NaiveMatmulBias(a_b, b, bias),
                         DefaultTolerance(DType::kF32)));
  }
}

TEST(MatmulBiasTest, IntoAppliesAlphaBetaThenBias) {
  for (DType dtype : {DType::kF32, DType::kF64}) {
    ASSERT_OK_AND_ASSIGN(Tensor a, Rand({5, 7}, dtype, Device::Cpu(), 7));
    ASSERT_OK_AND_ASSIGN(Tensor b, Rand({7, 3}, dtype, Device::Cpu(), 8));
    ASSERT_OK_AND_ASSIGN(Tensor bias, Rand({3}, dtype, Device::Cpu(), 9));
    ASSERT_OK_AND_ASSIGN(Tensor out, Rand({5, 3}, dtype, Device::Cpu(), 10));
    ASSERT_OK_AND_ASSIGN(Tensor out0, out.Clone());
    ASSERT_OK(MatmulBiasInto(a, b, bias, out, 0.5, -2.0));
    EXPECT_TRUE(AllClose(out.ToDoubles().value(), NaiveMatmulBias(a, b, bias, 0.5, -2.0, out0),
                         DefaultTolerance(dtype)));
  }
}

TEST(MatmulBiasTest, EmptyInnerDimensionGivesTheBias) {
  ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::Zeros({3, 0}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::Zeros({0, 2}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor bias, Tensor::FromDoubles({1.5, -2}, {2}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor y, MatmulBias(a, b, bias));
  EXPECT_EQ(y.ToDoubles().value(), (std::vector<double>{1.5, -2, 1.5, -2, 1.5, -2}));
}

TEST(MatmulBiasTest, BadBiasIsAnError) {
  ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::Zeros({3, 4}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::Zeros({4, 5}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor short_bias, Tensor::Zeros({4}, DType::kF32));
  EXPECT_STATUS_IS(MatmulBias(a, b, short_bias), absl::StatusCode::kInvalidArgument,
                   "must be 1-D of size n = 5");
  ASSERT_OK_AND_ASSIGN(Tensor matrix_bias, Tensor::Zeros({1, 5}, DType::kF32));
  EXPECT_STATUS_IS(MatmulBias(a, b, matrix_bias), absl::StatusCode::kInvalidArgument,
                   "must be 1-D");
  ASSERT_OK_AND_ASSIGN(Tensor f64_bias, Tensor::Zeros({5}, DType::kF64));
  EXPECT_STATUS_IS(MatmulBias(a, b, f64_bias), absl::StatusCode::kInvalidArgument,
                   "does not have the inputs' dtype f32");
  EXPECT_STATUS_IS(MatmulBias(a, b, Tensor()), absl::StatusCode::kInvalidArgument, "MatmulBias");
  ASSERT_OK_AND_ASSIGN(Tensor out, Tensor::Zeros({3, 5}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor row, out.Select(0, 1));
  EXPECT_STATUS_IS(MatmulBiasInto(a, b, row, out), absl::StatusCode::kInvalidArgument,
                   "overlaps the bias");
}

TEST(MatmulBiasTest, CudaMatchesCpu) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : kFloatDTypes) {
    for (const MatmulCase& c : kMatmulCases) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ", c.m, "x", c.k, "x", c.n));
      ASSERT_OK_AND_ASSIGN(Tensor a, Rand({3, c.m, c.k}, dtype, Device::Cpu(), 11));
      ASSERT_OK_AND_ASSIGN(Tensor b, Rand({c.k, c.n}, dtype, Device::Cpu(), 12));
      ASSERT_OK_AND_ASSIGN(Tensor bias, Rand({c.n}, dtype, Device::Cpu(), 13));
      ASSERT_OK_AND_ASSIGN(Tensor expected, MatmulBias(a, b, bias));
      ASSERT_OK_AND_ASSIGN(Tensor a_gpu, a.To(Device::Cuda(0)));
      ASSERT_OK_AND_ASSIGN(Tensor b_gpu, b.To(Device::Cuda(0)));
      ASSERT_OK_AND_ASSIGN(Tensor bias_gpu, bias.To(Device::Cuda(0)));
      // Row-major out, batched: the fused epilogue (f64: the separate bias kernel).
      ASSERT_OK_AND_ASSIGN(Tensor y, MatmulBias(a_gpu, b_gpu, bias_gpu));
      EXPECT_TRUE(AllClose(y.To(Device::Cpu()).value(), expected, DotTolerance(dtype, c.k)));
      // Column-major out (a transposed view): the separate bias kernel after the product.
      ASSERT_OK_AND_ASSIGN(Tensor out_t, Tensor::Zeros({3, c.n, c.m}, dtype, Device::Cuda(0)));
      ASSERT_OK_AND_ASSIGN(Tensor out, out_t.Transpose(1, 2));
      ASSERT_OK(MatmulBiasInto(a_gpu, b_gpu, bias_gpu, out));
      EXPECT_TRUE(AllClose(out.To(Device::Cpu()).value(), expected, DotTolerance(dtype, c.k)));
      // A bias one element into a buffer (not 16-byte aligned) and a strided bias.
      ASSERT_OK_AND_ASSIGN(Tensor wide, Tensor::Zeros({2 * c.n + 1}, dtype, Device::Cuda(0)));
      ASSERT_OK_AND_ASSIGN(Tensor shifted, wide.Narrow(0, 1, c.n));
      ASSERT_OK(shifted.CopyFrom(bias_gpu));
      ASSERT_OK_AND_ASSIGN(Tensor y_shifted, MatmulBias(a_gpu, b_gpu, shifted));
      EXPECT_TRUE(
          AllClose(y_shifted.To(Device::Cpu()).value(), expected, DotTolerance(dtype, c.k)));
      ASSERT_OK_AND_ASSIGN(Tensor strided, wide.Slice(0, 0, 2 * c.n, 2));
      ASSERT_OK(strided.CopyFrom(bias_gpu));
      ASSERT_OK_AND_ASSIGN(Tensor y_strided, MatmulBias(a_gpu, b_gpu, strided));
      EXPECT_TRUE(
          AllClose(y_strided.To(Device::Cpu()).value(), expected, DotTolerance(dtype, c.k)));
    }
  }
}

TEST(MatmulBiasTest, CudaAlphaBetaAndEmptyInnerDimension) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    ASSERT_OK_AND_ASSIGN(Tensor a, Rand({37, 24}, dtype, Device::Cpu(), 14));
    ASSERT_OK_AND_ASSIGN(Tensor b, Rand({24, 40}, dtype, Device::Cpu(), 15));
    ASSERT_OK_AND_ASSIGN(Tensor bias, Rand({40}, dtype, Device::Cpu(), 16));
    ASSERT_OK_AND_ASSIGN(Tensor out, Rand({37, 40}, dtype, Device::Cpu(), 17));
    ASSERT_OK_AND_ASSIGN(Tensor out_gpu, out.To(Device::Cuda(0)));
    ASSERT_OK(MatmulBiasInto(a, b, bias, out, 2.0, 0.5));
    ASSERT_OK(MatmulBiasInto(a.To(Device::Cuda(0)).value(), b.To(Device::Cuda(0)).value(),
                             bias.To(Device::Cuda(0)).value(), out_gpu, 2.0, 0.5));
    EXPECT_TRUE(AllClose(out_gpu.To(Device::Cpu()).value(), out, DotTolerance(dtype, 24 * 4)));
  }
  ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::Zeros({3, 0}, DType::kF32, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::Zeros({0, 2}, DType::kF32, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor bias, Tensor::FromDoubles({1.5, -2}, {2}, DType::kF32,
                                                        Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor y, MatmulBias(a, b, bias));
  EXPECT_EQ(y.ToDoubles().value(), (std::vector<double>{1.5, -2, 1.5, -2, 1.5, -2}));
}

// --- functional::Linear ------------------------------------------------------------------

using autograd::Variable;

// The reference composition: Matmul(x, W^T) + b with the generic autograd ops (a 1-D x as
// one row).
absl::StatusOr<Variable> ComposedLinear(const Variable& x, const Variable& w, const Variable& b) {
  LYRA_ASSIGN_OR_RETURN(Variable wt, autograd::Transpose(w, 0, 1));
  Variable x2 = x;
  if (x.dim() == 1) {
    LYRA_ASSIGN_OR_RETURN(x2, autograd::Unsqueeze(x, 0));
  }
  LYRA_ASSIGN_OR_RETURN(Variable y, autograd::Matmul(x2, wt));
  if (x.dim() == 1) {
    LYRA_ASSIGN_OR_RETURN(y, autograd::Squeeze(y, 0));
  }
  if (!b.defined()) return y;
  return autograd::Add(y, b);
}

// An x of `shape` [..., in]; non_contiguous makes it a transposed view of the same values'
// storage (the last two dims swapped in memory).
absl::StatusOr<Tensor> MakeX(const Shape& shape, bool non_contiguous, DType dtype, Device device,
                             uint64_t seed) {
  if (!non_contiguous || shape.size() < 2) return Rand(shape, dtype, device, seed);
  Shape swapped = shape;
  std::swap(swapped[swapped.size() - 1], swapped[swapped.size() - 2]);
  LYRA_ASSIGN_OR_RETURN(Tensor t, Rand(swapped, dtype, device, seed));
  const int nd = static_cast<int>(shape.size());
  return t.Transpose(nd - 2, nd - 1);
}

struct LinearCase {
  const char* name;
  Shape x_shape;  // [..., in]
  int64_t out;
  bool bias;
  bool non_contiguous;
};

std::vector<LinearCase> LinearCases() {
  return {
      {"2d_bias", {5, 7}, 3, true, false},
      {"2d_nobias", {5, 7}, 3, false, false},
      {"3d_bias", {2, 3, 6}, 4, true, false},
      {"3d_nobias", {2, 3, 6}, 4, false, false},
      {"2d_noncontiguous_bias", {6, 5}, 3, true, true},
      {"3d_noncontiguous_bias", {2, 4, 5}, 3, true, true},
      {"1d_bias", {7}, 2, true, false},
  };
}

TEST(FunctionalLinearTest, MatchesCompositionForwardAndBackward) {
  for (const LinearCase& c : LinearCases()) {
    for (DType dtype : {DType::kF32, DType::kF64}) {
      SCOPED_TRACE(absl::StrCat(c.name, " ", DTypeName(dtype)));
      const int64_t in = c.x_shape.back();
      ASSERT_OK_AND_ASSIGN(Tensor xt, MakeX(c.x_shape, c.non_contiguous, dtype, Device::Cpu(), 21));
      ASSERT_OK_AND_ASSIGN(Tensor wt, Rand({c.out, in}, dtype, Device::Cpu(), 22));
      ASSERT_OK_AND_ASSIGN(Tensor bt, Rand({c.out}, dtype, Device::Cpu(), 23));
      Variable x1(xt, true), w1(wt, true), b1 = c.bias ? Variable(bt, true) : Variable();
      Variable x2(xt, true), w2(wt, true), b2 = c.bias ? Variable(bt, true) : Variable();
      ASSERT_OK_AND_ASSIGN(Variable y1, functional::Linear(x1, w1, b1));
      ASSERT_OK_AND_ASSIGN(Variable y2, ComposedLinear(x2, w2, b2));
      ASSERT_EQ(y1.shape(), y2.shape());
      ASSERT_NE(y1.grad_fn(), nullptr);
      EXPECT_EQ(y1.grad_fn()->name(), "Linear");  // one node
      EXPECT_TRUE(AllClose(y1.data(), y2.data(), DefaultTolerance(dtype)));
      ASSERT_OK_AND_ASSIGN(Tensor seed, Rand(y1.shape(), dtype, Device::Cpu(), 24));
      ASSERT_OK(y1.Backward(seed));
      ASSERT_OK(y2.Backward(seed));
      EXPECT_TRUE(AllClose(x1.grad(), x2.grad(), DefaultTolerance(dtype)));
      EXPECT_TRUE(AllClose(w1.grad(), w2.grad(), DefaultTolerance(dtype)));
      EXPECT_EQ(x1.grad().shape(), c.x_shape);
      if (c.bias) { EXPECT_TRUE(AllClose(b1.grad(), b2.grad(), DefaultTolerance(dtype))); }
    }
  }
}

TEST(FunctionalLinearTest, GradCheckF64) {
  for (const LinearCase& c : LinearCases()) {
    SCOPED_TRACE(c.name);
    const int64_t in = c.x_shape.back();
    // The non-contiguous x is built inside fn (a transpose of the checked input) so the finite
    // differences perturb the underlying storage.
    Shape stored = c.x_shape;
    if (c.non_contiguous) std::swap(stored[stored.size() - 1], stored[stored.size() - 2]);
    std::vector<Tensor> inputs = {RandomTensor(stored, DType::kF64, 31).value(),
                                  RandomTensor({c.out, in}, DType::kF64, 32).value()};
    if (c.bias) inputs.push_back(RandomTensor({c.out}, DType::kF64, 33).value());
    const bool non_contiguous = c.non_contiguous;
    const int nd = static_cast<int>(c.x_shape.size());
    autograd::GradCheckResult r = autograd::GradCheck(
        [&](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
          Variable x = v[0];
          if (non_contiguous) {
            LYRA_ASSIGN_OR_RETURN(x, autograd::Transpose(v[0], nd - 2, nd - 1));
          }
          return functional::Linear(x, v[1], v.size() > 2 ? v[2] : Variable());
        },
        inputs);
    EXPECT_TRUE(r.ok) << r.message << " (max abs error " << r.max_abs_error << ")";
  }
}

TEST(FunctionalLinearTest, OnlyInputsThatRequireGradGetGradients) {
  ASSERT_OK_AND_ASSIGN(Tensor xt, Rand({4, 3}, DType::kF32, Device::Cpu(), 41));
  ASSERT_OK_AND_ASSIGN(Tensor wt, Rand({2, 3}, DType::kF32, Device::Cpu(), 42));
  ASSERT_OK_AND_ASSIGN(Tensor bt, Rand({2}, DType::kF32, Device::Cpu(), 43));
  {
    Variable x(xt, false), w(wt, true), b(bt, false);
    ASSERT_OK_AND_ASSIGN(Variable y, functional::Linear(x, w, b));
    ASSERT_OK_AND_ASSIGN(Variable s, autograd::Sum(y));
    ASSERT_OK(s.Backward());
    EXPECT_FALSE(x.grad().defined());
    EXPECT_TRUE(w.grad().defined());
    EXPECT_FALSE(b.grad().defined());
  }
  {
    Variable x(xt, true), w(wt, false), b(bt, true);
    ASSERT_OK_AND_ASSIGN(Variable y, functional::Linear(x, w, b));
    ASSERT_OK_AND_ASSIGN(Variable s, autograd::Sum(y));
    ASSERT_OK(s.Backward());
    EXPECT_TRUE(x.grad().defined());
    EXPECT_FALSE(w.grad().defined());
    // d sum / d b = the number of rows.
    EXPECT_EQ(b.grad().ToDoubles().value(), (std::vector<double>{4, 4}));
  }
  {
    Variable x(xt, false), w(wt, false);
    ASSERT_OK_AND_ASSIGN(Variable y, functional::Linear(x, w));
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
}

TEST(FunctionalLinearTest, BadArgumentsAreErrors) {
  Variable x(Tensor::Zeros({4, 3}, DType::kF32).value());
  Variable w(Tensor::Zeros({2, 3}, DType::kF32).value());
  Variable w_bad(Tensor::Zeros({2, 5}, DType::kF32).value());
  Variable w_1d(Tensor::Zeros({3}, DType::kF32).value());
  Variable b_bad(Tensor::Zeros({3}, DType::kF32).value());
  Variable b_f64(Tensor::Zeros({2}, DType::kF64).value());
  Variable x_f64(Tensor::Zeros({4, 3}, DType::kF64).value());
  EXPECT_STATUS_IS(functional::Linear(x, w_bad), absl::StatusCode::kInvalidArgument,
                   "must end in in_features = 5");
  EXPECT_STATUS_IS(functional::Linear(x, w_1d), absl::StatusCode::kInvalidArgument,
                   "must be 2-D [out, in]");
  EXPECT_STATUS_IS(functional::Linear(x, w, b_bad), absl::StatusCode::kInvalidArgument,
                   "must be [out_features = 2]");
  EXPECT_STATUS_IS(functional::Linear(x, w, b_f64), absl::StatusCode::kInvalidArgument,
                   "differ in dtype or device");
  EXPECT_STATUS_IS(functional::Linear(x_f64, w), absl::StatusCode::kInvalidArgument,
                   "differ in dtype or device");
  EXPECT_STATUS_IS(functional::Linear(Variable(), w), absl::StatusCode::kInvalidArgument,
                   "must be defined");
}

TEST(FunctionalLinearTest, CudaMatchesCpuForwardAndBackward) {
  LYRA_REQUIRE_GPU();
  // Odd sizes (not multiples of any tile) and one Mamba-like shape.
  struct GpuCase {
    const char* name;
    Shape x_shape;
    int64_t out;
    bool bias;
    bool non_contiguous;
  };
  const GpuCase cases[] = {
      {"odd_bias", {37, 19}, 23, true, false},
      {"odd_nobias", {37, 19}, 23, false, false},
      {"3d_bias", {2, 33, 48}, 80, true, false},
      {"noncontiguous_bias", {3, 17, 24}, 40, true, true},
      {"mamba-130m_in_proj_small", {2, 64, 768}, 3072, true, false},
  };
  for (const GpuCase& c : cases) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(absl::StrCat(c.name, " ", DTypeName(dtype)));
      const int64_t in = c.x_shape.back();
      int64_t rows = 1;
      for (size_t d = 0; d + 1 < c.x_shape.size(); ++d) rows *= c.x_shape[d];
      ASSERT_OK_AND_ASSIGN(Tensor x_cpu,
                           MakeX(c.x_shape, c.non_contiguous, dtype, Device::Cpu(), 51));
      ASSERT_OK_AND_ASSIGN(Tensor x_gpu,
                           MakeX(c.x_shape, c.non_contiguous, dtype, Device::Cuda(0), 51));
      ASSERT_OK_AND_ASSIGN(Tensor w_cpu, Rand({c.out, in}, dtype, Device::Cpu(), 52));
      ASSERT_OK_AND_ASSIGN(Tensor b_cpu, Rand({c.out}, dtype, Device::Cpu(), 53));
      Shape y_shape = c.x_shape;
      y_shape.back() = c.out;
      ASSERT_OK_AND_ASSIGN(Tensor g_cpu, Rand(y_shape, dtype, Device::Cpu(), 54));

      Tensor y[2], dx[2], dw[2], db[2];
      for (int on_gpu = 0; on_gpu < 2; ++on_gpu) {
        const Device device = on_gpu ? Device::Cuda(0) : Device::Cpu();
        Variable x(on_gpu ? x_gpu : x_cpu, true);
        Variable w(w_cpu.To(device).value(), true);
        Variable b = c.bias ? Variable(b_cpu.To(device).value(), true) : Variable();
        ASSERT_OK_AND_ASSIGN(Variable out, functional::Linear(x, w, b));
        ASSERT_OK(out.Backward(g_cpu.To(device).value()));
        y[on_gpu] = out.data().To(Device::Cpu()).value();
        dx[on_gpu] = x.grad().To(Device::Cpu()).value();
        dw[on_gpu] = w.grad().To(Device::Cpu()).value();
        if (c.bias) db[on_gpu] = b.grad().To(Device::Cpu()).value();
      }
      EXPECT_TRUE(AllClose(y[1], y[0], DotTolerance(dtype, in)));
      EXPECT_TRUE(AllClose(dx[1], dx[0], DotTolerance(dtype, c.out)));
      EXPECT_TRUE(AllClose(dw[1], dw[0], DotTolerance(dtype, rows)));
      if (c.bias) { EXPECT_TRUE(AllClose(db[1], db[0], DotTolerance(dtype, rows))); }
    }
  }
}

// --- nn::Linear ----------------------------------------------------------------------------

TEST(LinearModuleTest, ParameterNamesAndShapes) {
  Generator gen(1);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> with_bias, Linear::Create(6, 4, true, gen));
  const auto params = with_bias->NamedParameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[0].second.shape(), (Shape{4, 6}));
  EXPECT_EQ(params[1].first, "bias");
  EXPECT_EQ(params[1].second.shape(), (Shape{4}));
  EXPECT_TRUE(params[0].second.requires_grad());
  EXPECT_EQ(with_bias->type_name(), "Linear");
  EXPECT_EQ(with_bias->in_features(), 6);
  EXPECT_EQ(with_bias->out_features(), 4);

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> no_bias,
                       Linear::Create(6, 4, false, gen, DType::kBF16));
  ASSERT_EQ(no_bias->NamedParameters().size(), 1u);
  EXPECT_EQ(no_bias->NamedParameters()[0].first, "weight");
  EXPECT_EQ(no_bias->weight().dtype(), DType::kBF16);
  EXPECT_FALSE(no_bias->bias().defined());
}

TEST(LinearModuleTest, InitialisedAsTorch) {
  // U(-1/sqrt(in), 1/sqrt(in)) for weight and bias: bounds hold, the std is bound / sqrt(3).
  Generator gen(2);
  const int64_t in = 256, out = 128;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> layer, Linear::Create(in, out, true, gen));
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  for (const Tensor& t : {layer->weight().data(), layer->bias().data()}) {
    const std::vector<double> v = t.ToDoubles().value();
    double sum = 0, sum_sq = 0, max_abs = 0;
    for (double e : v) {
      sum += e;
      sum_sq += e * e;
      max_abs = std::max(max_abs, std::abs(e));
    }
    const double n = static_cast<double>(v.size());
    const double mean = sum / n;
    const double std = std::sqrt(sum_sq / n - mean * mean);
    EXPECT_TRUE(max_abs <= bound) << max_abs << " vs bound " << bound;
    // Standard errors: std / sqrt(n) for the mean, ~std / sqrt(2 n) * 1.1 for the std.
    const double expected_std = bound / std::sqrt(3.0);
    EXPECT_TRUE(std::abs(mean) <= 5 * expected_std / std::sqrt(n)) << mean;
    EXPECT_TRUE(std::abs(std - expected_std) <= 5 * expected_std / std::sqrt(n)) << std;
  }
  // Seeded: the same generator state gives the same parameters.
  Generator gen_a(9), gen_b(9);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> a, Linear::Create(5, 3, true, gen_a));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> b, Linear::Create(5, 3, true, gen_b));
  EXPECT_EQ(a->weight().data().ToDoubles().value(), b->weight().data().ToDoubles().value());
  EXPECT_EQ(a->bias().data().ToDoubles().value(), b->bias().data().ToDoubles().value());
}

TEST(LinearModuleTest, ForwardIsTheFusedOp) {
  Generator gen(3);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> layer, Linear::Create(7, 5, true, gen));
  ASSERT_OK_AND_ASSIGN(Tensor xt, Rand({2, 3, 7}, DType::kF32, Device::Cpu(), 61));
  Variable x(xt, false);
  ASSERT_OK_AND_ASSIGN(Variable y, layer->Forward(x));
  EXPECT_EQ(y.shape(), (Shape{2, 3, 5}));
  EXPECT_EQ(y.grad_fn()->name(), "Linear");
  ASSERT_OK_AND_ASSIGN(Variable expected, ComposedLinear(x, layer->weight(), layer->bias()));
  EXPECT_TRUE(AllClose(y.data(), expected.data(), DefaultTolerance(DType::kF32)));
}

TEST(LinearModuleTest, BadSizesAreErrors) {
  Generator gen(4);
  EXPECT_STATUS_IS(Linear::Create(0, 3, true, gen), absl::StatusCode::kInvalidArgument,
                   "must be >= 1");
  EXPECT_STATUS_IS(Linear::Create(3, 3, true, gen, DType::kI32),
                   absl::StatusCode::kInvalidArgument, "not floating-point");
}

// Autocast bf16 on `device`: the output is bf16, the FP32 masters get FP32 gradients close to
// those of the same computation in f32.
void CheckAutocastBf16(Device device) {
  Generator gen(5);
  const int64_t in = 48, out = 40, rows = 24;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> layer,
                       Linear::Create(in, out, true, gen, DType::kF32, device));
  ASSERT_OK_AND_ASSIGN(Tensor xt, Rand({2, rows / 2, in}, DType::kF32, device, 71));
  ASSERT_OK_AND_ASSIGN(Tensor gt, Rand({2, rows / 2, out}, DType::kF32, device, 72));
  // FP32 reference gradients.
  ASSERT_OK_AND_ASSIGN(Variable y32, layer->Forward(Variable(xt, false)));
  ASSERT_OK(y32.Backward(gt));
  const Tensor dw32 = layer->weight().grad(), db32 = layer->bias().grad();
  layer->ZeroGrad();
  {
    AutocastGuard autocast(DType::kBF16);
    ASSERT_OK_AND_ASSIGN(Variable y, layer->Forward(Variable(xt, false)));
    EXPECT_EQ(y.dtype(), DType::kBF16);
    EXPECT_TRUE(AllClose(y.data(), y32.data(), DotTolerance(DType::kBF16, in)));
    ASSERT_OK(y.Backward(gt.To(DType::kBF16).value()));
  }
  ASSERT_TRUE(layer->weight().grad().defined());
  EXPECT_EQ(layer->weight().grad().dtype(), DType::kF32);
  EXPECT_EQ(layer->bias().grad().dtype(), DType::kF32);
  EXPECT_TRUE(AllClose(layer->weight().grad(), dw32, DotTolerance(DType::kBF16, rows)));
  EXPECT_TRUE(AllClose(layer->bias().grad(), db32, DotTolerance(DType::kBF16, rows)));
}

TEST(LinearModuleTest, AutocastBf16GivesFp32MasterGradients) { CheckAutocastBf16(Device::Cpu()); }

TEST(LinearModuleTest, CudaAutocastBf16GivesFp32MasterGradients) {
  LYRA_REQUIRE_GPU();
  CheckAutocastBf16(Device::Cuda(0));
}

TEST(LinearModuleTest, CudaInitialisationMatchesCpu) {
  LYRA_REQUIRE_GPU();
  Generator gen_cpu(6), gen_gpu(6);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> cpu, Linear::Create(33, 17, true, gen_cpu));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Linear> gpu,
                       Linear::Create(33, 17, true, gen_gpu, DType::kF32, Device::Cuda(0)));
  EXPECT_EQ(gpu->weight().data().ToDoubles().value(), cpu->weight().data().ToDoubles().value());
  EXPECT_EQ(gpu->bias().data().ToDoubles().value(), cpu->bias().data().ToDoubles().value());
}

}  // namespace
}  // namespace lyra::nn
