// Mamba-1 selective scan (S6): forward, backward and the single-step state update.
//
// Dimension letters (mamba/README.md): B batch, D channels (d_inner), L length, N state size,
// G groups of channels sharing B and C (channel d belongs to group g = d / (D / G)).
//
// Forward, per (b, d) and time t, with the state x_t[n] (n < N):
//   delta'_t = softplus(delta[b, d, t] + delta_bias[d])      (or without softplus / bias)
//   a_t[n]   = exp(delta'_t * A[d, n])                         a_t = 0 where the state resets
//   x_t[n]   = a_t[n] * x_{t-1}[n] + delta'_t * B[b, g, n, t] * u[b, d, t]
//   out_t    = sum_n C[b, g, n, t] * x_t[n] + D[d] * u[b, d, t]
//   y_t      = out_t * silu(z[b, d, t])                        (y_t = out_t without z)
// x_{-1} = initial_state[b, d, :] (or 0). With seq_idx the state resets to 0 (not to the initial
// state) at every t > 0 where seq_idx[b, t] != seq_idx[b, t-1] (packed documents): a_t = 0
// there. final_state = x_{L-1}. This is transformers' MambaMixer.slow_forward.
//
// Backward, with dout_t = dy_t * silu(z_t) and the state adjoint h_t[n] = dLoss / dx_t[n]:
//   h_{L-1} = dout_{L-1} C_{L-1} + dfinal_state,   h_t = dout_t C_t + a_{t+1} h_{t+1}
//   dz_t    = dy_t * out_t * silu'(z_t)             dD[d]  = sum_{b,t} dout_t u_t
//   du_t    = dout_t D + sum_n h_t[n] delta'_t B_t[n]
//   ddelta'_t = sum_n h_t[n] (B_t[n] u_t + x_{t-1}[n] a_t[n] A[n])
//   ddelta_t  = ddelta'_t * sigmoid(delta_t + delta_bias)  (softplus' ; 1 without softplus)
//   dA[d, n]  = sum_{b,t} h_t[n] x_{t-1}[n] a_t[n] delta'_t
//   dB[b, g, n, t] = sum_{d in g} h_t[n] delta'_t u_t      dC[b, g, n, t] = sum_{d in g} dout_t x_t[n]
//   ddelta_bias[d] = sum_{b,t} ddelta_t                     dinitial_state = a_0 h_0
//
// Layouts: every tensor is strided (64-bit strides in elements); u, delta, z, y, dy and their
// gradients (B, D, L); A (D, N); B, C (B, G, N, L); states (B, D, N). The CUDA kernels need unit
// stride along L for (B, D, L) and (B, G, N, L) operands and contiguous states (the tensor layer
// makes them so).
//
// Dtypes: u, delta, z, y share `dtype`: f32, f16, bf16, or f64 (CPU only). B and C share
// `bc_dtype`: f32 or `dtype`. A, D, delta_bias and all states are f32 (f64 when dtype is f64).
// seq_idx is i32. Arithmetic in f32 (f64 for f64). Every output is written (=), never
// accumulated. The CPU reference sums the reductions over (b, t) and over channels in f64; the
// CUDA backward reduces them deterministically (per-block partials, then a fixed-order sum).
#ifndef LYRA_CUDA_SELECTIVE_SCAN_H_
#define LYRA_CUDA_SELECTIVE_SCAN_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"

namespace lyra::cuda {

// State sizes 1 .. kSelectiveScanMaxState are supported (the CUDA kernels round N up to the next
// power of two >= 16 and keep a slice of the state of each channel in each thread's registers).
inline constexpr int kSelectiveScanMaxState = 256;
// The forward saves the state entering each chunk of kSelectiveScanChunk time steps (the
// backward recomputes the states of a chunk from it): chunk_states is (B, D, n_chunks, N),
// n_chunks = ceil(L / kSelectiveScanChunk), contiguous, in the state dtype.
inline constexpr int kSelectiveScanChunk = 64;

inline int64_t SelectiveScanNumChunks(int64_t length) {
  return (length + kSelectiveScanChunk - 1) / kSelectiveScanChunk;
}

struct SelectiveScanParams {
  int64_t batch = 0;   // B
  int64_t dim = 0;     // D
  int64_t length = 0;  // L
  int64_t dstate = 0;  // N
  int64_t groups = 1;  // G (divides D)
  bool delta_softplus = true;

  DType dtype = DType::kF32;     // u, delta, z, y
  DType bc_dtype = DType::kF32;  // B, C: f32 or dtype

  const void* u = nullptr;  // (B, D, L)
  int64_t u_stride_b = 0, u_stride_d = 0, u_stride_l = 0;
  const void* delta = nullptr;  // (B, D, L)
  int64_t delta_stride_b = 0, delta_stride_d = 0, delta_stride_l = 0;
  const void* A = nullptr;  // (D, N), param dtype (f32; f64 with f64)
  int64_t A_stride_d = 0, A_stride_n = 0;
  const void* B = nullptr;  // (B, G, N, L), bc_dtype
  int64_t B_stride_b = 0, B_stride_g = 0, B_stride_n = 0, B_stride_l = 0;
  const void* C = nullptr;  // (B, G, N, L), bc_dtype
  int64_t C_stride_b = 0, C_stride_g = 0, C_stride_n = 0, C_stride_l = 0;
  const void* D = nullptr;  // (D,), param dtype; may be null (no skip term)
  int64_t D_stride = 0;
  const void* z = nullptr;  // (B, D, L); may be null (no gate)
  int64_t z_stride_b = 0, z_stride_d = 0, z_stride_l = 0;
  const void* delta_bias = nullptr;  // (D,), param dtype; may be null
  int64_t delta_bias_stride = 0;
  const void* initial_state = nullptr;  // (B, D, N), state dtype; may be null (zeros)
  int64_t initial_state_stride_b = 0, initial_state_stride_d = 0, initial_state_stride_n = 0;
  const int32_t* seq_idx = nullptr;  // (B, L); may be null
  int64_t seq_idx_stride_b = 0, seq_idx_stride_l = 0;

  void* y = nullptr;  // (B, D, L), dtype (=); may be null in the CUDA states-only pass
  int64_t y_stride_b = 0, y_stride_d = 0, y_stride_l = 0;
  void* final_state = nullptr;  // (B, D, N), state dtype (=); may be null
  int64_t final_state_stride_b = 0, final_state_stride_d = 0, final_state_stride_n = 0;
  // (B, D, n_chunks, N) contiguous, state dtype (=); may be null. The CUDA backward needs it.
  void* chunk_states = nullptr;
};

// The forward's inputs (its outputs are ignored) plus the gradients.
struct SelectiveScanBackwardParams {
  SelectiveScanParams forward;

  const void* dy = nullptr;  // (B, D, L), dtype
  int64_t dy_stride_b = 0, dy_stride_d = 0, dy_stride_l = 0;
  const void* dfinal_state = nullptr;  // (B, D, N), state dtype; may be null (zero)
  int64_t dfinal_state_stride_b = 0, dfinal_state_stride_d = 0, dfinal_state_stride_n = 0;
  // The forward's chunk_states (see SelectiveScanParams): required by the CUDA backward,
  // ignored by the reference (which recomputes every state).
  const void* chunk_states = nullptr;

  void* du = nullptr;  // (B, D, L), dtype (=)
  int64_t du_stride_b = 0, du_stride_d = 0, du_stride_l = 0;
  void* ddelta = nullptr;  // (B, D, L), dtype (=)
  int64_t ddelta_stride_b = 0, ddelta_stride_d = 0, ddelta_stride_l = 0;
  void* dA = nullptr;  // (D, N), param dtype (=)
  int64_t dA_stride_d = 0, dA_stride_n = 0;
  void* dB = nullptr;  // (B, G, N, L), bc_dtype (=)
  int64_t dB_stride_b = 0, dB_stride_g = 0, dB_stride_n = 0, dB_stride_l = 0;
  void* dC = nullptr;  // (B, G, N, L), bc_dtype (=)
  int64_t dC_stride_b = 0, dC_stride_g = 0, dC_stride_n = 0, dC_stride_l = 0;
  void* dD = nullptr;  // (D,), param dtype (=); null without D
  int64_t dD_stride = 0;
  void* dz = nullptr;  // (B, D, L), dtype (=); null without z
  int64_t dz_stride_b = 0, dz_stride_d = 0, dz_stride_l = 0;
  void* ddelta_bias = nullptr;  // (D,), param dtype (=); null without delta_bias
  int64_t ddelta_bias_stride = 0;
  void* dinitial_state = nullptr;  // (B, D, N), state dtype (=); may be null
  int64_t dinitial_state_stride_b = 0, dinitial_state_stride_d = 0,
          dinitial_state_stride_n = 0;
};

// One generation step: the forward's math for a single time step on a state updated in place.
struct SelectiveStateUpdateParams {
  int64_t batch = 0;   // B
  int64_t dim = 0;     // D
  int64_t dstate = 0;  // N
  int64_t groups = 1;  // G
  bool dt_softplus = true;
  DType dtype = DType::kF32;     // x, dt, z, y
  DType bc_dtype = DType::kF32;  // B, C

  void* state = nullptr;  // (B, D, N), state dtype: read, then overwritten with the new state
  int64_t state_stride_b = 0, state_stride_d = 0, state_stride_n = 0;
  const void* x = nullptr;  // (B, D)
  int64_t x_stride_b = 0, x_stride_d = 0;
  const void* dt = nullptr;  // (B, D)
  int64_t dt_stride_b = 0, dt_stride_d = 0;
  const void* A = nullptr;  // (D, N), param dtype
  int64_t A_stride_d = 0, A_stride_n = 0;
  const void* B = nullptr;  // (B, G, N)
  int64_t B_stride_b = 0, B_stride_g = 0, B_stride_n = 0;
  const void* C = nullptr;  // (B, G, N)
  int64_t C_stride_b = 0, C_stride_g = 0, C_stride_n = 0;
  const void* D = nullptr;  // (D,), may be null
  int64_t D_stride = 0;
  const void* z = nullptr;  // (B, D), may be null
  int64_t z_stride_b = 0, z_stride_d = 0;
  const void* dt_bias = nullptr;  // (D,), may be null
  int64_t dt_bias_stride = 0;
  void* y = nullptr;  // (B, D), dtype (=)
  int64_t y_stride_b = 0, y_stride_d = 0;
};

// The "is this supported" predicates. InvalidArgument for negative sizes, G not dividing D, a
// missing required pointer, or dtypes outside the policy above; Unimplemented for N outside
// [1, kSelectiveScanMaxState], f64 on CUDA (`cuda` true), and on CUDA for non-unit L strides,
// non-contiguous chunk states or grids beyond the launch limits (B > 65535). Sizes of zero are
// accepted (the tensor layer handles them).
absl::Status SelectiveScanSupported(const SelectiveScanParams& p, bool cuda);
absl::Status SelectiveScanBackwardSupported(const SelectiveScanBackwardParams& p, bool cuda);
absl::Status SelectiveStateUpdateSupported(const SelectiveStateUpdateParams& p, bool cuda);

// The naive CPU loops (chunk_states, when non-null, is filled too).
absl::Status SelectiveScanReference(const SelectiveScanParams& p);
absl::Status SelectiveScanBackwardReference(const SelectiveScanBackwardParams& p);
absl::Status SelectiveStateUpdateReference(const SelectiveStateUpdateParams& p);

// CUDA launchers on `stream` (the device must be current); every size must be positive. The
// forward may run with y null (only the states are wanted). The backward takes its workspace
// (per-block partials of dA, dD, ddelta_bias, dB, dC) from the device's caching allocator.
absl::Status SelectiveScanCuda(const SelectiveScanParams& p, cudaStream_t stream);
absl::Status SelectiveScanBackwardCuda(const SelectiveScanBackwardParams& p, cudaStream_t stream);
absl::Status SelectiveStateUpdateCuda(const SelectiveStateUpdateParams& p, cudaStream_t stream);

// Version 1 of the forward kernel: one thread per (b, d) walking L with all N states in a local
// array, every operand read straight from global memory. Kept as the benchmark's baseline (and
// tested against the reference). Writes y and final_state only.
absl::Status SelectiveScanNaiveCuda(const SelectiveScanParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_SELECTIVE_SCAN_H_
