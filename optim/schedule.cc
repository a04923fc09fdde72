#include "optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace lyra::optim {
namespace {

constexpr double kPi = 3.14159265358979323846;
// transformers' get_cosine_schedule_with_warmup default: half a cosine period, 1 -> 0.
constexpr double kNumCycles = 0.5;
constexpr char kStepKey[] = "schedule.step";

}  // namespace

absl::string_view ScheduleKindName(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::kConstant: return "constant";
    case ScheduleKind::kLinear: return "linear";
    case ScheduleKind::kCosine: return "cosine";
  }
  return "unknown";
}

absl::StatusOr<ScheduleKind> ParseScheduleKind(absl::string_view name) {
  for (ScheduleKind kind : {ScheduleKind::kConstant, ScheduleKind::kLinear, ScheduleKind::kCosine}) {
    if (name == ScheduleKindName(kind)) return kind;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown lr schedule '", name, "'; expected constant, linear or cosine"));
}

absl::StatusOr<LrSchedule> LrSchedule::Create(const ScheduleConfig& c) {
  const std::string what = absl::StrCat("LrSchedule (", ScheduleKindName(c.kind), ")");
  if (c.warmup_steps < 0 || c.total_steps < 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": warmup_steps ", c.warmup_steps,
                                                   " and total_steps ", c.total_steps,
                                                   " must be >= 0"));
  }
  if (c.kind != ScheduleKind::kConstant && c.warmup_steps > c.total_steps) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": warmup_steps ", c.warmup_steps,
                                                   " exceeds total_steps ", c.total_steps));
  }
  if (!std::isfinite(c.base_lr) || !(c.base_lr > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": base_lr must be finite and > 0, got ", c.base_lr));
  }
  if (!(c.min_lr >= 0 && c.min_lr <= c.base_lr)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": min_lr ", c.min_lr,
                                                   " must lie in [0, base_lr = ", c.base_lr,
                                                   "]"));
  }
  return LrSchedule(c);
}

double LrSchedule::Multiplier(int64_t step) const {
  const int64_t s = std::max<int64_t>(step, 0);
  const int64_t warmup = config_.warmup_steps;
  if (s < warmup) {
    return static_cast<double>(s) / static_cast<double>(std::max<int64_t>(1, warmup));
  }
  const double decay_steps =
      static_cast<double>(std::max<int64_t>(1, config_.total_steps - warmup));
  switch (config_.kind) {
    case ScheduleKind::kConstant: return 1.0;
    case ScheduleKind::kLinear:
      return std::max(0.0, static_cast<double>(config_.total_steps - s) / decay_steps);
    case ScheduleKind::kCosine: {
      const double progress = static_cast<double>(s - warmup) / decay_steps;
      const double cosine =
          std::max(0.0, 0.5 * (1.0 + std::cos(kPi * kNumCycles * 2.0 * progress)));
      const double floor = config_.min_lr / config_.base_lr;
      return std::max(0.0, cosine * (1.0 - floor) + floor);
    }
  }
  return 1.0;
}

absl::Status LrSchedule::Apply(Optimizer& optimizer) const {
  const double multiplier = Multiplier(step_);
  for (int g = 0; g < optimizer.num_groups(); ++g) {
    LYRA_RETURN_IF_ERROR(optimizer.SetLr(g, optimizer.initial_lr(g) * multiplier));
  }
  return absl::OkStatus();
}

NamedTensors LrSchedule::StateDict() const {
  return {{kStepKey, internal::ScalarI64(step_)}};
}

absl::Status LrSchedule::LoadStateDict(const NamedTensors& state) {
  for (const auto& [key, tensor] : state) {
    if (key != kStepKey) continue;
    if (!tensor.defined() || tensor.numel() != 1 || !IsInteger(tensor.dtype())) {
      return absl::InvalidArgumentError(
          absl::StrCat("LrSchedule::LoadStateDict: '", kStepKey, "' is ",
                       tensor.defined() ? tensor.Describe() : "undefined",
                       "; expected an integer scalar"));
    }
    LYRA_ASSIGN_OR_RETURN(Tensor t, tensor.To(DType::kI64));
    LYRA_ASSIGN_OR_RETURN(std::vector<int64_t> v, t.ToVector<int64_t>());
    if (v[0] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("LrSchedule::LoadStateDict: negative step ", v[0]));
    }
    step_ = v[0];
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("LrSchedule::LoadStateDict: the state dict lacks '", kStepKey, "'"));
}

}  // namespace lyra::optim
