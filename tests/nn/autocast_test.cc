#include "nn/autocast.h"

#include <gtest/gtest.h>

#include "autograd/ops.h"
#include "tests/testing/testing.h"

namespace lyra::nn {
namespace {

TEST(AutocastTest, CastsWeightsOncePerRegionAndGradientsReachTheMaster) {
  autograd::Variable w(Tensor::FromDoubles({1.5, -2, 3}, {3}, DType::kF32).value(), true);
  autograd::Variable x(Tensor::FromDoubles({2, 2, 2}, {3}, DType::kF32).value(), false);
  EXPECT_FALSE(AutocastDType().has_value());
  {
    AutocastGuard guard(DType::kBF16);
    EXPECT_EQ(AutocastDType(), DType::kBF16);
    ASSERT_OK_AND_ASSIGN(autograd::Variable w1, ComputeWeight(w));
    ASSERT_OK_AND_ASSIGN(autograd::Variable w2, ComputeWeight(w));
    EXPECT_EQ(w1.dtype(), DType::kBF16);
    EXPECT_TRUE(w1.SameAs(w2));  // cached
    ASSERT_OK_AND_ASSIGN(autograd::Variable xc, ComputeInput(x));
    EXPECT_EQ(xc.dtype(), DType::kBF16);
    ASSERT_OK_AND_ASSIGN(autograd::Variable y, autograd::Mul(w1, xc));
    ASSERT_OK_AND_ASSIGN(autograd::Variable y2, autograd::Mul(w2, xc));
    ASSERT_OK_AND_ASSIGN(autograd::Variable s, autograd::Add(y, y2));
    ASSERT_OK_AND_ASSIGN(s, autograd::Sum(s));
    ASSERT_OK(s.Backward());
    {
      AutocastGuard inner(DType::kF16);
      EXPECT_EQ(AutocastDType(), DType::kF16);
    }
    EXPECT_EQ(AutocastDType(), DType::kBF16);
  }
  EXPECT_FALSE(AutocastDType().has_value());
  ASSERT_EQ(w.grad().dtype(), DType::kF32);
  EXPECT_EQ(w.grad().ToDoubles().value(), (std::vector<double>{4, 4, 4}));
  // Outside a region nothing is cast.
  ASSERT_OK_AND_ASSIGN(autograd::Variable same, ComputeWeight(w));
  EXPECT_TRUE(same.SameAs(w));
}

TEST(AutocastTest, ACopyCastUnderNoGradIsRecastWhenGradientsAreWanted) {
  autograd::Variable w(Tensor::FromDoubles({1, 2}, {2}, DType::kF32).value(), true);
  AutocastGuard guard(DType::kBF16);
  {
    autograd::NoGradGuard no_grad;
    ASSERT_OK_AND_ASSIGN(autograd::Variable eval_copy, ComputeWeight(w));
    EXPECT_FALSE(eval_copy.requires_grad());
  }
  ASSERT_OK_AND_ASSIGN(autograd::Variable train_copy, ComputeWeight(w));
  EXPECT_TRUE(train_copy.requires_grad());
  ASSERT_OK_AND_ASSIGN(autograd::Variable s, autograd::Sum(train_copy));
  ASSERT_OK(s.Backward());
  EXPECT_EQ(w.grad().ToDoubles().value(), (std::vector<double>{1, 1}));
}

}  // namespace
}  // namespace lyra::nn
