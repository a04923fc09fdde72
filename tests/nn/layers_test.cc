// Embedding (torch's N(0, 1) init, padding_idx, autocast of the gathered rows), Dropout
// (statistics, reproducibility from (seed, offset), eval identity, gradient = mask / (1 - p))
// and the activation modules; CUDA against CPU when a GPU is present.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "nn/activation.h"
#include "nn/autocast.h"
#include "nn/dropout.h"
#include "nn/embedding.h"
#include "tensor/elementwise.h"
#include "tensor/random.h"
#include "tests/testing/testing.h"

namespace lyra::nn {
namespace {

using autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::RandomTensor;

Tensor Ids(const std::vector<int64_t>& v, const Shape& shape, Device device = Device::Cpu()) {
  return Tensor::FromVector<int64_t>(v, shape, device).value();
}

struct Moments {
  double mean = 0;
  double std = 0;
};
Moments MomentsOf(const std::vector<double>& v) {
  double sum = 0, sum_sq = 0;
  for (double e : v) {
    sum += e;
    sum_sq += e * e;
  }
  const double n = static_cast<double>(v.size());
  Moments m;
  m.mean = sum / n;
  m.std = std::sqrt(sum_sq / n - m.mean * m.mean);
  return m;
}

// --- Embedding -----------------------------------------------------------------------------

TEST(EmbeddingTest, NameShapeAndStandardNormalInit) {
  Generator gen(1);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Embedding> embed, Embedding::Create(500, 64, gen));
  const auto params = embed->NamedParameters();
  ASSERT_EQ(params.size(), 1u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[0].second.shape(), (Shape{500, 64}));
  EXPECT_EQ(embed->type_name(), "Embedding");
  const Moments m = MomentsOf(embed->weight().data().ToDoubles().value());
  const double n = 500.0 * 64.0;
  EXPECT_TRUE(std::abs(m.mean) <= 5 / std::sqrt(n)) << m.mean;
  EXPECT_TRUE(std::abs(m.std - 1) <= 5 / std::sqrt(2 * n)) << m.std;
}

TEST(EmbeddingTest, ForwardGathersRows) {
  Generator gen(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Embedding> embed, Embedding::Create(10, 3, gen));
  ASSERT_OK_AND_ASSIGN(Variable h, embed->Forward(Ids({4, 0, 9, 4}, {2, 2})));
  EXPECT_EQ(h.shape(), (Shape{2, 2, 3}));
  const std::vector<double> table = embed->weight().data().ToDoubles().value();
  const std::vector<double> out = h.data().ToDoubles().value();
  const int64_t ids[] = {4, 0, 9, 4};
  for (int i = 0; i < 4; ++i) {
    for (int d = 0; d < 3; ++d) EXPECT_EQ(out[i * 3 + d], table[ids[i] * 3 + d]);
  }
  EXPECT_STATUS_IS(embed->Forward(Ids({10}, {1})), absl::StatusCode::kInvalidArgument, "");
}

TEST(EmbeddingTest, PaddingRowIsZeroAndGetsNoGradient) {
  for (int64_t padding : {2, -1}) {
    SCOPED_TRACE(padding);
    Generator gen(3);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Embedding> embed,
                         Embedding::Create(5, 4, gen, padding));
    const int64_t pad = padding < 0 ? 5 + padding : padding;
    EXPECT_EQ(embed->padding_idx(), pad);
    const std::vector<double> table = embed->weight().data().ToDoubles().value();
    for (int d = 0; d < 4; ++d) EXPECT_EQ(table[pad * 4 + d], 0.0);
    ASSERT_OK_AND_ASSIGN(Variable h, embed->Forward(Ids({pad, 1, pad, 1, 0}, {5})));
    ASSERT_OK_AND_ASSIGN(Variable s, autograd::Sum(h));
    ASSERT_OK(s.Backward());
    const std::vector<double> grad = embed->weight().grad().ToDoubles().value();
    for (int64_t row = 0; row < 5; ++row) {
      const double expected = row == pad ? 0 : row == 1 ? 2 : row == 0 ? 1 : 0;
      for (int d = 0; d < 4; ++d) EXPECT_EQ(grad[row * 4 + d], expected) << row;
    }
  }
  Generator gen(4);
  EXPECT_STATUS_IS(Embedding::Create(5, 4, gen, 5), absl::StatusCode::kInvalidArgument,
                   "padding_idx = 5 outside [-5, 5)");
  EXPECT_STATUS_IS(Embedding::Create(0, 4, gen), absl::StatusCode::kInvalidArgument,
                   "must be >= 1");
}

TEST(EmbeddingTest, AutocastCastsTheRowsNotTheTable) {
  Generator gen(5);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Embedding> embed, Embedding::Create(8, 6, gen));
  {
    AutocastGuard autocast(DType::kBF16);
    ASSERT_OK_AND_ASSIGN(Variable h, embed->Forward(Ids({1, 7, 1}, {3})));
    EXPECT_EQ(h.dtype(), DType::kBF16);
    ASSERT_OK_AND_ASSIGN(Variable s, autograd::Sum(h));
    ASSERT_OK(s.Backward());
  }
  EXPECT_EQ(embed->weight().dtype(), DType::kF32);
  ASSERT_EQ(embed->weight().grad().dtype(), DType::kF32);
  const std::vector<double> grad = embed->weight().grad().ToDoubles().value();
  EXPECT_EQ(grad[1 * 6], 2.0);
  EXPECT_EQ(grad[7 * 6 + 5], 1.0);
  EXPECT_EQ(grad[0], 0.0);
}

TEST(EmbeddingTest, CudaMatchesCpu) {
  LYRA_REQUIRE_GPU();
  Generator gen_cpu(6), gen_gpu(6);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Embedding> cpu, Embedding::Create(37, 19, gen_cpu, 3));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Embedding> gpu,
                       Embedding::Create(37, 19, gen_gpu, 3, DType::kF32, Device::Cuda(0)));
  // Randn agrees across devices to ~1e-6 relative (host vs device libm).
  EXPECT_TRUE(AllClose(gpu->weight().data().To(Device::Cpu()).value(), cpu->weight().data(),
                       {1e-6, 1e-5}));
  ASSERT_OK(gpu->LoadStateDict(cpu->StateDict()).status());
  const std::vector<int64_t> ids = {3, 0, 36, 5, 3, 5, 5, 12};
  ASSERT_OK_AND_ASSIGN(Variable h_cpu, cpu->Forward(Ids(ids, {2, 4})));
  ASSERT_OK_AND_ASSIGN(Variable h_gpu, gpu->Forward(Ids(ids, {2, 4}, Device::Cuda(0))));
  EXPECT_TRUE(AllClose(h_gpu.data().To(Device::Cpu()).value(), h_cpu.data(), {0, 0}));
  ASSERT_OK_AND_ASSIGN(Tensor g, RandomTensor({2, 4, 19}, DType::kF32, 7));
  ASSERT_OK(h_cpu.Backward(g));
  ASSERT_OK(h_gpu.Backward(g.To(Device::Cuda(0)).value()));
  EXPECT_TRUE(AllClose(gpu->weight().grad().To(Device::Cpu()).value(), cpu->weight().grad(),
                       DefaultTolerance(DType::kF32)));
}

// --- Dropout -------------------------------------------------------------------------------

TEST(DropoutTest, BadProbabilityIsAnError) {
  for (double p : {1.0, -0.1, std::numeric_limits<double>::quiet_NaN()}) {
    EXPECT_STATUS_IS(Dropout::Create(p), absl::StatusCode::kInvalidArgument, "outside [0, 1)");
  }
  Generator gen(0);
  Variable ints(Tensor::Zeros({3}, DType::kI32).value());
  EXPECT_STATUS_IS(functional::Dropout(ints, 0.5, gen), absl::StatusCode::kInvalidArgument,
                   "floating-point");
}

TEST(DropoutTest, EvalAndZeroProbabilityAreTheIdentity) {
  Variable x(RandomTensor({4, 5}, DType::kF32, 1).value(), true);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Dropout> drop, Dropout::Create(0.5, 3));
  drop->Eval();
  ASSERT_OK_AND_ASSIGN(Variable y, drop->Forward(x));
  EXPECT_TRUE(y.SameAs(x));
  EXPECT_EQ(drop->generator().offset(), 0u);  // nothing drawn
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Dropout> none, Dropout::Create(0.0, 3));
  EXPECT_TRUE(none->is_training());
  ASSERT_OK_AND_ASSIGN(Variable z, none->Forward(x));
  EXPECT_TRUE(z.SameAs(x));
}

TEST(DropoutTest, KeepsTheRightFractionScaled) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF64}) {
    SCOPED_TRACE(DTypeName(dtype));
    const double p = 0.3;
    const int64_t n = 200000;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Dropout> drop, Dropout::Create(p, 11));
    Variable x(Tensor::Ones({n}, dtype).value());
    ASSERT_OK_AND_ASSIGN(Variable y, drop->Forward(x));
    EXPECT_EQ(y.dtype(), dtype);
    const std::vector<double> v = y.data().ToDoubles().value();
    // The kept value is 1 / (1 - p) rounded once to the dtype.
    const double kept = Tensor::Scalar(1.0 / (1.0 - p), dtype).value().Item().value();
    int64_t zeros = 0;
    for (double e : v) {
      if (e == 0) {
        ++zeros;
      } else {
        ASSERT_EQ(e, kept);
      }
    }
    const double fraction = static_cast<double>(zeros) / n;
    EXPECT_TRUE(std::abs(fraction - p) <= 5 * std::sqrt(p * (1 - p) / n)) << fraction;
  }
}

TEST(DropoutTest, MaskIsReproducibleFromSeedAndOffset) {
  Variable x(RandomTensor({7, 9}, DType::kF32, 2).value());
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Dropout> a, Dropout::Create(0.4, 5));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Dropout> b, Dropout::Create(0.4, 5));
  ASSERT_OK_AND_ASSIGN(Variable ya, a->Forward(x));
  ASSERT_OK_AND_ASSIGN(Variable yb, b->Forward(x));
  EXPECT_EQ(ya.data().ToDoubles().value(), yb.data().ToDoubles().value());
  // A second call draws a fresh mask; restoring the state replays it.
  const uint64_t offset = a->generator().offset();
  ASSERT_OK_AND_ASSIGN(Variable second, a->Forward(x));
  EXPECT_NE(second.data().ToDoubles().value(), ya.data().ToDoubles().value());
  a->generator().set_state(5, offset);
  ASSERT_OK_AND_ASSIGN(Variable replay, a->Forward(x));
  EXPECT_EQ(replay.data().ToDoubles().value(), second.data().ToDoubles().value());
  // The mask is Bernoulli(1 - p) from the generator's (seed, offset).
  Generator gen(5);
  gen.set_state(5, offset);
  ASSERT_OK_AND_ASSIGN(Tensor mask, Bernoulli(x.shape(), 0.6, Device::Cpu(), gen));
  const std::vector<bool> m = mask.ToVector<bool>().value();
  const std::vector<double> xv = x.data().ToDoubles().value();
  const std::vector<double> yv = second.data().ToDoubles().value();
  for (size_t i = 0; i < m.size(); ++i) {
    const double expected = m[i] ? static_cast<double>(static_cast<float>(xv[i] * (1 / 0.6)))
                                 : 0.0;
    EXPECT_NEAR(yv[i], expected, 1e-6 * std::abs(expected)) << i;
  }
}

TEST(DropoutTest, GradientIsMaskOverKeepProbability) {
  const double p = 0.25;
  Variable x(RandomTensor({6, 11}, DType::kF64, 3).value(), true);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Dropout> drop, Dropout::Create(p, 8));
  ASSERT_OK_AND_ASSIGN(Variable y, drop->Forward(x));
  EXPECT_EQ(y.grad_fn()->name(), "Dropout");
  ASSERT_OK_AND_ASSIGN(Variable s, autograd::Sum(y));
  ASSERT_OK(s.Backward());
  const std::vector<double> grad = x.grad().ToDoubles().value();
  const std::vector<double> xv = x.data().ToDoubles().value();
  const std::vector<double> yv = y.data().ToDoubles().value();
  for (size_t i = 0; i < grad.size(); ++i) {
    const bool kept = yv[i] != 0;
    EXPECT_EQ(grad[i], kept ? 1 / (1 - p) : 0.0) << i;
    if (kept) { EXPECT_NEAR(yv[i], xv[i] / (1 - p), 1e-15); }
  }
}

TEST(DropoutTest, CudaDrawsTheCpuMask) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    ASSERT_OK_AND_ASSIGN(Tensor xt, RandomTensor({33, 65}, dtype, 4));
    Variable x_cpu(xt, true);
    Variable x_gpu(xt.To(Device::Cuda(0)).value(), true);
    Generator gen_cpu(17), gen_gpu(17);
    ASSERT_OK_AND_ASSIGN(Variable y_cpu, functional::Dropout(x_cpu, 0.1, gen_cpu));
    ASSERT_OK_AND_ASSIGN(Variable y_gpu, functional::Dropout(x_gpu, 0.1, gen_gpu));
    EXPECT_EQ(gen_cpu.offset(), gen_gpu.offset());
    EXPECT_TRUE(AllClose(y_gpu.data().To(Device::Cpu()).value(), y_cpu.data(), {0, 0}));
    ASSERT_OK(y_cpu.Backward(Tensor::Ones(xt.shape(), dtype).value()));
    ASSERT_OK(y_gpu.Backward(Tensor::Ones(xt.shape(), dtype, Device::Cuda(0)).value()));
    EXPECT_TRUE(AllClose(x_gpu.grad().To(Device::Cpu()).value(), x_cpu.grad(), {0, 0}));
  }
}

// --- Activations ---------------------------------------------------------------------------

using UnaryOpFn = absl::StatusOr<Variable> (*)(const Variable&);

template <typename M>
void ExpectModuleIsOp(const M& module, UnaryOpFn op, const char* type_name, Device device) {
  SCOPED_TRACE(type_name);
  EXPECT_EQ(module.type_name(), type_name);
  EXPECT_TRUE(module.NamedParameters().empty());
  ASSERT_OK_AND_ASSIGN(Tensor xt, RandomTensor({5, 7}, DType::kF32, 9, -3, 3));
  ASSERT_OK_AND_ASSIGN(xt, xt.To(device));
  Variable x1(xt, true), x2(xt, true);
  ASSERT_OK_AND_ASSIGN(Variable y1, module.Forward(x1));
  ASSERT_OK_AND_ASSIGN(Variable y2, op(x2));
  EXPECT_TRUE(AllClose(y1.data(), y2.data(), {0, 0}));
  ASSERT_OK_AND_ASSIGN(Variable s1, autograd::Sum(y1));
  ASSERT_OK_AND_ASSIGN(Variable s2, autograd::Sum(y2));
  ASSERT_OK(s1.Backward());
  ASSERT_OK(s2.Backward());
  EXPECT_TRUE(AllClose(x1.grad(), x2.grad(), {0, 0}));
}

void CheckActivations(Device device) {
  ExpectModuleIsOp(Silu(), autograd::Silu, "SiLU", device);
  ExpectModuleIsOp(Gelu(), autograd::Gelu, "GELU", device);
  ExpectModuleIsOp(Gelu(Gelu::Approximation::kTanh), autograd::GeluTanh, "GELU", device);
  ExpectModuleIsOp(Relu(), autograd::Relu, "ReLU", device);
  ExpectModuleIsOp(Tanh(), autograd::Tanh, "Tanh", device);
  ExpectModuleIsOp(Sigmoid(), autograd::Sigmoid, "Sigmoid", device);
  ExpectModuleIsOp(Softplus(), autograd::Softplus, "Softplus", device);
}

TEST(ActivationTest, ModulesAreTheirOps) { CheckActivations(Device::Cpu()); }

TEST(ActivationTest, CudaModulesAreTheirOps) {
  LYRA_REQUIRE_GPU();
  CheckActivations(Device::Cuda(0));
}

TEST(ActivationTest, GeluVariantsDifferAndMatchKnownValues) {
  Variable x(Tensor::FromDoubles({-1, 0.5, 2}, {3}, DType::kF64).value());
  ASSERT_OK_AND_ASSIGN(Variable exact, Gelu().Forward(x));
  ASSERT_OK_AND_ASSIGN(Variable approx, Gelu(Gelu::Approximation::kTanh).Forward(x));
  const std::vector<double> e = exact.data().ToDoubles().value();
  const std::vector<double> a = approx.data().ToDoubles().value();
  for (int i = 0; i < 3; ++i) {
    const double v = std::vector<double>{-1, 0.5, 2}[i];
    EXPECT_NEAR(e[i], 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))), 1e-14);
    const double inner = std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v);
    EXPECT_NEAR(a[i], 0.5 * v * (1 + std::tanh(inner)), 1e-14);
    EXPECT_NE(e[i], a[i]);
  }
}

}  // namespace
}  // namespace lyra::nn
