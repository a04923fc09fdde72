// Weight initialisers: fans and gains as torch computes them, sample statistics (mean and std
// within a few standard errors) and bounds of every random initialiser, in-place writes through
// views, argument errors, and the same draws on CUDA as on CPU.
#include "nn/init.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/testing.h"

namespace lyra::nn::init {
namespace {

using ::lyra::testing::AllClose;

struct Stats {
  double mean = 0, std = 0, min = 0, max = 0;
  double n = 0;
};

Stats StatsOf(const Tensor& t) {
  const std::vector<double> v = t.ToDoubles().value();
  Stats s;
  s.n = static_cast<double>(v.size());
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  double sum = 0, sum_sq = 0;
  for (double e : v) {
    sum += e;
    sum_sq += e * e;
  }
  s.mean = sum / s.n;
  s.std = std::sqrt(std::max(0.0, sum_sq / s.n - s.mean * s.mean));
  return s;
}

// Mean within 5 standard errors of `mean`, std within 5 standard errors of `std` (the std of
// a sample std is about std / sqrt(2 n) for a normal, a little less for a uniform).
void ExpectMoments(const Tensor& t, double mean, double std) {
  const Stats s = StatsOf(t);
  EXPECT_TRUE(std::abs(s.mean - mean) <= 5 * std / std::sqrt(s.n)) << s.mean << " vs " << mean;
  EXPECT_TRUE(std::abs(s.std - std) <= 5 * std / std::sqrt(2 * s.n)) << s.std << " vs " << std;
}

Tensor Empty(const Shape& shape, DType dtype = DType::kF32, Device device = Device::Cpu()) {
  return Tensor::Empty(shape, dtype, device).value();
}

TEST(InitTest, FansAsTorch) {
  ASSERT_OK_AND_ASSIGN(Fans linear, ComputeFans({30, 20}));
  EXPECT_EQ(linear.fan_in, 20);
  EXPECT_EQ(linear.fan_out, 30);
  ASSERT_OK_AND_ASSIGN(Fans conv, ComputeFans({16, 4, 3, 5}));  // [out, in, kh, kw]
  EXPECT_EQ(conv.fan_in, 4 * 15);
  EXPECT_EQ(conv.fan_out, 16 * 15);
  ASSERT_OK_AND_ASSIGN(Fans depthwise, ComputeFans({1536, 1, 4}));  // mamba conv1d
  EXPECT_EQ(depthwise.fan_in, 4);
  EXPECT_EQ(depthwise.fan_out, 1536 * 4);
  EXPECT_STATUS_IS(ComputeFans({7}), absl::StatusCode::kInvalidArgument, "rank >= 2");
  EXPECT_STATUS_IS(ComputeFans({}), absl::StatusCode::kInvalidArgument, "rank >= 2");
  Generator gen(0);
  EXPECT_STATUS_IS(KaimingUniform(Empty({7}), gen), absl::StatusCode::kInvalidArgument,
                   "init::KaimingUniform: fan in and fan out need a tensor of rank >= 2");
  EXPECT_STATUS_IS(XavierNormal(Empty({7}), gen), absl::StatusCode::kInvalidArgument,
                   "init::XavierNormal");
}

TEST(InitTest, GainsAsTorch) {
  EXPECT_EQ(CalculateGain(Nonlinearity::kLinear), 1.0);
  EXPECT_EQ(CalculateGain(Nonlinearity::kSigmoid), 1.0);
  EXPECT_DOUBLE_EQ(CalculateGain(Nonlinearity::kTanh), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(CalculateGain(Nonlinearity::kRelu), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(CalculateGain(Nonlinearity::kLeakyRelu, std::sqrt(5.0)), std::sqrt(1.0 / 3));
  EXPECT_DOUBLE_EQ(CalculateGain(Nonlinearity::kLeakyRelu), std::sqrt(2.0 / (1 + 1e-4)));
  EXPECT_EQ(CalculateGain(Nonlinearity::kSelu), 0.75);
}

TEST(InitTest, NormalAndUniformStatistics) {
  for (DType dtype : {DType::kF32, DType::kF64, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    Generator gen(1);
    Tensor t = Empty({300, 200}, dtype);
    ASSERT_OK(Normal(t, gen, 0.5, 2.0));
    ExpectMoments(t, 0.5, 2.0);
    ASSERT_OK(Uniform(t, gen, -3, 1));
    const Stats s = StatsOf(t);
    EXPECT_TRUE(s.min >= -3 && s.max < 1) << s.min << " " << s.max;
    ExpectMoments(t, -1, 4 / std::sqrt(12.0));
  }
}

TEST(InitTest, KaimingAndXavierStatistics) {
  const int64_t out = 256, in = 384;
  const double fan_in = in, fan_out = out;
  Generator gen(2);
  Tensor w = Empty({out, in});

  // torch.nn.Linear's weight: a = sqrt(5) -> U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  ASSERT_OK(KaimingUniform(w, gen, std::sqrt(5.0)));
  double bound = 1 / std::sqrt(fan_in);
  Stats s = StatsOf(w);
  EXPECT_TRUE(s.min >= -bound && s.max < bound);
  ExpectMoments(w, 0, bound / std::sqrt(3.0));

  // Default (leaky_relu, a = 0): gain sqrt(2).
  ASSERT_OK(KaimingUniform(w, gen));
  bound = std::sqrt(3.0) * std::sqrt(2.0) / std::sqrt(fan_in);
  s = StatsOf(w);
  EXPECT_TRUE(s.min >= -bound && s.max < bound);
  ExpectMoments(w, 0, bound / std::sqrt(3.0));

  ASSERT_OK(KaimingNormal(w, gen, 0, FanMode::kFanOut, Nonlinearity::kRelu));
  ExpectMoments(w, 0, std::sqrt(2.0) / std::sqrt(fan_out));

  ASSERT_OK(XavierUniform(w, gen, 2.0));
  bound = 2.0 * std::sqrt(6.0 / (fan_in + fan_out));
  s = StatsOf(w);
  EXPECT_TRUE(s.min >= -bound && s.max < bound);
  ExpectMoments(w, 0, bound / std::sqrt(3.0));

  ASSERT_OK(XavierNormal(w, gen));
  ExpectMoments(w, 0, std::sqrt(2.0 / (fan_in + fan_out)));
}

TEST(InitTest, ConstantsAndInPlaceThroughViews) {
  Tensor t = Tensor::Zeros({3, 4}, DType::kF32).value();
  ASSERT_OK(Ones(t));
  EXPECT_EQ(t.ToDoubles().value(), std::vector<double>(12, 1.0));
  ASSERT_OK(Constant(t, -2.5));
  EXPECT_EQ(t.ToDoubles().value(), std::vector<double>(12, -2.5));
  // A row of the tensor (a view) is written in place; the rest is untouched.
  ASSERT_OK_AND_ASSIGN(Tensor row, t.Select(0, 1));
  ASSERT_OK(Zeros(row));
  // A transposed view gets random values in place too.
  ASSERT_OK_AND_ASSIGN(Tensor tt, t.Transpose(0, 1));
  ASSERT_OK_AND_ASSIGN(Tensor col, tt.Narrow(1, 2, 1));  // t's row 2
  Generator gen(3);
  ASSERT_OK(Uniform(col, gen, 10, 11));
  const std::vector<double> v = t.ToDoubles().value();
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(v[j], -2.5);
    EXPECT_EQ(v[4 + j], 0.0);
    EXPECT_TRUE(v[8 + j] >= 10 && v[8 + j] < 11);
  }
  // lo == hi fills.
  ASSERT_OK(Uniform(t, gen, 0.25, 0.25));
  EXPECT_EQ(t.ToDoubles().value(), std::vector<double>(12, 0.25));
}

TEST(InitTest, ZeroElementTensorsDrawNothing) {
  Generator gen(4);
  ASSERT_OK(KaimingUniform(Empty({0, 5}), gen));
  ASSERT_OK(Normal(Empty({0}), gen));
  ASSERT_OK(XavierUniform(Empty({3, 0}), gen));
  EXPECT_EQ(gen.offset(), 0u);
}

TEST(InitTest, BadArgumentsAreErrors) {
  Generator gen(5);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_STATUS_IS(Normal(Empty({3}), gen, 0, -1), absl::StatusCode::kInvalidArgument,
                   "init::Normal: std = -1 < 0");
  EXPECT_STATUS_IS(Normal(Empty({3}), gen, nan, 1), absl::StatusCode::kInvalidArgument,
                   "not finite");
  EXPECT_STATUS_IS(Uniform(Empty({3}), gen, 1, 0), absl::StatusCode::kInvalidArgument,
                   "hi = 0 < lo = 1");
  EXPECT_STATUS_IS(Uniform(Empty({3}, DType::kI32), gen), absl::StatusCode::kInvalidArgument,
                   "expected a floating-point tensor");
  EXPECT_STATUS_IS(Normal(Tensor(), gen), absl::StatusCode::kInvalidArgument, "undefined");
  EXPECT_STATUS_IS(Zeros(Tensor()), absl::StatusCode::kInvalidArgument, "undefined");
  EXPECT_EQ(gen.offset(), 0u);  // failed calls draw nothing
}

TEST(InitTest, SeededDrawsRepeat) {
  Generator a(6), b(6);
  Tensor x = Empty({8, 9}), y = Empty({8, 9});
  ASSERT_OK(KaimingNormal(x, a));
  ASSERT_OK(KaimingNormal(y, b));
  EXPECT_EQ(x.ToDoubles().value(), y.ToDoubles().value());
}

TEST(InitTest, CudaDrawsMatchCpu) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    Generator gen_cpu(7), gen_gpu(7);
    Tensor cpu = Empty({65, 33}, dtype), gpu = Empty({65, 33}, dtype, Device::Cuda(0));
    ASSERT_OK(KaimingUniform(cpu, gen_cpu, std::sqrt(5.0)));
    ASSERT_OK(KaimingUniform(gpu, gen_gpu, std::sqrt(5.0)));
    EXPECT_TRUE(AllClose(gpu.To(Device::Cpu()).value(), cpu, {0, 0}));  // Rand is bit-exact
    ASSERT_OK(XavierNormal(cpu, gen_cpu));
    ASSERT_OK(XavierNormal(gpu, gen_gpu));
    // Randn: host vs device libm, ~1e-6 relative in f32, one rounding step in bf16.
    EXPECT_TRUE(AllClose(gpu.To(Device::Cpu()).value(), cpu,
                         dtype == DType::kF32 ? lyra::testing::Tolerance{1e-6, 1e-5}
                                              : lyra::testing::Tolerance{1e-6, 8e-3}));
  }
}

}  // namespace
}  // namespace lyra::nn::init
