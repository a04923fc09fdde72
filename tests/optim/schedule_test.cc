// Learning-rate schedules at their key steps (0, inside the warmup, warmup end, middle, end and
// past the end) against transformers' formulas written out here, applying them to an
// optimizer's groups, the state round trip, and configuration errors.
#include "optim/schedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "optim/adamw.h"
#include "tests/testing/testing.h"

namespace lyra::optim {
namespace {

constexpr double kPi = 3.14159265358979323846;

// transformers.get_cosine_schedule_with_warmup(num_cycles=0.5) and
// get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate = r), as in the library.
double HfCosine(int64_t s, int64_t warmup, int64_t total, double r = 0) {
  if (s < warmup) return static_cast<double>(s) / std::max<int64_t>(1, warmup);
  const double progress =
      static_cast<double>(s - warmup) / static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double factor = 0.5 * (1.0 + std::cos(kPi * 0.5 * 2.0 * progress));
  return std::max(0.0, factor * (1 - r) + r);
}

double HfLinear(int64_t s, int64_t warmup, int64_t total) {
  if (s < warmup) return static_cast<double>(s) / std::max<int64_t>(1, warmup);
  return std::max(0.0, static_cast<double>(total - s) /
                           static_cast<double>(std::max<int64_t>(1, total - warmup)));
}

TEST(ScheduleTest, ConstantWithAndWithoutWarmup) {
  ASSERT_OK_AND_ASSIGN(LrSchedule flat, LrSchedule::Create({.base_lr = 0.1}));
  for (int64_t s : {0, 1, 100, 100000}) EXPECT_EQ(flat.Multiplier(s), 1.0);
  ASSERT_OK_AND_ASSIGN(LrSchedule warm, LrSchedule::Create({.base_lr = 0.1, .warmup_steps = 10}));
  EXPECT_EQ(warm.Multiplier(0), 0.0);
  EXPECT_DOUBLE_EQ(warm.Multiplier(5), 0.5);
  EXPECT_EQ(warm.Multiplier(10), 1.0);
  EXPECT_EQ(warm.Multiplier(1000), 1.0);
  EXPECT_DOUBLE_EQ(warm.LearningRate(5), 0.05);
}

TEST(ScheduleTest, LinearWarmupAndDecay) {
  ASSERT_OK_AND_ASSIGN(LrSchedule s, LrSchedule::Create({.kind = ScheduleKind::kLinear,
                                                         .base_lr = 2e-3,
                                                         .warmup_steps = 100,
                                                         .total_steps = 1000}));
  EXPECT_EQ(s.Multiplier(0), 0.0);
  EXPECT_DOUBLE_EQ(s.Multiplier(50), 0.5);
  EXPECT_EQ(s.Multiplier(100), 1.0);         // warmup end: the peak
  EXPECT_DOUBLE_EQ(s.Multiplier(550), 0.5);  // middle of the decay
  EXPECT_EQ(s.Multiplier(1000), 0.0);
  EXPECT_EQ(s.Multiplier(1500), 0.0);
  for (int64_t step : {0, 1, 37, 99, 100, 101, 420, 999, 1000, 1234}) {
    EXPECT_DOUBLE_EQ(s.Multiplier(step), HfLinear(step, 100, 1000)) << step;
  }
  EXPECT_DOUBLE_EQ(s.LearningRate(550), 1e-3);
}

TEST(ScheduleTest, CosineMatchesTransformers) {
  ASSERT_OK_AND_ASSIGN(LrSchedule s, LrSchedule::Create({.kind = ScheduleKind::kCosine,
                                                         .base_lr = 1e-3,
                                                         .warmup_steps = 10,
                                                         .total_steps = 110}));
  EXPECT_EQ(s.Multiplier(0), 0.0);
  EXPECT_EQ(s.Multiplier(10), 1.0);
  EXPECT_NEAR(s.Multiplier(60), 0.5, 1e-15);  // half way: cos(pi / 2) = 0
  EXPECT_NEAR(s.Multiplier(110), 0.0, 1e-15);
  for (int64_t step : {0, 3, 9, 10, 11, 35, 60, 85, 109, 110, 150, 210}) {
    EXPECT_DOUBLE_EQ(s.Multiplier(step), HfCosine(step, 10, 110)) << step;
  }
}

TEST(ScheduleTest, CosineWithFloor) {
  ASSERT_OK_AND_ASSIGN(LrSchedule s, LrSchedule::Create({.kind = ScheduleKind::kCosine,
                                                         .base_lr = 1e-3,
                                                         .warmup_steps = 0,
                                                         .total_steps = 100,
                                                         .min_lr = 1e-4}));
  EXPECT_EQ(s.Multiplier(0), 1.0);
  EXPECT_NEAR(s.LearningRate(50), 0.5 * (1e-3 + 1e-4), 1e-18);
  EXPECT_NEAR(s.LearningRate(100), 1e-4, 1e-18);
  for (int64_t step : {0, 1, 25, 50, 75, 99, 100, 130}) {
    EXPECT_DOUBLE_EQ(s.Multiplier(step), HfCosine(step, 0, 100, 0.1)) << step;
    EXPECT_GE(s.LearningRate(step), 1e-4 * (1 - 1e-12)) << step;
  }
}

TEST(ScheduleTest, AppliesToEveryGroupAndRoundTrips) {
  Tensor a = *Tensor::Zeros({2}, DType::kF32);
  Tensor b = *Tensor::Zeros({3}, DType::kF32);
  std::vector<ParamGroup> groups(2);
  groups[0].params = {{"a", Variable(a, true)}};
  groups[1].params = {{"b", Variable(b, true)}};
  groups[1].lr = 1e-2;
  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create(std::move(groups), {.lr = 1e-3}));
  ASSERT_OK_AND_ASSIGN(LrSchedule s, LrSchedule::Create({.kind = ScheduleKind::kLinear,
                                                         .base_lr = 1e-3,
                                                         .warmup_steps = 4,
                                                         .total_steps = 8}));
  for (int i = 0; i < 6; ++i) s.Advance();
  EXPECT_EQ(s.step(), 6);
  ASSERT_OK(s.Apply(*opt));
  EXPECT_DOUBLE_EQ(opt->lr(0), 1e-3 * 0.5);
  EXPECT_DOUBLE_EQ(opt->lr(1), 1e-2 * 0.5);
  EXPECT_EQ(opt->initial_lr(1), 1e-2);

  ASSERT_OK_AND_ASSIGN(LrSchedule restored, LrSchedule::Create(s.config()));
  NamedTensors state = s.StateDict();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state[0].first, "schedule.step");
  EXPECT_EQ(state[0].second.dtype(), DType::kI64);
  state.emplace_back("other.key", internal::ScalarF64(3));  // shared dicts are fine
  ASSERT_OK(restored.LoadStateDict(state));
  EXPECT_EQ(restored.step(), 6);
  EXPECT_STATUS_IS(restored.LoadStateDict({}), absl::StatusCode::kInvalidArgument,
                   "schedule.step");
  EXPECT_STATUS_IS(restored.LoadStateDict({{"schedule.step", internal::ScalarF64(2)}}),
                   absl::StatusCode::kInvalidArgument, "integer");
}

TEST(ScheduleTest, RejectsBadConfigs) {
  EXPECT_STATUS_IS(LrSchedule::Create({.kind = ScheduleKind::kCosine, .warmup_steps = 10,
                                       .total_steps = 5}),
                   absl::StatusCode::kInvalidArgument, "exceeds");
  EXPECT_STATUS_IS(LrSchedule::Create({.base_lr = 0}), absl::StatusCode::kInvalidArgument,
                   "base_lr");
  EXPECT_STATUS_IS(LrSchedule::Create({.warmup_steps = -1}), absl::StatusCode::kInvalidArgument,
                   ">= 0");
  EXPECT_STATUS_IS(LrSchedule::Create({.kind = ScheduleKind::kCosine, .base_lr = 1e-3,
                                       .total_steps = 10, .min_lr = 1e-2}),
                   absl::StatusCode::kInvalidArgument, "min_lr");
  ASSERT_OK_AND_ASSIGN(ScheduleKind kind, ParseScheduleKind("cosine"));
  EXPECT_EQ(kind, ScheduleKind::kCosine);
  EXPECT_STATUS_IS(ParseScheduleKind("step"), absl::StatusCode::kInvalidArgument, "'step'");
}

}  // namespace
}  // namespace lyra::optim
