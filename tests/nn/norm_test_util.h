// Helpers shared by the norm tests (tests/nn/norm_test.cc for RMSNorm / LayerNorm,
// tests/nn/gated_rms_norm_test.cc for the gated RMSNorm): random operands, host copies, and the
// one table of CUDA-vs-CPU tolerances.
#ifndef LYRA_TESTS_NN_NORM_TEST_UTIL_H_
#define LYRA_TESTS_NN_NORM_TEST_UTIL_H_

#include <cstdint>
#include <vector>

#include "base/dtype.h"
#include "tensor/device.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"

// The norm tests live in this namespace (inside an anonymous one) and use these names unqualified.
namespace lyra::nn::norm_testing {

using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::Tolerance;

inline constexpr double kEps = 1e-5;
inline constexpr Device kGpu = Device::Cuda(0);

// A uniform random CPU tensor in [lo, hi) (crashes the test binary on failure).
inline Tensor Rand(const Shape& shape, DType dtype, uint64_t seed, double lo = -1, double hi = 1) {
  return ::lyra::testing::RandomTensor(shape, dtype, seed, lo, hi).value();
}

inline std::vector<double> Doubles(const Tensor& t) { return t.ToDoubles().value(); }

inline Tensor OnCpu(const Tensor& t) { return t.To(Device::Cpu()).value(); }
// `t` on cuda:0; an undefined (optional) operand stays undefined.
inline Tensor OnGpu(const Tensor& t) { return t.defined() ? t.To(kGpu).value() : Tensor(); }

// CUDA vs the CPU reference. The kernels compute in f32 (the RMSNorm / LayerNorm reference too;
// the gated reference sums in f64): outputs rounded to T may differ by one ulp of T; gradients
// summed over rows (dweight, dbias) differ by the order of a long f32 sum.
inline Tolerance OutputTolerance(DType dtype) {
  return dtype == DType::kF32 ? Tolerance{1e-5, 1e-5} : DefaultTolerance(dtype);
}
inline Tolerance GradTolerance(DType dtype) {
  return dtype == DType::kF32 ? Tolerance{1e-4, 1e-4} : DefaultTolerance(dtype);
}
inline Tolerance WeightGradTolerance(DType dtype) {
  return dtype == DType::kF32 ? Tolerance{2e-3, 1e-3} : Tolerance{2e-2, 2e-3};
}

}  // namespace lyra::nn::norm_testing

#endif  // LYRA_TESTS_NN_NORM_TEST_UTIL_H_
