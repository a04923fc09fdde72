#include "mamba/block.h"

#include <utility>

#include "autograd/ops.h"
#include "mamba/mamba2_mixer.h"
#include "base/status_macros.h"

namespace lyra::mamba {

using autograd::Variable;

absl::StatusOr<nn::functional::ResidualNormResult> AddRmsNorm(const nn::RMSNorm& norm,
                                                              const Variable& x,
                                                              const Variable& residual,
                                                              bool residual_in_fp32) {
  const DType act = x.dtype();
  const bool sixteen_bit = act == DType::kF16 || act == DType::kBF16;
  if (residual_in_fp32 || !sixteen_bit) return norm.ForwardWithResidual(x, residual);
  // HF without residual_in_fp32: the sum is rounded to the activations' dtype, and the norm
  // reads the rounded sum. The residual is carried in f32 holding those rounded values.
  Variable rounded = x;
  if (residual.defined()) {
    LYRA_ASSIGN_OR_RETURN(Variable x32, autograd::Cast(x, residual.dtype()));
    LYRA_ASSIGN_OR_RETURN(Variable sum, autograd::Add(x32, residual));
    LYRA_ASSIGN_OR_RETURN(rounded, autograd::Cast(sum, act));
  }
  nn::functional::ResidualNormResult out;
  LYRA_ASSIGN_OR_RETURN(out.y, norm.Forward(rounded));
  LYRA_ASSIGN_OR_RETURN(out.residual_out, autograd::Cast(rounded, DType::kF32));
  return out;
}

absl::StatusOr<std::unique_ptr<MambaBlock>> MambaBlock::Create(const MambaConfig& config,
                                                               Generator& gen, DType dtype,
                                                               Device device) {
  LYRA_RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<MambaBlock> block(new MambaBlock(config));
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::RMSNorm> norm,
                        nn::RMSNorm::Create(config.hidden_size, config.layer_norm_epsilon));
  block->norm_ = block->RegisterModule("norm", std::move(norm));
  if (config.version == 2) {
    LYRA_ASSIGN_OR_RETURN(std::unique_ptr<Mamba2Mixer> mixer,
                          Mamba2Mixer::Create(config, gen, dtype, device));
    block->mixer_ = block->RegisterModule("mixer", std::move(mixer));
  } else {
    LYRA_ASSIGN_OR_RETURN(std::unique_ptr<MambaMixer> mixer,
                          MambaMixer::Create(config, gen, dtype, device));
    block->mixer_ = block->RegisterModule("mixer", std::move(mixer));
  }
  // RMSNorm is created in f32 on the CPU; bring it to the block's dtype and device.
  if (dtype != DType::kF32) LYRA_RETURN_IF_ERROR(block->norm_->To(dtype));
  if (!device.is_cpu()) LYRA_RETURN_IF_ERROR(block->norm_->To(device));
  return block;
}

absl::StatusOr<MambaBlockOutput> MambaBlock::Forward(const Variable& hidden,
                                                     const Variable& residual,
                                                     const Tensor& seq_idx,
                                                     MambaLayerState* state) const {
  LYRA_ASSIGN_OR_RETURN(nn::functional::ResidualNormResult r,
                        AddRmsNorm(*norm_, hidden, residual, config_.residual_in_fp32));
  MambaBlockOutput out;
  out.residual = r.residual_out;
  LYRA_ASSIGN_OR_RETURN(out.hidden, mixer_->Forward(r.y, seq_idx, state));
  return out;
}

absl::StatusOr<MambaBlockOutput> MambaBlock::Step(const Tensor& hidden, const Tensor& residual,
                                                  MambaLayerState& state) const {
  autograd::NoGradGuard no_grad;
  LYRA_ASSIGN_OR_RETURN(nn::functional::ResidualNormResult r,
                        AddRmsNorm(*norm_, Variable(hidden),
                                   residual.defined() ? Variable(residual) : Variable(),
                                   config_.residual_in_fp32));
  MambaBlockOutput out;
  out.residual = r.residual_out;
  LYRA_ASSIGN_OR_RETURN(Tensor h, mixer_->Step(r.y.data(), state));
  out.hidden = Variable(h);
  return out;
}

}  // namespace lyra::mamba
