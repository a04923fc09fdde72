// The Mamba-1 selective scan (S6) on tensors and on autograd Variables, and its single-step
// update for generation. The math, layouts, precision policy and kernels are described in
// cuda/selective_scan.h; in short, per batch b, channel d (group g = d / (D / G)), state n, time t:
//
//   delta' = softplus(delta + delta_bias)   a = exp(delta' A[d, n])   (a = 0 at a seq_idx change)
//   x_t[n] = a x_{t-1}[n] + delta' B[b, g, n, t] u_t       (x_{-1} = initial_state or 0)
//   y_t    = (sum_n C[b, g, n, t] x_t[n] + D[d] u_t) * silu(z_t)
//
// which is transformers' MambaMixer.slow_forward (and mamba_ssm's selective_scan_fn).
//
// Shapes and dtypes: u, delta, z [B, D, L] of one dtype (f32, f16, bf16; f64 on the CPU); A
// [D, N]; B, C [B, G, N, L] or [B, N, L] (G = 1), f32 or u's dtype; D, delta_bias [D];
// initial_state [B, D, N]; seq_idx [B, L] i32. A, D, delta_bias and the states are f32 (f64 with
// f64 u). N is in [1, 256] (larger: Unimplemented); G divides D. Wrong shapes, dtypes or devices
// are InvalidArgument naming the tensor at fault. Any strides are accepted (the CUDA path copies
// operands whose L stride is not 1).
//
//   SelectiveScanInputs in{.u = u, .delta = delta, .A = A, .B = B, .C = C, .D = D, .z = z,
//                          .delta_bias = dt_bias};
//   LYRA_ASSIGN_OR_RETURN(SelectiveScanResult r, mamba::SelectiveScanForward(in));
#ifndef LYRA_MAMBA_SELECTIVE_SCAN_H_
#define LYRA_MAMBA_SELECTIVE_SCAN_H_

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

struct SelectiveScanInputs {
  Tensor u;              // [B, D, L]  f32 / f16 / bf16 (f64 on CPU)
  Tensor delta;          // [B, D, L]  u's dtype (delta before bias / softplus)
  Tensor A;              // [D, N]     f32 (f64 with f64 u); A = -exp(A_log)
  Tensor B;              // [B, G, N, L] or [B, N, L] (G = 1); f32 or u's dtype
  Tensor C;              // as B (same shape and dtype)
  Tensor D;              // [D] f32; optional (undefined: no skip term)
  Tensor z;              // [B, D, L] u's dtype; optional: y *= silu(z)
  Tensor delta_bias;     // [D] f32; optional: delta + delta_bias before softplus
  Tensor initial_state;  // [B, D, N] f32; optional (zeros)
  Tensor seq_idx;        // [B, L] i32; optional: the state resets to 0 (not to initial_state)
                         // where seq_idx[b, t] != seq_idx[b, t-1] (packed documents)
  bool delta_softplus = true;
};

struct SelectiveScanResult {
  Tensor y;            // [B, D, L] u's dtype
  Tensor final_state;  // [B, D, N] f32 (f64 with f64)
  // CUDA only (undefined on the CPU): the state entering every chunk of
  // cuda::kSelectiveScanChunk steps, [B, D, n_chunks, N] f32. Passing it to SelectiveScanBackward
  // saves the backward a recomputation of the forward states.
  Tensor chunk_states;
};

absl::StatusOr<SelectiveScanResult> SelectiveScanForward(const SelectiveScanInputs& in);

// Gradients of every defined input, each in its input's shape and dtype (undefined for inputs
// that are undefined; seq_idx gets none).
struct SelectiveScanGrads {
  Tensor du, ddelta, dA, dB, dC, dD, dz, ddelta_bias, dinitial_state;
};

// dy [B, D, L] (u's dtype); dfinal_state [B, D, N] optional (undefined = zero). chunk_states is
// a forward's SelectiveScanResult::chunk_states for the same inputs, or undefined (the CUDA
// backward then recomputes it with a states-only forward pass; the CPU ignores it).
absl::StatusOr<SelectiveScanGrads> SelectiveScanBackward(const SelectiveScanInputs& in,
                                                         const Tensor& dy,
                                                         const Tensor& dfinal_state = {},
                                                         const Tensor& chunk_states = {});

// One autograd node "SelectiveScan" with inputs u, delta, A, B, C, D, z, delta_bias,
// initial_state (undefined Variables allowed for the optional ones) and outputs y and
// final_state; the gradient flowing into final_state is honoured. Only inputs that require grad
// receive gradients. Saves the inputs and, on CUDA, the chunk states.
struct SelectiveScanOutputs {
  autograd::Variable y;
  autograd::Variable final_state;
};
absl::StatusOr<SelectiveScanOutputs> SelectiveScan(
    const autograd::Variable& u, const autograd::Variable& delta, const autograd::Variable& A,
    const autograd::Variable& B, const autograd::Variable& C, const autograd::Variable& D,
    const autograd::Variable& z, const autograd::Variable& delta_bias,
    const autograd::Variable& initial_state, const Tensor& seq_idx, bool delta_softplus = true);

// Single step for generation: state [B, D, N] f32 (f64 with f64) updated in place; x, dt, z
// [B, D] (z optional); A [D, N]; B, C [B, G, N] or [B, N]; D, dt_bias [D] optional. Returns y
// [B, D] in x's dtype: the same math as one column of the scan.
absl::StatusOr<Tensor> SelectiveStateUpdate(const Tensor& state, const Tensor& x,
                                            const Tensor& dt, const Tensor& A, const Tensor& B,
                                            const Tensor& C, const Tensor& D, const Tensor& z,
                                            const Tensor& dt_bias, bool dt_softplus = true);

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_SELECTIVE_SCAN_H_
