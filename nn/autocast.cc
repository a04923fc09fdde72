#include "nn/autocast.h"

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"

namespace lyra::nn {
namespace {

thread_local AutocastGuard* current_region = nullptr;

}  // namespace

AutocastGuard::AutocastGuard(DType dtype) : dtype_(dtype), previous_(current_region) {
  LYRA_CHECK(dtype == DType::kF16 || dtype == DType::kBF16 || dtype == DType::kF32)
      << "autocast to " << DTypeName(dtype);
  current_region = this;
}

AutocastGuard::~AutocastGuard() { current_region = previous_; }

absl::StatusOr<autograd::Variable> AutocastGuard::Cast(const autograd::Variable& weight) {
  // A cast made with gradients off is not recorded, so it must not be cached: a later use in
  // the same region with gradients on would get no gradient to the master (torch's autocast
  // cache skips no-grad casts likewise).
  if (!autograd::GradModeEnabled()) return autograd::Cast(weight, dtype_);
  auto it = cache_.find(weight.state().get());
  if (it != cache_.end()) return it->second;
  LYRA_ASSIGN_OR_RETURN(autograd::Variable cast, autograd::Cast(weight, dtype_));
  cache_.emplace(weight.state().get(), cast);
  return cast;
}

std::optional<DType> AutocastDType() {
  if (current_region == nullptr) return std::nullopt;
  return current_region->dtype();
}

absl::StatusOr<autograd::Variable> ComputeWeight(const autograd::Variable& weight) {
  if (current_region == nullptr || !weight.defined() || weight.dtype() != DType::kF32 ||
      current_region->dtype() == DType::kF32) {
    return weight;
  }
  return current_region->Cast(weight);
}

absl::StatusOr<autograd::Variable> ComputeInput(const autograd::Variable& x) {
  if (current_region == nullptr || !x.defined() || !IsFloating(x.dtype()) ||
      x.dtype() == current_region->dtype() || x.dtype() == DType::kF64) {
    return x;
  }
  return autograd::Cast(x, current_region->dtype());
}

}  // namespace lyra::nn
