// Element types of Lyra tensors and the compile-time dispatch over them.
//
//   DType::kF32, kF16, kBF16, kF64, kI32, kI64, kBool
//
//   LYRA_RETURN_IF_ERROR(DispatchFloat(dtype, "Softmax", [&]<typename T>() -> absl::Status {
//     return SoftmaxKernel<T>(...);                       // T is float, double, Float16, BFloat16
//   }));
#ifndef LYRA_BASE_DTYPE_H_
#define LYRA_BASE_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <ostream>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/half.h"

namespace lyra {

enum class DType : uint8_t { kF32, kF16, kBF16, kF64, kI32, kI64, kBool };

inline constexpr DType kAllDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64,
                                       DType::kI32, DType::kI64, DType::kBool};

// Bytes per element.
constexpr size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kF64: return 8;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
    case DType::kBool: return 1;
  }
  return 0;
}

// Short lower-case name: "f32", "f16", "bf16", "f64", "i32", "i64", "bool".
absl::string_view DTypeName(DType dtype);
// Parses the names above (and "float32", "float16", "bfloat16", "float64", "int32", "int64").
absl::StatusOr<DType> ParseDType(absl::string_view name);
// safetensors dtype strings: "F32", "F16", "BF16", "F64", "I32", "I64", "BOOL".
absl::string_view SafetensorsDTypeName(DType dtype);
absl::StatusOr<DType> ParseSafetensorsDType(absl::string_view name);

constexpr bool IsFloating(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kF64;
}
constexpr bool IsHalf(DType d) { return d == DType::kF16 || d == DType::kBF16; }
constexpr bool IsInteger(DType d) { return d == DType::kI32 || d == DType::kI64; }

inline std::ostream& operator<<(std::ostream& os, DType d) { return os << DTypeName(d); }
template <typename Sink>
void AbslStringify(Sink& sink, DType d) {
  sink.Append(DTypeName(d));
}

// The C++ type that stores each dtype, and back.
template <typename T> struct DTypeOf;
template <> struct DTypeOf<float> { static constexpr DType value = DType::kF32; };
template <> struct DTypeOf<Float16> { static constexpr DType value = DType::kF16; };
template <> struct DTypeOf<BFloat16> { static constexpr DType value = DType::kBF16; };
template <> struct DTypeOf<double> { static constexpr DType value = DType::kF64; };
template <> struct DTypeOf<int32_t> { static constexpr DType value = DType::kI32; };
template <> struct DTypeOf<int64_t> { static constexpr DType value = DType::kI64; };
template <> struct DTypeOf<bool> { static constexpr DType value = DType::kBool; };
template <typename T> inline constexpr DType kDTypeOf = DTypeOf<T>::value;

// The type arithmetic on T is done in: double for f64, float for every other float type.
template <typename T> struct ComputeTypeOf { using type = float; };
template <> struct ComputeTypeOf<double> { using type = double; };
template <> struct ComputeTypeOf<int32_t> { using type = int32_t; };
template <> struct ComputeTypeOf<int64_t> { using type = int64_t; };
template <> struct ComputeTypeOf<bool> { using type = bool; };
template <typename T> using ComputeType = typename ComputeTypeOf<T>::type;

// Loads and stores between a storage type and its compute type.
template <typename T>
LYRA_HOST_DEVICE inline ComputeType<T> Load(T x) { return static_cast<ComputeType<T>>(x); }
template <typename T>
LYRA_HOST_DEVICE inline T Store(ComputeType<T> x) { return static_cast<T>(x); }

// Runs fn.template operator()<T>() with T the storage type of `dtype`, for the float types;
// returns InvalidArgument naming `op` for any other dtype.
template <typename Fn>
absl::Status DispatchFloat(DType dtype, absl::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: return fn.template operator()<float>();
    case DType::kF64: return fn.template operator()<double>();
    case DType::kF16: return fn.template operator()<Float16>();
    case DType::kBF16: return fn.template operator()<BFloat16>();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": expected a floating-point dtype, got ", DTypeName(dtype)));
  }
}

// As DispatchFloat, over every dtype.
template <typename Fn>
absl::Status DispatchAll(DType dtype, absl::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: return fn.template operator()<float>();
    case DType::kF64: return fn.template operator()<double>();
    case DType::kF16: return fn.template operator()<Float16>();
    case DType::kBF16: return fn.template operator()<BFloat16>();
    case DType::kI32: return fn.template operator()<int32_t>();
    case DType::kI64: return fn.template operator()<int64_t>();
    case DType::kBool: return fn.template operator()<bool>();
  }
  return absl::InvalidArgumentError(absl::StrCat(op, ": unknown dtype"));
}

}  // namespace lyra

#endif  // LYRA_BASE_DTYPE_H_
