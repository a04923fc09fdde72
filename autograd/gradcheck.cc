#include "autograd/gradcheck.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"

namespace lyra::autograd {
namespace {

// Weights in [0.5, 1.5) from a fixed linear congruential sequence: reproducible, never zero.
absl::StatusOr<Tensor> CheckWeights(const Tensor& like) {
  std::vector<double> w(like.numel());
  uint64_t state = 0x9E3779B97F4A7C15ull;
  for (double& v : w) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = 0.5 + static_cast<double>(state >> 11) / static_cast<double>(1ull << 53);
  }
  return Tensor::FromDoubles(w, like.shape(), like.dtype(), like.device());
}

bool Differentiable(const GradCheckOptions& options, int i, const Tensor& t) {
  return t.defined() && IsFloating(t.dtype()) && std::find(options.non_differentiable.begin(),
                                            options.non_differentiable.end(),
                                            i) == options.non_differentiable.end();
}

// s = sum(fn(inputs) * w), the checked scalar; `weights` is made on the first call.
absl::StatusOr<Variable> WeightedSum(const GradCheckFn& fn, const std::vector<Variable>& inputs,
                                     Tensor* weights) {
  LYRA_ASSIGN_OR_RETURN(Variable y, fn(inputs));
  if (!y.defined()) return absl::InvalidArgumentError("GradCheck: fn returned undefined");
  if (!weights->defined()) {
    LYRA_ASSIGN_OR_RETURN(*weights, CheckWeights(y.data()));
  }
  LYRA_ASSIGN_OR_RETURN(Variable weighted, Mul(y, Variable(*weights)));
  return Sum(weighted);
}

absl::StatusOr<double> WeightedSumValue(const GradCheckFn& fn,
                                        const std::vector<Variable>& inputs, Tensor* weights) {
  LYRA_ASSIGN_OR_RETURN(Variable s, WeightedSum(fn, inputs, weights));
  return s.data().Item();
}

absl::Status Check(const GradCheckFn& fn, const std::vector<Tensor>& inputs,
                   const GradCheckOptions& options, GradCheckResult& result) {
  std::vector<Variable> leaves;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& t = inputs[i];
    if (!t.defined()) {  // an optional input left out: passed on as an undefined Variable
      leaves.emplace_back();
      continue;
    }
    const bool diff = Differentiable(options, static_cast<int>(i), t);
    if (diff && (t.dtype() != DType::kF64 || !t.device().is_cpu())) {
      return absl::InvalidArgumentError(
          absl::StrCat("GradCheck: input ", i, " is ", t.Describe(), "; use f64 on the CPU"));
    }
    LYRA_ASSIGN_OR_RETURN(Tensor copy, t.Clone());
    leaves.emplace_back(copy, diff);
  }
  // Analytic gradients.
  Tensor weights;
  {
    LYRA_ASSIGN_OR_RETURN(Variable s, WeightedSum(fn, leaves, &weights));
    if (!s.requires_grad()) {
      return absl::InvalidArgumentError("GradCheck: fn's result does not require grad");
    }
    LYRA_RETURN_IF_ERROR(s.Backward());
  }
  // Numeric gradients, one element at a time.
  NoGradGuard no_grad;
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (!leaves[i].requires_grad()) continue;
    std::vector<double> analytic(leaves[i].numel(), 0.0);
    if (leaves[i].grad().defined()) {
      LYRA_ASSIGN_OR_RETURN(analytic, leaves[i].grad().ToDoubles());
    }
    std::vector<Variable> probe;
    for (const Variable& v : leaves) {
      probe.push_back(v.defined() ? Variable(v.data(), false) : Variable());
    }
    LYRA_ASSIGN_OR_RETURN(Tensor x, leaves[i].data().Clone());
    probe[i] = Variable(x, false);
    double* values = x.data<double>();
    for (int64_t j = 0; j < x.numel(); ++j) {
      const double saved = values[j];
      values[j] = saved + options.eps;
      LYRA_ASSIGN_OR_RETURN(double plus, WeightedSumValue(fn, probe, &weights));
      values[j] = saved - options.eps;
      LYRA_ASSIGN_OR_RETURN(double minus, WeightedSumValue(fn, probe, &weights));
      values[j] = saved;
      const double numeric = (plus - minus) / (2 * options.eps);
      const double err = std::fabs(analytic[j] - numeric);
      if (std::isfinite(err)) result.max_abs_error = std::max(result.max_abs_error, err);
      if (!(err <= options.atol + options.rtol * std::fabs(numeric)) && result.message.empty()) {
        result.message = absl::StrCat("input ", i, " element ", j, ": analytic ", analytic[j],
                                      " vs numeric ", numeric, " (error ", err, ")");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

GradCheckResult GradCheck(const GradCheckFn& fn, const std::vector<Tensor>& inputs,
                          const GradCheckOptions& options) {
  GradCheckResult result;
  absl::Status status = Check(fn, inputs, options, result);
  if (!status.ok()) {
    result.message = std::string(status.message());
    result.ok = false;
    return result;
  }
  result.ok = result.message.empty();
  return result;
}

}  // namespace lyra::autograd
