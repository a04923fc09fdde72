#include "optim/loss_scaler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "autograd/ops.h"
#include "base/dtype.h"
#include "cuda/loss_scale.h"
#include "tensor/elementwise.h"
#include "tests/testing/testing.h"

namespace lyra::optim {
namespace {

using autograd::Variable;
using ::lyra::testing::RandomTensor;

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64};
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<Device> Devices() {
  std::vector<Device> devices = {Device::Cpu()};
  if (cuda::HasGpu()) devices.push_back(Device::Cuda(0));
  return devices;
}

// The bytes of a float tensor, for bit-exact comparisons.
std::vector<uint8_t> Bytes(const Tensor& t) {
  std::vector<uint8_t> out;
  LYRA_CHECK_OK(DispatchFloat(t.dtype(), "Bytes", [&]<typename T>() -> absl::Status {
    LYRA_ASSIGN_OR_RETURN(std::vector<T> v, t.ToVector<T>());
    out.resize(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
    return absl::OkStatus();
  }));
  return out;
}

double Flag(const Tensor& found_inf) { return found_inf.Item().value(); }

absl::StatusOr<Tensor> FlagTensor(double value, Device device) {
  return Tensor::Scalar(value, DType::kF32, device);
}

// Sets element `index` (row-major) of a contiguous tensor.
void SetElement(const Tensor& t, int64_t index, double value) {
  Tensor flat = t.Flatten().value();
  ASSERT_OK(flat.Narrow(0, index, 1).value().Fill(value));
}

struct State {
  double scale;
  int64_t growth_tracker;
  int64_t num_skipped;
};

State StateOf(const DynamicLossScaler& s) {
  return State{s.scale().value(), s.growth_tracker().value(), s.num_skipped_steps().value()};
}

void ExpectState(const DynamicLossScaler& s, double scale, int64_t tracker, int64_t skipped,
                 const std::string& where) {
  const State state = StateOf(s);
  EXPECT_EQ(state.scale, scale) << where;
  EXPECT_EQ(state.growth_tracker, tracker) << where;
  EXPECT_EQ(state.num_skipped, skipped) << where;
}

// --- Options ----------------------------------------------------------------------------------

TEST(LossScalerTest, RejectsBadOptions) {
  auto with = [](auto edit) {
    LossScalerOptions o;
    edit(o);
    return DynamicLossScaler::Create(o);
  };
  EXPECT_STATUS_IS(with([](LossScalerOptions& o) { o.init_scale = 0; }),
                   absl::StatusCode::kInvalidArgument, "init_scale");
  EXPECT_STATUS_IS(with([](LossScalerOptions& o) { o.init_scale = kNaN; }),
                   absl::StatusCode::kInvalidArgument, "init_scale");
  EXPECT_STATUS_IS(with([](LossScalerOptions& o) { o.init_scale = 1e39; }),  // > f32 max
                   absl::StatusCode::kInvalidArgument, "init_scale");
  EXPECT_STATUS_IS(with([](LossScalerOptions& o) { o.growth_factor = 1; }),
                   absl::StatusCode::kInvalidArgument, "growth_factor");
  EXPECT_STATUS_IS(with([](LossScalerOptions& o) { o.backoff_factor = 1; }),
                   absl::StatusCode::kInvalidArgument, "backoff_factor");
  EXPECT_STATUS_IS(with([](LossScalerOptions& o) { o.backoff_factor = 0; }),
                   absl::StatusCode::kInvalidArgument, "backoff_factor");
  EXPECT_STATUS_IS(with([](LossScalerOptions& o) { o.growth_interval = 0; }),
                   absl::StatusCode::kInvalidArgument, "growth_interval");
  // A disabled scaler ignores the options.
  EXPECT_OK(with([](LossScalerOptions& o) {
                  o.enabled = false;
                  o.growth_interval = 0;
                }).status());
}

TEST(LossScalerTest, DefaultsAreTorchs) {
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create());
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.options().init_scale, 65536.0);
  EXPECT_EQ(s.options().growth_factor, 2.0);
  EXPECT_EQ(s.options().backoff_factor, 0.5);
  EXPECT_EQ(s.options().growth_interval, 2000);
  ExpectState(s, 65536.0, 0, 0, "fresh");
}

// --- The update rule ------------------------------------------------------------------------

// Hand-computed torch sequence with growth_interval 3.
void CheckUpdateSequence(Device device) {
  LossScalerOptions o;
  o.growth_interval = 3;
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create(o, device));
  struct Step {
    double found_inf;
    double scale;
    int64_t tracker;
    int64_t skipped;
  };
  const Step steps[] = {
      {0, 65536, 1, 0},  {0, 65536, 2, 0},  {1, 32768, 0, 1},   // overflow resets the tracker
      {0, 32768, 1, 1},  {0, 32768, 2, 1},  {0, 65536, 0, 1},   // 3 clean steps: grow
      {1, 32768, 0, 2},  {1, 16384, 0, 3},  {0, 16384, 1, 3},   // back-to-back overflows
      {0, 16384, 2, 3},  {1, 8192, 0, 4},   {0, 8192, 1, 4},    // overflow just before growth
      {0, 8192, 2, 4},   {0, 16384, 0, 4},  {0, 16384, 1, 4},
  };
  int i = 0;
  for (const Step& step : steps) {
    ASSERT_OK_AND_ASSIGN(Tensor flag, FlagTensor(step.found_inf, device));
    ASSERT_OK(s.Update(flag));
    ExpectState(s, step.scale, step.tracker, step.skipped,
                absl::StrCat(device.ToString(), " step ", ++i));
  }
}

TEST(LossScalerTest, UpdateFollowsTorchSequence) {
  for (Device device : Devices()) CheckUpdateSequence(device);
}

// The brief's example with the default growth_interval: 65536, an overflow at step 3 -> 32768,
// then 2000 clean steps -> 65536 again (and not one step earlier).
TEST(LossScalerTest, DefaultIntervalRegrowsAfter2000CleanSteps) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create({}, device));
    ASSERT_OK_AND_ASSIGN(Tensor clean, FlagTensor(0, device));
    ASSERT_OK_AND_ASSIGN(Tensor overflow, FlagTensor(1, device));
    ASSERT_OK(s.Update(clean));
    ASSERT_OK(s.Update(clean));
    ASSERT_OK(s.Update(overflow));
    ExpectState(s, 32768, 0, 1, "after the overflow");
    for (int i = 0; i < 1999; ++i) ASSERT_OK(s.Update(clean));
    ExpectState(s, 32768, 1999, 1, "1999 clean steps");
    ASSERT_OK(s.Update(clean));
    ExpectState(s, 65536, 0, 1, "2000 clean steps");
  }
}

TEST(LossScalerTest, GrowthThatOverflowsF32KeepsTheScale) {
  for (Device device : Devices()) {
    LossScalerOptions o;
    o.init_scale = std::ldexp(1.0, 127);  // the largest power of two in f32
    o.growth_interval = 1;
    ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create(o, device));
    ASSERT_OK_AND_ASSIGN(Tensor clean, FlagTensor(0, device));
    ASSERT_OK(s.Update(clean));
    ExpectState(s, std::ldexp(1.0, 127), 0, 0, device.ToString());  // 2^128 is inf: kept
  }
}

TEST(LossScalerTest, NonPowerOfTwoFactorsRoundThroughF64ToF32) {
  LossScalerOptions o;
  o.init_scale = 1000;
  o.growth_factor = 3;
  o.backoff_factor = 0.3;
  o.growth_interval = 1;
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create(o));
  ASSERT_OK_AND_ASSIGN(Tensor clean, FlagTensor(0, Device::Cpu()));
  ASSERT_OK_AND_ASSIGN(Tensor overflow, FlagTensor(1, Device::Cpu()));
  ASSERT_OK(s.Update(overflow));
  EXPECT_EQ(s.scale().value(), static_cast<double>(static_cast<float>(1000 * 0.3)));
  ASSERT_OK(s.Update(clean));
  const float after = static_cast<float>(static_cast<double>(static_cast<float>(300.0)) * 3);
  EXPECT_EQ(s.scale().value(), static_cast<double>(after));
}

TEST(LossScalerTest, UpdateScaleChecksItsTensors) {
  ASSERT_OK_AND_ASSIGN(Tensor scale, Tensor::Scalar(2, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor tracker, Tensor::Scalar(0, DType::kI64));
  ASSERT_OK_AND_ASSIGN(Tensor skipped, Tensor::Scalar(0, DType::kI64));
  ASSERT_OK_AND_ASSIGN(Tensor flag, Tensor::Scalar(0, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor wrong, Tensor::Scalar(0, DType::kI32));
  EXPECT_STATUS_IS(UpdateScale(scale, wrong, skipped, flag, 2, 0.5, 10),
                   absl::StatusCode::kInvalidArgument, "growth_tracker");
  EXPECT_STATUS_IS(UpdateScale(scale, tracker, skipped, flag, 2, 0.5, 0),
                   absl::StatusCode::kInvalidArgument, "growth_interval");
  ASSERT_OK(UpdateScale(scale, tracker, skipped, flag, 2, 0.5, 1));
  EXPECT_EQ(scale.Item().value(), 4.0);
}

// --- Scale ----------------------------------------------------------------------------------

TEST(LossScalerTest, ScaleMultipliesTheLossAndItsGradient) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create({}, device));
    ASSERT_OK_AND_ASSIGN(Tensor wv, Tensor::FromDoubles({0.5, -1.25, 3}, {3}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor xv, Tensor::FromDoubles({2, 0.75, -1}, {3}, DType::kF32, device));
    Variable w(wv, true);
    Variable x(xv, false);
    ASSERT_OK_AND_ASSIGN(Variable prod, autograd::Mul(w, x));
    ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(prod));
    ASSERT_OK_AND_ASSIGN(Variable scaled, s.Scale(loss));
    EXPECT_EQ(scaled.data().Item().value(), (1 - 0.9375 - 3) * 65536.0);
    ASSERT_OK(scaled.Backward());
    EXPECT_EQ(w.grad().ToDoubles().value(), (std::vector<double>{2 * 65536.0, 0.75 * 65536.0,
                                                                 -65536.0}));
    ASSERT_OK_AND_ASSIGN(Tensor found, s.UnscaleAndCheck({w, x}));  // x has no grad: skipped
    EXPECT_EQ(Flag(found), 0.0);
    EXPECT_EQ(w.grad().ToDoubles().value(), (std::vector<double>{2, 0.75, -1}));
  }
}

TEST(LossScalerTest, ScaleWidensA16BitLossToF32) {
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create());
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    ASSERT_OK_AND_ASSIGN(Tensor lv, Tensor::Scalar(2.0, dtype));
    Variable loss(lv, true);
    ASSERT_OK_AND_ASSIGN(Variable scaled, s.Scale(loss));
    EXPECT_EQ(scaled.dtype(), DType::kF32);
    EXPECT_EQ(scaled.data().Item().value(), 131072.0);  // would be inf in f16
  }
  ASSERT_OK_AND_ASSIGN(Tensor lv, Tensor::Scalar(0.1, DType::kF64));
  ASSERT_OK_AND_ASSIGN(Variable scaled, s.Scale(Variable(lv, true)));
  EXPECT_EQ(scaled.dtype(), DType::kF64);
  EXPECT_EQ(scaled.data().Item().value(), 0.1 * 65536);
  ASSERT_OK_AND_ASSIGN(Tensor iv, Tensor::Scalar(1, DType::kI32));
  EXPECT_STATUS_IS(s.Scale(Variable(iv)), absl::StatusCode::kInvalidArgument, "floating");
  EXPECT_STATUS_IS(s.Scale(Variable()), absl::StatusCode::kInvalidArgument, "undefined");
}

// --- UnscaleAndCheck ------------------------------------------------------------------------

// Values of the dtype times 2^k, divided by 2^k, come back bit for bit.
void CheckUnscaleIsExact(Device device) {
  for (DType dtype : kFloatDTypes) {
    const int k = dtype == DType::kF16 ? 10 : 24;
    const double scale = std::ldexp(1.0, k);
    std::vector<Tensor> originals, grads;
    const int64_t sizes[] = {1, 7, 100, 4099, cuda::kUnscaleChunkElements + 3};
    for (int i = 0; i < 5; ++i) {
      ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({sizes[i]}, dtype, 100 + i, -4, 4));
      ASSERT_OK_AND_ASSIGN(x, x.To(device));
      originals.push_back(x);
      ASSERT_OK_AND_ASSIGN(Tensor g, MulScalar(x, scale));
      grads.push_back(g);
    }
    ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(scale, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor found, FlagTensor(0, device));
    ASSERT_OK(UnscaleAndCheck(grads, s, found));
    EXPECT_EQ(Flag(found), 0.0);
    for (size_t i = 0; i < grads.size(); ++i) {
      EXPECT_EQ(Bytes(grads[i]), Bytes(originals[i]))
          << DTypeName(dtype) << " tensor " << i << " on " << device;
    }
  }
}

TEST(UnscaleAndCheckTest, PowerOfTwoScaleIsExactCpu) { CheckUnscaleIsExact(Device::Cpu()); }

TEST(UnscaleAndCheckTest, PowerOfTwoScaleIsExactCuda) {
  LYRA_REQUIRE_GPU();
  CheckUnscaleIsExact(Device::Cuda(0));
}

// Many tensors of odd sizes; one non-finite value placed at `position` of tensor `which`.
void CheckDetection(Device device, DType dtype) {
  const std::vector<int64_t> sizes = {1,    3,    17,   255,  1023, 4097,
                                      cuda::kUnscaleChunkElements - 1,
                                      cuda::kUnscaleChunkElements + 1, 2 * cuda::kUnscaleChunkElements + 7};
  const int last = static_cast<int>(sizes.size()) - 1;
  struct Case {
    int which;
    int64_t position;  // -1: the last element
    double value;
  };
  const Case cases[] = {
      {last, -1, kInf},  {last, -1, -kInf}, {last, -1, kNaN},  // last element of the last tensor
      {0, 0, kInf},      {4, 511, kNaN},                      // first tensor; a middle one
      {last, cuda::kUnscaleChunkElements, -kInf},             // first element of a later chunk
      {last, cuda::kUnscaleChunkElements - 1, kNaN},          // last element of a chunk
      {-1, 0, 0},                                             // all finite
  };
  for (const Case& c : cases) {
    std::vector<Tensor> grads;
    for (size_t i = 0; i < sizes.size(); ++i) {
      ASSERT_OK_AND_ASSIGN(Tensor g, RandomTensor({sizes[i]}, dtype, 7 * i + 1, -100, 100));
      ASSERT_OK_AND_ASSIGN(g, g.To(device));
      grads.push_back(g);
    }
    if (c.which >= 0) {
      const int64_t n = sizes[c.which];
      SetElement(grads[c.which], c.position < 0 ? n - 1 : c.position, c.value);
    }
    ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(4, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor found, FlagTensor(0, device));
    ASSERT_OK(UnscaleAndCheck(grads, s, found));
    EXPECT_EQ(Flag(found), c.which >= 0 ? 1.0 : 0.0)
        << DTypeName(dtype) << " on " << device << ": tensor " << c.which << " position "
        << c.position << " value " << c.value;
  }
}

TEST(UnscaleAndCheckTest, FindsInfAndNaNAnywhereCpu) {
  for (DType dtype : kFloatDTypes) CheckDetection(Device::Cpu(), dtype);
}

TEST(UnscaleAndCheckTest, FindsInfAndNaNAnywhereCuda) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : kFloatDTypes) CheckDetection(Device::Cuda(0), dtype);
}

// One call over a mix of dtypes, odd sizes, misaligned views (element offset 1) and a transposed
// gradient, with a scale whose inverse is not exact: the CUDA kernel must equal the CPU loop bit
// for bit, and the flag must match.
TEST(UnscaleAndCheckTest, CudaMatchesCpuBitForBit) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  for (bool with_inf : {false, true}) {
    std::vector<Tensor> cpu, gpu_grads;
    int seed = 0;
    for (DType dtype : kFloatDTypes) {
      for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{33}, int64_t{1000},
                        cuda::kUnscaleChunkElements * 3 + 11}) {
        ASSERT_OK_AND_ASSIGN(Tensor base, RandomTensor({n + 1}, dtype, ++seed, -1e3, 1e3));
        ASSERT_OK_AND_ASSIGN(Tensor on_gpu, base.To(gpu));
        ASSERT_OK_AND_ASSIGN(Tensor clone, base.Clone());
        // Elements 1..n: a view whose pointer is one element past an aligned block.
        cpu.push_back(clone.Narrow(0, 1, n).value());
        gpu_grads.push_back(on_gpu.Narrow(0, 1, n).value());
      }
      ASSERT_OK_AND_ASSIGN(Tensor m, RandomTensor({37, 29}, dtype, ++seed, -10, 10));
      ASSERT_OK_AND_ASSIGN(Tensor m_gpu, m.To(gpu));
      cpu.push_back(m.Transpose(0, 1).value());
      gpu_grads.push_back(m_gpu.Transpose(0, 1).value());
    }
    if (with_inf) {  // one inf, in the last element of the last (transposed f64) gradient
      for (const Tensor& last : {cpu.back(), gpu_grads.back()}) {
        ASSERT_OK_AND_ASSIGN(Tensor row, last.Select(0, last.size(0) - 1));
        ASSERT_OK_AND_ASSIGN(Tensor element, row.Select(0, row.size(0) - 1));
        ASSERT_OK(element.Fill(kInf));
      }
    }
    ASSERT_OK_AND_ASSIGN(Tensor s_cpu, Tensor::Scalar(3.7, DType::kF32));
    ASSERT_OK_AND_ASSIGN(Tensor s_gpu, Tensor::Scalar(3.7, DType::kF32, gpu));
    ASSERT_OK_AND_ASSIGN(Tensor f_cpu, FlagTensor(0, Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(Tensor f_gpu, FlagTensor(0, gpu));
    ASSERT_OK(UnscaleAndCheck(cpu, s_cpu, f_cpu));
    ASSERT_OK(UnscaleAndCheck(gpu_grads, s_gpu, f_gpu));
    EXPECT_EQ(Flag(f_gpu), Flag(f_cpu));
    EXPECT_EQ(Flag(f_cpu), with_inf ? 1.0 : 0.0);
    for (size_t i = 0; i < cpu.size(); ++i) {
      EXPECT_EQ(Bytes(gpu_grads[i]), Bytes(cpu[i])) << "tensor " << i << " " << cpu[i].Describe();
    }
  }
}

TEST(UnscaleAndCheckTest, UnscalesEvenWhenAnOverflowIsFound) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::FromDoubles({8, kInf, -16, kNaN}, {4}, DType::kF16,
                                                       device));
    ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(8, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor found, FlagTensor(0, device));
    ASSERT_OK(UnscaleAndCheck({g}, s, found));
    EXPECT_EQ(Flag(found), 1.0);
    ASSERT_OK_AND_ASSIGN(std::vector<double> v, g.ToDoubles());
    EXPECT_EQ(v[0], 1.0);
    EXPECT_EQ(v[1], kInf);
    EXPECT_EQ(v[2], -2.0);
    EXPECT_TRUE(std::isnan(v[3]));
  }
}

TEST(UnscaleAndCheckTest, NeverClearsTheFlag) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::FromDoubles({2, 4}, {2}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(2, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor found, FlagTensor(1, device));
    ASSERT_OK(UnscaleAndCheck({g}, s, found));
    EXPECT_EQ(Flag(found), 1.0);
    EXPECT_EQ(g.ToDoubles().value(), (std::vector<double>{1, 2}));
  }
}

TEST(UnscaleAndCheckTest, ScaleOfOneOnlyChecks) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::FromDoubles({0.1, -3, 1e-30}, {3}, DType::kF32,
                                                       device));
    const std::vector<uint8_t> before = Bytes(g);
    ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(1, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor found, FlagTensor(0, device));
    ASSERT_OK(UnscaleAndCheck({g}, s, found));
    EXPECT_EQ(Flag(found), 0.0);
    EXPECT_EQ(Bytes(g), before);
  }
}

TEST(UnscaleAndCheckTest, EmptyListsAndEmptyTensorsAreFine) {
  ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(2, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor found, FlagTensor(0, Device::Cpu()));
  ASSERT_OK(UnscaleAndCheck({}, s, found));
  ASSERT_OK_AND_ASSIGN(Tensor empty, Tensor::Empty({0, 5}, DType::kBF16));
  ASSERT_OK(UnscaleAndCheck({empty}, s, found));
  EXPECT_EQ(Flag(found), 0.0);
}

TEST(UnscaleAndCheckTest, RejectsWhatItCannotUnscale) {
  ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(2, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor found, FlagTensor(0, Device::Cpu()));
  ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::Ones({4, 6}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor ints, Tensor::Ones({3}, DType::kI32));
  EXPECT_STATUS_IS(UnscaleAndCheck({g, ints}, s, found), absl::StatusCode::kInvalidArgument,
                   "gradient 1 i32[3] cpu is not floating point");
  EXPECT_STATUS_IS(UnscaleAndCheck({Tensor()}, s, found), absl::StatusCode::kInvalidArgument,
                   "gradient 0 is undefined");
  EXPECT_STATUS_IS(UnscaleAndCheck({g.Slice(1, 0, 6, 2).value()}, s, found),
                   absl::StatusCode::kUnimplemented, "gaps");
  EXPECT_STATUS_IS(UnscaleAndCheck({g, g}, s, found), absl::StatusCode::kInvalidArgument,
                   "share memory");
  EXPECT_STATUS_IS(
      UnscaleAndCheck({g.Narrow(0, 0, 3).value(), g.Narrow(0, 2, 2).value()}, s, found),
      absl::StatusCode::kInvalidArgument, "gradients 0 f32[3, 6] cpu and 1 f32[2, 6] cpu share");
  ASSERT_OK_AND_ASSIGN(Tensor s64, Tensor::Scalar(2, DType::kF64));
  EXPECT_STATUS_IS(UnscaleAndCheck({g}, s64, found), absl::StatusCode::kInvalidArgument,
                   "scale must be one f32 element");
  ASSERT_OK_AND_ASSIGN(Tensor two, Tensor::Zeros({2}, DType::kF32));
  EXPECT_STATUS_IS(UnscaleAndCheck({g}, s, two), absl::StatusCode::kInvalidArgument,
                   "found_inf must be one f32 element");
  // Nothing was touched by the rejected calls.
  EXPECT_EQ(g.ToDoubles().value(), std::vector<double>(24, 1.0));
  // Adjacent, non-overlapping views are fine, and so is a transposed (dense) gradient.
  ASSERT_OK(UnscaleAndCheck({g.Narrow(0, 0, 2).value(), g.Narrow(0, 2, 2).value(),
                             Tensor::Ones({3, 5}, DType::kF32).value().Transpose(0, 1).value()},
                            s, found));
  EXPECT_EQ(g.ToDoubles().value(), std::vector<double>(24, 0.5));
}

TEST(UnscaleAndCheckTest, KernelPredicateRejectsBadTables) {
  float scale = 2, found = 0;
  cuda::UnscaleTensor t{nullptr, 3, DType::kF32};
  cuda::UnscaleParams p;
  p.tensors = &t;
  p.num_tensors = 1;
  p.scale = &scale;
  p.found_inf = &found;
  EXPECT_STATUS_IS(cuda::UnscaleSupported(p), absl::StatusCode::kInvalidArgument, "no data");
  t.dtype = DType::kI64;
  EXPECT_STATUS_IS(cuda::UnscaleSupported(p), absl::StatusCode::kInvalidArgument, "i64");
  p.scale = nullptr;
  EXPECT_STATUS_IS(cuda::UnscaleSupported(p), absl::StatusCode::kInvalidArgument, "scale");
}

// --- The scaler's step ----------------------------------------------------------------------

// A parameter, its (scaled) gradient and a fake optimizer with state: p -= lr * g, m += g, t++.
struct FakeTraining {
  Variable param;
  Tensor moment;
  int steps_run = 0;

  absl::Status Step() {
    ++steps_run;
    LYRA_ASSIGN_OR_RETURN(Tensor updated, Sub(param.data(), param.grad(), 0.5));
    LYRA_RETURN_IF_ERROR(param.set_data(updated));
    LYRA_ASSIGN_OR_RETURN(Tensor m, Add(moment, param.grad()));
    return moment.CopyFrom(m);
  }
};

absl::StatusOr<FakeTraining> MakeTraining(Device device, const std::vector<double>& grad) {
  FakeTraining t;
  LYRA_ASSIGN_OR_RETURN(Tensor p, Tensor::FromDoubles({1, 2, 3}, {3}, DType::kF32, device));
  t.param = Variable(p, true);
  LYRA_ASSIGN_OR_RETURN(Tensor g, Tensor::FromDoubles(grad, {3}, DType::kF32, device));
  LYRA_RETURN_IF_ERROR(t.param.set_grad(g));
  LYRA_ASSIGN_OR_RETURN(t.moment, Tensor::Full({3}, 0.25, DType::kF32, device));
  return t;
}

void CheckStepIfFinite(Device device) {
  LossScalerOptions o;
  o.init_scale = 1024;
  o.growth_interval = 2;
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create(o, device));

  // Overflow: the step does not run and nothing it owns changes.
  ASSERT_OK_AND_ASSIGN(FakeTraining bad, MakeTraining(device, {1024, kInf, 2048}));
  const std::vector<uint8_t> param_before = Bytes(bad.param.data());
  const std::vector<uint8_t> moment_before = Bytes(bad.moment);
  ASSERT_OK_AND_ASSIGN(bool stepped, s.StepIfFinite({bad.param}, [&] { return bad.Step(); }));
  EXPECT_FALSE(stepped);
  EXPECT_EQ(bad.steps_run, 0);
  EXPECT_EQ(Bytes(bad.param.data()), param_before);
  EXPECT_EQ(Bytes(bad.moment), moment_before);
  ExpectState(s, 512, 0, 1, "after the skipped step");

  // Clean: the step sees the unscaled gradient.
  ASSERT_OK_AND_ASSIGN(FakeTraining good, MakeTraining(device, {512, -1024, 256}));
  ASSERT_OK_AND_ASSIGN(stepped, s.StepIfFinite({good.param}, [&] { return good.Step(); }));
  EXPECT_TRUE(stepped);
  EXPECT_EQ(good.steps_run, 1);
  EXPECT_EQ(good.param.grad().ToDoubles().value(), (std::vector<double>{1, -2, 0.5}));
  EXPECT_EQ(good.param.data().ToDoubles().value(), (std::vector<double>{0.5, 3, 2.75}));
  EXPECT_EQ(good.moment.ToDoubles().value(), (std::vector<double>{1.25, -1.75, 0.75}));
  ExpectState(s, 512, 1, 1, "after one clean step");

  // Spelled-out flow: UnscaleAndCheck, then StepIfFinite reuses its flag (no second division).
  ASSERT_OK_AND_ASSIGN(FakeTraining again, MakeTraining(device, {512, 512, 512}));
  ASSERT_OK_AND_ASSIGN(Tensor found, s.UnscaleAndCheck({again.param}));
  EXPECT_EQ(Flag(found), 0.0);
  EXPECT_STATUS_IS(s.UnscaleAndCheck({again.param}), absl::StatusCode::kFailedPrecondition,
                   "already called");
  ASSERT_OK_AND_ASSIGN(stepped, s.StepIfFinite({again.param}, [&] { return again.Step(); }));
  EXPECT_TRUE(stepped);
  EXPECT_EQ(again.param.grad().ToDoubles().value(), (std::vector<double>{1, 1, 1}));
  ExpectState(s, 1024, 0, 1, "grown after two clean steps");

  // An error from the step is returned, the scale is left alone, and the next step starts fresh.
  ASSERT_OK_AND_ASSIGN(FakeTraining failing, MakeTraining(device, {1024, 1024, 1024}));
  EXPECT_STATUS_IS(s.StepIfFinite({failing.param},
                                  [] { return absl::InternalError("optimizer broke"); }),
                   absl::StatusCode::kInternal, "optimizer broke");
  ExpectState(s, 1024, 0, 1, "after a failed step");
  ASSERT_OK_AND_ASSIGN(FakeTraining next, MakeTraining(device, {1024, 1024, 1024}));
  ASSERT_OK_AND_ASSIGN(stepped, s.StepIfFinite({next.param}, [&] { return next.Step(); }));
  EXPECT_TRUE(stepped);
}

TEST(LossScalerTest, StepIfFiniteSkipsOverflowsAndLeavesStateUntouchedCpu) {
  CheckStepIfFinite(Device::Cpu());
}

TEST(LossScalerTest, StepIfFiniteSkipsOverflowsAndLeavesStateUntouchedCuda) {
  LYRA_REQUIRE_GPU();
  CheckStepIfFinite(Device::Cuda(0));
}

TEST(LossScalerTest, MixedPrecisionGradientsInOneStep) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create({}, device));
    std::vector<Variable> params;
    for (DType dtype : kFloatDTypes) {
      ASSERT_OK_AND_ASSIGN(Tensor p, Tensor::Zeros({5}, dtype, device));
      Variable v(p, true);
      ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::Full({5}, 2048, dtype, device));
      ASSERT_OK(v.set_grad(g));
      params.push_back(v);
    }
    params.push_back(Variable(Tensor::Zeros({2}, DType::kF32, device).value(), true));  // no grad
    int ran = 0;
    ASSERT_OK_AND_ASSIGN(bool stepped, s.StepIfFinite(params, [&] {
      ++ran;
      return absl::OkStatus();
    }));
    EXPECT_TRUE(stepped);
    EXPECT_EQ(ran, 1);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(params[i].grad().ToDoubles().value(), std::vector<double>(5, 2048.0 / 65536));
    }
    // The last element of the last gradient (the f64 one) overflows.
    SetElement(params[3].grad(), 4, kNaN);
    ASSERT_OK_AND_ASSIGN(stepped, s.StepIfFinite(params, [&] {
      ++ran;
      return absl::OkStatus();
    }));
    EXPECT_FALSE(stepped);
    EXPECT_EQ(ran, 1);
  }
}

TEST(LossScalerTest, RejectsTensorsOnAnotherDevice) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create({}, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::Ones({3}, DType::kF32));
  EXPECT_STATUS_IS(s.UnscaleAndCheckGrads({g}), absl::StatusCode::kInvalidArgument,
                   "not on the scaler's device cuda:0");
  ASSERT_OK_AND_ASSIGN(Tensor l, Tensor::Scalar(1, DType::kF32));
  EXPECT_STATUS_IS(s.Scale(Variable(l, true)), absl::StatusCode::kInvalidArgument,
                   "not on the scaler's device");
}

// --- Disabled -------------------------------------------------------------------------------

TEST(LossScalerTest, DisabledScalerIsAPassThrough) {
  LossScalerOptions o;
  o.enabled = false;
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create(o));
  EXPECT_FALSE(s.enabled());
  ExpectState(s, 1, 0, 0, "disabled");
  ASSERT_OK_AND_ASSIGN(Tensor lv, Tensor::Scalar(3, DType::kF32));
  Variable loss(lv, true);
  ASSERT_OK_AND_ASSIGN(Variable scaled, s.Scale(loss));
  EXPECT_TRUE(scaled.SameAs(loss));
  ASSERT_OK_AND_ASSIGN(FakeTraining t, MakeTraining(Device::Cpu(), {4, kInf, 8}));
  ASSERT_OK_AND_ASSIGN(Tensor found, s.UnscaleAndCheck({t.param}));
  EXPECT_EQ(Flag(found), 0.0);  // not checked
  ASSERT_OK_AND_ASSIGN(bool stepped, s.StepIfFinite({t.param}, [&] { return t.Step(); }));
  EXPECT_TRUE(stepped);
  EXPECT_EQ(t.steps_run, 1);
  ASSERT_OK_AND_ASSIGN(std::vector<double> g, t.param.grad().ToDoubles());
  EXPECT_EQ(g[0], 4.0);  // not unscaled
  ASSERT_OK(s.Update(found));
  ExpectState(s, 1, 0, 0, "disabled after update");
  ASSERT_OK_AND_ASSIGN(nn::NamedTensors state, s.StateDict());
  EXPECT_TRUE(state.empty());
  ASSERT_OK(s.LoadStateDict({{"scale", Tensor::Scalar(8, DType::kF32).value()}}));  // ignored
  ExpectState(s, 1, 0, 0, "disabled after load");
}

// --- State ----------------------------------------------------------------------------------

void CheckStateRoundTrip(Device device) {
  LossScalerOptions o;
  o.init_scale = 1000.1;  // not a power of two: the f32 bits must survive
  o.growth_factor = 3;
  o.growth_interval = 4;
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler a, DynamicLossScaler::Create(o, device));
  for (double flag : {0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0}) {
    ASSERT_OK(a.Update(FlagTensor(flag, device).value()));
  }
  ASSERT_OK_AND_ASSIGN(nn::NamedTensors state, a.StateDict());
  ASSERT_EQ(state.size(), 3u);
  EXPECT_EQ(state[0].first, "scale");
  EXPECT_EQ(state[0].second.dtype(), DType::kF32);
  EXPECT_EQ(state[1].first, "growth_tracker");
  EXPECT_EQ(state[1].second.dtype(), DType::kI64);
  EXPECT_EQ(state[2].first, "num_skipped_steps");
  EXPECT_EQ(state[2].second.dtype(), DType::kI64);
  for (const auto& [name, t] : state) EXPECT_TRUE(t.device().is_cpu()) << name;

  ASSERT_OK_AND_ASSIGN(DynamicLossScaler b, DynamicLossScaler::Create(o, device));
  ASSERT_OK(b.LoadStateDict(state));
  const State sa = StateOf(a), sb = StateOf(b);
  EXPECT_EQ(sb.scale, sa.scale);
  EXPECT_EQ(sb.growth_tracker, 1);
  EXPECT_EQ(sb.growth_tracker, sa.growth_tracker);
  EXPECT_EQ(sb.num_skipped, 2);
  EXPECT_EQ(Bytes(b.StateDict().value()[0].second), Bytes(state[0].second));
  // The snapshot is not a view of the live state.
  ASSERT_OK(a.Update(FlagTensor(1, device).value()));
  EXPECT_EQ(state[2].second.ToVector<int64_t>().value()[0], 2);
  // Both continue identically.
  ASSERT_OK(b.Update(FlagTensor(1, device).value()));
  EXPECT_EQ(StateOf(b).scale, StateOf(a).scale);
  EXPECT_EQ(StateOf(b).num_skipped, 3);
}

TEST(LossScalerTest, StateRoundTripsExactly) {
  for (Device device : Devices()) CheckStateRoundTrip(device);
}

TEST(LossScalerTest, LoadStateDictRejectsBadStates) {
  ASSERT_OK_AND_ASSIGN(DynamicLossScaler s, DynamicLossScaler::Create());
  ASSERT_OK_AND_ASSIGN(nn::NamedTensors good, s.StateDict());
  EXPECT_STATUS_IS(s.LoadStateDict({}), absl::StatusCode::kInvalidArgument, "empty");
  nn::NamedTensors missing = {good[0], good[2]};
  EXPECT_STATUS_IS(s.LoadStateDict(missing), absl::StatusCode::kInvalidArgument,
                   "missing key \"growth_tracker\"");
  nn::NamedTensors unknown = good;
  unknown.emplace_back("growth_factor", Tensor::Scalar(2, DType::kF32).value());
  EXPECT_STATUS_IS(s.LoadStateDict(unknown), absl::StatusCode::kInvalidArgument,
                   "unknown key \"growth_factor\"");
  nn::NamedTensors wrong_dtype = good;
  wrong_dtype[0].second = Tensor::Scalar(2, DType::kF64).value();
  EXPECT_STATUS_IS(s.LoadStateDict(wrong_dtype), absl::StatusCode::kInvalidArgument,
                   "scale must be one f32 element");
  nn::NamedTensors infinite = good;
  infinite[0].second = Tensor::Scalar(kInf, DType::kF32).value();
  EXPECT_STATUS_IS(s.LoadStateDict(infinite), absl::StatusCode::kInvalidArgument,
                   "finite and positive");
  nn::NamedTensors negative = good;
  negative[2].second = Tensor::Scalar(-1, DType::kI64).value();
  EXPECT_STATUS_IS(s.LoadStateDict(negative), absl::StatusCode::kInvalidArgument, ">= 0");
  ExpectState(s, 65536, 0, 0, "unchanged by rejected loads");
  // A one-element [1] tensor (as another writer might save it) is accepted.
  nn::NamedTensors shaped = good;
  shaped[0].second = Tensor::FromDoubles({128}, {1}, DType::kF32).value();
  ASSERT_OK(s.LoadStateDict(shaped));
  ExpectState(s, 128, 0, 0, "loaded");
}

}  // namespace
}  // namespace lyra::optim
