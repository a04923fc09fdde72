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
using norm_internal::AsRows;
using norm_internal::ContiguousAs;
using norm_internal::Rows;
using norm_internal::StatDType;

namespace functional {

absl::StatusOr<NormForwardResult> RmsNormForward(const Tensor& x, const Tensor& residual,
                                                 const Tensor& weight, double eps,
                                                 bool return_residual_out) {
  LYRA_RETURN_IF_ERROR(
      norm_internal::CheckNormForwardInputs("RmsNorm", x, residual, weight, Tensor()));
  const DType stat = StatDType(x.dtype());
  LYRA_ASSIGN_OR_RETURN(Rows xr, AsRows(x));
  Rows rr;
  if (residual.defined()) {
    LYRA_ASSIGN_OR_RETURN(rr, AsRows(residual));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor w, ContiguousAs(weight, stat));

  NormForwardResult out;
  LYRA_ASSIGN_OR_RETURN(out.y, Tensor::Empty(x.shape(), x.dtype(), x.device()));
  if (return_residual_out) {
    LYRA_ASSIGN_OR_RETURN(out.residual_out, Tensor::Empty(x.shape(), stat, x.device()));
  }
  LYRA_ASSIGN_OR_RETURN(out.rstd, Tensor::Empty({xr.rows}, stat, x.device()));

  cuda::RmsNormForwardParams p;
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
  p.y = out.y.data();
  p.y_stride = p.hidden;
  if (return_residual_out) {
    p.residual_out = out.residual_out.data();
    p.residual_out_stride = p.hidden;
  }
  p.rstd = out.rstd.data();
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), p, cuda::RmsNormForwardReference,
                                           cuda::RmsNormForwardCuda));
  return out;
}

absl::StatusOr<NormGradients> RmsNormBackward(const Tensor& dy, const Tensor& dresidual_out,
                                              const Tensor& h, const Tensor& weight,
                                              const Tensor& rstd, bool return_dresidual) {
  LYRA_RETURN_IF_ERROR(norm_internal::CheckNormBackwardInputs("RmsNormBackward", dy,
                                                              dresidual_out, h, weight,
                                                              Tensor(), rstd));
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
  LYRA_ASSIGN_OR_RETURN(Tensor rstd_c, rstd.Contiguous());

  NormGradients out;
  const int64_t hidden = dy.size(-1);
  LYRA_ASSIGN_OR_RETURN(out.dx, Tensor::Empty(dy.shape(), dy.dtype(), dy.device()));
  if (return_dresidual) {
    LYRA_ASSIGN_OR_RETURN(out.dresidual, Tensor::Empty(dy.shape(), stat, dy.device()));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dweight, Tensor::Empty({hidden}, stat, dy.device()));

  cuda::RmsNormBackwardParams p;
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
  p.rstd = rstd_c.data();
  p.dx = out.dx.data();
  p.dx_stride = hidden;
  if (return_dresidual) {
    p.dresidual = out.dresidual.data();
    p.dresidual_stride = hidden;
  }
  p.dweight = dweight.data();
  LYRA_RETURN_IF_ERROR(internal::RunKernel(dy.device(), p, cuda::RmsNormBackwardReference,
                                           cuda::RmsNormBackwardCuda));
  if (weight.dtype() != stat) {
    LYRA_ASSIGN_OR_RETURN(dweight, dweight.To(weight.dtype()));
  }
  out.dweight = std::move(dweight);
  return out;
}

absl::StatusOr<Variable> RmsNorm(const Variable& x, const Variable& weight, double eps) {
  if (!x.defined() || !weight.defined()) {
    return absl::InvalidArgumentError("RmsNorm: x and weight must be defined");
  }
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
  if (!x.defined() || !weight.defined()) {
    return absl::InvalidArgumentError("RmsNormWithResidual: x and weight must be defined");
  }
  const Tensor residual_data = residual.defined() ? residual.data() : Tensor();
  LYRA_ASSIGN_OR_RETURN(NormForwardResult f,
                        RmsNormForward(x.data(), residual_data, weight.data(), eps, true));
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
