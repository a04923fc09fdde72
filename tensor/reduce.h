// Reductions (sum, mean, max, argmax), sum-to-shape, softmax / log-softmax (with their
// gradients) and cumsum, on CPU and CUDA.
//
// Inputs may be any view (transposed, sliced, broadcast); results are new contiguous tensors.
// Dims may be negative (-1 is the last); a 0-dimensional tensor accepts dim 0 or -1. Float math
// is done in f32 for f16/bf16/f32 and in f64 for f64.
//
//   LYRA_ASSIGN_OR_RETURN(Tensor row_sums, Sum(x, {-1}));                 // [B, L, D] -> [B, L]
//   LYRA_ASSIGN_OR_RETURN(Tensor probs, Softmax(logits, -1));
//   LYRA_ASSIGN_OR_RETURN(MaxResult best, MaxAlong(logits, -1));          // values and i64 indices
#ifndef LYRA_TENSOR_REDUCE_H_
#define LYRA_TENSOR_REDUCE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "tensor/tensor.h"

namespace lyra {

// Reduce over `dims` (empty = every dim; negative dims allowed; duplicates are an error).
// Float inputs: the result has the input dtype, accumulation in f32 for f16/bf16/f32 and f64
// for f64. Integer/bool inputs: Sum gives i64 (as torch); Mean rejects them (InvalidArgument).
// Over zero elements Sum gives 0 and Mean NaN.
absl::StatusOr<Tensor> Sum(const Tensor& x, const std::vector<int>& dims = {},
                           bool keepdim = false);
absl::StatusOr<Tensor> Mean(const Tensor& x, const std::vector<int>& dims = {},
                            bool keepdim = false);
// Max value over dims (NaN propagates as torch.amax). Float and integer dtypes (and bool).
// InvalidArgument over zero elements.
absl::StatusOr<Tensor> Max(const Tensor& x, const std::vector<int>& dims = {},
                           bool keepdim = false);

// Values and i64 indices of the max along one dim (first index on ties; NaN counts as max).
struct MaxResult {
  Tensor values;
  Tensor indices;
};
absl::StatusOr<MaxResult> MaxAlong(const Tensor& x, int dim, bool keepdim = false);
absl::StatusOr<Tensor> Argmax(const Tensor& x, int dim, bool keepdim = false);

// Sums a tensor down to `shape`, the inverse of broadcasting `shape` to x.shape() (leading dims
// removed, size-1 dims summed with keepdim). InvalidArgument if `shape` does not broadcast to x.
// Returns x itself (no copy) when the shapes are already equal; integer inputs sum to i64.
absl::StatusOr<Tensor> SumToShape(const Tensor& x, const Shape& shape);

// Numerically stable (max-subtracted) softmax / log_softmax along `dim`; f32 math for 16-bit.
// Float dtypes only.
absl::StatusOr<Tensor> Softmax(const Tensor& x, int dim);
absl::StatusOr<Tensor> LogSoftmax(const Tensor& x, int dim);

// Gradients given the forward OUTPUT y and the output gradient g (same shape and dtype):
//   softmax:     dx = y * (g - sum(g * y, dim))
//   log_softmax: dx = g - exp(y) * sum(g, dim)
absl::StatusOr<Tensor> SoftmaxBackward(const Tensor& y, const Tensor& grad, int dim);
absl::StatusOr<Tensor> LogSoftmaxBackward(const Tensor& y, const Tensor& grad, int dim);

// Inclusive prefix sum along dim; reverse = true sums from the end (the gradient of cumsum).
// Float dtypes accumulate in f32 (f64 for f64); integer inputs give i64.
absl::StatusOr<Tensor> Cumsum(const Tensor& x, int dim, bool reverse = false);

}  // namespace lyra

#endif  // LYRA_TENSOR_REDUCE_H_
