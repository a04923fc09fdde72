#include "autograd/ops_internal.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "tensor/reduce.h"

namespace lyra::autograd::internal {

absl::StatusOr<Variable> RecordUnary(const std::string& name, const Variable& x, Tensor y,
                                     InputGradFn dx) {
  return RecordUnaryResult(
      name, {x}, std::move(y),
      [dx = std::move(dx)](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(Tensor d, dx(g[0]));
        return std::vector<Tensor>{std::move(d)};
      });
}

absl::StatusOr<Variable> RecordBinary(const std::string& name, const Variable& a,
                                      const Variable& b, Tensor y, InputGradFn da,
                                      InputGradFn db) {
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  const Shape shape_a = a.shape(), shape_b = b.shape();
  return RecordUnaryResult(
      name, {a, b}, std::move(y),
      [=, da = std::move(da), db = std::move(db)](
          const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        std::vector<Tensor> grads(2);
        if (need_a) {
          LYRA_ASSIGN_OR_RETURN(Tensor d, da(g[0]));
          LYRA_ASSIGN_OR_RETURN(grads[0], ReduceToShape(d, shape_a));
        }
        if (need_b) {
          LYRA_ASSIGN_OR_RETURN(Tensor d, db(g[0]));
          LYRA_ASSIGN_OR_RETURN(grads[1], ReduceToShape(d, shape_b));
        }
        return grads;
      });
}

absl::StatusOr<Tensor> ReduceToShape(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  return SumToShape(grad, shape);
}

absl::StatusOr<Tensor> MaskAs(const Tensor& mask, const Tensor& like) {
  return mask.To(like.dtype());
}

absl::StatusOr<Tensor> ScalarLike(double value, const Tensor& like) {
  return Tensor::Scalar(value, like.dtype(), like.device());
}

absl::Status CheckDefined(const std::string& op, std::initializer_list<const Variable*> vs) {
  int i = 0;
  for (const Variable* v : vs) {
    if (!v->defined()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": argument ", i, " is undefined"));
    }
    ++i;
  }
  return absl::OkStatus();
}

}  // namespace lyra::autograd::internal
