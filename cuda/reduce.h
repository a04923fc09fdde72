// Reductions over one folded axis: sum, mean, max (amax) and argmax (max with its index).
//
// The tensor layer (tensor/reduce.cc) folds any reduction into three axes,
//   x: (outer, reduced, inner)  strides (x_stride_outer, x_stride_reduced, x_stride_inner)
//   y: (outer, inner)           strides (y_stride_outer, y_stride_inner)
// so one kernel family serves "last dim", "first dim", "middle dim" and "several adjacent dims".
// Every stride is in elements and may be 0 (a broadcast input).
//
//   kSum:    y[o, i] = sum_r x[o, r, i]
//   kMean:   y[o, i] = (sum_r x[o, r, i]) * (1 / reduced)
//   kMax:    y[o, i] = max_r x[o, r, i]; NaN propagates (torch.amax)
//   kArgmax: values[o, i] = max_r x[o, r, i], indices[o, i] = its r; the first r on ties, and a
//            NaN counts as larger than any number (the first NaN wins), as torch.max(dim)
//
// Precision: sums accumulate in f32 for f16/bf16/f32, f64 for f64 and i64 for i32/i64/bool; max
// compares in the compute type (exact for every dtype). Outputs are written (=), never accumulated.
//
// Dtypes: y has x's dtype, except kSum of i32/i64/bool, whose y is i64 (as torch). kMean is for
// float dtypes only. ReduceSupported says what is accepted.
#ifndef LYRA_CUDA_REDUCE_H_
#define LYRA_CUDA_REDUCE_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/dtype.h"

namespace lyra::cuda {

enum class ReduceOp { kSum, kMean, kMax, kArgmax };

// The accumulator of a sum over storage type T (shared by the reference and the kernels): f64 for
// f64, i64 for i32/i64/bool, f32 for the other float types.
template <typename T>
using SumAccumulator =
    std::conditional_t<std::is_same_v<T, double>, double,
                       std::conditional_t<std::is_integral_v<T>, int64_t, float>>;
// The storage type of a sum's result: T for float types, i64 for i32/i64/bool.
template <typename T>
using SumOutput = std::conditional_t<std::is_integral_v<T>, int64_t, T>;

absl::string_view ReduceOpName(ReduceOp op);

struct ReduceParams {
  ReduceOp op = ReduceOp::kSum;
  int64_t outer = 1;
  int64_t reduced = 1;
  int64_t inner = 1;

  const void* x = nullptr;  // (outer, reduced, inner)
  DType x_dtype = DType::kF32;
  int64_t x_stride_outer = 0;
  int64_t x_stride_reduced = 0;
  int64_t x_stride_inner = 0;

  void* y = nullptr;  // (outer, inner); the max values for kArgmax (may be null there)
  DType y_dtype = DType::kF32;
  int64_t y_stride_outer = 0;
  int64_t y_stride_inner = 0;

  int64_t* indices = nullptr;  // (outer, inner), y's strides; kArgmax only
};

// The dtype of y for `op` on an x of `x_dtype` (i64 for kSum of integers and bool).
DType ReduceOutputDType(ReduceOp op, DType x_dtype);

// OK if the kernels handle `p`: InvalidArgument for kMean of a non-float dtype, a y_dtype other
// than ReduceOutputDType, kMax / kArgmax over zero elements (reduced == 0), a missing pointer,
// negative sizes; Unimplemented for outer * inner >= 2^31 (one block row per output).
absl::Status ReduceSupported(const ReduceParams& p);

// The naive CPU loop.
absl::Status ReduceReference(const ReduceParams& p);
// Launches on `stream` (the device must be current). May take a workspace from the device's
// caching allocator when few outputs each reduce many elements (split reductions).
absl::Status ReduceCuda(const ReduceParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_REDUCE_H_
