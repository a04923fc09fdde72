// MambaMixer: the Mamba-1 sequence mixer (selective SSM), with Hugging Face parameter names.
//
// Parameters (dimension letters of mamba/README.md), as transformers' MambaMixer, registered
// in its order (conv1d, in_proj, x_proj, dt_proj, A_log, D, out_proj):
//   in_proj.weight  [2D, M]  (in_proj.bias [2D] with use_bias)
//   conv1d.weight   [D, 1, K] (conv1d.bias [D] with use_conv_bias)
//   x_proj.weight   [R + 2N, D]
//   dt_proj.weight  [D, R], dt_proj.bias [D]
//   A_log           [D, N]
//   D               [D]
//   out_proj.weight [M, D]   (out_proj.bias [M] with use_bias)
//
// Forward(h [B, L, M]) -> [B, L, M], exactly transformers' MambaMixer.slow_forward:
//   xz = in_proj(h)                      [B, L, 2D];  x = xz[..., :D], z = xz[..., D:]
//   x  = silu(conv1d(x))                 causal, depthwise, cut to L (on the [B, D, L] view)
//   x_dbl = x_proj(x)                    [B, L, R + 2N] -> dt [R], B [N], C [N]
//   delta = dt_proj.weight @ dt          [B, D, L]  (no bias here: the bias goes to the scan)
//   A  = -exp(A_log)                     f32 (f64 in an f64 model)
//   y  = SelectiveScan(x, delta, A, B, C, D, z, delta_bias = dt_proj.bias, softplus)
//   out = out_proj(y)                    [B, L, M]
// Passing the dt_proj bias as the scan's delta_bias (softplus(delta + bias)) is mamba_ssm's
// formulation; it equals HF's softplus(dt_proj(dt)) exactly in real arithmetic.
//
// Precision: the projections run in the compute dtype (the input's, or the autocast region's:
// nn::ComputeWeight / ComputeInput casts FP32 masters once per region); A_log, D and the dt
// bias are read in f32 (f64 in an f64 model) whatever the parameters' dtype, like HF's
// `A_log.float()`; the scan accumulates in f32 (f64) and returns y in the compute dtype.
//
// The whole mixer is differentiable. Without a `state` (training, evaluation) Forward runs
// in_proj and then the fused inner path (mamba/mamba_inner.h: conv -> x_proj -> dt_proj -> scan
// -> gate -> out_proj as ONE autograd node that saves only its inputs and recomputes in the
// backward); with a `state` (prefill for generation) it runs the same math from separate nodes
// (Linear, CausalConv1d, SelectiveScan), which also hand their final states to the cache. Both
// receive the weights through nn::ComputeWeight, so nothing reads a master weight behind the
// caller's back. seq_idx [B, L] (i32) marks packed documents: the conv drops taps and the scan
// resets its state where seq_idx changes, so a packed row equals its documents run separately.
//
// LoRA (nn/lora/lora.h injects the adapters; nn/lora/lora_factors.h has the math): an active
// adapter on any of the four projections changes the output in every path, computed from its
// factors A [r, in], B [out, r] with s = lora_alpha / r (never from a merged weight while it
// trains), and A and B receive FP32 gradients under autocast:
//   in_proj   always through in_proj_->Forward (nn::Linear: xz += s · (drop(h) Aᵀ) Bᵀ, separate
//             autograd nodes ahead of the fused node), in both paths and in Step.
//   x_proj, dt_proj, out_proj
//             fused path (no state): the mixer hands active_lora() of each to MambaInner
//             (MambaInnerWeights::*_lora), which adds s · (drop(x) Aᵀ) Bᵀ inside the one node to
//             x_dbl (one adapter for dt, B and C together), to delta (before the scan, whose
//             delta_bias stays dt_proj's bias) and to the output; dropout masks are drawn from
//             the adapter's generator once per forward (order x_proj, dt_proj, out_proj) and
//             regenerated in the backward.
//             composed path (with a state) and Step: x_proj and out_proj through their
//             nn::Linear::Forward; dt_proj's weight is applied without its bias
//             (nn::functional::Linear), so its adapter is added explicitly with
//             nn::AddLoraLinear. Drawing masks in the same order from the same generators, the
//             two paths give the same output and gradients (tests/mamba/lora_fused_test).
// active_lora() is null when no adapter is active, adapters are disabled, or the active one is
// merged: the paths then compute with the (merged) base weights alone.
#ifndef LYRA_MAMBA_MIXER_H_
#define LYRA_MAMBA_MIXER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "mamba/cache.h"
#include "mamba/config.h"
#include "nn/conv1d.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "tensor/device.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

// What a MambaBlock holds: the Mamba-1 MambaMixer or the Mamba-2 Mamba2Mixer
// (mamba/mamba2_mixer.h). Both map hidden states [B, L, M] -> [B, L, M] with the same state
// protocol (MambaLayerState: conv and SSM states, shapes per version, see mamba/cache.h).
class SequenceMixer : public nn::Module {
 public:
  using nn::Module::Module;

  // h [B, L, M] -> [B, L, M] in the compute dtype. seq_idx: undefined or [B, L] i32.
  // With `state` non-null: a defined state is the starting point (continuing a sequence; it
  // receives no gradient) and on return `state` holds the conv and SSM states after the last
  // token (the inference cache of this layer).
  virtual absl::StatusOr<autograd::Variable> Forward(const autograd::Variable& h,
                                                     const Tensor& seq_idx = Tensor(),
                                                     MambaLayerState* state = nullptr) const = 0;

  // One decoding step without autograd: h [B, M] -> [B, M]; `state` (defined) is advanced in
  // place. Equals the next position of Forward with the same state.
  virtual absl::StatusOr<Tensor> Step(const Tensor& h, MambaLayerState& state) const = 0;
};

class MambaMixer : public SequenceMixer {
 public:
  // Parameters initialised as transformers' MambaPreTrainedModel._init_weights: in_proj and
  // x_proj N(0, initializer_range) (biases 0); dt_proj.weight U(+-R^-0.5 * time_step_scale) (or
  // that constant); dt_proj.bias = softplus^-1(dt), dt log-uniform in [time_step_min,
  // time_step_max] clamped below at time_step_floor; conv1d Kaiming-uniform (bias 0); out_proj
  // Kaiming-uniform(a = sqrt 5), divided by sqrt(num_hidden_layers) with
  // rescale_prenorm_residual; A_log[d, n] = log(n + 1); D = 1. All drawn from `gen`.
  // InvalidArgument for an invalid config.
  static absl::StatusOr<std::unique_ptr<MambaMixer>> Create(const MambaConfig& config,
                                                            Generator& gen,
                                                            DType dtype = DType::kF32,
                                                            Device device = Device::Cpu());

  // h [B, L, M] -> [B, L, M] in the compute dtype. seq_idx: undefined or [B, L] i32.
  // With `state` non-null: a defined state is the starting point (continuing a sequence; it
  // receives no gradient) and on return `state` holds the conv and scan states after the last
  // token (the inference cache of this layer).
  absl::StatusOr<autograd::Variable> Forward(const autograd::Variable& h,
                                             const Tensor& seq_idx = Tensor(),
                                             MambaLayerState* state = nullptr) const override;

  // One decoding step without autograd: h [B, M] -> [B, M]; `state` (defined) is advanced in
  // place. Equals the next position of Forward with the same state.
  absl::StatusOr<Tensor> Step(const Tensor& h, MambaLayerState& state) const override;

  const MambaConfig& config() const { return config_; }
  nn::Linear& in_proj() const { return *in_proj_; }
  nn::Conv1d& conv1d() const { return *conv1d_; }
  nn::Linear& x_proj() const { return *x_proj_; }
  nn::Linear& dt_proj() const { return *dt_proj_; }
  nn::Linear& out_proj() const { return *out_proj_; }
  const autograd::Variable& A_log() const { return A_log_; }
  const autograd::Variable& D() const { return D_; }

 private:
  explicit MambaMixer(const MambaConfig& config)
      : SequenceMixer("MambaMixer"), config_(config) {}
  absl::Status Init(Generator& gen, DType dtype, Device device);

  // A = -exp(A_log), D and the dt bias in the scan's parameter dtype for activations `act`.
  struct ScanParams {
    autograd::Variable A, D, delta_bias;
  };
  absl::StatusOr<ScanParams> ScanParameters(DType act) const;
  // Forward without a state: in_proj, then the fused inner path.
  absl::StatusOr<autograd::Variable> ForwardFused(const autograd::Variable& h,
                                                  const Tensor& seq_idx) const;

  MambaConfig config_;
  nn::Linear* in_proj_ = nullptr;
  nn::Conv1d* conv1d_ = nullptr;
  nn::Linear* x_proj_ = nullptr;
  nn::Linear* dt_proj_ = nullptr;
  autograd::Variable A_log_;
  autograd::Variable D_;
  nn::Linear* out_proj_ = nullptr;
};

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_MIXER_H_
