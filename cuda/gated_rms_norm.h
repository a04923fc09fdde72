// Gated, grouped RMSNorm: Mamba-2's norm after the SSD (mamba_ssm's RMSNormGated with
// norm_before_gate=False; Hugging Face's MambaRMSNormGated when there is one group), forward and
// backward.
//
// Every row operand is a matrix of `rows` rows of `hidden` (H) contiguous elements with its own
// row stride (elements). A row is cut into H / S groups of S = `group_size` consecutive channels
// and each group is normalised on its own. T is the storage type of x, z, y, dy, dx, dz; C =
// ComputeType<T> (f32 for f32 / f16 / bf16, f64 for f64): weight, rstd and dweight are C.
//
// Forward, for every row and every group g (channels j in [g S, (g + 1) S)):
//   h_j       = x_j * silu(z_j)                     (z optional: then h_j = x_j)
//   rstd[r,g] = 1 / sqrt(mean_{j in g}(h_j^2) + eps)
//   n_j       = h_j * rstd[r, g]
//   y_j       = T(T(n_j) * weight_j)
// exactly Hugging Face's order: `x.to(f32) * silu(gate.to(f32))`, normalised in f32, then
// `weight * normed.to(input_dtype)`: the normalised value is rounded to T before the weight
// multiply, the product formed in C and rounded once more to T (both roundings are the identity
// for f32 / f64).
//
// Backward (the rounding to T is treated as the identity, as autograd treats a cast):
//   g_j  = dy_j * weight_j
//   dh_j = rstd * (g_j - n_j * mean_{k in g}(g_k n_k))
//   dx_j = T(dh_j * silu(z_j))
//   dz_j = T(dh_j * x_j * silu'(z_j)),  silu'(z) = s (1 + z (1 - s)),  s = sigmoid(z)
//   dweight_j = sum_rows dy_j * T(n_j)
// rstd is the forward's. Without z: dx = T(dh), no dz.
//
// Precision: all elementwise arithmetic in C. The CUDA kernels sum in C; the CPU reference sums
// (the group statistics, the row dot products, dweight) in f64 and rounds the result to C.
// Outputs are written (=), never accumulated. dweight is reduced deterministically (per-block
// partials, then a fixed-order sum over the blocks; no atomics).
#ifndef LYRA_CUDA_GATED_RMS_NORM_H_
#define LYRA_CUDA_GATED_RMS_NORM_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"

namespace lyra::cuda {

// The CUDA kernels run one (row, group) per block with the groups on gridDim.y.
inline constexpr int64_t kGatedNormMaxGroups = 65535;

struct GatedRmsNormForwardParams {
  DType dtype = DType::kF32;  // of x, z and y; weight and rstd are ComputeType
  int64_t rows = 0;
  int64_t hidden = 0;      // H
  int64_t group_size = 0;  // S, divides H
  double eps = 1e-5;

  const void* x = nullptr;  // (rows, H) T
  int64_t x_stride = 0;
  const void* z = nullptr;  // (rows, H) T, or null: no gate
  int64_t z_stride = 0;
  const void* weight = nullptr;  // (H) C, contiguous
  void* y = nullptr;             // (rows, H) T
  int64_t y_stride = 0;
  void* rstd = nullptr;  // (rows, H / S) C, contiguous
};

struct GatedRmsNormBackwardParams {
  DType dtype = DType::kF32;  // of dy, x, z, dx, dz
  int64_t rows = 0;
  int64_t hidden = 0;
  int64_t group_size = 0;

  const void* dy = nullptr;  // (rows, H) T
  int64_t dy_stride = 0;
  const void* x = nullptr;  // (rows, H) T: the forward's x
  int64_t x_stride = 0;
  const void* z = nullptr;  // (rows, H) T, or null (the forward had no gate)
  int64_t z_stride = 0;
  const void* weight = nullptr;  // (H) C, contiguous
  const void* rstd = nullptr;    // (rows, H / S) C: the forward's
  void* dx = nullptr;            // (rows, H) T
  int64_t dx_stride = 0;
  void* dz = nullptr;  // (rows, H) T; required with z, ignored without
  int64_t dz_stride = 0;
  void* dweight = nullptr;  // (H) C
};

// OK if the kernels (CPU and CUDA) handle `p`: InvalidArgument for a non-float dtype, a missing
// pointer, negative sizes, a group size that does not divide H, or an eps that is negative or
// NaN; Unimplemented for rows >= 2^31, more than kGatedNormMaxGroups groups, or S above the
// shared-memory limit of the backward's dweight partials (kNormMaxGradSharedBytes: S <= 32768 for
// f32 math, 16384 for f64).
absl::Status GatedRmsNormSupported(const GatedRmsNormForwardParams& p);
absl::Status GatedRmsNormSupported(const GatedRmsNormBackwardParams& p);

absl::Status GatedRmsNormForwardReference(const GatedRmsNormForwardParams& p);
absl::Status GatedRmsNormBackwardReference(const GatedRmsNormBackwardParams& p);
// On `stream`, which must be the device's current stream (the backward's scratch buffer is
// returned to the caching allocator in that stream's order).
absl::Status GatedRmsNormForwardCuda(const GatedRmsNormForwardParams& p, cudaStream_t stream);
absl::Status GatedRmsNormBackwardCuda(const GatedRmsNormBackwardParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_GATED_RMS_NORM_H_
