// The autograd engine: recording, topological backward, accumulation, graph freeing, grad mode,
// and custom ops registered through RecordOp (the mechanism fused kernels use).
#include <gtest/gtest.h>

#include "autograd/node.h"
#include "autograd/variable.h"
#include "tensor/elementwise.h"
#include "tests/testing/testing.h"

namespace lyra::autograd {
namespace {

using ::lyra::testing::AllClose;

Tensor F64(const std::vector<double>& v, const Shape& shape) {
  return Tensor::FromDoubles(v, shape, DType::kF64).value();
}

std::vector<double> Values(const Tensor& t) { return t.ToDoubles().value(); }

// y = x * x as a custom op with a hand-written backward (saves only x).
absl::StatusOr<Variable> SquareOp(const Variable& x) {
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Mul(x.data(), x.data()));
  Tensor saved = x.data();
  return RecordUnaryResult(
      "TestSquare", {x}, y,
      [saved](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Mul(g[0], saved));
        LYRA_ASSIGN_OR_RETURN(d, lyra::MulScalar(d, 2));
        return std::vector<Tensor>{d};
      });
}

// y = a * b (same shapes).
absl::StatusOr<Variable> MulOp(const Variable& a, const Variable& b) {
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Mul(a.data(), b.data()));
  Tensor sa = a.data(), sb = b.data();
  return RecordUnaryResult(
      "TestMul", {a, b}, y,
      [sa, sb](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(Tensor da, lyra::Mul(g[0], sb));
        LYRA_ASSIGN_OR_RETURN(Tensor db, lyra::Mul(g[0], sa));
        return std::vector<Tensor>{da, db};
      });
}

absl::StatusOr<Variable> AddOp(const Variable& a, const Variable& b) {
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Add(a.data(), b.data()));
  return RecordUnaryResult(
      "TestAdd", {a, b}, y,
      [](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        return std::vector<Tensor>{g[0], g[0]};
      });
}

// Sum of all elements to a 1-element tensor [1].
absl::StatusOr<Variable> SumOp(const Variable& x) {
  LYRA_ASSIGN_OR_RETURN(std::vector<double> v, x.data().ToDoubles());
  double s = 0;
  for (double e : v) s += e;
  LYRA_ASSIGN_OR_RETURN(Tensor y, Tensor::FromDoubles({s}, {1}, x.dtype()));
  const Shape shape = x.shape();
  return RecordUnaryResult(
      "TestSum", {x}, y,
      [shape](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(Tensor g0, g[0].Reshape({}));
        LYRA_ASSIGN_OR_RETURN(Tensor d, g0.Expand(shape));
        return std::vector<Tensor>{d};
      });
}

TEST(EngineTest, LeafGradientOfCustomOp) {
  Variable x(F64({1, -2, 3}, {3}), true);
  ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_EQ(y.grad_fn()->name(), "TestSquare");
  ASSERT_OK_AND_ASSIGN(Variable s, SumOp(y));
  ASSERT_OK(s.Backward());
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{2, -4, 6}));
}

TEST(EngineTest, GradientsAccumulateAcrossBackwardsUntilZeroGrad) {
  Variable x(F64({1, 2}, {2}), true);
  for (int i = 0; i < 2; ++i) {
    ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
    ASSERT_OK_AND_ASSIGN(Variable s, SumOp(y));
    ASSERT_OK(s.Backward());
  }
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{4, 8}));
  x.ZeroGrad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(EngineTest, DiamondSumsBothPaths) {
  // z = y*y + y*x with y = x*x: dz/dx = 4x^3 + 3x^2
  Variable x(F64({2, -1}, {2}), true);
  ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
  ASSERT_OK_AND_ASSIGN(Variable yy, SquareOp(y));
  ASSERT_OK_AND_ASSIGN(Variable yx, MulOp(y, x));
  ASSERT_OK_AND_ASSIGN(Variable z, AddOp(yy, yx));
  ASSERT_OK_AND_ASSIGN(Variable s, SumOp(z));
  ASSERT_OK(s.Backward());
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{4 * 8 + 3 * 4, -4 + 3}));
}

TEST(EngineTest, SameInputTwiceAccumulates) {
  Variable x(F64({3}, {1}), true);
  ASSERT_OK_AND_ASSIGN(Variable y, MulOp(x, x));
  ASSERT_OK(y.Backward());
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{6}));
}

TEST(EngineTest, FreedGraphIsAnErrorUnlessRetained) {
  Variable x(F64({1, 2}, {2}), true);
  ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
  ASSERT_OK_AND_ASSIGN(Variable s, SumOp(y));
  ASSERT_OK(s.Backward(Tensor(), /*retain_graph=*/true));
  ASSERT_OK(s.Backward());
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{4, 8}));
  EXPECT_STATUS_IS(s.Backward(), absl::StatusCode::kFailedPrecondition, "a second time");
}

TEST(EngineTest, NoGradGuardRecordsNothing) {
  Variable x(F64({1, 2}, {2}), true);
  EXPECT_TRUE(GradModeEnabled());
  {
    NoGradGuard guard;
    EXPECT_FALSE(GradModeEnabled());
    {
      NoGradGuard nested;
      EXPECT_FALSE(GradModeEnabled());
    }
    EXPECT_FALSE(GradModeEnabled());
    ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
    EXPECT_STATUS_IS(y.Backward(), absl::StatusCode::kInvalidArgument, "does not require grad");
  }
  EXPECT_TRUE(GradModeEnabled());
}

TEST(EngineTest, DetachCutsTheGraph) {
  Variable x(F64({1, 2}, {2}), true);
  ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
  Variable d = y.Detach();
  EXPECT_TRUE(d.is_leaf());
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.data().storage(), y.data().storage());
  ASSERT_OK_AND_ASSIGN(Variable z, MulOp(d, x));  // only x's direct use flows back
  ASSERT_OK_AND_ASSIGN(Variable s, SumOp(z));
  ASSERT_OK(s.Backward());
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{1, 4}));
}

TEST(EngineTest, BackwardWithGivenGradient) {
  Variable x(F64({1, 2, 3}, {3}), true);
  ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
  EXPECT_STATUS_IS(y.Backward(), absl::StatusCode::kInvalidArgument, "one-element");
  EXPECT_STATUS_IS(y.Backward(F64({1, 1}, {2})), absl::StatusCode::kInvalidArgument,
                   "does not match");
  Tensor seed = F64({1, 10, 100}, {3});
  ASSERT_OK(y.Backward(seed));
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{2, 40, 600}));
  // The leaf's gradient does not alias the caller's seed.
  ASSERT_OK(seed.Fill(0));
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{2, 40, 600}));
}

TEST(EngineTest, BackwardOfALeafSeedsItsGrad) {
  Variable x(F64({5}, {1}), true);
  ASSERT_OK(x.Backward());
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{1}));
}

TEST(EngineTest, InputsNotRequiringGradGetNone) {
  Variable a(F64({2}, {1}), true);
  Variable b(F64({3}, {1}), false);
  ASSERT_OK_AND_ASSIGN(Variable y, MulOp(a, b));
  ASSERT_OK(y.Backward());
  EXPECT_EQ(Values(a.grad()), (std::vector<double>{3}));
  EXPECT_FALSE(b.grad().defined());
}

TEST(EngineTest, WrongGradientShapeFromABackwardIsInternalError) {
  Variable x(F64({1, 2}, {2}), true);
  ASSERT_OK_AND_ASSIGN(
      Variable y,
      RecordUnaryResult("BrokenOp", {x}, x.data(),
                        [](const std::vector<Tensor>&) -> absl::StatusOr<std::vector<Tensor>> {
                          return std::vector<Tensor>{F64({1, 2, 3}, {3})};
                        }));
  EXPECT_STATUS_IS(y.Backward(F64({1, 1}, {2})), absl::StatusCode::kInternal, "BrokenOp");
}

TEST(EngineTest, ErrorsFromABackwardPropagate) {
  Variable x(F64({1}, {1}), true);
  ASSERT_OK_AND_ASSIGN(
      Variable y,
      RecordUnaryResult("FailingOp", {x}, x.data(),
                        [](const std::vector<Tensor>&) -> absl::StatusOr<std::vector<Tensor>> {
                          return absl::UnimplementedError("no backward here");
                        }));
  EXPECT_STATUS_IS(y.Backward(), absl::StatusCode::kUnimplemented, "no backward here");
}

TEST(EngineTest, MultiOutputOpGetsZerosForUnusedOutputs) {
  // (y0, y1) = (2x, 3x); only y1 is used.
  Variable x(F64({1, 2}, {2}), true);
  Tensor y0 = lyra::MulScalar(x.data(), 2).value();
  Tensor y1 = lyra::MulScalar(x.data(), 3).value();
  ASSERT_OK_AND_ASSIGN(
      std::vector<Variable> ys,
      RecordOp("Pair", {x}, {y0, y1},
               [](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
                 EXPECT_EQ(g.size(), 2u);
                 EXPECT_EQ(Values(g[0]), (std::vector<double>{0, 0}));
                 LYRA_ASSIGN_OR_RETURN(Tensor a, lyra::MulScalar(g[0], 2));
                 LYRA_ASSIGN_OR_RETURN(Tensor b, lyra::MulScalar(g[1], 3));
                 LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Add(a, b));
                 return std::vector<Tensor>{d};
               }));
  ASSERT_EQ(ys.size(), 2u);
  EXPECT_EQ(ys[1].output_index(), 1);
  ASSERT_OK_AND_ASSIGN(Variable s, SumOp(ys[1]));
  ASSERT_OK(s.Backward());
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{3, 3}));
}

TEST(EngineTest, NonDifferentiableOpRejectsInputsRequiringGrad) {
  Variable x(F64({1}, {1}), true);
  EXPECT_STATUS_IS(NonDifferentiableResult("Argmax", {x}, x.data()),
                   absl::StatusCode::kInvalidArgument, "Argmax has no backward");
  NoGradGuard guard;
  EXPECT_OK(NonDifferentiableResult("Argmax", {x}, x.data()).status());
}

TEST(EngineTest, RequiresGradRules) {
  ASSERT_OK_AND_ASSIGN(Tensor ints, Tensor::Zeros({2}, DType::kI64));
  EXPECT_STATUS_IS(Variable::Leaf(ints, true), absl::StatusCode::kInvalidArgument,
                   "floating-point");
  Variable i(ints, false);
  EXPECT_STATUS_IS(i.set_requires_grad(true), absl::StatusCode::kInvalidArgument,
                   "floating-point");
  Variable x(F64({1}, {1}), true);
  ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
  EXPECT_STATUS_IS(y.set_requires_grad(false), absl::StatusCode::kFailedPrecondition,
                   "non-leaf");
  EXPECT_STATUS_IS(y.set_data(x.data()), absl::StatusCode::kFailedPrecondition, "non-leaf");
  EXPECT_STATUS_IS(x.set_data(F64({1, 2}, {2})), absl::StatusCode::kInvalidArgument,
                   "does not match");
  EXPECT_STATUS_IS(x.set_grad(F64({1, 2}, {2})), absl::StatusCode::kInvalidArgument,
                   "does not match");
  EXPECT_NE(y.Describe().find("grad_fn=TestSquare"), std::string::npos) << y.Describe();
}

TEST(EngineTest, LongChainRunsIteratively) {
  Variable x(F64({1.0}, {1}), true);
  Variable y = x;
  constexpr int kDepth = 2000;
  for (int i = 0; i < kDepth; ++i) {
    ASSERT_OK_AND_ASSIGN(y, AddOp(y, Variable(F64({0.0}, {1}))));
  }
  ASSERT_OK(y.Backward());
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{1}));
}

TEST(EngineTest, GpuGraph) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(Tensor xc, Tensor::FromDoubles({1, -2, 3}, {3}, DType::kF32,
                                                      Device::Cuda(0)));
  Variable x(xc, true);
  ASSERT_OK_AND_ASSIGN(Variable y, SquareOp(x));
  ASSERT_OK(y.Backward(Tensor::Ones({3}, DType::kF32, Device::Cuda(0)).value()));
  EXPECT_EQ(x.grad().device(), Device::Cuda(0));
  EXPECT_EQ(Values(x.grad()), (std::vector<double>{2, -4, 6}));
}

}  // namespace
}  // namespace lyra::autograd
