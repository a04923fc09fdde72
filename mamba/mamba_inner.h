// The Mamba-1 mixer's inner path as ONE autograd node, with recomputation in the backward
// (mamba_ssm's mamba_inner_fn): from the in_proj output xz to the mixer's output,
//
//   x, z   = xz[..., :D], xz[..., D:]                       xz [B, L, 2D]
//   xc     = silu(conv1d(x))                                 [B, D, L]  causal depthwise, K taps
//   x_dbl  = xc x_projᵀ  ->  dt [R], B [N], C [N]            [B·L, R + 2N]
//   delta  = dt dt_projᵀ                                      [B·L, D]   (dt_proj's bias is the
//                                                                         scan's delta_bias)
//   y      = SelectiveScan(xc, delta, A = -exp(A_log), B, C, D, z, delta_bias, softplus)
//   out    = y out_projᵀ (+ out_proj bias)                   [B, L, M]
//
// The forward keeps only its inputs (xz and the weights): in the backward it recomputes xc,
// x_dbl, delta and y (cheap next to storing [B, L, D]-sized intermediates), then runs the scan,
// conv and matmul backwards. Gradients go to every input that requires grad — xz and each weight —
// so an adapter whose effective weight is passed here (W + B·A as a Variable) is trained through
// the fused path: nothing reads a base weight behind the caller's back.
//
// dtypes: xz and the matmul / conv weights in one compute dtype (f32, f16, bf16; f64 on the CPU);
// under nn::AutocastGuard the caller passes nn::ComputeWeight copies. A_log, D and dt_proj's bias
// are f32 (f64 with f64), the scan state f32. Shapes are checked; a mismatch is InvalidArgument
// naming the weight.
#ifndef LYRA_MAMBA_MAMBA_INNER_H_
#define LYRA_MAMBA_MAMBA_INNER_H_

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

struct MambaInnerWeights {
  autograd::Variable conv_weight;      // [D, 1, K] or [D, K]
  autograd::Variable conv_bias;        // [D] or undefined
  autograd::Variable x_proj_weight;    // [R + 2N, D]
  autograd::Variable dt_proj_weight;   // [D, R]
  autograd::Variable dt_proj_bias;     // [D] f32 (the scan's delta_bias) or undefined
  autograd::Variable A_log;            // [D, N] f32
  autograd::Variable D;                // [D] f32
  autograd::Variable out_proj_weight;  // [M, D]
  autograd::Variable out_proj_bias;    // [M] or undefined
};

// xz [B, L, 2D] -> [B, L, M]. seq_idx [B, L] i32 (optional) resets the conv taps and the scan
// state at document boundaries of a packed batch.
absl::StatusOr<autograd::Variable> MambaInner(const autograd::Variable& xz,
                                              const MambaInnerWeights& weights,
                                              const Tensor& seq_idx = Tensor());

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_MAMBA_INNER_H_
