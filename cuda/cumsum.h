// Inclusive prefix sum along one axis.
//
// The tensor layer folds the problem into (outer, length, inner), the scanned axis in the middle:
//   forward:  y[o, l, i] = sum_{k <= l} x[o, k, i]
//   reverse:  y[o, l, i] = sum_{k >= l} x[o, k, i]   (the gradient of the forward scan)
// x and y have their own strides (elements) over the three axes; y must not overlap x.
//
// Precision: accumulates in f32 for f16/bf16/f32, f64 for f64 and i64 for i32/i64/bool; y has x's
// dtype for float inputs and is i64 for integer and bool inputs (as torch). y is written (=).
#ifndef LYRA_CUDA_CUMSUM_H_
#define LYRA_CUDA_CUMSUM_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"

namespace lyra::cuda {

struct CumsumParams {
  int64_t outer = 1;
  int64_t length = 1;
  int64_t inner = 1;
  bool reverse = false;

  const void* x = nullptr;  // (outer, length, inner)
  DType x_dtype = DType::kF32;
  int64_t x_stride_outer = 0;
  int64_t x_stride_length = 0;
  int64_t x_stride_inner = 0;

  void* y = nullptr;  // (outer, length, inner)
  DType y_dtype = DType::kF32;
  int64_t y_stride_outer = 0;
  int64_t y_stride_length = 0;
  int64_t y_stride_inner = 0;
};

// x's dtype for floats, i64 for integers and bool.
DType CumsumOutputDType(DType x_dtype);

// OK if the kernels handle `p`: InvalidArgument for a y_dtype other than CumsumOutputDType, a
// missing pointer or a negative size; Unimplemented for outer * inner >= 2^31.
absl::Status CumsumSupported(const CumsumParams& p);

absl::Status CumsumReference(const CumsumParams& p);
absl::Status CumsumCuda(const CumsumParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_CUMSUM_H_
