// Variable: a Tensor that autograd tracks, and the define-by-run tape it is recorded on.
//
// A Variable is a cheap handle (copies share state) to a Tensor value plus autograd metadata:
// whether it requires a gradient, the gradient accumulated into it, and, for a result of a
// differentiable op, the Node that produced it (its grad_fn). Differentiable ops (autograd/ops.h)
// take and return Variables; each op records one Node whose backward is written next to its
// forward. Backward() walks the recorded graph from a result in reverse topological order and
// accumulates gradients into the leaves (Variables made by the user with requires_grad = true).
//
//   Variable w(weights, /*requires_grad=*/true);
//   LYRA_ASSIGN_OR_RETURN(Variable y, autograd::Matmul(x, w));
//   LYRA_ASSIGN_OR_RETURN(Variable loss, autograd::Mean(y));
//   LYRA_RETURN_IF_ERROR(loss.Backward());        // w.grad() now holds d loss / d w
//
// Gradients accumulate (+=) across Backward calls until ZeroGrad(). A graph is freed by the
// Backward that walks it (its saved tensors are released) unless retain_graph is set; walking a
// freed graph again is FailedPrecondition. Under a NoGradGuard nothing is recorded.
#ifndef LYRA_AUTOGRAD_VARIABLE_H_
#define LYRA_AUTOGRAD_VARIABLE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tensor/tensor.h"

namespace lyra::autograd {

class Node;

// The shared state behind Variable handles. Internal to autograd; users go through Variable.
struct VariableState {
  Tensor data;
  Tensor grad;                    // undefined until a gradient arrives
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // null for leaves
  int output_index = 0;           // which output of grad_fn this is
};

class Variable {
 public:
  // An undefined Variable (defined() is false).
  Variable() = default;
  // A leaf wrapping `data`. requires_grad needs a floating-point dtype (CHECK: use
  // Variable::Leaf for user input that may be of any dtype).
  explicit Variable(Tensor data, bool requires_grad = false);
  // As the constructor, but InvalidArgument when requires_grad is asked of a non-float tensor.
  static absl::StatusOr<Variable> Leaf(Tensor data, bool requires_grad);

  bool defined() const { return state_ != nullptr; }
  const Tensor& data() const;
  bool requires_grad() const { return state_ != nullptr && state_->requires_grad; }
  bool is_leaf() const { return state_ == nullptr || state_->grad_fn == nullptr; }
  // The accumulated gradient (undefined if none arrived yet). Same shape, dtype and device.
  const Tensor& grad() const;
  const std::shared_ptr<Node>& grad_fn() const;
  int output_index() const { return state_ ? state_->output_index : 0; }

  // Shorthands for data()'s metadata.
  const Shape& shape() const { return data().shape(); }
  int64_t size(int d) const { return data().size(d); }
  int dim() const { return data().dim(); }
  int64_t numel() const { return data().numel(); }
  DType dtype() const { return data().dtype(); }
  Device device() const { return data().device(); }

  // Leaves only (FailedPrecondition otherwise); float dtypes only (InvalidArgument otherwise).
  absl::Status set_requires_grad(bool requires_grad);
  // Replaces a leaf's value by any tensor (new shape, dtype or device allowed) and drops its
  // gradient: moving or casting a module's parameters. FailedPrecondition on a non-leaf;
  // InvalidArgument for an undefined tensor, or a non-float one when requires_grad is set.
  absl::Status Replace(const Tensor& data) const;
  // Drops the accumulated gradient.
  void ZeroGrad() const;
  // Replaces the accumulated gradient (same shape and dtype, else InvalidArgument); an
  // undefined tensor drops it. Optimizers and loss scalers use this to unscale or clip in place.
  absl::Status set_grad(const Tensor& grad) const;
  // Replaces the value of a leaf (same shape and dtype) without recording anything: optimizer
  // updates and checkpoint loading. FailedPrecondition on a non-leaf.
  absl::Status set_data(const Tensor& data) const;
  // A new leaf sharing this value, cut from the graph (requires_grad false).
  Variable Detach() const;

  // Backpropagates from this Variable. With `grad` undefined this must be a one-element tensor
  // (seed 1); otherwise `grad` has this Variable's shape and dtype. InvalidArgument if this does
  // not require grad; FailedPrecondition if the graph was freed by an earlier Backward.
  absl::Status Backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  // "Variable(f32[2, 3] cpu, requires_grad, grad_fn=Matmul)"
  std::string Describe() const;

  // Identity of the shared state (two handles to the same Variable compare equal).
  bool SameAs(const Variable& other) const { return state_ == other.state_; }
  const std::shared_ptr<VariableState>& state() const { return state_; }
  explicit Variable(std::shared_ptr<VariableState> state) : state_(std::move(state)) {}

 private:
  std::shared_ptr<VariableState> state_;
};

// Whether ops record the graph on this thread (true by default).
bool GradModeEnabled();

// Disables recording for its scope (nestable): evaluation, optimizer steps, gradient checks.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace lyra::autograd

#endif  // LYRA_AUTOGRAD_VARIABLE_H_
