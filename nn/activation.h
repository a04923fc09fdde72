// Activation modules: thin Modules over the differentiable elementwise ops of autograd/ops.h, so
// that models can hold an activation as a child (torch.nn.SiLU, GELU, ReLU, Tanh, Sigmoid,
// Softplus). They have no parameters; Forward works on any floating dtype and device, keeps the
// input's shape and dtype, and computes in f32 for f16 / bf16 (f64 for f64).
//
//   act_ = RegisterModule("act", std::make_unique<nn::Silu>());
//   LYRA_ASSIGN_OR_RETURN(Variable h, act_->Forward(x));
#ifndef LYRA_NN_ACTIVATION_H_
#define LYRA_NN_ACTIVATION_H_

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "nn/module.h"

namespace lyra::nn {

// x * sigmoid(x) (type name "SiLU").
class Silu : public Module {
 public:
  Silu() : Module("SiLU") {}
  absl::StatusOr<Variable> Forward(const Variable& x) const;
};

// x * Phi(x) with the exact erf, or with the tanh approximation
// 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (torch's approximate="tanh").
class Gelu : public Module {
 public:
  enum class Approximation { kNone, kTanh };
  explicit Gelu(Approximation approximate = Approximation::kNone)
      : Module("GELU"), approximate_(approximate) {}
  absl::StatusOr<Variable> Forward(const Variable& x) const;
  Approximation approximate() const { return approximate_; }

 private:
  Approximation approximate_;
};

// max(x, 0); gradient 0 at x = 0, as torch.
class Relu : public Module {
 public:
  Relu() : Module("ReLU") {}
  absl::StatusOr<Variable> Forward(const Variable& x) const;
};

class Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  absl::StatusOr<Variable> Forward(const Variable& x) const;
};

class Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  absl::StatusOr<Variable> Forward(const Variable& x) const;
};

// log(1 + exp(x)), and x itself above 20: torch.nn.Softplus(beta = 1, threshold = 20).
class Softplus : public Module {
 public:
  Softplus() : Module("Softplus") {}
  absl::StatusOr<Variable> Forward(const Variable& x) const;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_ACTIVATION_H_
