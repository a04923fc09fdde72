// The Mamba-2 SSD chunked scan on tensors and on autograd Variables, and its single-step update
// for generation. The math, layouts, precision policy and kernels are described in cuda/ssd.h;
// in short, per batch b, head h (group g = h / (H / G)), time t:
//
//   dt' = clamp(softplus(dt + dt_bias), dt_min, dt_max)    a = exp(dt' A[h])  (0 at a reset)
//   S_t = a S_{t-1} + dt' x_t ⊗ B_t                         S [P, N] (S_{-1} = initial_state or 0)
//   y_t = (S_t C_t + D x_t) * silu(z_t)
//
// which is transformers' Mamba2Mixer.torch_forward before its gated norm (and mamba_ssm's
// mamba_chunk_scan_combined).
//
// Shapes and dtypes: x, z [B, L, H, P]; dt [B, L, H]; B, C [B, L, G, N]; all of one dtype (f32,
// f16, bf16; f64 on the CPU). A, dt_bias [H]; D [H] or [H, P]; initial_state [B, H, P, N]; these
// are f32 (f64 with f64 x). seq_idx [B, L] i32. P, N in [1, 256]; G divides H. Wrong shapes,
// dtypes or devices are InvalidArgument naming the tensor at fault. Any strides are accepted
// (the CUDA path copies operands it needs contiguous along P / N).
//
//   SsdInputs in{.x = x, .dt = dt, .A = A, .B = B, .C = C, .D = D, .dt_bias = dt_bias};
//   LYRA_ASSIGN_OR_RETURN(SsdResult r, mamba::SsdForward(in));
#ifndef LYRA_MAMBA_SSD_H_
#define LYRA_MAMBA_SSD_H_

#include <cstdint>
#include <limits>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

struct SsdInputs {
  Tensor x;              // [B, L, H, P]
  Tensor dt;             // [B, L, H] (before bias / softplus)
  Tensor A;              // [H] f32 (f64 with f64 x); A = -exp(A_log)
  Tensor B;              // [B, L, G, N]
  Tensor C;              // [B, L, G, N]
  Tensor D;              // [H] or [H, P] f32; optional (undefined: no skip term)
  Tensor z;              // [B, L, H, P]; optional: y *= silu(z)
  Tensor dt_bias;        // [H] f32; optional
  Tensor initial_state;  // [B, H, P, N] f32; optional (zeros)
  Tensor seq_idx;        // [B, L] i32; optional: the state resets to 0 (not to initial_state)
                         // where seq_idx[b, t] != seq_idx[b, t-1] (packed documents)
  bool dt_softplus = true;
  double dt_min = 0.0;   // clamp of dt' (transformers' time_step_limit)
  double dt_max = std::numeric_limits<double>::infinity();
  int64_t chunk = 256;   // Q, a power of two in [16, 256] (the config's chunk_size)
};

struct SsdResult {
  Tensor y;            // [B, L, H, P] x's dtype
  Tensor final_state;  // [B, H, P, N] f32 (f64 with f64)
  // The state entering every chunk, [B, n_chunks, H, P, N] f32 (cuda/ssd.h); filled by the CUDA
  // forward (undefined on the CPU). Passing it to SsdBackward saves the backward the state
  // passing.
  Tensor chunk_states;
};

absl::StatusOr<SsdResult> SsdForward(const SsdInputs& in);

// Gradients of every defined input, each in its input's shape and dtype (undefined for inputs
// that are undefined; seq_idx gets none).
struct SsdGrads {
  Tensor dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_state;
};

// dy [B, L, H, P] (x's dtype); dfinal_state [B, H, P, N] optional (undefined = zero);
// chunk_states: a forward's SsdResult::chunk_states for the same inputs, or undefined.
absl::StatusOr<SsdGrads> SsdBackward(const SsdInputs& in, const Tensor& dy,
                                     const Tensor& dfinal_state = {},
                                     const Tensor& chunk_states = {});

// One autograd node "Ssd" with inputs x, dt, A, B, C, D, z, dt_bias, initial_state (undefined
// Variables allowed for the optional ones) and outputs y and final_state; the gradient flowing
// into final_state is honoured. Only inputs that require grad receive gradients. The options
// (softplus, clamp, chunk) and seq_idx come from `options` (its tensors other than seq_idx are
// ignored).
struct SsdOutputs {
  autograd::Variable y;
  autograd::Variable final_state;
};
absl::StatusOr<SsdOutputs> Ssd(const autograd::Variable& x, const autograd::Variable& dt,
                               const autograd::Variable& A, const autograd::Variable& B,
                               const autograd::Variable& C, const autograd::Variable& D,
                               const autograd::Variable& z, const autograd::Variable& dt_bias,
                               const autograd::Variable& initial_state,
                               const SsdInputs& options);

// Single step for generation: state [B, H, P, N] f32 (f64 with f64) updated in place; x, z
// [B, H, P] (z optional); dt [B, H]; A [H]; B, C [B, G, N]; D [H] or [H, P], dt_bias [H]
// optional. Returns y [B, H, P] in x's dtype: the same math as one time step of the scan.
struct SsdStepOptions {
  bool dt_softplus = true;
  double dt_min = 0.0;
  double dt_max = std::numeric_limits<double>::infinity();
};
absl::StatusOr<Tensor> SsdStateUpdate(const Tensor& state, const Tensor& x, const Tensor& dt,
                                      const Tensor& A, const Tensor& B, const Tensor& C,
                                      const Tensor& D, const Tensor& z, const Tensor& dt_bias,
                                      const SsdStepOptions& options = {});

// seq_idx [1, L] i32 on `device` for documents packed into one row and given by their cumulative
// lengths (flash-attn / mamba_ssm's cu_seqlens): cu_seqlens [n_docs + 1] i32 or i64 on the CPU,
// starting at 0, non-decreasing, ending at `length`; seq_idx[0, t] = k for cu[k] <= t < cu[k+1].
// Anything else is InvalidArgument naming cu_seqlens.
absl::StatusOr<Tensor> SeqIdxFromCuSeqlens(const Tensor& cu_seqlens, int64_t length,
                                           Device device = Device::Cpu());

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_SSD_H_
