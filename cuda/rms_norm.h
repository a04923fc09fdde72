// RMSNorm over the last dimension, with an optional fused residual add (Mamba's pre-norm block
// with residual_in_fp32), forward and backward.
//
// Every tensor is a matrix of `rows` rows of `hidden` (H) contiguous elements; each operand has
// its own row stride (elements). T is x's storage type, C = ComputeType<T> (f32 for f32 / f16 /
// bf16, f64 for f64): residual, residual_out, weight and the row statistics are C.
//
// Forward, for every row:
//   h    = x + residual                           residual optional (then h = x)
//   rstd = 1 / sqrt(mean_j(h_j^2) + eps)
//   y    = T(T(h * rstd) * weight)                residual_out = h (optional output)
// The normalised value is rounded to T BEFORE the weight multiply, as Hugging Face's
// MambaRMSNorm does (`weight * hidden_states.to(input_dtype)`); for f32 / f64 the rounding is the
// identity. The product with the weight is formed in C and rounded once more to T.
//
// Backward (the rounding to T is treated as the identity, as autograd treats a cast):
//   xhat = h * rstd,  g = dy * weight
//   dh   = rstd * (g - xhat * mean_j(g * xhat)) + dresidual_out      (dresidual_out optional)
//   dx   = T(dh),  dresidual = dh in C (optional),  dweight = sum_rows(dy * T(xhat)) in C
// `h` is the forward's residual_out (or x, converted to C by the caller). rstd is the forward's.
//
// Precision: every sum (the statistics, the row dot products, dweight) accumulates in C. All
// outputs are written (=), never accumulated. dweight is reduced deterministically (per-block
// partials, then a fixed-order sum over the blocks; no atomics).
#ifndef LYRA_CUDA_RMS_NORM_H_
#define LYRA_CUDA_RMS_NORM_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/dtype.h"

namespace lyra::cuda {

// The CUDA backward keeps one block's dweight (and dbias) partial sums, hidden * sizeof(C) bytes
// each, in shared memory; the row width is limited to what fits, on every device alike (so a
// model that runs on the CPU runs on the GPU): H <= 32768 for f32 math, 16384 for f64.
inline constexpr int64_t kNormMaxGradSharedBytes = int64_t{128} << 10;

struct RmsNormForwardParams {
  DType dtype = DType::kF32;  // of x and y; everything else is ComputeType
  int64_t rows = 0;
  int64_t hidden = 0;  // H
  double eps = 1e-5;

  const void* x = nullptr;  // (rows, H) T
  int64_t x_stride = 0;
  const void* residual = nullptr;  // (rows, H) C, or null: h = x
  int64_t residual_stride = 0;
  const void* weight = nullptr;  // (H) C, contiguous
  void* y = nullptr;  // (rows, H) T
  int64_t y_stride = 0;
  void* residual_out = nullptr;  // (rows, H) C, or null: not written
  int64_t residual_out_stride = 0;
  void* rstd = nullptr;  // (rows) C
};

struct RmsNormBackwardParams {
  DType dtype = DType::kF32;  // of dy and dx
  int64_t rows = 0;
  int64_t hidden = 0;

  const void* dy = nullptr;  // (rows, H) T
  int64_t dy_stride = 0;
  const void* dresidual_out = nullptr;  // (rows, H) C, or null (zero)
  int64_t dresidual_out_stride = 0;
  const void* h = nullptr;  // (rows, H) C: the forward's residual_out (or x)
  int64_t h_stride = 0;
  const void* weight = nullptr;  // (H) C, contiguous
  const void* rstd = nullptr;    // (rows) C
  void* dx = nullptr;  // (rows, H) T
  int64_t dx_stride = 0;
  void* dresidual = nullptr;  // (rows, H) C, or null: not written
  int64_t dresidual_stride = 0;
  void* dweight = nullptr;  // (H) C
};

// The checks shared by the RMSNorm and LayerNorm predicates: a float dtype, rows in
// [0, 2^31), hidden >= 1, and `weight_grads` (1 for dweight, 2 for dweight and dbias) partial rows
// of hidden compute-type values within kNormMaxGradSharedBytes. `op` names the caller.
absl::Status NormRowsSupported(absl::string_view op, DType dtype, int64_t rows, int64_t hidden,
                               int weight_grads);

// OK if the kernels (CPU and CUDA) handle `p`: InvalidArgument for a non-float dtype, a missing
// pointer, negative sizes or an eps that is negative or NaN; Unimplemented for rows >= 2^31 or
// H above the kNormMaxGradSharedBytes limit.
absl::Status RmsNormSupported(const RmsNormForwardParams& p);
absl::Status RmsNormSupported(const RmsNormBackwardParams& p);

absl::Status RmsNormForwardReference(const RmsNormForwardParams& p);
absl::Status RmsNormBackwardReference(const RmsNormBackwardParams& p);
// On `stream`, which must be the device's current stream (the backward's scratch buffer is
// returned to the caching allocator in that stream's order).
absl::Status RmsNormForwardCuda(const RmsNormForwardParams& p, cudaStream_t stream);
absl::Status RmsNormBackwardCuda(const RmsNormBackwardParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_RMS_NORM_H_
