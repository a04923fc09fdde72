#include "nn/gated_rms_norm.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "cuda/gated_rms_norm.h"
#include "nn/norm_common.h"
#include "tensor/dispatch.h"

namespace lyra::nn {

using autograd::Variable;
using norm_internal::AsRows;
using norm_internal::AsRowsIfDefined;
using norm_internal::CheckInputAndWeightDefined;
using norm_internal::ContiguousAs;
using norm_internal::DataOrUndefined;
using norm_internal::Rows;
using norm_internal::StatDType;

namespace functional {
namespace {

// `t` (named `what`) must have `ref`'s shape, dtype and device.
absl::Status CheckLike(absl::string_view op, absl::string_view what, const Tensor& t,
                       const Tensor& ref) {
  if (t.shape() != ref.shape() || t.dtype() != ref.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " ", t.Describe(),
                                                   " must match ", ref.Describe()));
  }
  if (t.device() != ref.device()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " ", t.Describe(),
                                                   " is not on ", ref.device().ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckGroupSize(absl::string_view op, const Tensor& x, int64_t group_size) {
  const int64_t hidden = x.size(-1);
  if (group_size < 1 || hidden % group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": group size ", group_size,
                                                   " does not divide the last dim of ",
                                                   x.Describe()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<GatedNormForwardResult> GatedRmsNormForward(const Tensor& x, const Tensor& z,
                                                           const Tensor& weight,
                                                           int64_t group_size, double eps) {
  constexpr absl::string_view kOp = "GatedRmsNorm";
  LYRA_RETURN_IF_ERROR(norm_internal::CheckNormForwardInputs(kOp, x, Tensor(), weight, Tensor()));
  if (z.defined()) LYRA_RETURN_IF_ERROR(CheckLike(kOp, "z", z, x));
  LYRA_RETURN_IF_ERROR(CheckGroupSize(kOp, x, group_size));
  const DType stat = StatDType(x.dtype());
  const int64_t hidden = x.size(-1);
  LYRA_ASSIGN_OR_RETURN(Rows xr, AsRows(x));
  LYRA_ASSIGN_OR_RETURN(Rows zr, AsRowsIfDefined(z));
  LYRA_ASSIGN_OR_RETURN(Tensor w, ContiguousAs(weight, stat));

  GatedNormForwardResult out;
  LYRA_ASSIGN_OR_RETURN(out.y, Tensor::Empty(x.shape(), x.dtype(), x.device()));
  LYRA_ASSIGN_OR_RETURN(out.rstd,
                        Tensor::Empty({xr.rows, hidden / group_size}, stat, x.device()));

  cuda::GatedRmsNormForwardParams p;
  p.dtype = x.dtype();
  p.rows = xr.rows;
  p.hidden = hidden;
  p.group_size = group_size;
  p.eps = eps;
  p.x = xr.tensor.data();
  p.x_stride = xr.stride;
  if (z.defined()) {
    p.z = zr.tensor.data();
    p.z_stride = zr.stride;
  }
  p.weight = w.data();
  p.y = out.y.data();
  p.y_stride = hidden;
  p.rstd = out.rstd.data();
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), p, cuda::GatedRmsNormForwardReference,
                                           cuda::GatedRmsNormForwardCuda));
  return out;
}

absl::StatusOr<GatedNormGradients> GatedRmsNormBackward(const Tensor& dy, const Tensor& x,
                                                        const Tensor& z, const Tensor& weight,
                                                        const Tensor& rstd, int64_t group_size) {
  constexpr absl::string_view kOp = "GatedRmsNormBackward";
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&dy, &x, &weight, &rstd}));
  LYRA_RETURN_IF_ERROR(CheckLike(kOp, "x", x, dy));
  LYRA_RETURN_IF_ERROR(norm_internal::CheckNormForwardInputs(kOp, dy, Tensor(), weight, Tensor()));
  if (z.defined()) LYRA_RETURN_IF_ERROR(CheckLike(kOp, "z", z, dy));
  LYRA_RETURN_IF_ERROR(CheckGroupSize(kOp, dy, group_size));
  const DType stat = StatDType(dy.dtype());
  const int64_t hidden = dy.size(-1);
  const int64_t rows = hidden == 0 ? 0 : dy.numel() / hidden;
  const int64_t groups = hidden / group_size;
  if (rstd.numel() != rows * groups || rstd.dtype() != stat || rstd.device() != dy.device()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": rstd ", rstd.Describe(), " must hold ", rows, " x ", groups, " ",
        DTypeName(stat), " values on ", dy.device().ToString(), " for dy ", dy.Describe()));
  }
  LYRA_ASSIGN_OR_RETURN(Rows dyr, AsRows(dy));
  LYRA_ASSIGN_OR_RETURN(Rows xr, AsRows(x));
  LYRA_ASSIGN_OR_RETURN(Rows zr, AsRowsIfDefined(z));
  LYRA_ASSIGN_OR_RETURN(Tensor w, ContiguousAs(weight, stat));
  LYRA_ASSIGN_OR_RETURN(Tensor rstd_c, rstd.Contiguous());

  GatedNormGradients out;
  LYRA_ASSIGN_OR_RETURN(out.dx, Tensor::Empty(dy.shape(), dy.dtype(), dy.device()));
  if (z.defined()) {
    LYRA_ASSIGN_OR_RETURN(out.dz, Tensor::Empty(dy.shape(), dy.dtype(), dy.device()));
  }
  LYRA_ASSIGN_OR_RETURN(out.dweight, Tensor::Empty({hidden}, stat, dy.device()));

  cuda::GatedRmsNormBackwardParams p;
  p.dtype = dy.dtype();
  p.rows = dyr.rows;
  p.hidden = hidden;
  p.group_size = group_size;
  p.dy = dyr.tensor.data();
  p.dy_stride = dyr.stride;
  p.x = xr.tensor.data();
  p.x_stride = xr.stride;
  if (z.defined()) {
    p.z = zr.tensor.data();
    p.z_stride = zr.stride;
    p.dz = out.dz.data();
    p.dz_stride = hidden;
  }
  p.weight = w.data();
  p.rstd = rstd_c.data();
  p.dx = out.dx.data();
  p.dx_stride = hidden;
  p.dweight = out.dweight.data();
  LYRA_RETURN_IF_ERROR(internal::RunKernel(dy.device(), p, cuda::GatedRmsNormBackwardReference,
                                           cuda::GatedRmsNormBackwardCuda));
  LYRA_ASSIGN_OR_RETURN(out.dweight, out.dweight.To(weight.dtype()));
  return out;
}

absl::StatusOr<Variable> GatedRmsNorm(const Variable& x, const Variable& z,
                                      const Variable& weight, int64_t group_size, double eps) {
  LYRA_RETURN_IF_ERROR(CheckInputAndWeightDefined("GatedRmsNorm", x, weight));
  const Tensor xd = x.data(), zd = DataOrUndefined(z), w = weight.data();
  LYRA_ASSIGN_OR_RETURN(GatedNormForwardResult f,
                        GatedRmsNormForward(xd, zd, w, group_size, eps));
  const Tensor rstd = f.rstd;
  return autograd::RecordUnaryResult(
      "GatedRmsNorm", {x, z, weight}, std::move(f.y),
      [xd, zd, w, rstd, group_size](
          const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(GatedNormGradients d,
                              GatedRmsNormBackward(g[0], xd, zd, w, rstd, group_size));
        return std::vector<Tensor>{d.dx, d.dz, d.dweight};
      });
}

}  // namespace functional

GatedRMSNorm::GatedRMSNorm(int64_t hidden, int64_t group_size, double eps, Tensor weight)
    : Module("GatedRMSNorm"), hidden_(hidden), group_size_(group_size), eps_(eps) {
  weight_ = RegisterParameter("weight", std::move(weight));
}

absl::StatusOr<std::unique_ptr<GatedRMSNorm>> GatedRMSNorm::Create(int64_t hidden,
                                                                   int64_t group_size, double eps,
                                                                   DType dtype, Device device) {
  if (hidden < 1 || group_size < 1 || hidden % group_size != 0 || !(eps >= 0) ||
      !IsFloating(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "GatedRMSNorm: needs hidden >= 1, a group size dividing it, eps >= 0 and a floating "
        "dtype, got hidden ",
        hidden, ", group size ", group_size, ", eps ", eps, ", ", DTypeName(dtype)));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor ones, Tensor::Ones({hidden}, dtype, device));
  return std::unique_ptr<GatedRMSNorm>(new GatedRMSNorm(hidden, group_size, eps, std::move(ones)));
}

absl::StatusOr<Variable> GatedRMSNorm::Forward(const Variable& x, const Variable& z) const {
  return functional::GatedRmsNorm(x, z, weight_, group_size_, eps_);
}

}  // namespace lyra::nn
