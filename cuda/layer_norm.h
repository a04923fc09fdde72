// LayerNorm over the last dimension, with an optional fused residual add, forward and backward.
//
// Layout and types as cuda/rms_norm.h: `rows` rows of `hidden` (H) contiguous elements, a row
// stride per operand; T is x's storage type, C = ComputeType<T> for residual, residual_out,
// weight, bias and the row statistics.
//
// Forward, for every row:
//   h    = x + residual                              residual optional (then h = x)
//   mean = mean_j(h_j),  var = mean_j((h_j - mean)^2)   (biased, as torch)
//   rstd = 1 / sqrt(var + eps)
//   y    = T((h - mean) * rstd * weight + bias)        bias optional; one rounding to T
//   residual_out = h (optional output)
// (torch's LayerNorm rounds once, so unlike RMSNorm there is no intermediate rounding.)
//
// Backward:
//   xhat = (h - mean) * rstd,  g = dy * weight
//   dh   = rstd * (g - mean_j(g) - xhat * mean_j(g * xhat)) + dresidual_out
//   dx   = T(dh),  dresidual = dh in C (optional)
//   dweight = sum_rows(dy * xhat),  dbias = sum_rows(dy)   (in C)
//
// Precision: all statistics and sums in C (the CUDA forward combines per-thread Welford
// (count, mean, M2) triples; the reference takes two passes). Outputs are written (=). dweight
// and dbias are reduced deterministically (per-block partials, then a fixed-order sum).
#ifndef LYRA_CUDA_LAYER_NORM_H_
#define LYRA_CUDA_LAYER_NORM_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "cuda/rms_norm.h"  // kNormMaxGradSharedBytes

namespace lyra::cuda {

struct LayerNormForwardParams {
  DType dtype = DType::kF32;  // of x and y
  int64_t rows = 0;
  int64_t hidden = 0;
  double eps = 1e-5;

  const void* x = nullptr;  // (rows, H) T
  int64_t x_stride = 0;
  const void* residual = nullptr;  // (rows, H) C, or null
  int64_t residual_stride = 0;
  const void* weight = nullptr;  // (H) C, contiguous
  const void* bias = nullptr;    // (H) C, contiguous, or null (zero)
  void* y = nullptr;  // (rows, H) T
  int64_t y_stride = 0;
  void* residual_out = nullptr;  // (rows, H) C, or null
  int64_t residual_out_stride = 0;
  void* mean = nullptr;  // (rows) C
  void* rstd = nullptr;  // (rows) C
};

struct LayerNormBackwardParams {
  DType dtype = DType::kF32;  // of dy and dx
  int64_t rows = 0;
  int64_t hidden = 0;

  const void* dy = nullptr;  // (rows, H) T
  int64_t dy_stride = 0;
  const void* dresidual_out = nullptr;  // (rows, H) C, or null
  int64_t dresidual_out_stride = 0;
  const void* h = nullptr;  // (rows, H) C: the forward's residual_out (or x)
  int64_t h_stride = 0;
  const void* weight = nullptr;  // (H) C, contiguous
  const void* mean = nullptr;    // (rows) C
  const void* rstd = nullptr;    // (rows) C
  void* dx = nullptr;  // (rows, H) T
  int64_t dx_stride = 0;
  void* dresidual = nullptr;  // (rows, H) C, or null
  int64_t dresidual_stride = 0;
  void* dweight = nullptr;  // (H) C
  void* dbias = nullptr;    // (H) C, or null: not computed
};

// As RmsNormSupported; the shared-memory limit counts dweight and dbias: H <= 16384 for f32
// math, 8192 for f64.
absl::Status LayerNormSupported(const LayerNormForwardParams& p);
absl::Status LayerNormSupported(const LayerNormBackwardParams& p);

absl::Status LayerNormForwardReference(const LayerNormForwardParams& p);
absl::Status LayerNormBackwardReference(const LayerNormBackwardParams& p);
absl::Status LayerNormForwardCuda(const LayerNormForwardParams& p, cudaStream_t stream);
absl::Status LayerNormBackwardCuda(const LayerNormBackwardParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_LAYER_NORM_H_
