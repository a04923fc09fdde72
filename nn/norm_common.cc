#include "nn/norm_common.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "tensor/dispatch.h"

namespace lyra::nn::norm_internal {

absl::StatusOr<Rows> AsRows(const Tensor& t) {
  const int64_t hidden = t.size(-1);
  const int64_t rows = hidden == 0 ? 0 : t.numel() / hidden;
  // The leading dims that matter (size > 1) must nest: stride[d] == stride[d + 1] * size[d + 1].
  bool in_place = hidden == 1 || t.stride(-1) == 1;
  int64_t row_stride = hidden;
  int64_t inner_size = 0, inner_stride = 0;  // the last nontrivial leading dim seen so far
  for (int d = t.dim() - 2; d >= 0 && in_place; --d) {
    if (t.size(d) == 1) continue;
    if (inner_size == 0) {
      row_stride = t.stride(d);
    } else if (t.stride(d) != inner_stride * inner_size) {
      in_place = false;
    }
    inner_size = t.size(d);
    inner_stride = t.stride(d);
  }
  if (in_place) return Rows{t, rows, row_stride};
  LYRA_ASSIGN_OR_RETURN(Tensor copy, t.Contiguous());
  return Rows{copy, rows, hidden};
}

namespace {

absl::Status CheckVector(absl::string_view op, absl::string_view what, const Tensor& v,
                         const Tensor& x) {
  const int64_t hidden = x.size(-1);
  if (v.dim() != 1 || v.size(0) != hidden) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " ", v.Describe(),
                                                   " must be [", hidden, "], the last dim of ",
                                                   x.Describe()));
  }
  if (v.dtype() != DType::kF32 && v.dtype() != x.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " ", v.Describe(),
                                                   " must be f32 or the dtype of ", x.Describe()));
  }
  return absl::OkStatus();
}

// `t` must have `ref`'s shape and the statistics dtype of `ref`.
absl::Status CheckStream(absl::string_view op, absl::string_view what, const Tensor& t,
                         const Tensor& ref) {
  const DType stat = StatDType(ref.dtype());
  if (t.shape() != ref.shape() || t.dtype() != stat) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " ", t.Describe(), " must be ",
                                                   DTypeName(stat), ShapeToString(ref.shape()),
                                                   " to match ", ref.Describe()));
  }
  return absl::OkStatus();
}

// Every tensor of `ts` must be on the device of `ref` (named `ref_name` in the error).
absl::Status CheckOnDeviceOf(absl::string_view op, absl::string_view ref_name, const Tensor& ref,
                             const std::vector<const Tensor*>& ts) {
  for (const Tensor* t : ts) {
    if (t->device() != ref.device()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", t->Describe(), " is not on ",
                                                     ref.device().ToString(), " with ",
                                                     ref_name));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckNormForwardInputs(absl::string_view op, const Tensor& x, const Tensor& residual,
                                    const Tensor& weight, const Tensor& bias) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(op, {&x, &weight}));
  if (!IsFloating(x.dtype()) || x.dim() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": x must be a floating-point tensor with at least one dim, got ", x.Describe()));
  }
  LYRA_RETURN_IF_ERROR(CheckVector(op, "weight", weight, x));
  if (bias.defined()) LYRA_RETURN_IF_ERROR(CheckVector(op, "bias", bias, x));
  if (residual.defined()) LYRA_RETURN_IF_ERROR(CheckStream(op, "residual", residual, x));
  std::vector<const Tensor*> all = {&x, &weight};
  if (bias.defined()) all.push_back(&bias);
  if (residual.defined()) all.push_back(&residual);
  return CheckOnDeviceOf(op, "x", x, all);
}

absl::Status CheckNormBackwardInputs(absl::string_view op, const Tensor& dy,
                                     const Tensor& dresidual_out, const Tensor& h,
                                     const Tensor& weight, const Tensor& mean,
                                     const Tensor& rstd) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(op, {&dy, &h, &weight, &rstd}));
  if (!IsFloating(dy.dtype()) || dy.dim() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": dy must be a floating-point tensor with at least one dim, got ", dy.Describe()));
  }
  const DType stat = StatDType(dy.dtype());
  if (h.shape() != dy.shape() || (h.dtype() != dy.dtype() && h.dtype() != stat)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": normalised input ", h.Describe(),
                                                   " does not match dy ", dy.Describe()));
  }
  if (dresidual_out.defined()) {
    LYRA_RETURN_IF_ERROR(CheckStream(op, "dresidual_out", dresidual_out, dy));
  }
  LYRA_RETURN_IF_ERROR(CheckVector(op, "weight", weight, dy));
  const int64_t rows = dy.numel() / dy.size(-1);
  for (const Tensor* s : {&mean, &rstd}) {
    if (s->defined() && (s->numel() != rows || s->dtype() != stat)) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": row statistic ", s->Describe(),
                                                     " must hold ", rows, " ", DTypeName(stat),
                                                     " values for dy ", dy.Describe()));
    }
  }
  std::vector<const Tensor*> all = {&h, &weight, &rstd};
  if (dresidual_out.defined()) all.push_back(&dresidual_out);
  if (mean.defined()) all.push_back(&mean);
  return CheckOnDeviceOf(op, "dy", dy, all);
}

absl::StatusOr<Tensor> ContiguousAs(const Tensor& v, DType dtype) {
  Tensor out = v;
  if (out.dtype() != dtype) {
    LYRA_ASSIGN_OR_RETURN(out, out.To(dtype));
  }
  return out.Contiguous();
}

absl::StatusOr<Rows> AsRowsIfDefined(const Tensor& t) {
  if (!t.defined()) return Rows{};
  return AsRows(t);
}

absl::Status CheckInputAndWeightDefined(absl::string_view op, const autograd::Variable& x,
                                        const autograd::Variable& weight) {
  if (!x.defined() || !weight.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": x and weight must be defined"));
  }
  return absl::OkStatus();
}

Tensor DataOrUndefined(const autograd::Variable& v) { return v.defined() ? v.data() : Tensor(); }

absl::StatusOr<ResidualNormForwardOperands> PrepareResidualNormForward(const Tensor& x,
                                                                       const Tensor& residual,
                                                                       const Tensor& weight,
                                                                       bool return_residual_out,
                                                                       bool with_mean) {
  const DType stat = StatDType(x.dtype());
  ResidualNormForwardOperands o;
  LYRA_ASSIGN_OR_RETURN(o.x, AsRows(x));
  LYRA_ASSIGN_OR_RETURN(o.residual, AsRowsIfDefined(residual));
  LYRA_ASSIGN_OR_RETURN(o.weight, ContiguousAs(weight, stat));
  LYRA_ASSIGN_OR_RETURN(o.out.y, Tensor::Empty(x.shape(), x.dtype(), x.device()));
  if (return_residual_out) {
    LYRA_ASSIGN_OR_RETURN(o.out.residual_out, Tensor::Empty(x.shape(), stat, x.device()));
  }
  if (with_mean) {
    LYRA_ASSIGN_OR_RETURN(o.out.mean, Tensor::Empty({o.x.rows}, stat, x.device()));
  }
  LYRA_ASSIGN_OR_RETURN(o.out.rstd, Tensor::Empty({o.x.rows}, stat, x.device()));
  return o;
}

absl::StatusOr<ResidualNormBackwardOperands> PrepareResidualNormBackward(
    const Tensor& dy, const Tensor& dresidual_out, const Tensor& h, const Tensor& weight,
    const Tensor& rstd, bool return_dresidual) {
  const DType stat = StatDType(dy.dtype());
  ResidualNormBackwardOperands o;
  LYRA_ASSIGN_OR_RETURN(o.dy, AsRows(dy));
  LYRA_ASSIGN_OR_RETURN(Tensor h_stat, h.To(stat));
  LYRA_ASSIGN_OR_RETURN(o.h, AsRows(h_stat));
  LYRA_ASSIGN_OR_RETURN(o.dresidual_out, AsRowsIfDefined(dresidual_out));
  LYRA_ASSIGN_OR_RETURN(o.weight, ContiguousAs(weight, stat));
  LYRA_ASSIGN_OR_RETURN(o.rstd, rstd.Contiguous());
  LYRA_ASSIGN_OR_RETURN(o.out.dx, Tensor::Empty(dy.shape(), dy.dtype(), dy.device()));
  if (return_dresidual) {
    LYRA_ASSIGN_OR_RETURN(o.out.dresidual, Tensor::Empty(dy.shape(), stat, dy.device()));
  }
  LYRA_ASSIGN_OR_RETURN(o.out.dweight, Tensor::Empty({dy.size(-1)}, stat, dy.device()));
  return o;
}

}  // namespace lyra::nn::norm_internal
