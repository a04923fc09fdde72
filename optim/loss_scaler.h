// The dynamic loss scaler of FP16 training, with torch.cuda.amp.GradScaler's semantics.
//
// FP16 gradients underflow: most are far below f16's smallest normal (6e-5). The scaler
// multiplies the loss by a large scale S (2^16 at first) so that backward runs on S * grad, then
// divides the gradients by S before the optimizer sees them. When a step overflows (some
// gradient is inf or NaN) the step is skipped and S halves; after `growth_interval` clean steps
// in a row S doubles. A step therefore looks like:
//
//   LYRA_ASSIGN_OR_RETURN(Variable scaled, scaler.Scale(loss));
//   LYRA_RETURN_IF_ERROR(scaled.Backward());                      // grads = S * d loss / d w
//   LYRA_ASSIGN_OR_RETURN(bool stepped, scaler.StepIfFinite(params, [&]() -> absl::Status {
//     LYRA_RETURN_IF_ERROR(ClipGradNorm(params, 1.0));            // sees true gradients
//     return optimizer.Step();
//   }));
//
// StepIfFinite unscales every gradient in ONE fused launch that also raises a device found_inf
// flag, reads the flag (the step's one host sync), runs `step` only if it is clear, and updates
// the scale. Nothing the step would change (parameters, optimizer moments, step counters) is
// touched on a skipped step; the gradients are unscaled either way, as in torch.
//
// State: scale (f32), growth tracker and skipped-step count (i64) live in 0-dim tensors on the
// scaler's device and are updated there by one-thread kernels, so the scale never makes a host
// round trip; StateDict / LoadStateDict save and restore them bit for bit.
//
// A disabled scaler (fp32 and bf16 runs) has scale 1, Scale returns the loss itself, nothing is
// checked and StepIfFinite always steps: training code is the same for every precision.
#ifndef LYRA_OPTIM_LOSS_SCALER_H_
#define LYRA_OPTIM_LOSS_SCALER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autograd/variable.h"
#include "nn/module.h"
#include "tensor/tensor.h"

namespace lyra::optim {

// --- The kernels as tensor ops --------------------------------------------------------------

// In place: every gradient *= float(1 / double(scale)); found_inf is set to 1 if any gradient
// held ±inf or NaN (checked before unscaling) and is otherwise left as it was (zero it first).
// ONE launch on CUDA (a CPU loop on the CPU, bit-identical). Gradients: any floating dtypes,
// mixed, each dense (contiguous, or a permutation of contiguous such as a transpose); no two
// may share memory. scale and found_inf: one-element f32 tensors on the gradients' device.
// InvalidArgument for a non-float, undefined or overlapping gradient, a bad scale / found_inf,
// or mixed devices; Unimplemented for a gradient with gaps (a slice: make it contiguous).
absl::Status UnscaleAndCheck(const std::vector<Tensor>& grads, const Tensor& scale,
                             const Tensor& found_inf);

// The torch _amp_update_scale_ rule (cuda/loss_scale.h) on device state: scale (f32), growth
// tracker and skipped count (i64), found_inf (f32), one element each, all on one device.
absl::Status UpdateScale(const Tensor& scale, const Tensor& growth_tracker,
                         const Tensor& num_skipped, const Tensor& found_inf, double growth_factor,
                         double backoff_factor, int64_t growth_interval);

// --- The scaler -----------------------------------------------------------------------------

struct LossScalerOptions {
  double init_scale = 65536.0;  // 2^16
  double growth_factor = 2.0;   // > 1
  double backoff_factor = 0.5;  // in (0, 1)
  int64_t growth_interval = 2000;
  bool enabled = true;
};

class DynamicLossScaler {
 public:
  // InvalidArgument unless init_scale is finite and > 0 (and representable in f32),
  // growth_factor > 1, 0 < backoff_factor < 1 and growth_interval >= 1 (checked when enabled).
  // The state lives on `device`; losses and gradients given to the scaler must be there too.
  static absl::StatusOr<DynamicLossScaler> Create(const LossScalerOptions& options = {},
                                                  Device device = Device::Cpu());

  DynamicLossScaler(DynamicLossScaler&&) = default;
  DynamicLossScaler& operator=(DynamicLossScaler&&) = default;
  DynamicLossScaler(const DynamicLossScaler&) = delete;
  DynamicLossScaler& operator=(const DynamicLossScaler&) = delete;

  bool enabled() const { return options_.enabled; }
  Device device() const { return device_; }
  const LossScalerOptions& options() const { return options_; }

  // loss * scale, recorded for autograd (the gradient reaching `loss` is the scale). A 16-bit
  // loss is cast to f32 first (so the scaled value cannot overflow), which is what is returned.
  // The multiplication reads the device scale tensor: no host sync. Disabled: `loss` itself.
  // Call Backward on the result before the next Update (Update changes the scale in place).
  absl::StatusOr<autograd::Variable> Scale(const autograd::Variable& loss) const;

  // Unscales the gradients of `params` (those without a gradient are skipped) in one fused
  // launch and returns this step's found_inf flag, a 0-dim f32 device tensor (1 = overflow). No
  // host sync. At most once between Updates (FailedPrecondition otherwise), so gradients are
  // never divided twice; StepIfFinite then reuses the flag. Disabled: a zero flag, grads kept.
  absl::StatusOr<Tensor> UnscaleAndCheck(const std::vector<autograd::Variable>& params);
  // As above, for gradient tensors.
  absl::StatusOr<Tensor> UnscaleAndCheckGrads(const std::vector<Tensor>& grads);

  // Applies the update rule for one step with this flag (a one-element f32 tensor on the
  // scaler's device, nonzero = overflow): backoff and count a skipped step, or count a clean
  // step and grow after growth_interval of them. Ends the step (a new UnscaleAndCheck may
  // follow). On the device, no host sync. Disabled: no-op.
  absl::Status Update(const Tensor& found_inf);

  // UnscaleAndCheck(params) (unless already called this step), then `step` only if every
  // gradient is finite, then Update. Returns whether `step` ran. An error from `step` is
  // returned as is (and the scale is not updated). Disabled: runs `step`, returns true.
  absl::StatusOr<bool> StepIfFinite(const std::vector<autograd::Variable>& params,
                                    const std::function<absl::Status()>& step);

  // The current state, read from the device (a host sync on CUDA). Disabled: 1, 0, 0.
  absl::StatusOr<double> scale() const;
  absl::StatusOr<int64_t> growth_tracker() const;
  absl::StatusOr<int64_t> num_skipped_steps() const;

  // {"scale": f32[], "growth_tracker": i64[], "num_skipped_steps": i64[]} as CPU tensors;
  // empty for a disabled scaler (as torch). Options are not state: they come from the config.
  absl::StatusOr<nn::NamedTensors> StateDict() const;
  // Restores exactly what StateDict saved. InvalidArgument for an empty state (saved by a
  // disabled scaler), a missing or unknown key, a wrong dtype or element count, or a scale that
  // is not finite and positive. A disabled scaler ignores the state. Ends any open step.
  absl::Status LoadStateDict(const nn::NamedTensors& state);

 private:
  DynamicLossScaler(const LossScalerOptions& options, Device device)
      : options_(options), device_(device) {}
  absl::Status CheckDevice(absl::string_view what, const Tensor& t) const;

  LossScalerOptions options_;
  Device device_;
  Tensor scale_;           // () f32
  Tensor growth_tracker_;  // () i64
  Tensor num_skipped_;     // () i64
  Tensor found_inf_;       // () f32: this step's flag once UnscaleAndCheck ran; else undefined
};

}  // namespace lyra::optim

#endif  // LYRA_OPTIM_LOSS_SCALER_H_
