#include "nn/linear.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nn/autocast.h"
#include "nn/functional_linear.h"
#include "nn/init.h"

namespace lyra::nn {

absl::StatusOr<std::unique_ptr<Linear>> Linear::Create(int64_t in_features,
                                                       int64_t out_features, bool bias,
                                                       Generator& gen, DType dtype,
                                                       Device device) {
  if (in_features < 1 || out_features < 1) {
    return absl::InvalidArgumentError(absl::StrCat("Linear: in_features = ", in_features,
                                                   " and out_features = ", out_features,
                                                   " must be >= 1"));
  }
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Linear: dtype ", DTypeName(dtype), " is not floating-point"));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor w, Tensor::Empty({out_features, in_features}, dtype, device));
  // torch.nn.Linear: kaiming_uniform_(a = sqrt(5)) gives bound = 1 / sqrt(fan_in).
  LYRA_RETURN_IF_ERROR(init::KaimingUniform(w, gen, std::sqrt(5.0)));
  Tensor b;
  if (bias) {
    LYRA_ASSIGN_OR_RETURN(b, Tensor::Empty({out_features}, dtype, device));
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    LYRA_RETURN_IF_ERROR(init::Uniform(b, gen, -bound, bound));
  }
  return std::unique_ptr<Linear>(new Linear(in_features, out_features, std::move(w),
                                            std::move(b)));
}

Linear::Linear(int64_t in_features, int64_t out_features, Tensor weight, Tensor bias)
    : Module("Linear"), in_features_(in_features), out_features_(out_features) {
  weight_ = RegisterParameter("weight", std::move(weight));
  if (bias.defined()) bias_ = RegisterParameter("bias", std::move(bias));
}

absl::StatusOr<Variable> Linear::Forward(const Variable& x) const {
  LYRA_ASSIGN_OR_RETURN(Variable xc, ComputeInput(x));
  LYRA_ASSIGN_OR_RETURN(Variable w, ComputeWeight(weight_));
  Variable b;
  if (bias_.defined()) {
    LYRA_ASSIGN_OR_RETURN(b, ComputeWeight(bias_));
  }
  return functional::Linear(xc, w, b);
}

}  // namespace lyra::nn
