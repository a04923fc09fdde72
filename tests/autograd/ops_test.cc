// Every differentiable op: f64 finite-difference gradient checks on the CPU (broadcasting and
// non-contiguous inputs included), and CUDA gradients against CPU gradients when a GPU is there.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "tensor/elementwise.h"
#include "tests/testing/testing.h"

namespace lyra::autograd {
namespace {

using ::lyra::testing::AllClose;
using ::lyra::testing::RandomTensor;

Tensor Rand64(const Shape& shape, uint64_t seed, double lo = -1, double hi = 1) {
  return RandomTensor(shape, DType::kF64, seed, lo, hi).value();
}

Tensor Ids(const std::vector<int64_t>& v, const Shape& shape) {
  return Tensor::FromVector<int64_t>(v, shape).value();
}

void ExpectGradOk(const std::string& what, const GradCheckFn& fn,
                  const std::vector<Tensor>& inputs, GradCheckOptions options = {}) {
  GradCheckResult r = GradCheck(fn, inputs, options);
  EXPECT_TRUE(r.ok) << what << ": " << r.message << " (max abs error " << r.max_abs_error << ")";
}

using UnaryFn = absl::StatusOr<Variable> (*)(const Variable&);

TEST(OpsGradTest, UnaryElementwise) {
  struct Case {
    const char* name;
    UnaryFn fn;
    double lo, hi;  // input range where the function is smooth
  };
  const Case cases[] = {
      {"Neg", Neg, -2, 2},           {"Abs", Abs, 0.1, 2},
      {"Exp", Exp, -2, 2},           {"Log", Log, 0.2, 3},
      {"Sqrt", Sqrt, 0.2, 3},        {"Rsqrt", Rsqrt, 0.2, 3},
      {"Tanh", Tanh, -2, 2},         {"Sigmoid", Sigmoid, -3, 3},
      {"Silu", Silu, -3, 3},         {"Softplus", Softplus, -3, 3},
      {"Gelu", Gelu, -3, 3},         {"GeluTanh", GeluTanh, -3, 3},
      {"Relu", Relu, 0.1, 2},        {"Square", Square, -2, 2},
      {"Reciprocal", Reciprocal, 0.3, 2},
  };
  for (const Case& c : cases) {
    ExpectGradOk(c.name, [&](const std::vector<Variable>& v) { return c.fn(v[0]); },
                 {Rand64({3, 4}, 1, c.lo, c.hi)});
  }
  // Abs and Relu on the negative side too.
  ExpectGradOk("Abs-", [](const std::vector<Variable>& v) { return Abs(v[0]); },
               {Rand64({5}, 2, -2, -0.1)});
  ExpectGradOk("Relu-", [](const std::vector<Variable>& v) { return Relu(v[0]); },
               {Rand64({5}, 2, -2, -0.1)});
}

TEST(OpsGradTest, ScalarOps) {
  Tensor x = Rand64({2, 3}, 3, 0.5, 2);
  ExpectGradOk("AddScalar", [](const auto& v) { return AddScalar(v[0], 1.5); }, {x});
  ExpectGradOk("MulScalar", [](const auto& v) { return MulScalar(v[0], -2.5); }, {x});
  ExpectGradOk("PowScalar", [](const auto& v) { return PowScalar(v[0], 2.7); }, {x});
  ExpectGradOk("PowScalar0", [](const auto& v) { return PowScalar(v[0], 0); }, {x});
  ExpectGradOk("RsubScalar", [](const auto& v) { return RsubScalar(v[0], 3); }, {x});
  // Clamp: values away from the bounds so the difference quotient does not straddle them.
  Tensor c = Tensor::FromDoubles({-2, -0.5, 0.3, 0.9, 2}, {5}, DType::kF64).value();
  ExpectGradOk("Clamp", [](const auto& v) { return Clamp(v[0], -1, 1); }, {c});
}

TEST(OpsGradTest, BinaryWithBroadcasting) {
  using BinaryFn = absl::StatusOr<Variable> (*)(const Variable&, const Variable&);
  struct Case {
    const char* name;
    std::function<absl::StatusOr<Variable>(const Variable&, const Variable&)> fn;
  };
  const Case cases[] = {
      {"Add", [](const Variable& a, const Variable& b) { return Add(a, b, 0.5); }},
      {"Sub", [](const Variable& a, const Variable& b) { return Sub(a, b, 2); }},
      {"Mul", static_cast<BinaryFn>(Mul)},
      {"Div", static_cast<BinaryFn>(Div)},
      {"Pow", static_cast<BinaryFn>(Pow)},
      {"Maximum", static_cast<BinaryFn>(Maximum)},
      {"Minimum", static_cast<BinaryFn>(Minimum)},
  };
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 4}, {3, 1}}, {{3, 4}, {}}};
  for (const Case& c : cases) {
    for (const auto& [sa, sb] : shapes) {
      // Positive operands keep Pow and Div smooth; distinct seeds avoid ties in Max/Min.
      ExpectGradOk(std::string(c.name) + " " + ShapeToString(sa) + ShapeToString(sb),
                   [&](const std::vector<Variable>& v) { return c.fn(v[0], v[1]); },
                   {Rand64(sa, 10, 0.5, 2), Rand64(sb, 11, 0.5, 2)});
    }
  }
}

TEST(OpsGradTest, MaximumSplitsTiesEvenly) {
  Variable a(Tensor::FromDoubles({1, 2}, {2}, DType::kF64).value(), true);
  Variable b(Tensor::FromDoubles({1, 3}, {2}, DType::kF64).value(), true);
  ASSERT_OK_AND_ASSIGN(Variable y, Maximum(a, b));
  ASSERT_OK_AND_ASSIGN(Variable s, Sum(y));
  ASSERT_OK(s.Backward());
  EXPECT_EQ(a.grad().ToDoubles().value(), (std::vector<double>{0.5, 0}));
  EXPECT_EQ(b.grad().ToDoubles().value(), (std::vector<double>{0.5, 1}));
}

TEST(OpsGradTest, WhereAndCast) {
  Tensor cond = Tensor::FromVector<bool>({true, false, true, false, false, true}, {2, 3}).value();
  ExpectGradOk("Where", [&](const auto& v) { return Where(cond, v[0], v[1]); },
               {Rand64({2, 3}, 4), Rand64({3}, 5)});
  ExpectGradOk("Cast", [](const auto& v) -> absl::StatusOr<Variable> {
    LYRA_ASSIGN_OR_RETURN(Variable f, Cast(v[0], DType::kF32));
    return Cast(f, DType::kF64);
  }, {Rand64({4}, 6)}, {.eps = 1e-3, .atol = 1e-4, .rtol = 1e-4});
  Variable x(Rand64({2}, 7), true);
  EXPECT_STATUS_IS(Cast(x, DType::kI64), absl::StatusCode::kInvalidArgument, "no gradient");
}

TEST(OpsGradTest, ViewsAndShapes) {
  Tensor x = Rand64({2, 3, 4}, 8);
  ExpectGradOk("Reshape", [](const auto& v) { return Reshape(v[0], {4, 6}); }, {x});
  ExpectGradOk("View", [](const auto& v) { return View(v[0], {6, 4}); }, {x});
  ExpectGradOk("Transpose", [](const auto& v) { return Transpose(v[0], 0, 2); }, {x});
  ExpectGradOk("Permute", [](const auto& v) { return Permute(v[0], {2, 0, 1}); }, {x});
  ExpectGradOk("Narrow", [](const auto& v) { return Narrow(v[0], 1, 1, 2); }, {x});
  ExpectGradOk("Slice", [](const auto& v) { return Slice(v[0], 2, 0, 4, 2); }, {x});
  ExpectGradOk("Select", [](const auto& v) { return Select(v[0], 0, -1); }, {x});
  ExpectGradOk("Expand", [](const auto& v) { return Expand(v[0], {2, 5, 3}); },
               {Rand64({5, 1}, 9)});
  ExpectGradOk("Squeeze", [](const auto& v) { return Squeeze(v[0], 1); }, {Rand64({3, 1}, 9)});
  ExpectGradOk("Unsqueeze", [](const auto& v) { return Unsqueeze(v[0], 1); }, {x});
  // A transposed (non-contiguous) view fed into further ops.
  ExpectGradOk("TransposeContiguousMul", [](const auto& v) -> absl::StatusOr<Variable> {
    LYRA_ASSIGN_OR_RETURN(Variable t, Transpose(v[0], 0, 1));
    LYRA_ASSIGN_OR_RETURN(Variable c, Contiguous(t));
    return Mul(c, t);
  }, {Rand64({3, 4}, 12)});
  ExpectGradOk("Concat", [](const auto& v) { return Concat({v[0], v[1], v[0]}, 1); },
               {Rand64({2, 3}, 13), Rand64({2, 1}, 14)});
  ExpectGradOk("Split", [](const auto& v) -> absl::StatusOr<Variable> {
    LYRA_ASSIGN_OR_RETURN(std::vector<Variable> parts, Split(v[0], {1, 3}, 1));
    return Mul(parts[1], parts[1]);  // parts[0] unused: gets zeros
  }, {Rand64({2, 4}, 15)});
}

TEST(OpsGradTest, Reductions) {
  Tensor x = Rand64({3, 4, 5}, 16);
  ExpectGradOk("SumAll", [](const auto& v) { return Sum(v[0]); }, {x});
  ExpectGradOk("SumDim", [](const auto& v) { return Sum(v[0], {1}); }, {x});
  ExpectGradOk("SumDims", [](const auto& v) { return Sum(v[0], {0, -1}, true); }, {x});
  ExpectGradOk("MeanDim", [](const auto& v) { return Mean(v[0], {2}); }, {x});
  ExpectGradOk("MeanAll", [](const auto& v) { return Mean(v[0], {}, true); }, {x});
  ExpectGradOk("MaxDim", [](const auto& v) { return Max(v[0], {1}); }, {x});
  ExpectGradOk("MaxAll", [](const auto& v) { return Max(v[0]); }, {x});
  ExpectGradOk("Softmax", [](const auto& v) { return Softmax(v[0], -1); }, {x});
  ExpectGradOk("SoftmaxMid", [](const auto& v) { return Softmax(v[0], 1); }, {x});
  ExpectGradOk("LogSoftmax", [](const auto& v) { return LogSoftmax(v[0], -1); }, {x});
  ExpectGradOk("LogSoftmax0", [](const auto& v) { return LogSoftmax(v[0], 0); }, {x});
  ExpectGradOk("Cumsum", [](const auto& v) { return Cumsum(v[0], 1); }, {x});
  ExpectGradOk("SumOfTransposed", [](const auto& v) -> absl::StatusOr<Variable> {
    LYRA_ASSIGN_OR_RETURN(Variable t, Transpose(v[0], 0, 2));
    return Sum(t, {0});
  }, {x});
}

TEST(OpsGradTest, MaxSplitsTiesEvenly) {
  Variable x(Tensor::FromDoubles({2, 1, 2}, {3}, DType::kF64).value(), true);
  ASSERT_OK_AND_ASSIGN(Variable m, Max(x));
  ASSERT_OK(m.Backward());
  EXPECT_EQ(x.grad().ToDoubles().value(), (std::vector<double>{0.5, 0, 0.5}));
}

TEST(OpsGradTest, Matmul) {
  ExpectGradOk("2d", [](const auto& v) { return Matmul(v[0], v[1]); },
               {Rand64({3, 4}, 17), Rand64({4, 5}, 18)});
  ExpectGradOk("batched", [](const auto& v) { return Matmul(v[0], v[1]); },
               {Rand64({2, 3, 4}, 19), Rand64({2, 4, 2}, 20)});
  ExpectGradOk("broadcast batch", [](const auto& v) { return Matmul(v[0], v[1]); },
               {Rand64({2, 1, 3, 4}, 21), Rand64({3, 4, 2}, 22)});
  ExpectGradOk("transposed operand", [](const auto& v) -> absl::StatusOr<Variable> {
    LYRA_ASSIGN_OR_RETURN(Variable bt, Transpose(v[1], 0, 1));
    return Matmul(v[0], bt);
  }, {Rand64({3, 4}, 23), Rand64({5, 4}, 24)});
}

TEST(OpsGradTest, Indexing) {
  Tensor x = Rand64({4, 3}, 25);
  Tensor index = Ids({3, 0, 3, 1}, {4});  // repeated index accumulates
  ExpectGradOk("IndexSelect0", [&](const auto& v) { return IndexSelect(v[0], 0, index); }, {x});
  ExpectGradOk("IndexSelect1", [&](const auto& v) { return IndexSelect(v[0], 1, Ids({2, 2}, {2})); },
               {x});
  Tensor gidx = Ids({0, 2, 1, 1, 0, 0, 2, 2}, {4, 2});
  ExpectGradOk("Gather", [&](const auto& v) { return Gather(v[0], 1, gidx); }, {x});
  Tensor ids = Ids({1, 3, 1, 0, 2, 1}, {2, 3});
  ExpectGradOk("Embedding", [&](const auto& v) { return Embedding(v[0], ids); }, {x});
}

TEST(OpsGradTest, EmbeddingPaddingRowGetsNoGradient) {
  Variable w(Rand64({4, 2}, 26), true);
  ASSERT_OK_AND_ASSIGN(Variable e, Embedding(w, Ids({1, 2, 1}, {3}), /*padding_idx=*/1));
  ASSERT_OK_AND_ASSIGN(Variable s, Sum(e));
  ASSERT_OK(s.Backward());
  EXPECT_EQ(w.grad().ToDoubles().value(), (std::vector<double>{0, 0, 0, 0, 1, 1, 0, 0}));
}

TEST(OpsGradTest, CrossEntropy) {
  Tensor targets = Ids({2, 0, -100, 1}, {4});
  ExpectGradOk("CrossEntropy", [&](const auto& v) { return CrossEntropy(v[0], targets); },
               {Rand64({4, 3}, 27, -2, 2)});
  // Value: the mean over kept rows of -log_softmax at the target.
  Tensor logits = Tensor::FromDoubles({0, 0, 0, 1, 2, 3}, {2, 3}, DType::kF64).value();
  ASSERT_OK_AND_ASSIGN(Variable loss, CrossEntropy(Variable(logits), Ids({1, 2}, {2})));
  const double lse2 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0));
  const double expected = 0.5 * (std::log(3.0) + (lse2 - 3.0));
  EXPECT_NEAR(loss.data().Item().value(), expected, 1e-12);
  EXPECT_STATUS_IS(CrossEntropy(Variable(logits), Ids({1}, {1})),
                   absl::StatusCode::kInvalidArgument, "logits [N, C]");
}

TEST(OpsGradTest, EveryInputOfAFusedCompositionGetsAGradient) {
  // A small MLP: every parameter must receive a non-zero gradient.
  Variable x(Rand64({5, 4}, 28), false);
  Variable w1(Rand64({4, 8}, 29), true), b1(Rand64({8}, 30), true);
  Variable w2(Rand64({8, 3}, 31), true);
  ASSERT_OK_AND_ASSIGN(Variable h, Matmul(x, w1));
  ASSERT_OK_AND_ASSIGN(h, Add(h, b1));
  ASSERT_OK_AND_ASSIGN(h, Tanh(h));
  ASSERT_OK_AND_ASSIGN(Variable logits, Matmul(h, w2));
  ASSERT_OK_AND_ASSIGN(Variable loss, CrossEntropy(logits, Ids({0, 1, 2, 1, 0}, {5})));
  ASSERT_OK(loss.Backward());
  for (const Variable* p : {&w1, &b1, &w2}) {
    ASSERT_TRUE(p->grad().defined());
    double norm = 0;
    const std::vector<double> grad = p->grad().ToDoubles().value();
    for (double g : grad) norm += g * g;
    EXPECT_GT(norm, 0) << p->Describe();
  }
  EXPECT_FALSE(x.grad().defined());
}

// CUDA gradients equal CPU gradients for a composition touching every op family.
TEST(OpsGradTest, CudaMatchesCpu) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kF64}) {
    auto run = [&](Device device) -> std::vector<std::vector<double>> {
      Tensor x0 = RandomTensor({6, 5}, dtype, 40).value().To(device).value();
      Tensor w0 = RandomTensor({5, 7}, dtype, 41).value().To(device).value();
      Tensor e0 = RandomTensor({9, 5}, dtype, 42).value().To(device).value();
      Tensor ids = Ids({1, 8, 1, 3, 0, 2}, {6}).To(device).value();
      Tensor targets = Ids({0, 6, 3, -100, 2, 2}, {6}).To(device).value();
      Variable x(x0, true), w(w0, true), e(e0, true);
      Variable emb = Embedding(e, ids).value();
      Variable h = Add(x, emb).value();
      h = Gelu(h).value();
      Variable t = Transpose(h, 0, 1).value();
      Variable logits = Matmul(Transpose(t, 0, 1).value(), w).value();
      Variable soft = Softmax(logits, 0).value();
      Variable mixed = Add(logits, soft).value();
      Variable loss = CrossEntropy(mixed, targets).value();
      Variable extra = Mean(Max(Cumsum(h, 1).value(), {1}).value()).value();
      Variable total = Add(loss, extra).value();
      EXPECT_OK(total.Backward());
      return {x.grad().ToDoubles().value(), w.grad().ToDoubles().value(),
              e.grad().ToDoubles().value()};
    };
    std::vector<std::vector<double>> cpu = run(Device::Cpu());
    std::vector<std::vector<double>> gpu = run(Device::Cuda(0));
    const ::lyra::testing::Tolerance tol = dtype == DType::kF64 ? ::lyra::testing::Tolerance{1e-10, 1e-9}
                                                              : ::lyra::testing::Tolerance{1e-4, 1e-4};
    for (size_t i = 0; i < cpu.size(); ++i) {
      EXPECT_TRUE(AllClose(gpu[i], cpu[i], tol)) << "gradient " << i << " " << DTypeName(dtype);
    }
  }
}

}  // namespace
}  // namespace lyra::autograd
