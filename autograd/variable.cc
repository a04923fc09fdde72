#include "autograd/variable.h"

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"

namespace lyra::autograd {
namespace {

thread_local bool grad_mode_enabled = true;

const Tensor& UndefinedTensor() {
  static const Tensor* undefined = new Tensor();
  return *undefined;
}

const std::shared_ptr<Node>& NullNode() {
  static const std::shared_ptr<Node>* null = new std::shared_ptr<Node>();
  return *null;
}

}  // namespace

bool GradModeEnabled() { return grad_mode_enabled; }

NoGradGuard::NoGradGuard() : previous_(grad_mode_enabled) { grad_mode_enabled = false; }
NoGradGuard::~NoGradGuard() { grad_mode_enabled = previous_; }

Variable::Variable(Tensor data, bool requires_grad) : state_(std::make_shared<VariableState>()) {
  LYRA_CHECK(!requires_grad || IsFloating(data.dtype()))
      << "requires_grad on a " << data.Describe() << " (use Variable::Leaf for user input)";
  state_->data = std::move(data);
  state_->requires_grad = requires_grad;
}

absl::StatusOr<Variable> Variable::Leaf(Tensor data, bool requires_grad) {
  if (!data.defined()) return absl::InvalidArgumentError("Variable::Leaf: undefined tensor");
  if (requires_grad && !IsFloating(data.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "requires_grad needs a floating-point tensor, got ", data.Describe()));
  }
  return Variable(std::move(data), requires_grad);
}

const Tensor& Variable::data() const { return state_ ? state_->data : UndefinedTensor(); }
const Tensor& Variable::grad() const { return state_ ? state_->grad : UndefinedTensor(); }
const std::shared_ptr<Node>& Variable::grad_fn() const {
  return state_ ? state_->grad_fn : NullNode();
}

absl::Status Variable::set_requires_grad(bool requires_grad) {
  if (!defined()) return absl::FailedPreconditionError("set_requires_grad: undefined Variable");
  if (!is_leaf()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "set_requires_grad on a non-leaf ", Describe(), " (use Detach() to make a leaf)"));
  }
  if (requires_grad && !IsFloating(data().dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "requires_grad needs a floating-point tensor, got ", data().Describe()));
  }
  state_->requires_grad = requires_grad;
  return absl::OkStatus();
}

void Variable::ZeroGrad() const {
  if (state_) state_->grad = Tensor();
}

absl::Status Variable::set_grad(const Tensor& grad) const {
  if (!defined()) return absl::FailedPreconditionError("set_grad: undefined Variable");
  if (grad.defined() && (grad.shape() != data().shape() || grad.dtype() != data().dtype() ||
                         grad.device() != data().device())) {
    return absl::InvalidArgumentError(absl::StrCat("set_grad: gradient ", grad.Describe(),
                                                   " does not match ", data().Describe()));
  }
  state_->grad = grad;
  return absl::OkStatus();
}

absl::Status Variable::set_data(const Tensor& data) const {
  if (!defined()) return absl::FailedPreconditionError("set_data: undefined Variable");
  if (!is_leaf()) {
    return absl::FailedPreconditionError(absl::StrCat("set_data on a non-leaf ", Describe()));
  }
  if (!data.defined() || data.shape() != state_->data.shape() ||
      data.dtype() != state_->data.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat("set_data: new value ", data.Describe(),
                                                   " does not match ", Describe()));
  }
  state_->data = data;
  return absl::OkStatus();
}

absl::Status Variable::Replace(const Tensor& data) const {
  if (!defined()) return absl::FailedPreconditionError("Replace: undefined Variable");
  if (!is_leaf()) {
    return absl::FailedPreconditionError(absl::StrCat("Replace on a non-leaf ", Describe()));
  }
  if (!data.defined()) return absl::InvalidArgumentError("Replace: undefined tensor");
  if (state_->requires_grad && !IsFloating(data.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Replace: ", Describe(), " requires grad, but the new value is ", data.Describe()));
  }
  state_->data = data;
  state_->grad = Tensor();
  return absl::OkStatus();
}

Variable Variable::Detach() const {
  if (!defined()) return Variable();
  return Variable(state_->data, false);
}

std::string Variable::Describe() const {
  if (!defined()) return "Variable(undefined)";
  std::string s = absl::StrCat("Variable(", data().Describe());
  if (requires_grad()) absl::StrAppend(&s, ", requires_grad");
  if (grad_fn()) absl::StrAppend(&s, ", grad_fn=", grad_fn()->name());
  return s + ")";
}

}  // namespace lyra::autograd
