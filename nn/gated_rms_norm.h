// Gated, grouped RMSNorm: the norm between Mamba-2's SSD and its out_proj, as one autograd node
// with a hand-written backward (cuda/gated_rms_norm.h has the math and the kernels).
//
//   h = x * silu(z)                                    z optional (then h = x: grouped RMSNorm)
//   y = T(T(h * rsqrt(mean_group(h^2) + eps)) * weight)
//
// The mean is over groups of `group_size` (S) consecutive channels of the last dim: S = H is
// Hugging Face's MambaRMSNormGated (Mamba2Mixer.torch_forward), S = H / n_groups is mamba_ssm's
// RMSNormGated(group_size = d_inner / ngroups, norm_before_gate = False) used by its fused
// kernels (the two agree when n_groups = 1, as in every released Mamba-2 checkpoint).
//
// x and z are [..., H] of one dtype (f32 / f16 / bf16 / f64); the weight is [H] in f32 (the FP32
// master, also inside an autocast region) or x's dtype; y has x's dtype. The arithmetic is f32
// (f64 for f64 x), in Hugging Face's order: the gate and the statistics in f32, the normalised
// value rounded to x's dtype before the weight multiply, the product rounded once more. The
// backward treats those roundings as the identity and saves x, z and rstd ([rows, H / S] f32):
// nothing of size [..., H] beyond the inputs.
//
// Inputs whose leading dims do not collapse to a single row stride (a transposed view) are copied
// to a contiguous tensor first; views that narrow the last dim (z and x sliced out of Mamba-2's
// in_proj output) are read in place.
//
//   LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::GatedRMSNorm> norm,
//                         nn::GatedRMSNorm::Create(/*hidden=*/1536, /*group_size=*/1536));
//   LYRA_ASSIGN_OR_RETURN(Variable out, norm->Forward(y, z));   // y, z [B, L, 1536]
#ifndef LYRA_NN_GATED_RMS_NORM_H_
#define LYRA_NN_GATED_RMS_NORM_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "nn/module.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace lyra::nn {

namespace functional {

// --- Tensor level (no autograd) ---------------------------------------------------------------
struct GatedNormForwardResult {
  Tensor y;     // x's shape and dtype
  Tensor rstd;  // [rows, H / S] f32 (f64 for f64 x), rows = x.numel() / H
};

// z may be undefined. InvalidArgument for non-float x, a z of another shape or dtype, a weight
// that is not [H] of f32 or x's dtype, a group size that does not divide H, mixed devices or
// eps < 0 (or NaN); Unimplemented for S > 32768 (f64: 16384) or more than 65535 groups.
absl::StatusOr<GatedNormForwardResult> GatedRmsNormForward(const Tensor& x, const Tensor& z,
                                                           const Tensor& weight,
                                                           int64_t group_size, double eps);

struct GatedNormGradients {
  Tensor dx;       // dy's shape and dtype
  Tensor dz;       // likewise; undefined without z
  Tensor dweight;  // weight's dtype
};

// Gradients of GatedRmsNormForward from dy (y's shape and dtype); x, z, weight as given to the
// forward, rstd the forward's.
absl::StatusOr<GatedNormGradients> GatedRmsNormBackward(const Tensor& dy, const Tensor& x,
                                                        const Tensor& z, const Tensor& weight,
                                                        const Tensor& rstd, int64_t group_size);

// --- Autograd ---------------------------------------------------------------------------------
// One node "GatedRmsNorm" with gradients to x, z (if defined) and weight.
absl::StatusOr<autograd::Variable> GatedRmsNorm(const autograd::Variable& x,
                                                const autograd::Variable& z,
                                                const autograd::Variable& weight,
                                                int64_t group_size, double eps);

}  // namespace functional

// The gated norm layer (Hugging Face's MambaRMSNormGated, mamba_ssm's RMSNormGated): parameter
// "weight" [hidden], initialised to ones.
class GatedRMSNorm : public Module {
 public:
  // InvalidArgument unless hidden >= 1, group_size >= 1 divides hidden, eps >= 0 and dtype is
  // floating; allocation errors on `device` are returned as they come.
  static absl::StatusOr<std::unique_ptr<GatedRMSNorm>> Create(int64_t hidden, int64_t group_size,
                                                              double eps = 1e-5,
                                                              DType dtype = DType::kF32,
                                                              Device device = Device::Cpu());

  // y = GatedRmsNorm(x, z, weight); z may be undefined (plain grouped RMSNorm).
  absl::StatusOr<autograd::Variable> Forward(const autograd::Variable& x,
                                             const autograd::Variable& z = {}) const;

  int64_t hidden() const { return hidden_; }
  int64_t group_size() const { return group_size_; }
  double eps() const { return eps_; }
  const autograd::Variable& weight() const { return weight_; }

 private:
  GatedRMSNorm(int64_t hidden, int64_t group_size, double eps, Tensor weight);

  int64_t hidden_;
  int64_t group_size_;
  double eps_;
  autograd::Variable weight_;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_GATED_RMS_NORM_H_
