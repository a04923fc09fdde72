// Causal depthwise 1-d convolution (the short convolution of Mamba-1 and Mamba-2), its backward
// and its single-step update for generation.
//
// Dimension letters: B batch, D channels, L length, K kernel width (Mamba: K = 4).
//
//   pre[b, d, t] = bias[d] + sum_{k=0}^{K-1} w[d, k] * xs[b, d, t - (K-1) + k] * m[b, t, k]
//   y[b, d, t]   = act(pre[b, d, t]),   act = identity or SiLU (pre * sigmoid(pre))
//
// where xs extends x to the left: xs[b, d, t'] = x[b, d, t'] for t' >= 0, and for t' < 0 it is
// initial_state[b, d, t' + K - 1] when an initial state is given, else 0. The mask m is 1
// without seq_idx; with seq_idx (packed batches) m[b, t, k] = 1 iff seq(b, t') == seq(b, t) for
// t' = t - (K-1) + k, where seq(b, t') = seq_idx[b, t'] for t' >= 0 and seq_idx[b, 0] for t' < 0
// (an initial state continues the row's first document). No information crosses a document
// boundary.
//
// final_state[b, d, j] = xs[b, d, L - (K-1) + j], j in [0, K-1): the last K-1 inputs of each
// row (reaching into the initial state, or zeros, when L < K-1), which is what the next
// CausalConv1dUpdate needs. It is not masked by seq_idx.
//
// Backward (dpre = dy * act'(pre), pre recomputed from x, never saved):
//   dx[b, d, t']    = sum_k w[d, k] * dpre[b, d, t' + (K-1) - k] * m[b, t' + (K-1) - k, k]
//                     (terms with t' + (K-1) - k >= L dropped)
//   dinitial_state  = the same sum at t' = j - (K-1) < 0
//   dw[d, k]        = sum_{b, t} dpre[b, d, t] * xs[b, d, t - (K-1) + k] * m[b, t, k]
//   dbias[d]        = sum_{b, t} dpre[b, d, t]
// The final state carries no gradient.
//
// Update (one generation step, in place on conv_state):
//   window = [conv_state[b, d, 0 .. K-2], x_t[b, d]]
//   y_t[b, d] = act(bias[d] + sum_k w[d, k] * window[k]);  conv_state[b, d, :] = window[1 .. K-1]
// which equals column t of the full forward when conv_state holds inputs t-(K-1) .. t-1.
//
// Layouts: every tensor is strided (64-bit strides in elements, any sign, 0 for broadcasts), so
// x / y / dy / dx may be channel-first [B, D, L] (Mamba-1) or a transposed channel-last [B, L, D]
// buffer (Mamba-2). The CUDA kernels stage (D, L) tiles in shared memory and walk each operand
// along its smaller stride, so both layouts read and write coalesced.
//
// Dtypes: x, y, initial / final state, dy, dx, dinitial_state share one dtype: f32, f16, bf16, or
// f64 (CPU only). weight and bias are f32 or x's dtype (both the same); dweight / dbias have
// theirs. seq_idx is i32. Accumulation in f32 (f64 for f64 on the CPU; the CPU reference sums
// dweight / dbias in f64). Every output is written (=), never accumulated; dweight / dbias are
// reduced deterministically (per-block partials, then a fixed-order sum: no atomics).
#ifndef LYRA_CUDA_CONV1D_H_
#define LYRA_CUDA_CONV1D_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"

namespace lyra::cuda {

// Widths 1 .. kCausalConv1dMaxWidth are supported (the kernels keep K taps in registers and a
// halo of K - 1 columns per tile).
inline constexpr int kCausalConv1dMaxWidth = 8;

struct CausalConv1dParams {
  int64_t batch = 0;     // B
  int64_t channels = 0;  // D
  int64_t length = 0;    // L
  int width = 0;         // K
  bool silu = false;

  const void* x = nullptr;  // (B, D, L), `dtype`
  DType dtype = DType::kF32;
  int64_t x_stride_b = 0, x_stride_d = 0, x_stride_l = 0;

  const void* weight = nullptr;  // (D, K), `weight_dtype`
  DType weight_dtype = DType::kF32;
  int64_t weight_stride_d = 0, weight_stride_k = 0;

  const void* bias = nullptr;  // (D,), `weight_dtype`; may be null (no bias)
  int64_t bias_stride = 0;

  const int32_t* seq_idx = nullptr;  // (B, L); may be null
  int64_t seq_idx_stride_b = 0, seq_idx_stride_l = 0;

  const void* initial_state = nullptr;  // (B, D, K-1), `dtype`; may be null (zeros)
  int64_t initial_state_stride_b = 0, initial_state_stride_d = 0, initial_state_stride_k = 0;

  void* y = nullptr;  // (B, D, L), `dtype`; forward output (=)
  int64_t y_stride_b = 0, y_stride_d = 0, y_stride_l = 0;

  void* final_state = nullptr;  // (B, D, K-1), `dtype`; may be null (=)
  int64_t final_state_stride_b = 0, final_state_stride_d = 0, final_state_stride_k = 0;
};

// The forward's inputs (`forward.y` and `forward.final_state` are ignored) plus the gradients.
struct CausalConv1dBackwardParams {
  CausalConv1dParams forward;

  const void* dy = nullptr;  // (B, D, L), `dtype`
  int64_t dy_stride_b = 0, dy_stride_d = 0, dy_stride_l = 0;

  void* dx = nullptr;  // (B, D, L), `dtype` (=)
  int64_t dx_stride_b = 0, dx_stride_d = 0, dx_stride_l = 0;

  void* dweight = nullptr;  // (D, K), `weight_dtype` (=)
  int64_t dweight_stride_d = 0, dweight_stride_k = 0;

  void* dbias = nullptr;  // (D,), `weight_dtype` (=); null when there is no bias
  int64_t dbias_stride = 0;

  void* dinitial_state = nullptr;  // (B, D, K-1), `dtype` (=); may be null
  int64_t dinitial_state_stride_b = 0, dinitial_state_stride_d = 0,
          dinitial_state_stride_k = 0;
};

struct CausalConv1dUpdateParams {
  int64_t batch = 0;     // B
  int64_t channels = 0;  // D
  int width = 0;         // K
  bool silu = false;

  const void* x = nullptr;  // (B, D), `dtype`: the new input column x_t
  DType dtype = DType::kF32;
  int64_t x_stride_b = 0, x_stride_d = 0;

  void* conv_state = nullptr;  // (B, D, K-1), `dtype`: read, then shifted in place
  int64_t state_stride_b = 0, state_stride_d = 0, state_stride_k = 0;

  const void* weight = nullptr;  // (D, K), `weight_dtype`
  DType weight_dtype = DType::kF32;
  int64_t weight_stride_d = 0, weight_stride_k = 0;

  const void* bias = nullptr;  // (D,), may be null
  int64_t bias_stride = 0;

  void* y = nullptr;  // (B, D), `dtype` (=)
  int64_t y_stride_b = 0, y_stride_d = 0;
};

// The "is this supported" predicates: InvalidArgument for negative sizes, a missing required
// pointer, a non-float dtype or a weight dtype other than f32 / x's dtype; Unimplemented for a
// width outside [1, kCausalConv1dMaxWidth], f64 on CUDA (`cuda` true), and on CUDA for grids
// beyond the launch limits (B > 65535, L > 65535 * 64). Sizes of zero are accepted (nothing to
// compute; the tensor layer handles them).
absl::Status CausalConv1dSupported(const CausalConv1dParams& p, bool cuda);
absl::Status CausalConv1dBackwardSupported(const CausalConv1dBackwardParams& p, bool cuda);
absl::Status CausalConv1dUpdateSupported(const CausalConv1dUpdateParams& p, bool cuda);

// The naive CPU loops.
absl::Status CausalConv1dReference(const CausalConv1dParams& p);
absl::Status CausalConv1dBackwardReference(const CausalConv1dBackwardParams& p);
absl::Status CausalConv1dUpdateReference(const CausalConv1dUpdateParams& p);

// CUDA launchers on `stream` (the device must be current). Every size must be positive. The
// backward takes a small workspace (the dweight / dbias partials) from the device's caching
// allocator.
absl::Status CausalConv1dCuda(const CausalConv1dParams& p, cudaStream_t stream);
absl::Status CausalConv1dBackwardCuda(const CausalConv1dBackwardParams& p, cudaStream_t stream);
absl::Status CausalConv1dUpdateCuda(const CausalConv1dUpdateParams& p, cudaStream_t stream);

// Version 1 of the forward kernel: one thread per output reading its K inputs straight from
// global memory. Kept as the benchmark's baseline (and tested against the reference).
absl::Status CausalConv1dNaiveCuda(const CausalConv1dParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_CONV1D_H_
