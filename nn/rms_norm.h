// RMSNorm with the fused residual add of Mamba's pre-norm blocks (residual kept in FP32), as
// one autograd node with a hand-written backward.
//
//   residual_out = x + residual                 (residual optional; f32, or f64 for f64 x)
//   y = T(T(residual_out * rsqrt(mean(residual_out^2, last dim) + eps)) * weight)
//
// x is [..., H] in f32 / f16 / bf16 / f64; residual has x's shape in f32 (f64 for f64 x); the
// weight is [H] in f32 (the FP32 master, also inside an autocast region) or x's dtype; y has x's
// dtype. The statistics are f32 (f64 for f64 x). For 16-bit x the normalised value is rounded to
// x's dtype before the weight multiply, exactly as Hugging Face's MambaRMSNorm
// (`weight * hidden_states.to(input_dtype)`), so bf16 results match HF's bit for bit up to the
// order of the sum of squares. The backward treats that rounding as the identity (as autograd
// does a cast) and saves only residual_out (or x) and rstd ([rows] f32).
//
// Inputs whose leading dims do not collapse to a single row stride (a transposed view) are
// copied to a contiguous tensor first; views that narrow the last dim are read in place.
//
//   nn::RMSNorm norm(768);
//   LYRA_ASSIGN_OR_RETURN(functional::ResidualNormResult r, norm.ForwardWithResidual(x, residual));
//   // r.y feeds the mixer; r.residual_out is the next block's residual.
#ifndef LYRA_NN_RMS_NORM_H_
#define LYRA_NN_RMS_NORM_H_

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
// residual may be undefined (then residual_out = x in f32). residual_out is returned only when
// `return_residual_out`. InvalidArgument for a weight that is not [H], a residual of another
// shape or dtype, non-float x, mixed devices or eps < 0; Unimplemented for H > 32768 (f64:
// 16384).
absl::StatusOr<NormForwardResult> RmsNormForward(const Tensor& x, const Tensor& residual,
                                                 const Tensor& weight, double eps,
                                                 bool return_residual_out);

// Gradients of RmsNormForward from dy (y's shape and dtype) and dresidual_out (undefined when
// no gradient reached residual_out). `h` is the forward's residual_out, or x when the forward
// had no residual; rstd is the forward's. dx has dy's dtype; dresidual (the same gradient, in
// f32 / f64) is returned when `return_dresidual`; dweight has weight's dtype.
absl::StatusOr<NormGradients> RmsNormBackward(const Tensor& dy, const Tensor& dresidual_out,
                                              const Tensor& h, const Tensor& weight,
                                              const Tensor& rstd, bool return_dresidual);

// --- Autograd ---------------------------------------------------------------------------------
// y = RMSNorm(x) * weight: one node "RmsNorm" with gradients to x and weight.
absl::StatusOr<autograd::Variable> RmsNorm(const autograd::Variable& x,
                                           const autograd::Variable& weight, double eps);
// {y, residual_out} with residual_out = x + residual (residual may be undefined: residual_out
// = x in f32): one node "RmsNormWithResidual" whose backward takes the gradients of both outputs
// and returns those of x, residual (the same values, f32) and weight.
absl::StatusOr<ResidualNormResult> RmsNormWithResidual(const autograd::Variable& x,
                                                       const autograd::Variable& residual,
                                                       const autograd::Variable& weight,
                                                       double eps);

}  // namespace functional

// The RMSNorm layer: parameter "weight" [hidden] f32, initialised to ones.
class RMSNorm : public Module {
 public:
  // CHECK-fails unless hidden >= 1 and eps >= 0: sizes from user input go through Create.
  explicit RMSNorm(int64_t hidden, double eps = 1e-5);
  // InvalidArgument for hidden < 1 or eps < 0 (or NaN).
  static absl::StatusOr<std::unique_ptr<RMSNorm>> Create(int64_t hidden, double eps = 1e-5);

  absl::StatusOr<autograd::Variable> Forward(const autograd::Variable& x) const;
  // residual may be undefined (the first block): residual_out is then x in f32.
  absl::StatusOr<functional::ResidualNormResult> ForwardWithResidual(
      const autograd::Variable& x, const autograd::Variable& residual) const;

  int64_t hidden() const { return hidden_; }
  double eps() const { return eps_; }
  const autograd::Variable& weight() const { return weight_; }

 private:
  int64_t hidden_;
  double eps_;
  autograd::Variable weight_;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_RMS_NORM_H_
