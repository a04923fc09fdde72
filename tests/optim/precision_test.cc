#include "optim/precision.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "tests/testing/testing.h"

namespace lyra::optim {
namespace {

constexpr Precision kAll[] = {Precision::kFp32, Precision::kFp16, Precision::kBf16};

TEST(PrecisionTest, ParsesEverySpelling) {
  const struct {
    const char* text;
    Precision expected;
  } cases[] = {
      {"fp32", Precision::kFp32},     {"float32", Precision::kFp32}, {"f32", Precision::kFp32},
      {"FP32", Precision::kFp32},     {"fp16", Precision::kFp16},    {"float16", Precision::kFp16},
      {"f16", Precision::kFp16},      {"half", Precision::kFp16},    {"Float16", Precision::kFp16},
      {"bf16", Precision::kBf16},     {"bfloat16", Precision::kBf16}, {"BF16", Precision::kBf16},
  };
  for (const auto& c : cases) {
    ASSERT_OK_AND_ASSIGN(Precision p, ParsePrecision(c.text));
    EXPECT_EQ(p, c.expected) << c.text;
  }
  for (Precision p : kAll) EXPECT_EQ(ParsePrecision(PrecisionName(p)).value(), p);
}

TEST(PrecisionTest, RejectsUnknownTextNamingIt) {
  for (const char* bad : {"fp8", "", "bf32", "float", " fp16", "tf32"}) {
    EXPECT_STATUS_IS(ParsePrecision(bad), absl::StatusCode::kInvalidArgument,
                     absl::StrCat("unknown precision \"", bad, "\""));
  }
  EXPECT_STATUS_IS(ParsePrecision("int8"), absl::StatusCode::kInvalidArgument,
                   "expected fp32, fp16 or bf16");
}

TEST(PrecisionTest, ComputeDTypesAndLossScaling) {
  EXPECT_EQ(ComputeDType(Precision::kFp32), DType::kF32);
  EXPECT_EQ(ComputeDType(Precision::kFp16), DType::kF16);
  EXPECT_EQ(ComputeDType(Precision::kBf16), DType::kBF16);
  EXPECT_FALSE(UsesLossScaler(Precision::kFp32));
  EXPECT_TRUE(UsesLossScaler(Precision::kFp16));
  EXPECT_FALSE(UsesLossScaler(Precision::kBf16));
  std::ostringstream os;
  os << Precision::kBf16;
  EXPECT_EQ(os.str(), "bf16");
}

TEST(PrecisionTest, RecipesKeepFp32MastersAndScaleOnlyFp16) {
  LossScalerOptions options;
  options.init_scale = 1024;
  options.growth_interval = 100;
  options.enabled = false;  // overridden by the recipe
  for (Precision p : kAll) {
    const PrecisionRecipe recipe = RecipeFor(p, options);
    EXPECT_EQ(recipe.precision, p);
    EXPECT_EQ(recipe.master_dtype, DType::kF32);
    EXPECT_EQ(recipe.compute_dtype, ComputeDType(p));
    EXPECT_EQ(recipe.loss_scaling, UsesLossScaler(p));
    EXPECT_EQ(recipe.scaler.enabled, UsesLossScaler(p));
    EXPECT_EQ(recipe.scaler.init_scale, 1024);
    ASSERT_OK_AND_ASSIGN(DynamicLossScaler scaler, MakeLossScaler(recipe, Device::Cpu()));
    EXPECT_EQ(scaler.enabled(), UsesLossScaler(p));
    EXPECT_EQ(scaler.scale().value(), UsesLossScaler(p) ? 1024.0 : 1.0);
  }
  EXPECT_EQ(DescribeRecipe(RecipeFor(Precision::kBf16)),
            "bf16: compute bf16, master f32, no loss scaling");
  EXPECT_EQ(DescribeRecipe(RecipeFor(Precision::kFp16)),
            "fp16: compute f16, master f32, dynamic loss scaling (init 65536, x2 every 2000 "
            "clean steps, x0.5 on overflow)");
}

TEST(PrecisionTest, BadScalerOptionsSurfaceFromMakeLossScaler) {
  LossScalerOptions options;
  options.growth_interval = 0;
  EXPECT_STATUS_IS(MakeLossScaler(RecipeFor(Precision::kFp16, options), Device::Cpu()),
                   absl::StatusCode::kInvalidArgument, "growth_interval");
  // Disabled recipes do not look at the options.
  EXPECT_OK(MakeLossScaler(RecipeFor(Precision::kBf16, options), Device::Cpu()).status());
}

}  // namespace
}  // namespace lyra::optim
