// Helpers shared by the autograd/ops_*.cc files (not part of the public API).
#ifndef LYRA_AUTOGRAD_OPS_INTERNAL_H_
#define LYRA_AUTOGRAD_OPS_INTERNAL_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autograd/node.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::autograd::internal {

// The gradient of one input from the output gradient.
using InputGradFn = std::function<absl::StatusOr<Tensor>(const Tensor& grad_output)>;

// Records a one-input, one-output op whose input gradient is dx(grad_output).
absl::StatusOr<Variable> RecordUnary(const std::string& name, const Variable& x, Tensor y,
                                     InputGradFn dx);

// Records a two-input, one-output op; da / db run only for inputs that require grad, and their
// results are summed back to the input's shape when the op broadcast it.
absl::StatusOr<Variable> RecordBinary(const std::string& name, const Variable& a,
                                      const Variable& b, Tensor y, InputGradFn da,
                                      InputGradFn db);

// Sums `grad` to `shape` (undoing broadcasting); returns it unchanged when shapes agree.
absl::StatusOr<Tensor> ReduceToShape(const Tensor& grad, const Shape& shape);

// A bool mask converted to `like`'s dtype (1 / 0).
absl::StatusOr<Tensor> MaskAs(const Tensor& mask, const Tensor& like);

// A 0-dim tensor holding `value` in `like`'s dtype on its device (broadcasts against it).
absl::StatusOr<Tensor> ScalarLike(double value, const Tensor& like);

// InvalidArgument naming `op` for an undefined Variable argument.
absl::Status CheckDefined(const std::string& op, std::initializer_list<const Variable*> vs);

}  // namespace lyra::autograd::internal

#endif  // LYRA_AUTOGRAD_OPS_INTERNAL_H_
