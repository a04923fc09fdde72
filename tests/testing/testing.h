// Helpers for Lyra's GoogleTest suites: Status assertions, GPU skipping, per-dtype tolerances
// and tensor comparisons that report max-abs and relative error and never let NaN pass.
#ifndef LYRA_TESTS_TESTING_TESTING_H_
#define LYRA_TESTS_TESTING_TESTING_H_

#include <gtest/gtest.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "cuda/device.h"
#include "tensor/tensor.h"

#define LYRA_TESTING_CONCAT_INNER_(a, b) a##b
#define LYRA_TESTING_CONCAT_(a, b) LYRA_TESTING_CONCAT_INNER_(a, b)

#define ASSERT_OK(expr)                                  \
  do {                                                   \
    const ::absl::Status lyra_test_status_ = (expr);     \
    ASSERT_TRUE(lyra_test_status_.ok()) << lyra_test_status_; \
  } while (0)

#define EXPECT_OK(expr)                                  \
  do {                                                   \
    const ::absl::Status lyra_test_status_ = (expr);     \
    EXPECT_TRUE(lyra_test_status_.ok()) << lyra_test_status_; \
  } while (0)

#define ASSERT_OK_AND_ASSIGN_IMPL_(statusor, lhs, rexpr)          \
  auto statusor = (rexpr);                                         \
  ASSERT_TRUE(statusor.ok()) << statusor.status();                 \
  lhs = std::move(statusor).value()

#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  ASSERT_OK_AND_ASSIGN_IMPL_(LYRA_TESTING_CONCAT_(lyra_test_statusor_, __LINE__), lhs, rexpr)

// Expects `expr` (a Status or StatusOr) to fail with `code` and a message containing `substr`.
#define EXPECT_STATUS_IS(expr, expected_code, expected_substr)                        \
  do {                                                                                \
    const ::absl::Status lyra_test_status_ = ::lyra::testing::ToStatus(expr);         \
    EXPECT_EQ(lyra_test_status_.code(), expected_code) << lyra_test_status_;          \
    EXPECT_NE(std::string(lyra_test_status_.message()).find(expected_substr),         \
              std::string::npos)                                                      \
        << "message '" << lyra_test_status_.message() << "' lacks '" << expected_substr << "'"; \
  } while (0)

// Skips the test, with the reason, on a machine without a GPU.
#define LYRA_REQUIRE_GPU()                                                       \
  do {                                                                           \
    if (!::lyra::cuda::HasGpu())                                                 \
      GTEST_SKIP() << "needs a GPU; none here (" << ::lyra::cuda::NoGpuReason() << ")"; \
  } while (0)

namespace lyra::testing {

inline absl::Status ToStatus(const absl::Status& s) { return s; }
template <typename T>
absl::Status ToStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

// |actual - expected| <= abs + rel * |expected|, elementwise.
struct Tolerance {
  double abs;
  double rel;
};

// The one table of per-dtype tolerances for results computed in one pass (no long reductions).
Tolerance DefaultTolerance(DType dtype);

// Compares values (any dtypes, compared as double) of equal shape. The failure message gives the
// max-abs and max-relative error and the first offending index. NaN in `actual` fails unless
// `expected` is NaN at the same place; likewise for infinities.
::testing::AssertionResult AllClose(const Tensor& actual, const Tensor& expected, Tolerance tol);
::testing::AssertionResult AllClose(const std::vector<double>& actual,
                                    const std::vector<double>& expected, Tolerance tol);

// Max |a - b| / max(|b|, tiny) over all elements; +inf if any NaN appears.
double MaxRelativeError(const std::vector<double>& actual, const std::vector<double>& expected);

// Random test data: uniform in [lo, hi), deterministic in `seed`, as a CPU tensor of `dtype`.
absl::StatusOr<Tensor> RandomTensor(const Shape& shape, DType dtype, uint64_t seed,
                                    double lo = -1.0, double hi = 1.0);

}  // namespace lyra::testing

#endif  // LYRA_TESTS_TESTING_TESTING_H_
