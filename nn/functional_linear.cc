#include "nn/functional_linear.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "tensor/matmul.h"
#include "tensor/reduce.h"

namespace lyra::nn::functional {

using autograd::Variable;

namespace {

absl::Status CheckLinearArgs(const Variable& x, const Variable& weight, const Variable& bias) {
  if (!x.defined() || !weight.defined()) {
    return absl::InvalidArgumentError("Linear: x and weight must be defined");
  }
  const Tensor& w = weight.data();
  if (w.dim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: weight ", w.Describe(), " must be 2-D [out, in]"));
  }
  if (x.dim() < 1 || x.size(-1) != w.size(1)) {
    return absl::InvalidArgumentError(absl::StrCat("Linear: x ", x.data().Describe(),
                                                   " must end in in_features = ", w.size(1),
                                                   " (weight ", w.Describe(), ")"));
  }
  if (x.dtype() != w.dtype() || x.device() != w.device()) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: x ", x.data().Describe(), " and weight ", w.Describe(),
                     " differ in dtype or device"));
  }
  if (bias.defined()) {
    const Tensor& b = bias.data();
    if (b.dim() != 1 || b.size(0) != w.size(0)) {
      return absl::InvalidArgumentError(absl::StrCat("Linear: bias ", b.Describe(),
                                                     " must be [out_features = ", w.size(0),
                                                     "]"));
    }
    if (b.dtype() != w.dtype() || b.device() != w.device()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Linear: bias ", b.Describe(), " and weight ", w.Describe(),
          " differ in dtype or device"));
    }
  }
  return absl::OkStatus();
}

// `t` [..., in] as [T, in]: a view when its strides allow, else a contiguous copy.
absl::StatusOr<Tensor> FlattenRows(const Tensor& t) {
  const Shape rows_shape = {-1, t.size(-1)};
  if (absl::StatusOr<Tensor> view = t.View(rows_shape); view.ok()) return view;
  LYRA_ASSIGN_OR_RETURN(Tensor contiguous, t.Contiguous());
  return contiguous.View(rows_shape);
}

}  // namespace

absl::StatusOr<Variable> Linear(const Variable& x, const Variable& weight, const Variable& bias) {
  LYRA_RETURN_IF_ERROR(CheckLinearArgs(x, weight, bias));
  const Tensor& w = weight.data();
  LYRA_ASSIGN_OR_RETURN(Tensor x2, FlattenRows(x.data()));  // [T, in]
  LYRA_ASSIGN_OR_RETURN(Tensor wt, w.Transpose(0, 1));        // [in, out], a view
  Tensor y2;                                                   // [T, out]
  if (bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(y2, MatmulBias(x2, wt, bias.data()));
  } else {
    LYRA_ASSIGN_OR_RETURN(y2, Matmul(x2, wt));
  }
  Shape y_shape = x.shape();
  y_shape.back() = w.size(0);
  LYRA_ASSIGN_OR_RETURN(Tensor y, y2.View(y_shape));

  const bool need_x = x.requires_grad();
  const bool need_w = weight.requires_grad();
  const bool need_b = bias.requires_grad();
  const bool record = autograd::AnyRequiresGrad({x, weight, bias});
  Tensor saved_w = record && need_x ? w : Tensor();
  Tensor saved_x2 = record && need_w ? x2 : Tensor();
  const Shape x_shape = x.shape();
  const int64_t out_features = w.size(0);
  return autograd::RecordUnaryResult(
      "Linear", {x, weight, bias}, std::move(y),
      [=](const std::vector<Tensor>& grads) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(Tensor g2, grads[0].Reshape({-1, out_features}));  // [T, out]
        std::vector<Tensor> result(3);
        if (need_x) {
          LYRA_ASSIGN_OR_RETURN(Tensor dx2, Matmul(g2, saved_w));  // [T, in]
          LYRA_ASSIGN_OR_RETURN(result[0], dx2.View(x_shape));
        }
        if (need_w) {
          LYRA_ASSIGN_OR_RETURN(Tensor gt, g2.Transpose(0, 1));  // [out, T], a view
          LYRA_ASSIGN_OR_RETURN(result[1], Matmul(gt, saved_x2));
        }
        if (need_b) {
          LYRA_ASSIGN_OR_RETURN(result[2], Sum(g2, {0}));
        }
        return result;
      });
}

}  // namespace lyra::nn::functional
