#include "nn/dropout.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "tensor/elementwise.h"

namespace lyra::nn {
namespace {

absl::Status CheckP(double p) {
  if (!(p >= 0 && p < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("Dropout: p = ", p, " outside [0, 1)"));
  }
  return absl::OkStatus();
}

// mask ? t * scale : 0.
absl::StatusOr<Tensor> MaskedScale(const Tensor& mask, const Tensor& t, double scale) {
  LYRA_ASSIGN_OR_RETURN(Tensor scaled, MulScalar(t, scale));
  LYRA_ASSIGN_OR_RETURN(Tensor zero, Tensor::Scalar(0, t.dtype(), t.device()));
  return Where(mask, scaled, zero);
}

}  // namespace

namespace functional {

absl::StatusOr<autograd::Variable> Dropout(const autograd::Variable& x, double p,
                                           Generator& gen) {
  LYRA_RETURN_IF_ERROR(CheckP(p));
  if (!x.defined()) return absl::InvalidArgumentError("Dropout: undefined x");
  if (!IsFloating(x.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat("Dropout: expected a floating-point x, got ", x.data().Describe()));
  }
  if (p == 0) return x;
  const double scale = 1.0 / (1.0 - p);
  LYRA_ASSIGN_OR_RETURN(Tensor mask, Bernoulli(x.shape(), 1.0 - p, x.device(), gen));
  LYRA_ASSIGN_OR_RETURN(Tensor y, MaskedScale(mask, x.data(), scale));
  return autograd::RecordUnaryResult(
      "Dropout", {x}, std::move(y),
      [mask, scale](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(Tensor dx, MaskedScale(mask, g[0], scale));
        return std::vector<Tensor>{std::move(dx)};
      });
}

}  // namespace functional

absl::StatusOr<std::unique_ptr<Dropout>> Dropout::Create(double p, uint64_t seed) {
  LYRA_RETURN_IF_ERROR(CheckP(p));
  return std::unique_ptr<Dropout>(new Dropout(p, seed));
}

Dropout::Dropout(double p, uint64_t seed) : Module("Dropout"), p_(p), gen_(seed) {}

absl::StatusOr<Variable> Dropout::Forward(const Variable& x) {
  if (!is_training() || p_ == 0) return x;
  return functional::Dropout(x, p_, gen_);
}

}  // namespace lyra::nn
