// Global-norm gradient clipping, as torch.nn.utils.clip_grad_norm_ (norm_type 2):
//
//   norm = sqrt(sum over every element of every gradient of g^2)
//   g   *= min(1, max_norm / (norm + 1e-6))
//
// Fused (cuda/grad_norm.h): one multi-tensor reduction launch (per-chunk f32 partial sums of
// squares, reduced in f64 by the last block) and one multi-tensor scale launch that reads the
// coefficient from device memory, so the scaling needs no host round trip. The norm is then
// copied to the host once (one synchronisation) for the returned double.
//
// Non-finite norms: if the norm is NaN or infinite it is returned as such and the gradients are
// NOT scaled (torch would multiply them by NaN or 0). A dynamic loss scaler skips such a step.
//
// Parameters without a gradient are ignored; gradients may be f32, f16 or bf16 (summed in f32,
// scaled in f32 and rounded back), contiguous or not (strided ones are clipped through a
// contiguous copy that is written back), all on one device.
#ifndef LYRA_OPTIM_CLIP_H_
#define LYRA_OPTIM_CLIP_H_

#include <vector>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::optim {

struct ClipResult {
  // The total norm before clipping, as computed in f32 (NaN / inf when the gradients hold them;
  // 0 when no parameter has a gradient).
  double total_norm = 0;
  // The same norm and the applied coefficient (1: not scaled), f32 scalars on the gradients'
  // device (the CPU when there are none).
  Tensor total_norm_device;
  Tensor clip_coef_device;
};

// InvalidArgument for max_norm negative or not finite, a gradient of another dtype, or gradients
// on several devices.
absl::StatusOr<ClipResult> ClipGradNorm(const std::vector<autograd::Variable>& params,
                                        double max_norm);

// The same norm, without scaling anything.
absl::StatusOr<double> GradNorm(const std::vector<autograd::Variable>& params);

}  // namespace lyra::optim

#endif  // LYRA_OPTIM_CLIP_H_
