#include "optim/precision.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace lyra::optim {

absl::string_view PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kFp32: return "fp32";
    case Precision::kFp16: return "fp16";
    case Precision::kBf16: return "bf16";
  }
  return "unknown";
}

absl::StatusOr<Precision> ParsePrecision(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "fp32" || lower == "float32" || lower == "f32") return Precision::kFp32;
  if (lower == "fp16" || lower == "float16" || lower == "f16" || lower == "half") {
    return Precision::kFp16;
  }
  if (lower == "bf16" || lower == "bfloat16") return Precision::kBf16;
  return absl::InvalidArgumentError(absl::StrCat(
      "ParsePrecision: unknown precision \"", text,
      "\"; expected fp32, fp16 or bf16 (or float32, float16, bfloat16)"));
}

DType ComputeDType(Precision precision) {
  switch (precision) {
    case Precision::kFp32: return DType::kF32;
    case Precision::kFp16: return DType::kF16;
    case Precision::kBf16: return DType::kBF16;
  }
  return DType::kF32;
}

bool UsesLossScaler(Precision precision) { return precision == Precision::kFp16; }

PrecisionRecipe RecipeFor(Precision precision, const LossScalerOptions& scaler) {
  PrecisionRecipe recipe;
  recipe.precision = precision;
  recipe.master_dtype = DType::kF32;
  recipe.compute_dtype = ComputeDType(precision);
  recipe.loss_scaling = UsesLossScaler(precision);
  recipe.scaler = scaler;
  recipe.scaler.enabled = recipe.loss_scaling;
  return recipe;
}

absl::StatusOr<DynamicLossScaler> MakeLossScaler(const PrecisionRecipe& recipe, Device device) {
  LossScalerOptions options = recipe.scaler;
  options.enabled = recipe.loss_scaling;
  return DynamicLossScaler::Create(options, device);
}

std::string DescribeRecipe(const PrecisionRecipe& recipe) {
  std::string text = absl::StrCat(PrecisionName(recipe.precision), ": compute ",
                                  DTypeName(recipe.compute_dtype), ", master ",
                                  DTypeName(recipe.master_dtype));
  if (!recipe.loss_scaling) return absl::StrCat(text, ", no loss scaling");
  return absl::StrCat(text, absl::StrFormat(
                                ", dynamic loss scaling (init %g, x%g every %d clean steps, x%g "
                                "on overflow)",
                                recipe.scaler.init_scale, recipe.scaler.growth_factor,
                                recipe.scaler.growth_interval, recipe.scaler.backoff_factor));
}

}  // namespace lyra::optim
