#include "nn/layer_norm.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "cuda/layer_norm.h"
#include "tensor/dispatch.h"

namespace lyra::nn {

using autograd::Variable;
using norm_internal::CheckInputAndWeightDefined;
using norm_internal::ContiguousAs;
using norm_internal::DataOrUndefined;
using norm_internal::PrepareResidualNormBackward;
using norm_internal::PrepareResidualNormForward;
using norm_internal::ResidualNormBackwardOperands;
using norm_internal::ResidualNormForwardOperands;
using norm_internal::SetResidualNormBackwardParams;
using norm_internal::SetResidualNormForwardParams;
using norm_internal::StatDType;

namespace functional {

absl::StatusOr<NormForwardResult> LayerNormForward(const Tensor& x, const Tensor& residual,
                                                   const Tensor& weight, const Tensor& bias,
                                                   double eps, bool return_residual_out) {
  LYRA_RETURN_IF_ERROR(
      norm_internal::CheckNormForwardInputs("LayerNorm", x, residual, weight, bias));
  LYRA_ASSIGN_OR_RETURN(ResidualNormForwardOperands o,
                        PrepareResidualNormForward(x, residual, weight, return_residual_out,
                                                   /*with_mean=*/true));
  Tensor b;
  if (bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(b, ContiguousAs(bias, StatDType(x.dtype())));
  }
  cuda::LayerNormForwardParams p;
  SetResidualNormForwardParams(o, x.dtype(), eps, p);
  if (bias.defined()) p.bias = b.data();
  p.mean = o.out.mean.data();
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), p, cuda::LayerNormForwardReference,
                                           cuda::LayerNormForwardCuda));
  return std::move(o.out);
}

absl::StatusOr<NormGradients> LayerNormBackward(const Tensor& dy, const Tensor& dresidual_out,
                                                const Tensor& h, const Tensor& weight,
                                                const Tensor& mean, const Tensor& rstd,
                                                const Tensor& bias, bool return_dresidual) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("LayerNormBackward", {&mean}));
  const bool with_bias = bias.defined();
  LYRA_RETURN_IF_ERROR(norm_internal::CheckNormBackwardInputs("LayerNormBackward", dy,
                                                              dresidual_out, h, weight, mean,
                                                              rstd));
  LYRA_ASSIGN_OR_RETURN(ResidualNormBackwardOperands o,
                        PrepareResidualNormBackward(dy, dresidual_out, h, weight, rstd,
                                                    return_dresidual));
  LYRA_ASSIGN_OR_RETURN(Tensor mean_c, mean.Contiguous());
  if (with_bias) {
    LYRA_ASSIGN_OR_RETURN(o.out.dbias,
                          Tensor::Empty({dy.size(-1)}, StatDType(dy.dtype()), dy.device()));
  }

  cuda::LayerNormBackwardParams p;
  SetResidualNormBackwardParams(o, dy.dtype(), p);
  p.mean = mean_c.data();
  if (with_bias) p.dbias = o.out.dbias.data();
  LYRA_RETURN_IF_ERROR(internal::RunKernel(dy.device(), p, cuda::LayerNormBackwardReference,
                                           cuda::LayerNormBackwardCuda));
  LYRA_ASSIGN_OR_RETURN(o.out.dweight, o.out.dweight.To(weight.dtype()));
  if (with_bias) {
    LYRA_ASSIGN_OR_RETURN(o.out.dbias, o.out.dbias.To(bias.dtype()));
  }
  return std::move(o.out);
}

absl::StatusOr<Variable> LayerNorm(const Variable& x, const Variable& weight, const Variable& bias,
                                   double eps) {
  LYRA_RETURN_IF_ERROR(CheckInputAndWeightDefined("LayerNorm", x, weight));
  const Tensor b = DataOrUndefined(bias);
  LYRA_ASSIGN_OR_RETURN(NormForwardResult f,
                        LayerNormForward(x.data(), Tensor(), weight.data(), b, eps, false));
  const Tensor h = x.data(), w = weight.data(), mean = f.mean, rstd = f.rstd;
  return autograd::RecordUnaryResult(
      "LayerNorm", {x, weight, bias}, f.y,
      [h, w, b, mean, rstd](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(NormGradients d,
                              LayerNormBackward(g[0], Tensor(), h, w, mean, rstd, b, false));
        return std::vector<Tensor>{d.dx, d.dweight, d.dbias};
      });
}

absl::StatusOr<ResidualNormResult> LayerNormWithResidual(const Variable& x,
                                                         const Variable& residual,
                                                         const Variable& weight,
                                                         const Variable& bias, double eps) {
  LYRA_RETURN_IF_ERROR(CheckInputAndWeightDefined("LayerNormWithResidual", x, weight));
  const Tensor b = DataOrUndefined(bias);
  LYRA_ASSIGN_OR_RETURN(NormForwardResult f, LayerNormForward(x.data(), DataOrUndefined(residual),
                                                              weight.data(), b, eps, true));
  const Tensor h = f.residual_out, w = weight.data(), mean = f.mean, rstd = f.rstd;
  const bool has_residual = residual.defined();
  LYRA_ASSIGN_OR_RETURN(
      std::vector<Variable> outs,
      autograd::RecordOp(
          "LayerNormWithResidual", {x, residual, weight, bias}, {f.y, f.residual_out},
          [h, w, b, mean, rstd,
           has_residual](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
            LYRA_ASSIGN_OR_RETURN(
                NormGradients d,
                LayerNormBackward(g[0], g[1], h, w, mean, rstd, b, has_residual));
            return std::vector<Tensor>{d.dx, d.dresidual, d.dweight, d.dbias};
          }));
  return ResidualNormResult{outs[0], outs[1]};
}

}  // namespace functional

LayerNorm::LayerNorm(int64_t hidden, double eps, bool bias)
    : Module("LayerNorm"), hidden_(hidden), eps_(eps) {
  LYRA_CHECK(hidden >= 1 && eps >= 0) << "LayerNorm(" << hidden << ", " << eps << ")";
  absl::StatusOr<Tensor> ones = Tensor::Ones({hidden}, DType::kF32);
  LYRA_CHECK(ones.ok()) << ones.status();
  weight_ = RegisterParameter("weight", *std::move(ones));
  if (bias) {
    absl::StatusOr<Tensor> zeros = Tensor::Zeros({hidden}, DType::kF32);
    LYRA_CHECK(zeros.ok()) << zeros.status();
    bias_ = RegisterParameter("bias", *std::move(zeros));
  }
}

absl::StatusOr<std::unique_ptr<LayerNorm>> LayerNorm::Create(int64_t hidden, double eps,
                                                             bool bias) {
  if (hidden < 1 || !(eps >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LayerNorm: needs hidden >= 1 and eps >= 0, got hidden ", hidden, ", eps ", eps));
  }
  return std::make_unique<LayerNorm>(hidden, eps, bias);
}

absl::StatusOr<Variable> LayerNorm::Forward(const Variable& x) const {
  return functional::LayerNorm(x, weight_, bias_, eps_);
}

absl::StatusOr<functional::ResidualNormResult> LayerNorm::ForwardWithResidual(
    const Variable& x, const Variable& residual) const {
  return functional::LayerNormWithResidual(x, residual, weight_, bias_, eps_);
}

}  // namespace lyra::nn
