#include "nn/rms_norm.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "cuda/rms_norm.h"
#include "tensor/dispatch.h"

namespace lyra::nn {

using autograd::Variable;
using norm_internal::CheckInputAndWeightDefined;
using norm_internal::DataOrUndefined;
using norm_internal::PrepareResidualNormBackward;
using norm_internal::PrepareResidualNormForward;
using norm_internal::ResidualNormBackwardOperands;
using norm_internal::ResidualNormForwardOperands;
using norm_internal::SetResidualNormBackwardParams;
using norm_internal::SetResidualNormForwardParams;

namespace functional {

absl::StatusOr<NormForwardResult> RmsNormForward(const Tensor& x, const Tensor& residual,
                                                 const Tensor& weight, double eps,
                                                 bool return_residual_out) {
  LYRA_RETURN_IF_ERROR(
      norm_internal::CheckNormForwardInputs("RmsNorm", x, residual, weight, Tensor()));
  LYRA_ASSIGN_OR_RETURN(ResidualNormForwardOperands o,
                        PrepareResidualNormForward(x, residual, weight, return_residual_out,
                                                   /*with_mean=*/false));
  cuda::RmsNormForwardParams p;
  SetResidualNormForwardParams(o, x.dtype(), eps, p);
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), p, cuda::RmsNormForwardReference,
                                           cuda::RmsNormForwardCuda));
  return std::move(o.out);
}

absl::StatusOr<NormGradients> RmsNormBackward(const Tensor& dy, const Tensor& dresidual_out,
                                              const Tensor& h, const Tensor& weight,
                                              const Tensor& rstd, bool return_dresidual) {
  LYRA_RETURN_IF_ERROR(norm_internal::CheckNormBackwardInputs("RmsNormBackward", dy,
                                                              dresidual_out, h, weight,
                                                              Tensor(), rstd));
  LYRA_ASSIGN_OR_RETURN(ResidualNormBackwardOperands o,
                        PrepareResidualNormBackward(dy, dresidual_out, h, weight, rstd,
                                                    return_dresidual));
  cuda::RmsNormBackwardParams p;
  SetResidualNormBackwardParams(o, dy.dtype(), p);
  LYRA_RETURN_IF_ERROR(internal::RunKernel(dy.device(), p, cuda::RmsNormBackwardReference,
                                           cuda::RmsNormBackwardCuda));
  LYRA_ASSIGN_OR_RETURN(o.out.dweight, o.out.dweight.To(weight.dtype()));
  return std::move(o.out);
}

absl::StatusOr<Variable> RmsNorm(const Variable& x, const Variable& weight, double eps) {
  LYRA_RETURN_IF_ERROR(CheckInputAndWeightDefined("RmsNorm", x, weight));
  LYRA_ASSIGN_OR_RETURN(NormForwardResult f,
                        RmsNormForward(x.data(), Tensor(), weight.data(), eps, false));
  const Tensor h = x.data(), w = weight.data(), rstd = f.rstd;
  return autograd::RecordUnaryResult(
      "RmsNorm", {x, weight}, f.y,
      [h, w, rstd](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(NormGradients d, RmsNormBackward(g[0], Tensor(), h, w, rstd, false));
        return std::vector<Tensor>{d.dx, d.dweight};
      });
}

absl::StatusOr<ResidualNormResult> RmsNormWithResidual(const Variable& x, const Variable& residual,
                                                       const Variable& weight, double eps) {
  LYRA_RETURN_IF_ERROR(CheckInputAndWeightDefined("RmsNormWithResidual", x, weight));
  LYRA_ASSIGN_OR_RETURN(NormForwardResult f, RmsNormForward(x.data(), DataOrUndefined(residual),
                                                            weight.data(), eps, true));
  const Tensor h = f.residual_out, w = weight.data(), rstd = f.rstd;
  const bool has_residual = residual.defined();
  LYRA_ASSIGN_OR_RETURN(
      std::vector<Variable> outs,
      autograd::RecordOp(
          "RmsNormWithResidual", {x, residual, weight}, {f.y, f.residual_out},
          [h, w, rstd,
           has_residual](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
            LYRA_ASSIGN_OR_RETURN(NormGradients d,
                                  RmsNormBackward(g[0], g[1], h, w, rstd, has_residual));
            return std::vector<Tensor>{d.dx, d.dresidual, d.dweight};
          }));
  return ResidualNormResult{outs[0], outs[1]};
}

}  // namespace functional

RMSNorm::RMSNorm(int64_t hidden, double eps) : Module("RMSNorm"), hidden_(hidden), eps_(eps) {
  LYRA_CHECK(hidden >= 1 && eps >= 0) << "RMSNorm(" << hidden << ", " << eps << ")";
  absl::StatusOr<Tensor> ones = Tensor::Ones({hidden}, DType::kF32);
  LYRA_CHECK(ones.ok()) << ones.status();
  weight_ = RegisterParameter("weight", *std::move(ones));
}

absl::StatusOr<std::unique_ptr<RMSNorm>> RMSNorm::Create(int64_t hidden, double eps) {
  if (hidden < 1 || !(eps >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RMSNorm: needs hidden >= 1 and eps >= 0, got hidden ", hidden, ", eps ", eps));
  }
  return std::make_unique<RMSNorm>(hidden, eps);
}

absl::StatusOr<Variable> RMSNorm::Forward(const Variable& x) const {
  return functional::RmsNorm(x, weight_, eps_);
}

absl::StatusOr<functional::ResidualNormResult> RMSNorm::ForwardWithResidual(
    const Variable& x, const Variable& residual) const {
  return functional::RmsNormWithResidual(x, residual, weight_, eps_);
}

}  // namespace lyra::nn
