// CPU reference of the inclusive prefix sum (cuda/cumsum.h): for every column (o, i), one
// sequential pass over l (from the end when reverse), accumulating in SumAccumulator<T>.
#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "cuda/cumsum.h"
#include "cuda/reduce.h"

namespace lyra::cuda {

DType CumsumOutputDType(DType x_dtype) { return IsFloating(x_dtype) ? x_dtype : DType::kI64; }

absl::Status CumsumSupported(const CumsumParams& p) {
  if (p.outer < 0 || p.length < 0 || p.inner < 0) {
    return absl::InvalidArgumentError("Cumsum: negative size");
  }
  if (p.y_dtype != CumsumOutputDType(p.x_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Cumsum: output dtype ", DTypeName(p.y_dtype), " for input ", DTypeName(p.x_dtype),
        ", expected ", DTypeName(CumsumOutputDType(p.x_dtype))));
  }
  const int64_t columns = p.outer * p.inner;
  if (columns > 0 && p.length > 0 && (p.x == nullptr || p.y == nullptr)) {
    return absl::InvalidArgumentError("Cumsum: missing input or output pointer");
  }
  if (columns >= (int64_t{1} << 31)) {
    return absl::UnimplementedError(
        absl::StrCat("Cumsum: ", columns, " columns; at most 2^31 - 1 are supported"));
  }
  return absl::OkStatus();
}

namespace {

template <typename T>
absl::Status CumsumTyped(const CumsumParams& p) {
  using Acc = SumAccumulator<T>;
  using Out = SumOutput<T>;
  const T* x = static_cast<const T*>(p.x);
  Out* y = static_cast<Out*>(p.y);
  for (int64_t o = 0; o < p.outer; ++o) {
    for (int64_t i = 0; i < p.inner; ++i) {
      Acc sum = 0;
      for (int64_t step = 0; step < p.length; ++step) {
        const int64_t l = p.reverse ? p.length - 1 - step : step;
        sum += static_cast<Acc>(
            Load(x[o * p.x_stride_outer + l * p.x_stride_length + i * p.x_stride_inner]));
        y[o * p.y_stride_outer + l * p.y_stride_length + i * p.y_stride_inner] =
            Store<Out>(static_cast<ComputeType<Out>>(sum));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CumsumReference(const CumsumParams& p) {
  if (absl::Status s = CumsumSupported(p); !s.ok()) return s;
  return DispatchAll(p.x_dtype, "Cumsum",
                     [&]<typename T>() -> absl::Status { return CumsumTyped<T>(p); });
}

}  // namespace lyra::cuda
