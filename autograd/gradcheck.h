// Finite-difference gradient checking (the analogue of torch.autograd.gradcheck).
//
// GradCheck evaluates the scalar s(x) = sum(fn(x) * w), with fixed pseudo-random weights w in
// [0.5, 1.5) so that every output element matters, and compares d s / d x from Backward with the
// central difference (s(x + eps e_j) - s(x - eps e_j)) / (2 eps) for every element j of every
// floating-point input. Inputs must be f64 CPU tensors (the check is meaningful only in f64);
// an undefined input (an optional argument left out) reaches fn as an undefined Variable.
//
//   GradCheckResult r = GradCheck([](const std::vector<Variable>& v) { return Tanh(v[0]); }, {x});
//   EXPECT_TRUE(r.ok) << r.message;
#ifndef LYRA_AUTOGRAD_GRADCHECK_H_
#define LYRA_AUTOGRAD_GRADCHECK_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::autograd {

struct GradCheckOptions {
  double eps = 1e-6;
  // An element passes when |analytic - numeric| <= atol + rtol * |numeric|.
  double atol = 1e-7;
  double rtol = 1e-6;
  // Inputs listed here are passed through without requiring grad (e.g. index tensors).
  std::vector<int> non_differentiable;
};

struct GradCheckResult {
  bool ok = false;
  double max_abs_error = 0;
  // The first failing element (or an error) in words; empty when ok.
  std::string message;
};

using GradCheckFn = std::function<absl::StatusOr<Variable>(const std::vector<Variable>&)>;

GradCheckResult GradCheck(const GradCheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradCheckOptions& options = {});

}  // namespace lyra::autograd

#endif  // LYRA_AUTOGRAD_GRADCHECK_H_
