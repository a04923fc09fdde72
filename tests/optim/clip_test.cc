// ClipGradNorm / GradNorm: the norm against a naive f64 loop, the scale torch applies, no-op when
// under the limit, NaN / inf norms returned with the gradients left alone, parameters without
// gradients, 16-bit and strided gradients, argument errors, and CUDA against the CPU reference
// over many tensors of odd sizes.
#include "optim/clip.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/testing.h"

namespace lyra::optim {
namespace {

using autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::RandomTensor;

// Parameters (values irrelevant) whose gradients are random tensors of the given sizes.
std::vector<Variable> WithGrads(const std::vector<int64_t>& sizes, DType dtype, Device device,
                                uint64_t seed, double scale = 1.0) {
  std::vector<Variable> params;
  for (size_t i = 0; i < sizes.size(); ++i) {
    Tensor p = *Tensor::Zeros({sizes[i]}, DType::kF32, device);
    Tensor g = *RandomTensor({sizes[i]}, DType::kF32, seed + i, -scale, scale);
    Variable v(p, true);
    v.state()->grad = *(*g.To(dtype)).To(device);
    params.push_back(v);
  }
  return params;
}

double NaiveNorm(const std::vector<Variable>& params) {
  double sum = 0;
  for (const Variable& p : params) {
    if (!p.grad().defined()) continue;
    const std::vector<double> values = *p.grad().ToDoubles();
    for (double x : values) sum += x * x;
  }
  return std::sqrt(sum);
}

std::vector<std::vector<double>> Grads(const std::vector<Variable>& params) {
  std::vector<std::vector<double>> out;
  for (const Variable& p : params) out.push_back(*p.grad().ToDoubles());
  return out;
}

TEST(ClipTest, NormMatchesNaiveLoopAndScalesAsTorch) {
  std::vector<Variable> params = WithGrads({1, 7, 0, 1000, 70000, 33}, DType::kF32, Device::Cpu(), 1);
  const double naive = NaiveNorm(params);
  const std::vector<std::vector<double>> before = Grads(params);
  ASSERT_OK_AND_ASSIGN(ClipResult r, ClipGradNorm(params, 1.0));
  EXPECT_NEAR(r.total_norm, naive, 1e-5 * naive);
  ASSERT_OK_AND_ASSIGN(double device_norm, r.total_norm_device.Item());
  EXPECT_EQ(device_norm, r.total_norm);
  const float norm32 = static_cast<float>(r.total_norm);
  const float coef = (1.0f / (norm32 + 1e-6f)) * 1.0f;
  ASSERT_OK_AND_ASSIGN(double applied, r.clip_coef_device.Item());
  EXPECT_EQ(static_cast<float>(applied), coef);
  const std::vector<std::vector<double>> after = Grads(params);
  for (size_t i = 0; i < params.size(); ++i) {
    for (size_t k = 0; k < after[i].size(); ++k) {
      ASSERT_EQ(static_cast<float>(after[i][k]), static_cast<float>(before[i][k]) * coef);
    }
  }
  ASSERT_OK_AND_ASSIGN(double clipped, GradNorm(params));
  EXPECT_NEAR(clipped, 1.0, 1e-5);
}

TEST(ClipTest, UnderTheLimitLeavesGradientsUntouched) {
  std::vector<Variable> params = WithGrads({5, 9}, DType::kF32, Device::Cpu(), 3, 0.01);
  const std::vector<std::vector<double>> before = Grads(params);
  ASSERT_OK_AND_ASSIGN(ClipResult r, ClipGradNorm(params, 10.0));
  ASSERT_OK_AND_ASSIGN(double coef, r.clip_coef_device.Item());
  EXPECT_EQ(coef, 1.0);
  EXPECT_EQ(Grads(params), before);
  ASSERT_OK_AND_ASSIGN(double norm, GradNorm(params));
  EXPECT_EQ(norm, r.total_norm);
}

TEST(ClipTest, NonFiniteNormIsReturnedAndNothingIsScaled) {
  for (double bad : {std::numeric_limits<double>::infinity(),
                     std::numeric_limits<double>::quiet_NaN()}) {
    SCOPED_TRACE(bad);
    std::vector<Variable> params = WithGrads({4, 6}, DType::kF32, Device::Cpu(), 5, 100.0);
    ASSERT_OK(params[1].grad().Select(0, 2)->Fill(bad));
    std::vector<std::vector<double>> before = Grads(params);
    ASSERT_OK_AND_ASSIGN(ClipResult r, ClipGradNorm(params, 1.0));
    if (std::isnan(bad)) {
      EXPECT_TRUE(std::isnan(r.total_norm));
    } else {
      EXPECT_EQ(r.total_norm, bad);
    }
    std::vector<std::vector<double>> after = Grads(params);
    EXPECT_EQ(after[0], before[0]);
    EXPECT_TRUE(AllClose(after[1], before[1], {0, 0}));  // NaN == NaN in AllClose
  }
}

TEST(ClipTest, SkipsMissingGradientsAndHandlesNone) {
  std::vector<Variable> params = WithGrads({10, 20}, DType::kF32, Device::Cpu(), 7);
  params.push_back(Variable(*Tensor::Zeros({3}, DType::kF32), true));  // no gradient
  params.push_back(Variable());                                       // undefined: ignored
  ASSERT_OK_AND_ASSIGN(double norm, GradNorm(params));
  EXPECT_NEAR(norm, NaiveNorm(params), 1e-6 * norm);
  ASSERT_OK_AND_ASSIGN(ClipResult none,
                       ClipGradNorm({Variable(*Tensor::Zeros({3}, DType::kF32), true)}, 1.0));
  EXPECT_EQ(none.total_norm, 0.0);
}

TEST(ClipTest, HalfAndStridedGradients) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    std::vector<Variable> params = WithGrads({17, 300}, dtype, Device::Cpu(), 11, 2.0);
    const double naive = NaiveNorm(params);
    ASSERT_OK_AND_ASSIGN(ClipResult r, ClipGradNorm(params, 0.5));
    EXPECT_NEAR(r.total_norm, naive, 1e-5 * naive);
    EXPECT_EQ(params[0].grad().dtype(), dtype);
    ASSERT_OK_AND_ASSIGN(double after, GradNorm(params));
    EXPECT_NEAR(after, 0.5, 0.5 * 1e-2);  // each element rounded back to 16 bits
  }
  // A transposed gradient is clipped through a copy that is written back.
  Tensor p = *Tensor::Zeros({6, 5}, DType::kF32);
  Tensor g = *(*RandomTensor({5, 6}, DType::kF32, 13)).Transpose(0, 1);
  Variable v(p, true);
  v.state()->grad = g;
  const std::vector<double> before = *g.ToDoubles();
  ASSERT_OK_AND_ASSIGN(ClipResult r, ClipGradNorm({v}, 0.1));
  const float coef = static_cast<float>(*r.clip_coef_device.Item());
  const std::vector<double> after = *v.grad().ToDoubles();
  for (size_t k = 0; k < after.size(); ++k) {
    EXPECT_EQ(static_cast<float>(after[k]), static_cast<float>(before[k]) * coef);
  }
}

TEST(ClipTest, RejectsBadArguments) {
  std::vector<Variable> params = WithGrads({3}, DType::kF32, Device::Cpu(), 1);
  EXPECT_STATUS_IS(ClipGradNorm(params, -1), absl::StatusCode::kInvalidArgument, "max_norm");
  EXPECT_STATUS_IS(ClipGradNorm(params, std::nan("")), absl::StatusCode::kInvalidArgument,
                   "max_norm");
  Variable d(*Tensor::Zeros({2}, DType::kF64), true);
  d.state()->grad = *Tensor::Ones({2}, DType::kF64);
  EXPECT_STATUS_IS(GradNorm({d}), absl::StatusCode::kInvalidArgument, "f64");
}

TEST(ClipGpuTest, MatchesCpuReference) {
  LYRA_REQUIRE_GPU();
  std::vector<int64_t> sizes = {1, 3, 1000, 65536, 65537, 200003, 0, 5};
  for (int i = 0; i < 200; ++i) sizes.push_back(1 + i % 13);
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (double max_norm : {1.0, 1e6}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " max_norm ", max_norm));
      std::vector<Variable> cpu = WithGrads(sizes, dtype, Device::Cpu(), 21);
      std::vector<Variable> gpu = WithGrads(sizes, dtype, Device::Cuda(0), 21);
      ASSERT_OK_AND_ASSIGN(ClipResult rc, ClipGradNorm(cpu, max_norm));
      ASSERT_OK_AND_ASSIGN(ClipResult rg, ClipGradNorm(gpu, max_norm));
      // Per-chunk f32 sums in another order (sequential on the CPU, a tree on the GPU): the
      // CPU's sequential sum of 64K squares is good to ~1e-5.
      EXPECT_NEAR(rg.total_norm, rc.total_norm, 3e-5 * rc.total_norm);
      ASSERT_OK_AND_ASSIGN(double cpu_coef, rc.clip_coef_device.Item());
      ASSERT_OK_AND_ASSIGN(double gpu_coef, rg.clip_coef_device.Item());
      EXPECT_NEAR(gpu_coef, cpu_coef, 3e-5 * cpu_coef);
      for (size_t i = 0; i < sizes.size(); ++i) {
        EXPECT_TRUE(AllClose(gpu[i].grad(), cpu[i].grad(),
                             {1e-7, 3e-5 + (dtype == DType::kF32 ? 0 : 1e-2)}))
            << i;
      }
    }
  }
  // inf on the GPU: returned, nothing scaled.
  std::vector<Variable> gpu = WithGrads({100, 7}, DType::kF32, Device::Cuda(0), 3);
  ASSERT_OK(gpu[0].grad().Select(0, 50)->Fill(std::numeric_limits<double>::infinity()));
  const std::vector<std::vector<double>> before = Grads(gpu);
  ASSERT_OK_AND_ASSIGN(ClipResult r, ClipGradNorm(gpu, 1.0));
  EXPECT_TRUE(std::isinf(r.total_norm));
  EXPECT_EQ(Grads(gpu)[1], before[1]);
}

}  // namespace
}  // namespace lyra::optim
