#include "tensor/elementwise.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "tensor/dispatch.h"

namespace lyra {

absl::Status UnaryInto(cuda::UnaryOp op, const Tensor& x, const Tensor& out, double alpha,
                       double beta) {
  const absl::string_view name = cuda::UnaryOpName(op);
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(name, {&x, &out}));
  LYRA_ASSIGN_OR_RETURN(Shape shape, BroadcastShapes(out.shape(), x.shape(), name));
  if (shape != out.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": input ", x.Describe(),
                                                   " does not broadcast to output ",
                                                   out.Describe()));
  }
  cuda::UnaryParams p;
  p.op = op;
  p.shape = internal::ToIterShape(shape);
  p.x = internal::Operand(x, shape);
  p.y = internal::Operand(out, shape);
  p.alpha = alpha;
  p.beta = beta;
  return internal::RunKernel(device, p, cuda::UnaryReference, cuda::UnaryCuda);
}

absl::StatusOr<Tensor> Unary(cuda::UnaryOp op, const Tensor& x, double alpha, double beta) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(cuda::UnaryOpName(op), {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(x.shape(), x.dtype(), x.device()));
  LYRA_RETURN_IF_ERROR(UnaryInto(op, x, out, alpha, beta));
  return out;
}

absl::Status BinaryInto(cuda::BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out,
                        double alpha) {
  const absl::string_view name = cuda::BinaryOpName(op);
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(name, {&a, &b, &out}));
  if (a.dtype() != b.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": dtypes differ (", a.Describe(),
                                                   " and ", b.Describe(),
                                                   "); cast one with To()"));
  }
  LYRA_ASSIGN_OR_RETURN(Shape ab, BroadcastShapes(a.shape(), b.shape(), name));
  LYRA_ASSIGN_OR_RETURN(Shape shape, BroadcastShapes(out.shape(), ab, name));
  if (shape != out.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": result shape ", ShapeToString(ab),
                                                   " does not fit output ", out.Describe()));
  }
  cuda::BinaryParams p;
  p.op = op;
  p.shape = internal::ToIterShape(shape);
  p.a = internal::Operand(a, shape);
  p.b = internal::Operand(b, shape);
  p.out = internal::Operand(out, shape);
  p.alpha = alpha;
  return internal::RunKernel(device, p, cuda::BinaryReference, cuda::BinaryCuda);
}

absl::StatusOr<Tensor> Binary(cuda::BinaryOp op, const Tensor& a, const Tensor& b,
                              double alpha) {
  const absl::string_view name = cuda::BinaryOpName(op);
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(name, {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Shape shape, BroadcastShapes(a.shape(), b.shape(), name));
  const DType out_dtype = cuda::IsComparison(op) ? DType::kBool : a.dtype();
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(shape, out_dtype, a.device()));
  LYRA_RETURN_IF_ERROR(BinaryInto(op, a, b, out, alpha));
  return out;
}

absl::StatusOr<Tensor> Where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice("Where", {&cond, &a, &b}));
  if (cond.dtype() != DType::kBool) {
    return absl::InvalidArgumentError(
        absl::StrCat("Where: condition must be bool, got ", cond.Describe()));
  }
  if (a.dtype() != b.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat("Where: dtypes differ (", a.Describe(),
                                                   " and ", b.Describe(), ")"));
  }
  LYRA_ASSIGN_OR_RETURN(Shape ab, BroadcastShapes(a.shape(), b.shape(), "Where"));
  LYRA_ASSIGN_OR_RETURN(Shape shape, BroadcastShapes(cond.shape(), ab, "Where"));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(shape, a.dtype(), device));
  cuda::WhereParams p;
  p.shape = internal::ToIterShape(shape);
  p.cond = internal::Operand(cond, shape);
  p.a = internal::Operand(a, shape);
  p.b = internal::Operand(b, shape);
  p.out = internal::Operand(out, shape);
  LYRA_RETURN_IF_ERROR(internal::RunKernel(device, p, cuda::WhereReference, cuda::WhereCuda));
  return out;
}

}  // namespace lyra
