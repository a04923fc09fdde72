// Mamba2Mixer: the Mamba-2 sequence mixer (SSD, state-space duality), with Hugging Face
// parameter names.
//
// Parameters (dimension letters of mamba/README.md; conv_dim = D + 2GN), registered in
// transformers' Mamba2Mixer order (conv1d, in_proj, dt_bias, A_log, norm, D, out_proj):
//   conv1d.weight   [conv_dim, 1, K]   (conv1d.bias [conv_dim] with use_conv_bias)
//   in_proj.weight  [2D + 2GN + H, M]  (in_proj.bias with use_bias); output order [z, x, B, C, dt]
//   dt_bias         [H]
//   A_log           [H]
//   norm.weight     [D]                 the gated RMSNorm (nn::GatedRMSNorm)
//   D               [H]                 ([D] with the mamba_ssm option D_has_hdim)
//   out_proj.weight [M, D]              (out_proj.bias [M] with use_bias)
//
// Forward(h [B, L, M]) -> [B, L, M], transformers' Mamba2Mixer (its pure-PyTorch path) and
// mamba_ssm's Mamba2.forward:
//   zxbcdt = in_proj(h)                       [B, L, 2D + 2GN + H] -> z [D], xBC [conv_dim], dt [H]
//   xBC = silu(conv1d(xBC))                   causal, depthwise, on the [B, conv_dim, L] view
//   x, B, C = xBC split [D, GN, GN]           x as [B, L, H, P], B and C as [B, L, G, N]
//   y = Ssd(x, dt, A = -exp(A_log), B, C, D, dt_bias; softplus, clamp to time_step_limit)
//   y = GatedRMSNorm(y, z)                    (y * silu(z)) normalised in groups of
//                                             config.norm_group_size channels, times norm.weight
//   out = out_proj(y)                         [B, L, M]
//
// Precision: the projections, the conv and the SSD's inputs run in the compute dtype (the
// input's, or the autocast region's); A_log, D and dt_bias are read in f32 (f64 in an f64 model)
// whatever the parameters' dtype (HF's `A_log.float()`); the SSD and the norm's statistics
// accumulate in f32 (f64); the SSM state is f32 (f64).
//
// Without a `state` (training, evaluation) Forward runs in_proj and then the fused inner path
// (mamba/mamba2_inner.h: conv -> SSD -> gated norm -> out_proj as ONE autograd node that saves
// only its inputs and recomputes in the backward; out_proj's active LoRA adapter is passed to
// it); with a `state` (prefill for generation) it runs the same math from separate nodes
// (Linear, CausalConv1d, Ssd, GatedRmsNorm, Linear), which also hand their final conv and SSM
// states to the cache. Both read the weights through nn::ComputeWeight where the projections
// need it. seq_idx
// [B, L] (i32) marks packed documents: the conv drops taps and the SSD resets its state where
// seq_idx changes, so a packed row equals its documents run separately.
#ifndef LYRA_MAMBA_MAMBA2_MIXER_H_
#define LYRA_MAMBA_MAMBA2_MIXER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "mamba/cache.h"
#include "mamba/config.h"
#include "mamba/mixer.h"
#include "nn/conv1d.h"
#include "nn/gated_rms_norm.h"
#include "nn/linear.h"
#include "tensor/device.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

class Mamba2Mixer : public SequenceMixer {
 public:
  // Parameters initialised as transformers' Mamba2PreTrainedModel._init_weights: in_proj
  // N(0, initializer_range) (bias 0); conv1d Kaiming-uniform (bias 0); out_proj Kaiming-uniform
  // (a = sqrt 5), divided by sqrt(num_hidden_layers) with rescale_prenorm_residual (bias 0);
  // A_log[h] = log(h + 1); D = 1; dt_bias = softplus^-1(dt), dt log-uniform in [time_step_min,
  // time_step_max] clamped below at time_step_floor; norm.weight = 1. All drawn from `gen`.
  // InvalidArgument for an invalid config or one of version 1.
  static absl::StatusOr<std::unique_ptr<Mamba2Mixer>> Create(const MambaConfig& config,
                                                             Generator& gen,
                                                             DType dtype = DType::kF32,
                                                             Device device = Device::Cpu());

  // See SequenceMixer::Forward. The state is conv_state [B, conv_dim, K-1] (compute dtype) and
  // ssm_state [B, H, P, N] (f32; f64 in an f64 model).
  absl::StatusOr<autograd::Variable> Forward(const autograd::Variable& h,
                                             const Tensor& seq_idx = Tensor(),
                                             MambaLayerState* state = nullptr) const override;

  // See SequenceMixer::Step: conv step update, SsdStateUpdate, gated norm, out_proj.
  absl::StatusOr<Tensor> Step(const Tensor& h, MambaLayerState& state) const override;

  const MambaConfig& config() const { return config_; }
  int64_t conv_dim() const { return config_.intermediate_size + 2 * GroupStateSize(); }
  nn::Conv1d& conv1d() const { return *conv1d_; }
  nn::Linear& in_proj() const { return *in_proj_; }
  const autograd::Variable& dt_bias() const { return dt_bias_; }
  const autograd::Variable& A_log() const { return A_log_; }
  const nn::GatedRMSNorm& norm() const { return *norm_; }
  const autograd::Variable& D() const { return D_; }
  nn::Linear& out_proj() const { return *out_proj_; }

 private:
  explicit Mamba2Mixer(const MambaConfig& config)
      : SequenceMixer("Mamba2Mixer"), config_(config) {}
  absl::Status Init(Generator& gen, DType dtype, Device device);
  int64_t GroupStateSize() const { return config_.n_groups * config_.state_size; }

  // A = -exp(A_log) [H], D ([H] or [H, P]) and dt_bias [H] in f32 (f64 for f64 activations).
  struct SsdParams {
    autograd::Variable A, D, dt_bias;
  };
  absl::StatusOr<SsdParams> SsdParameters(DType act) const;
  // Forward without a state: in_proj, then the fused inner path (mamba/mamba2_inner.h).
  absl::StatusOr<autograd::Variable> ForwardFused(const autograd::Variable& h,
                                                  const Tensor& seq_idx) const;

  MambaConfig config_;
  nn::Conv1d* conv1d_ = nullptr;
  nn::Linear* in_proj_ = nullptr;
  autograd::Variable dt_bias_;
  autograd::Variable A_log_;
  nn::GatedRMSNorm* norm_ = nullptr;
  autograd::Variable D_;
  nn::Linear* out_proj_ = nullptr;
};

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_MAMBA2_MIXER_H_
