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
using norm_internal::AsRows;
using norm_internal::ContiguousAs;
using norm_internal::Rows;
using norm_internal::StatDType;

namespace functional {

absl::StatusOr<NormForwardResult> LayerNormForward(const Tensor& x, const Tensor& residual,
                                                   const Tensor& weight, const Tensor& bias,
                                                   double eps, bool return_residual_out) {
  LYRA_RETURN_IF_ERROR(
      norm_internal::CheckNormForwardInputs("LayerNorm", x, residual, weight, bias));
  const DType stat = StatDType(x.dtype());
  LYRA_ASSIGN_OR_RETURN(Rows xr, AsRows(x));
  Rows rr;
  if (residual.defined()) {
    LYRA_ASSIGN_OR_RETURN(rr, AsRows(residual));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor w, ContiguousAs(weight, stat));
  Tensor b;
  if (bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(b, ContiguousAs(bias, stat));
  }

  NormForwardResult out;
  LYRA_ASSIGN_OR_RETURN(out.y, Tensor::Empty(x.shape(), x.dtype(), x.device()));
  if (return_residual_out) {
    LYRA_ASSIGN_OR_RETURN(out.residual_out, Tensor::Empty(x.shape(), stat, x.device()));
  }
  LYRA_ASSIGN_OR_RETURN(out.mean, Tensor::Empty({xr.rows}, stat, x.device()));
  LYRA_ASSIGN_OR_RETURN(out.rstd, Tensor::Empty({xr.rows}, stat, x.device()));

  cuda::LayerNormForwardParams p;
  p.dtype = x.dtype();
  p.rows = xr.rows;
  p.hidden = x.size(-1);
  p.eps = eps;
  p.x = xr.tensor.data();
  p.x_stride = xr.stride;
  if (residual.defined()) {
    p.residual = rr.tensor.data();
    p.residual_stride = rr.stride;
  }
  p.weight = w.data();
  if (bias.defined()) p.bias = b.data();
  p.y = out.y.data();
  p.y_stride = p.hidden;
  if (return_residual_out) {
    p.residual_out = out.residual_out.data();
    p.residual_out_stride = p.hidden;
  }
  p.mean = out.mean.data();
  p.rstd = out.rstd.data();
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), p, cuda::LayerNormForwardReference,
                                           cuda::LayerNormForwardCuda));
  return out;
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
  const DType stat = StatDType(dy.dtype());
  LYRA_ASSIGN_OR_RETURN(Rows dyr, AsRows(dy));
  Tensor h_stat = h;
  if (h.dtype() != stat) {
    LYRA_ASSIGN_OR_RETURN(h_stat, h.To(stat));
  }
  LYRA_ASSIGN_OR_RETURN(Rows hr, AsRows(h_stat));
  Rows dro;
  if (dresidual_out.defined()) {
    LYRA_ASSIGN_OR_RETURN(dro, AsRows(dresidual_out));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor w, ContiguousAs(weight, stat));
  LYRA_ASSIGN_OR_RETURN(Tensor mean_c, mean.Contiguous());
  LYRA_ASSIGN_OR_RETURN(Tensor rstd_c, rstd.Contiguous());

  NormGradients out;
  const int64_t hidden = dy.size(-1);
  LYRA_ASSIGN_OR_RETURN(out.dx, Tensor::Empty(dy.shape(), dy.dtype(), dy.device()));
  if (return_dresidual) {
    LYRA_ASSIGN_OR_RETURN(out.dresidual, Tensor::Empty(dy.shape(), stat, dy.device()));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dweight, Tensor::Empty({hidden}, stat, dy.device()));
  Tensor dbias;
  if (with_bias) {
    LYRA_ASSIGN_OR_RETURN(dbias, Tensor::Empty({hidden}, stat, dy.device()));
  }

  cuda::LayerNormBackwardParams p;
  p.dtype = dy.dtype();
  p.rows = dyr.rows;
  p.hidden = hidden;
  p.dy = dyr.tensor.data();
  p.dy_stride = dyr.stride;
  if (dresidual_out.defined()) {
    p.dresidual_out = dro.tensor.data();
    p.dresidual_out_stride = dro.stride;
  }
  p.h = hr.tensor.data();
  p.h_stride = hr.stride;
  p.weight = w.data();
  p.mean = mean_c.data();
  p.rstd = rstd_c.data();
  p.dx = out.dx.data();
  p.dx_stride = hidden;
  if (return_dresidual) {
    p.dresidual = out.dresidual.data();
    p.dresidual_stride = hidden;
  }
  p.dweight = dweight.data();
  if (with_bias) p.dbias = dbias.data();
  LYRA_RETURN_IF_ERROR(internal::RunKernel(dy.device(), p, cuda::LayerNormBackwardReference,
                                           cuda::LayerNormBackwardCuda));
  if (weight.dtype() != stat) {
    LYRA_ASSIGN_OR_RETURN(dweight, dweight.To(weight.dtype()));
  }
  if (with_bias && bias.dtype() != stat) {
    LYRA_ASSIGN_OR_RETURN(dbias, dbias.To(bias.dtype()));
  }
  out.dweight = std::move(dweight);
  out.dbias = std::move(dbias);
  return out;
}

absl::StatusOr<Variable> LayerNorm(const Variable& x, const Variable& weight, const Variable& bias,
                                   double eps) {
  if (!x.defined() || !weight.defined()) {
    return absl::InvalidArgumentError("LayerNorm: x and weight must be defined");
  }
  const Tensor b = bias.defined() ? bias.data() : Tensor();
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
  if (!x.defined() || !weight.defined()) {
    return absl::InvalidArgumentError("LayerNormWithResidual: x and weight must be defined");
  }
  const Tensor b = bias.defined() ? bias.data() : Tensor();
  const Tensor residual_data = residual.defined() ? residual.data() : Tensor();
  LYRA_ASSIGN_OR_RETURN(NormForwardResult f, LayerNormForward(x.data(), residual_data,
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
