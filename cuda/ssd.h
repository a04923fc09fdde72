// Mamba-2 SSD (state-space duality): the chunked scan forward, its backward and the single-step
// state update for generation.
//
// Dimension letters (mamba/README.md): B batch, L length, H heads, P head dim, N state size,
// G groups of heads sharing B and C (head h belongs to group g = h / (H / G)), Q chunk length.
//
// Forward, per (b, h), time t, head-dim p and state n, with the state S_t[p, n]:
//   dt'_t  = softplus(dt[b, t, h] + dt_bias[h])       (or without softplus / bias)
//   dt'_t  = clamp(dt'_t, dt_min, dt_max)              (0 and +inf by default: no clamp)
//   a_t    = exp(dt'_t * A[h])                          a_t = 0 where the state resets
//   S_t    = a_t * S_{t-1} + dt'_t * x[b, t, h, :] ⊗ B[b, t, g, :]
//   out_t  = S_t C[b, t, g, :] + D[h] * x[b, t, h, :]   (D per head [H] or per head dim [H, P])
//   y_t    = out_t * silu(z[b, t, h, :])                (y_t = out_t without z)
// S_{-1} = initial_state[b, h] (or 0). With seq_idx the state resets to 0 (not to the initial
// state) at every t > 0 where seq_idx[b, t] != seq_idx[b, t-1] (packed documents): a_t = 0 there.
// final_state = S_{L-1}. This is transformers' Mamba2Mixer.torch_forward without the gated norm
// (and mamba_ssm's mamba_chunk_scan_combined). The chunked algorithm (what the CUDA kernels and
// the chunked reference compute) splits time into chunks of Q steps: within a chunk the output is
// the masked quadratic form (C Bᵀ ∘ decay mask ∘ dt') X plus C times the state entering the chunk
// scaled by the decay so far; the chunk's final state is passed on to the next chunk.
//
// Backward: gradients of every defined input — dx, ddt (with respect to the raw dt, through the
// clamp (zero where clamped) and softplus), dA, dB, dC, dD, dz, ddt_bias and dinitial_state —
// for the upstream dy and an optional dfinal_state.
//
// Layouts: every tensor is strided (64-bit strides in elements); x, z, y and their gradients
// (B, L, H, P); dt (B, L, H); B, C (B, L, G, N); A, dt_bias (H); D (H) or (H, P); states
// (B, H, P, N); seq_idx (B, L). The CUDA kernels need unit stride along P for x, z, y, dy and
// along N for B and C, and contiguous states (the tensor layer makes them so).
//
// Dtypes: x, z, y, dt, B, C share `dtype`: f32, f16, bf16, or f64 (CPU only). A, D, dt_bias and
// all states are f32 (f64 when dtype is f64). seq_idx is i32. Arithmetic in f32 (f64 for f64),
// 16-bit tensor-core products with f32 accumulation on CUDA. Every output is written (=), never
// accumulated.
#ifndef LYRA_CUDA_SSD_H_
#define LYRA_CUDA_SSD_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "base/dtype.h"

namespace lyra::cuda {

// head_dim P and state size N up to kSsdMaxDim are supported.
inline constexpr int kSsdMaxDim = 256;

inline int64_t SsdNumChunks(int64_t length, int64_t chunk) { return (length + chunk - 1) / chunk; }

struct SsdParams {
  int64_t batch = 0;    // B
  int64_t length = 0;   // L
  int64_t heads = 0;    // H
  int64_t head_dim = 0; // P
  int64_t dstate = 0;   // N
  int64_t groups = 1;   // G (divides H)
  int64_t chunk = 256;  // Q: the chunk length of the chunked algorithm (a power of two, 16..256)
  bool dt_softplus = true;
  double dt_min = 0.0;  // clamp of dt' (after bias and softplus)
  double dt_max = std::numeric_limits<double>::infinity();

  DType dtype = DType::kF32;  // x, dt, B, C, z, y

  const void* x = nullptr;  // (B, L, H, P)
  int64_t x_stride_b = 0, x_stride_l = 0, x_stride_h = 0, x_stride_p = 0;
  const void* dt = nullptr;  // (B, L, H): dt before bias / softplus
  int64_t dt_stride_b = 0, dt_stride_l = 0, dt_stride_h = 0;
  const void* A = nullptr;  // (H), param dtype (f32; f64 with f64)
  int64_t A_stride = 0;
  const void* B = nullptr;  // (B, L, G, N)
  int64_t B_stride_b = 0, B_stride_l = 0, B_stride_g = 0, B_stride_n = 0;
  const void* C = nullptr;  // (B, L, G, N)
  int64_t C_stride_b = 0, C_stride_l = 0, C_stride_g = 0, C_stride_n = 0;
  const void* D = nullptr;  // (H) or (H, P), param dtype; may be null (no skip term)
  bool D_per_head_dim = false;  // true: D is (H, P)
  int64_t D_stride_h = 0, D_stride_p = 0;
  const void* z = nullptr;  // (B, L, H, P); may be null (no gate)
  int64_t z_stride_b = 0, z_stride_l = 0, z_stride_h = 0, z_stride_p = 0;
  const void* dt_bias = nullptr;  // (H), param dtype; may be null
  int64_t dt_bias_stride = 0;
  const void* initial_state = nullptr;  // (B, H, P, N), state dtype; may be null (zeros)
  int64_t initial_state_stride_b = 0, initial_state_stride_h = 0, initial_state_stride_p = 0,
          initial_state_stride_n = 0;
  const int32_t* seq_idx = nullptr;  // (B, L); may be null
  int64_t seq_idx_stride_b = 0, seq_idx_stride_l = 0;

  void* y = nullptr;  // (B, L, H, P), dtype (=)
  int64_t y_stride_b = 0, y_stride_l = 0, y_stride_h = 0, y_stride_p = 0;
  void* final_state = nullptr;  // (B, H, P, N), state dtype (=); may be null
  int64_t final_state_stride_b = 0, final_state_stride_h = 0, final_state_stride_p = 0,
          final_state_stride_n = 0;
  // (B, n_chunks, H, P, N) contiguous, state dtype (=); may be null. Entry c is the state after
  // the last step of chunk c - 1 (initial_state or zeros for c = 0), before any reset at chunk
  // c's first step. Saved by the forward so the backward need not recompute the state passing.
  void* chunk_states = nullptr;
};

// The forward's inputs (its outputs are ignored) plus the gradients.
struct SsdBackwardParams {
  SsdParams forward;

  const void* dy = nullptr;  // (B, L, H, P), dtype
  int64_t dy_stride_b = 0, dy_stride_l = 0, dy_stride_h = 0, dy_stride_p = 0;
  const void* dfinal_state = nullptr;  // (B, H, P, N), state dtype; may be null (zero)
  int64_t dfinal_state_stride_b = 0, dfinal_state_stride_h = 0, dfinal_state_stride_p = 0,
          dfinal_state_stride_n = 0;
  // The forward's chunk_states (layout above) or null: the CUDA backward then recomputes them;
  // the reference ignores it.
  const void* chunk_states = nullptr;

  void* dx = nullptr;  // (B, L, H, P), dtype (=)
  int64_t dx_stride_b = 0, dx_stride_l = 0, dx_stride_h = 0, dx_stride_p = 0;
  void* ddt = nullptr;  // (B, L, H), dtype (=)
  int64_t ddt_stride_b = 0, ddt_stride_l = 0, ddt_stride_h = 0;
  void* dA = nullptr;  // (H), param dtype (=)
  int64_t dA_stride = 0;
  void* dB = nullptr;  // (B, L, G, N), dtype (=)
  int64_t dB_stride_b = 0, dB_stride_l = 0, dB_stride_g = 0, dB_stride_n = 0;
  void* dC = nullptr;  // (B, L, G, N), dtype (=)
  int64_t dC_stride_b = 0, dC_stride_l = 0, dC_stride_g = 0, dC_stride_n = 0;
  void* dD = nullptr;  // as D, param dtype (=); null without D
  int64_t dD_stride_h = 0, dD_stride_p = 0;
  void* dz = nullptr;  // (B, L, H, P), dtype (=); null without z
  int64_t dz_stride_b = 0, dz_stride_l = 0, dz_stride_h = 0, dz_stride_p = 0;
  void* ddt_bias = nullptr;  // (H), param dtype (=); null without dt_bias
  int64_t ddt_bias_stride = 0;
  void* dinitial_state = nullptr;  // (B, H, P, N), state dtype (=); may be null
  int64_t dinitial_state_stride_b = 0, dinitial_state_stride_h = 0, dinitial_state_stride_p = 0,
          dinitial_state_stride_n = 0;
};

// One generation step: the forward's math for a single time step on a state updated in place.
struct SsdStateUpdateParams {
  int64_t batch = 0;     // B
  int64_t heads = 0;     // H
  int64_t head_dim = 0;  // P
  int64_t dstate = 0;    // N
  int64_t groups = 1;    // G
  bool dt_softplus = true;
  double dt_min = 0.0;
  double dt_max = std::numeric_limits<double>::infinity();
  DType dtype = DType::kF32;  // x, dt, B, C, z, y

  void* state = nullptr;  // (B, H, P, N), state dtype: read, then overwritten with the new state
  int64_t state_stride_b = 0, state_stride_h = 0, state_stride_p = 0, state_stride_n = 0;
  const void* x = nullptr;  // (B, H, P)
  int64_t x_stride_b = 0, x_stride_h = 0, x_stride_p = 0;
  const void* dt = nullptr;  // (B, H)
  int64_t dt_stride_b = 0, dt_stride_h = 0;
  const void* A = nullptr;  // (H), param dtype
  int64_t A_stride = 0;
  const void* B = nullptr;  // (B, G, N)
  int64_t B_stride_b = 0, B_stride_g = 0, B_stride_n = 0;
  const void* C = nullptr;  // (B, G, N)
  int64_t C_stride_b = 0, C_stride_g = 0, C_stride_n = 0;
  const void* D = nullptr;  // (H) or (H, P); may be null
  bool D_per_head_dim = false;
  int64_t D_stride_h = 0, D_stride_p = 0;
  const void* z = nullptr;  // (B, H, P); may be null
  int64_t z_stride_b = 0, z_stride_h = 0, z_stride_p = 0;
  const void* dt_bias = nullptr;  // (H); may be null
  int64_t dt_bias_stride = 0;
  void* y = nullptr;  // (B, H, P), dtype (=)
  int64_t y_stride_b = 0, y_stride_h = 0, y_stride_p = 0;
};

// The "is this supported" predicates. InvalidArgument for negative sizes, G not dividing H, a
// chunk that is not a power of two in [16, 256], dt_min > dt_max, a missing required pointer or
// dtypes outside the policy above; Unimplemented for P or N outside [1, kSsdMaxDim], f64 on CUDA
// (`cuda` true), and on CUDA for non-unit P / N strides or non-contiguous states. Sizes of zero
// are accepted (the tensor layer handles them).
absl::Status SsdSupported(const SsdParams& p, bool cuda);
absl::Status SsdBackwardSupported(const SsdBackwardParams& p, bool cuda);
absl::Status SsdStateUpdateSupported(const SsdStateUpdateParams& p, bool cuda);

// CPU references. SsdReference runs the chunked algorithm (chunks of p.chunk, as transformers'
// torch_forward) and fills chunk_states when non-null; SsdSequentialReference runs the naive
// recurrence above one time step at a time (the oracle of the chunked form). The backward
// reference is the adjoint of the sequential recurrence; reductions are summed in f64.
absl::Status SsdReference(const SsdParams& p);
absl::Status SsdSequentialReference(const SsdParams& p);
absl::Status SsdBackwardReference(const SsdBackwardParams& p);
absl::Status SsdStateUpdateReference(const SsdStateUpdateParams& p);

// CUDA launchers on `stream` (the device must be current); every size must be positive. Workspace
// comes from the device's caching allocator.
absl::Status SsdCuda(const SsdParams& p, cudaStream_t stream);
// The forward stepping the recurrence one time step at a time (a warp per (b, h, p) row): slow,
// the baseline of SsdCuda's chunked kernels in the benchmark and a second oracle in GPU tests.
absl::Status SsdSequentialCuda(const SsdParams& p, cudaStream_t stream);
absl::Status SsdBackwardCuda(const SsdBackwardParams& p, cudaStream_t stream);
absl::Status SsdStateUpdateCuda(const SsdStateUpdateParams& p, cudaStream_t stream);
// The backward walking the recurrence one step at a time (one block per (b, h)): slow, the
// oracle of SsdBackwardCuda's chunked kernels in GPU tests and the benchmark's baseline.
absl::Status SsdBackwardSequentialCuda(const SsdBackwardParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_SSD_H_
