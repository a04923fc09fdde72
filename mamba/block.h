// MambaBlock: a pre-norm residual block around the sequence mixer of the config's version
// (MambaMixer for Mamba-1, Mamba2Mixer for Mamba-2), with Hugging Face names ("norm.weight",
// "mixer.*"). transformers' Mamba2Block has the same structure as MambaBlock.
//
// mamba_ssm's fused formulation, which carries the residual stream separately:
//   residual' = hidden + residual          (residual undefined in the first block: = hidden)
//   hidden'   = mixer(RMSNorm(residual'))
// returns (hidden', residual'). It equals transformers' MambaBlock
//   out = residual + mixer(norm(residual))   with residual = the previous block's out
// since the previous block's out is exactly hidden + residual; the final norm of the model
// then reads norm_f(hidden + residual).
//
// The residual stream is f32 (f64 in an f64 model) when residual_in_fp32 (all released
// checkpoints); the add and the norm are one fused node (nn::RMSNorm::ForwardWithResidual).
// Without residual_in_fp32 and with 16-bit activations the residual is rounded to the
// activations' dtype after each add, as HF's bf16 `residual + hidden_states` does, and the norm
// reads the rounded value.
#ifndef LYRA_MAMBA_BLOCK_H_
#define LYRA_MAMBA_BLOCK_H_

#include <memory>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "mamba/cache.h"
#include "mamba/config.h"
#include "mamba/mixer.h"
#include "nn/module.h"
#include "nn/norm_common.h"
#include "nn/rms_norm.h"
#include "tensor/device.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

// residual_out = x + residual, y = norm(residual_out): the fused add + RMSNorm of every block
// and of the final norm, following config.residual_in_fp32 (see above). residual may be
// undefined. y has x's dtype; residual_out is f32 (f64 for f64 x).
absl::StatusOr<nn::functional::ResidualNormResult> AddRmsNorm(const nn::RMSNorm& norm,
                                                              const autograd::Variable& x,
                                                              const autograd::Variable& residual,
                                                              bool residual_in_fp32);

struct MambaBlockOutput {
  autograd::Variable hidden;    // [B, L, M] (or [B, M] for a step), the compute dtype
  autograd::Variable residual;  // same shape, f32 (f64)
};

class MambaBlock : public nn::Module {
 public:
  static absl::StatusOr<std::unique_ptr<MambaBlock>> Create(const MambaConfig& config,
                                                            Generator& gen,
                                                            DType dtype = DType::kF32,
                                                            Device device = Device::Cpu());

  // hidden [B, L, M]; residual undefined (first block) or [B, L, M] f32 / f64. seq_idx and
  // state as MambaMixer::Forward.
  absl::StatusOr<MambaBlockOutput> Forward(const autograd::Variable& hidden,
                                           const autograd::Variable& residual,
                                           const Tensor& seq_idx = Tensor(),
                                           MambaLayerState* state = nullptr) const;

  // One decoding step (no autograd): hidden [B, M], residual undefined or [B, M].
  absl::StatusOr<MambaBlockOutput> Step(const Tensor& hidden, const Tensor& residual,
                                        MambaLayerState& state) const;

  const nn::RMSNorm& norm() const { return *norm_; }
  // The MambaMixer (version 1) or Mamba2Mixer (version 2).
  const SequenceMixer& mixer() const { return *mixer_; }

 private:
  explicit MambaBlock(const MambaConfig& config) : Module("MambaBlock"), config_(config) {}

  MambaConfig config_;
  nn::RMSNorm* norm_ = nullptr;
  SequenceMixer* mixer_ = nullptr;
};

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_BLOCK_H_
