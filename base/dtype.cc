#include "base/dtype.h"

#include "absl/strings/ascii.h"

namespace lyra {

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kF64: return "f64";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kBool: return "bool";
  }
  return "unknown";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  std::string lower = absl::AsciiStrToLower(name);
  if (lower == "f32" || lower == "float32" || lower == "fp32") return DType::kF32;
  if (lower == "f16" || lower == "float16" || lower == "fp16") return DType::kF16;
  if (lower == "bf16" || lower == "bfloat16") return DType::kBF16;
  if (lower == "f64" || lower == "float64" || lower == "fp64") return DType::kF64;
  if (lower == "i32" || lower == "int32") return DType::kI32;
  if (lower == "i64" || lower == "int64") return DType::kI64;
  if (lower == "bool") return DType::kBool;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype '", name, "' (expected one of f32, f16, bf16, f64, i32, i64, bool)"));
}

absl::string_view SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kF64: return "F64";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
    case DType::kBool: return "BOOL";
  }
  return "UNKNOWN";
}

absl::StatusOr<DType> ParseSafetensorsDType(absl::string_view name) {
  for (DType d : kAllDTypes) {
    if (SafetensorsDTypeName(d) == name) return d;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported safetensors dtype '", name,
                   "' (Lyra reads F32, F16, BF16, F64, I32, I64, BOOL)"));
}

}  // namespace lyra
