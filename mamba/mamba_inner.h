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
// LoRA adapters (nn/lora/lora_factors.h) on x_proj, dt_proj and out_proj act INSIDE the node,
// from their factors A [r, in], B [out, r] (never a merged weight), with s = factors->scale:
//   x_dbl += s · (drop(xc) A_xᵀ) B_xᵀ       one adapter for dt, B and C together: the x_proj
//                                           adapter ties the adaptation of Δ, B and C (the
//                                           paper's Theorem 3)
//   delta += s · (drop(dt) A_dtᵀ) B_dtᵀ     (dt_proj's bias stays the scan's delta_bias)
//   out   += s · (drop(y) A_oᵀ) B_oᵀ
// and A, B receive their gradients (dB = s · gᵀ (drop(x) Aᵀ), dA = s · (g B)ᵀ drop(x)), as does
// the adapter's input. The factors are read through nn::ComputeWeight (cast to xz's dtype), so
// FP32 masters train under f16 / bf16 autocast. Dropout (inverted, probability
// factors->dropout) acts while factors->training: each forward reserves the mask's Philox blocks
// from factors->generator once (ceil(rows · in / 4) blocks, in the order x_proj, dt_proj,
// out_proj: the order the composed mixer draws its masks) and the backward regenerates the same
// mask from that position. The mask equals nn::functional::Dropout's at the same generator state
// on a [B, L, in] input (element (b, l, i) row-major), so fused and composed runs agree.
//
// The forward keeps only its inputs (xz, the weights and factors, the masks' Philox positions):
// in the backward it recomputes xc, x_dbl, delta and y (cheap next to storing [B, L, D]-sized
// intermediates), then runs the scan, conv and matmul backwards. Gradients go to every input
// that requires grad — xz, each weight and each factor — so nothing reads a base weight behind
// the caller's back, and an adapter always changes the output.
//
// dtypes: xz and the matmul / conv weights in one compute dtype (f32, f16, bf16; f64 on the CPU);
// under nn::AutocastGuard the caller passes nn::ComputeWeight copies (the node casts the LoRA
// factors itself). A_log, D and dt_proj's bias are f32 (f64 with f64), the scan state f32.
// Shapes are checked; a mismatch is InvalidArgument naming the weight (or the adapter).
#ifndef LYRA_MAMBA_MAMBA_INNER_H_
#define LYRA_MAMBA_MAMBA_INNER_H_

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "nn/lora/lora_factors.h"
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
  // Active adapters (not owned; null: none). Their A / B may be FP32 masters (cast here).
  const nn::LoraFactors* x_proj_lora = nullptr;   // A [r, D], B [R + 2N, r]
  const nn::LoraFactors* dt_proj_lora = nullptr;  // A [r, R], B [D, r]
  const nn::LoraFactors* out_proj_lora = nullptr; // A [r, D], B [M, r]
};

// xz [B, L, 2D] -> [B, L, M]. seq_idx [B, L] i32 (optional) resets the conv taps and the scan
// state at document boundaries of a packed batch.
absl::StatusOr<autograd::Variable> MambaInner(const autograd::Variable& xz,
                                              const MambaInnerWeights& weights,
                                              const Tensor& seq_idx = Tensor());

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_MAMBA_INNER_H_
