#include "nn/linear.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nn/autocast.h"
#include "nn/functional_linear.h"
#include "nn/init.h"
#include "tensor/elementwise.h"
#include "tensor/matmul.h"

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
  LYRA_ASSIGN_OR_RETURN(Variable y, functional::Linear(xc, w, b));
  const LoraFactors* lora = active_lora();
  if (lora == nullptr) return y;
  return AddLoraLinear(y, xc, *lora);
}

namespace {

std::string LoraAName(const std::string& adapter) { return "lora_A." + adapter + ".weight"; }
std::string LoraBName(const std::string& adapter) { return "lora_B." + adapter + ".weight"; }

// B A [out, in] of a Linear's adapter, in the factors' dtype (no autograd).
absl::StatusOr<Tensor> LinearDelta(const LoraFactors& f) {
  return Matmul(f.B.data(), f.A.data());
}

}  // namespace

absl::Status Linear::AddLoraAdapter(const std::string& name, const LoraAdapterSpec& spec,
                                    Generator& gen) {
  if (spec.r < 1) {
    return absl::InvalidArgumentError(absl::StrCat("Linear LoRA: r = ", spec.r, " must be >= 1"));
  }
  const Tensor& w = weight_.data();
  LYRA_ASSIGN_OR_RETURN(Tensor a, Tensor::Empty({spec.r, in_features_}, w.dtype(), w.device()));
  LYRA_RETURN_IF_ERROR(init::KaimingUniform(a, gen, std::sqrt(5.0)));
  LYRA_ASSIGN_OR_RETURN(Tensor b, Tensor::Zeros({out_features_, spec.r}, w.dtype(), w.device()));
  const uint64_t dropout_seed = gen.seed() ^ (0x9E3779B97F4A7C15ull * (gen.Advance(1) + 1));
  return lora_.Add(*this, name, LoraAName(name), LoraBName(name), std::move(a), std::move(b),
                   spec, dropout_seed);
}

absl::Status Linear::DeleteAdapter(const std::string& name) {
  return lora_.Delete(*this, name, LoraAName(name), LoraBName(name));
}

absl::Status Linear::SetActiveAdapter(const std::string& name) { return lora_.SetActive(name); }

absl::Status Linear::DisableAdapters(bool disabled) {
  if (disabled && !lora_.merged_name().empty()) LYRA_RETURN_IF_ERROR(Unmerge());
  lora_.set_disabled(disabled);
  return absl::OkStatus();
}

absl::Status Linear::Merge() {
  LoraAdapters::Adapter* a = lora_.Active();
  if (a == nullptr || !lora_.merged_name().empty()) {
    return absl::FailedPreconditionError(
        "Linear LoRA Merge: needs an active adapter that is not merged yet");
  }
  LYRA_ASSIGN_OR_RETURN(Tensor delta, LinearDelta(a->factors));
  LYRA_ASSIGN_OR_RETURN(Tensor merged, Add(weight_.data(), delta, a->factors.scale));
  LYRA_RETURN_IF_ERROR(weight_.set_data(merged));
  lora_.set_merged(a->name);
  return absl::OkStatus();
}

absl::Status Linear::Unmerge() {
  LoraAdapters::Adapter* a = lora_.Find(lora_.merged_name());
  if (a == nullptr) return absl::FailedPreconditionError("Linear LoRA Unmerge: nothing is merged");
  LYRA_ASSIGN_OR_RETURN(Tensor delta, LinearDelta(a->factors));
  LYRA_ASSIGN_OR_RETURN(Tensor restored, Sub(weight_.data(), delta, a->factors.scale));
  LYRA_RETURN_IF_ERROR(weight_.set_data(restored));
  lora_.set_merged("");
  return absl::OkStatus();
}

}  // namespace lyra::nn
