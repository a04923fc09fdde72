#include "nn/activation.h"

#include "autograd/ops.h"

namespace lyra::nn {

absl::StatusOr<Variable> Silu::Forward(const Variable& x) const { return autograd::Silu(x); }

absl::StatusOr<Variable> Gelu::Forward(const Variable& x) const {
  return approximate_ == Approximation::kTanh ? autograd::GeluTanh(x) : autograd::Gelu(x);
}

absl::StatusOr<Variable> Relu::Forward(const Variable& x) const { return autograd::Relu(x); }

absl::StatusOr<Variable> Tanh::Forward(const Variable& x) const { return autograd::Tanh(x); }

absl::StatusOr<Variable> Sigmoid::Forward(const Variable& x) const {
  return autograd::Sigmoid(x);
}

absl::StatusOr<Variable> Softplus::Forward(const Variable& x) const {
  return autograd::Softplus(x);
}

}  // namespace lyra::nn
