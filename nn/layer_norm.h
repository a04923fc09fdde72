// LayerNorm over the last dim, with the same optional fused residual add as nn/rms_norm.h, as
// one autograd node with a hand-written backward.
//
//   residual_out = x + residual                  (residual optional; f32, or f64 for f64 x)
//   y = T((residual_out - mean) * rsqrt(var + eps) * weight + bias)     (biased var; bias optional)
//
// Types as RMSNorm: x [..., H] f32 / f16 / bf16 / f64, residual f32 (f64), weight and bias [H] f32
// or x's dtype, y in x's dtype, statistics in f32 (f64). Unlike RMSNorm there is one rounding to
// x's dtype, at the end (as torch.nn.functional.layer_norm). The backward saves residual_out (or
// x), mean and rstd ([rows] f32) and recomputes the normalised values.
#ifndef LYRA_NN_LAYER_NORM_H_
#define LYRA_NN_LAYER_NORM_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "nn/module.h"
#include "nn/norm_common.h"
#include "tensor/tensor.h"

namespace lyra::nn {

namespace functional {

// --- Tensor level (no autograd) ---------------------------------------------------------------
// residual and bias may be undefined. Errors as RmsNormForward; Unimplemented for H > 16384
// (f64: 8192).
absl::StatusOr<NormForwardResult> LayerNormForward(const Tensor& x, const Tensor& residual,
                                                   const Tensor& weight, const Tensor& bias,
                                                   double eps, bool return_residual_out);

// Gradients of LayerNormForward; `h` is the forward's residual_out (or x), mean and rstd the
// forward's. dbias (in bias's dtype) is returned when `bias` is defined; only its dtype is read.
absl::StatusOr<NormGradients> LayerNormBackward(const Tensor& dy, const Tensor& dresidual_out,
                                                const Tensor& h, const Tensor& weight,
                                                const Tensor& mean, const Tensor& rstd,
                                                const Tensor& bias, bool return_dresidual);

// --- Autograd ---------------------------------------------------------------------------------
// One node "LayerNorm" with gradients to x, weight and bias (bias may be undefined).
absl::StatusOr<autograd::Variable> LayerNorm(const autograd::Variable& x,
                                             const autograd::Variable& weight,
                                             const autograd::Variable& bias, double eps);
// {y, residual_out}: one node "LayerNormWithResidual" with gradients to x, residual (f32), weight
// and bias.
absl::StatusOr<ResidualNormResult> LayerNormWithResidual(const autograd::Variable& x,
                                                         const autograd::Variable& residual,
                                                         const autograd::Variable& weight,
                                                         const autograd::Variable& bias,
                                                         double eps);

}  // namespace functional

// The LayerNorm layer: parameters "weight" [hidden] f32 (ones) and, with `bias`, "bias" [hidden]
// f32 (zeros).
class LayerNorm : public Module {
 public:
  // CHECK-fails unless hidden >= 1 and eps >= 0: sizes from user input go through Create.
  explicit LayerNorm(int64_t hidden, double eps = 1e-5, bool bias = true);
  static absl::StatusOr<std::unique_ptr<LayerNorm>> Create(int64_t hidden, double eps = 1e-5,
                                                           bool bias = true);

  absl::StatusOr<autograd::Variable> Forward(const autograd::Variable& x) const;
  absl::StatusOr<functional::ResidualNormResult> ForwardWithResidual(
      const autograd::Variable& x, const autograd::Variable& residual) const;

  int64_t hidden() const { return hidden_; }
  double eps() const { return eps_; }
  const autograd::Variable& weight() const { return weight_; }
  // Undefined without a bias.
  const autograd::Variable& bias() const { return bias_; }

 private:
  int64_t hidden_;
  double eps_;
  autograd::Variable weight_;
  autograd::Variable bias_;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_LAYER_NORM_H_
