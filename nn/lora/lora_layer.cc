#include "nn/lora/lora_layer.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "nn/autocast.h"
#include "nn/dropout.h"
#include "nn/functional_linear.h"

namespace lyra::nn {

double LoraScale(const LoraAdapterSpec& spec) {
  const double r = static_cast<double>(spec.r);
  return spec.use_rslora ? spec.lora_alpha / std::sqrt(r) : spec.lora_alpha / r;
}

absl::Status LoraAdapters::Add(Module& owner, const std::string& name, const std::string& a_name,
                               const std::string& b_name, Tensor A, Tensor B,
                               const LoraAdapterSpec& spec, uint64_t dropout_seed) {
  if (name.empty() || name.find('.') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA: bad adapter name '", name, "' (non-empty, without '.')"));
  }
  if (Find(name) != nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA: ", owner.type_name(),
                                                   " already has an adapter '", name, "'"));
  }
  if (spec.r < 1) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA: r = ", spec.r, " must be >= 1"));
  }
  if (!(spec.lora_dropout >= 0 && spec.lora_dropout < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA: lora_dropout = ", spec.lora_dropout, " outside [0, 1)"));
  }
  auto adapter = std::make_unique<Adapter>();
  adapter->name = name;
  adapter->spec = spec;
  LYRA_ASSIGN_OR_RETURN(adapter->factors.A, owner.AddAdapterParameter(a_name, std::move(A)));
  absl::StatusOr<autograd::Variable> b = owner.AddAdapterParameter(b_name, std::move(B));
  if (!b.ok()) {
    LYRA_CHECK_OK(owner.RemoveAdapterParameter(a_name));
    return b.status();
  }
  adapter->factors.B = *b;
  adapter->factors.scale = LoraScale(spec);
  adapter->factors.dropout = spec.lora_dropout;
  adapter->dropout_gen = std::make_unique<Generator>(dropout_seed);
  adapter->factors.generator = adapter->dropout_gen.get();
  adapters_.push_back(std::move(adapter));
  if (adapters_.size() == 1) active_ = name;
  return absl::OkStatus();
}

absl::Status LoraAdapters::Delete(Module& owner, const std::string& name,
                                  const std::string& a_name, const std::string& b_name) {
  for (auto it = adapters_.begin(); it != adapters_.end(); ++it) {
    if ((*it)->name != name) continue;
    if (merged_ == name) {
      return absl::FailedPreconditionError(
          absl::StrCat("LoRA: adapter '", name, "' is merged; unmerge it before deleting it"));
    }
    LYRA_RETURN_IF_ERROR(owner.RemoveAdapterParameter(a_name));
    LYRA_RETURN_IF_ERROR(owner.RemoveAdapterParameter(b_name));
    adapters_.erase(it);
    if (active_ == name) active_.clear();
    return absl::OkStatus();
  }
  return absl::NotFoundError(absl::StrCat("LoRA: no adapter '", name, "'"));
}

absl::Status LoraAdapters::SetActive(const std::string& name) {
  if (!name.empty() && Find(name) == nullptr) {
    return absl::NotFoundError(absl::StrCat("LoRA: no adapter '", name, "'"));
  }
  if (!merged_.empty() && merged_ != name) {
    return absl::FailedPreconditionError(absl::StrCat(
        "LoRA: adapter '", merged_, "' is merged; unmerge it before activating '", name, "'"));
  }
  active_ = name;
  return absl::OkStatus();
}

LoraAdapters::Adapter* LoraAdapters::Find(const std::string& name) const {
  for (const auto& a : adapters_) {
    if (a->name == name) return a.get();
  }
  return nullptr;
}

const LoraFactors* LoraAdapters::ForwardFactors(bool training) const {
  Adapter* a = Active();
  if (a == nullptr || disabled_ || merged_ == a->name) return nullptr;
  a->factors.training = training;
  return &a->factors;
}

std::vector<std::string> LoraAdapters::Names() const {
  std::vector<std::string> out;
  for (const auto& a : adapters_) out.push_back(a->name);
  return out;
}

absl::StatusOr<autograd::Variable> AddLoraLinear(const autograd::Variable& base,
                                                 const autograd::Variable& x,
                                                 const LoraFactors& factors) {
  autograd::Variable input = x;
  if (factors.training && factors.dropout > 0) {
    LYRA_ASSIGN_OR_RETURN(input, functional::Dropout(x, factors.dropout, *factors.generator));
  }
  LYRA_ASSIGN_OR_RETURN(autograd::Variable a, ComputeWeight(factors.A));
  LYRA_ASSIGN_OR_RETURN(autograd::Variable b, ComputeWeight(factors.B));
  LYRA_ASSIGN_OR_RETURN(autograd::Variable h, functional::Linear(input, a));   // [..., r]
  LYRA_ASSIGN_OR_RETURN(autograd::Variable u, functional::Linear(h, b));       // [..., out]
  return autograd::Add(base, u, factors.scale);
}

}  // namespace lyra::nn
