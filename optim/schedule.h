// Learning-rate schedules: the lr as a function of the optimizer step, as a multiplier of each
// group's initial lr (torch's LambdaLR with Hugging Face transformers' schedule lambdas).
//
// With s the step (0 for the first optimizer step), W = warmup_steps, T = total_steps:
//   warmup (every kind):  s < W:  s / max(1, W)
//   kConstant:            1
//   kLinear:              max(0, (T - s) / max(1, T - W))          get_linear_schedule_with_warmup
//   kCosine:              c = max(0, 0.5 (1 + cos(pi * 2 * 0.5 * (s - W) / max(1, T - W))))
//                         r + (1 - r) c, r = min_lr / base_lr       get_cosine_schedule_with_warmup
//                         (r = 0; num_cycles 0.5) and get_cosine_with_min_lr_schedule_with_warmup
// Multipliers are computed in f64. Past T the linear schedule stays at 0; the cosine continues
// its cosine as transformers does (and stays >= r).
//
//   LYRA_ASSIGN_OR_RETURN(LrSchedule schedule, LrSchedule::Create({.kind = ScheduleKind::kCosine,
//       .base_lr = 3e-4, .warmup_steps = 100, .total_steps = 10000, .min_lr = 3e-5}));
//   for (...) {
//     LYRA_RETURN_IF_ERROR(schedule.Apply(*optimizer));   // lr of step schedule.step()
//     LYRA_RETURN_IF_ERROR(optimizer->Step());
//     schedule.Advance();
//   }
//
// State: the step count, as "schedule.step" (i64 scalar) in StateDict / LoadStateDict.
#ifndef LYRA_OPTIM_SCHEDULE_H_
#define LYRA_OPTIM_SCHEDULE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "optim/optimizer.h"

namespace lyra::optim {

enum class ScheduleKind { kConstant, kLinear, kCosine };

absl::string_view ScheduleKindName(ScheduleKind kind);
// "constant", "linear", "cosine"; InvalidArgument otherwise.
absl::StatusOr<ScheduleKind> ParseScheduleKind(absl::string_view name);

struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::kConstant;
  // The lr of multiplier 1 for LearningRate(); also sets the floor ratio min_lr / base_lr.
  double base_lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // kLinear and kCosine
  double min_lr = 0;        // kCosine floor
};

class LrSchedule {
 public:
  // InvalidArgument for negative steps, warmup_steps > total_steps (linear, cosine), base_lr not
  // finite and > 0, or min_lr not in [0, base_lr].
  static absl::StatusOr<LrSchedule> Create(const ScheduleConfig& config);

  // The multiplier and absolute lr at `step` (any step >= 0; negative steps count as 0).
  double Multiplier(int64_t step) const;
  double LearningRate(int64_t step) const { return config_.base_lr * Multiplier(step); }

  // The current step (how many times Advance was called, or what LoadStateDict restored).
  int64_t step() const { return step_; }
  void Advance() { ++step_; }
  // Sets every group's lr to its initial lr times Multiplier(step()).
  absl::Status Apply(Optimizer& optimizer) const;

  const ScheduleConfig& config() const { return config_; }
  NamedTensors StateDict() const;
  // Reads "schedule.step"; other keys are ignored (the dict may be shared with other state).
  // InvalidArgument if the key is missing or not a non-negative integer scalar.
  absl::Status LoadStateDict(const NamedTensors& state);

 private:
  explicit LrSchedule(const ScheduleConfig& config) : config_(config) {}
  ScheduleConfig config_;
  int64_t step_ = 0;
};

}  // namespace lyra::optim

#endif  // LYRA_OPTIM_SCHEDULE_H_
