// The Mamba-2 mixer's inner path as ONE autograd node with recomputation in the backward
// (mamba_ssm's mamba_split_conv1d_scan_combined): from the in_proj output zxbcdt to the mixer's
// output, exactly transformers' Mamba2Mixer.torch_forward without a cache (d_mlp = 0):
//
//   z, xBC, dt = split(zxbcdt, [D, D + 2GN, H])             zxbcdt [B, L, 2D + 2GN + H]
//   xBC        = silu(conv1d(xBC))                           causal, depthwise over the D + 2GN
//                                                            channels, K taps, with bias
//   x, B, C    = split(xBC, [D, GN, GN])  ->  x [B, L, H, P], B, C [B, L, G, N]
//   y          = SSD(x, dt, A = -exp(A_log), B, C, D; dt_bias, softplus, clamp to
//                    [dt_min, dt_max], chunk, seq_idx)        [B, L, D]  (mamba/ssd.h)
//   y          = GatedRMSNorm(y, z, norm_weight, group_size)  (norm = false: y * silu(z) inside
//                                                             the SSD, no norm)
//   out        = y W_outᵀ (+ b_out) + scale · (dropout(y) Aᵀ) Bᵀ   [B, L, M]  (LoRA optional)
//
// with D = heads · head_dim (the letters of mamba/README.md).
//
// The forward keeps only its inputs (zxbcdt and the weights) and, for LoRA dropout, the Philox
// (seed, offset) of its mask: the backward recomputes the conv output, the SSD (whose CUDA
// forward hands the recomputed chunk-entry states to SsdBackward, so nothing of the SSD is saved
// between forward and backward), the norm and the dropout mask, then runs the out_proj, LoRA,
// norm, SSD and conv backwards. Gradients go to every input that requires grad: zxbcdt, every
// weight, and the LoRA factors A and B (the low-rank product is computed from the factors; no
// merged weight is formed).
//
// dtypes: zxbcdt, out_proj's weight and bias in one compute dtype (f32, f16, bf16; f64 on the
// CPU); under nn::AutocastGuard the caller passes nn::ComputeWeight copies of those (this
// function passes the LoRA factors through nn::ComputeWeight itself). conv weight and bias f32 or
// zxbcdt's dtype; A_log, D, dt_bias f32 (f64 with f64); norm_weight f32 or zxbcdt's dtype.
// Shapes are checked; a mismatch is InvalidArgument naming the weight.
#ifndef LYRA_MAMBA_MAMBA2_INNER_H_
#define LYRA_MAMBA_MAMBA2_INNER_H_

#include <cstdint>
#include <limits>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "nn/lora/lora_factors.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

struct Mamba2InnerWeights {
  autograd::Variable conv_weight;      // [C, 1, K] or [C, K], C = D + 2GN
  autograd::Variable conv_bias;        // [C] or undefined
  autograd::Variable dt_bias;          // [H] f32, or undefined
  autograd::Variable A_log;            // [H] f32
  autograd::Variable D;                // [H] or [H, P] f32, or undefined (no skip term)
  autograd::Variable norm_weight;      // [D]; unused (may be undefined) when options.norm is false
  autograd::Variable out_proj_weight;  // [M, D]
  autograd::Variable out_proj_bias;    // [M] or undefined
  // An active LoRA adapter on out_proj (A [r, D], B [M, r]), or null. With dropout > 0 while
  // training, generator must be set: the mask is drawn from it once per forward.
  const nn::LoraFactors* out_proj_lora = nullptr;
};

struct Mamba2InnerOptions {
  int64_t heads = 0;     // H
  int64_t head_dim = 0;  // P
  int64_t groups = 1;    // G, divides H
  int64_t dstate = 0;    // N
  int64_t chunk = 256;   // Q: the config's chunk_size (a power of two in [16, 256])
  double dt_min = 0;     // the config's time_step_limit
  double dt_max = std::numeric_limits<double>::infinity();
  double norm_eps = 1e-5;
  bool norm = true;  // the gated RMSNorm; false: y * silu(z) (mamba_ssm's rmsnorm_weight=None)
  // The norm's group size: 0 means D (one group, transformers' MambaRMSNormGated in
  // Mamba2Mixer.torch_forward); mamba_ssm's RMSNormGated uses D / G. The two agree for G = 1.
  int64_t norm_group_size = 0;
};

// zxbcdt [B, L, 2D + 2GN + H] -> [B, L, M]. seq_idx [B, L] i32 (optional) resets the conv taps
// and the SSD state at document boundaries of a packed batch. Unimplemented for an in_proj
// output with a d_mlp part (last dim 2D + 2GN + H + 2 d_mlp, d_mlp > 0).
absl::StatusOr<autograd::Variable> Mamba2Inner(const autograd::Variable& zxbcdt,
                                               const Mamba2InnerWeights& weights,
                                               const Mamba2InnerOptions& options,
                                               const Tensor& seq_idx = {});

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_MAMBA2_INNER_H_
