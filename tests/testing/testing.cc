#include "tests/testing/testing.h"

#include <cmath>
#include <limits>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace lyra::testing {

Tolerance DefaultTolerance(DType dtype) {
  switch (dtype) {
    case DType::kF64: return {1e-12, 1e-10};
    case DType::kF32: return {1e-5, 1e-5};
    case DType::kF16: return {2e-3, 2e-3};
    case DType::kBF16: return {1.6e-2, 1.6e-2};
    default: return {0, 0};
  }
}

::testing::AssertionResult AllClose(const std::vector<double>& actual,
                                    const std::vector<double>& expected, Tolerance tol) {
  if (actual.size() != expected.size()) {
    return ::testing::AssertionFailure()
           << "size " << actual.size() << " vs expected " << expected.size();
  }
  double max_abs = 0, max_rel = 0;
  int64_t first_bad = -1;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = actual[i], e = expected[i];
    bool ok;
    if (std::isnan(e)) {
      ok = std::isnan(a);
    } else if (std::isinf(e)) {
      ok = a == e;
    } else {
      const double err = std::fabs(a - e);
      ok = err <= tol.abs + tol.rel * std::fabs(e);  // false for NaN a
      if (std::isfinite(err)) {
        max_abs = std::max(max_abs, err);
        max_rel = std::max(max_rel, err / std::max(std::fabs(e), 1e-300));
      } else {
        max_abs = std::numeric_limits<double>::infinity();
      }
    }
    if (!ok && first_bad < 0) first_bad = static_cast<int64_t>(i);
  }
  if (first_bad < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "max abs error " << max_abs << ", max rel error " << max_rel << " (tolerance abs "
         << tol.abs << " rel " << tol.rel << "); first mismatch at flat index " << first_bad
         << ": " << actual[first_bad] << " vs expected " << expected[first_bad];
}

::testing::AssertionResult AllClose(const Tensor& actual, const Tensor& expected, Tolerance tol) {
  if (actual.shape() != expected.shape()) {
    return ::testing::AssertionFailure()
           << "shape " << actual.Describe() << " vs expected " << expected.Describe();
  }
  absl::StatusOr<std::vector<double>> a = actual.ToDoubles();
  absl::StatusOr<std::vector<double>> e = expected.ToDoubles();
  if (!a.ok()) return ::testing::AssertionFailure() << a.status();
  if (!e.ok()) return ::testing::AssertionFailure() << e.status();
  return AllClose(*a, *e, tol);
}

double MaxRelativeError(const std::vector<double>& actual, const std::vector<double>& expected) {
  double worst = 0;
  for (size_t i = 0; i < actual.size() && i < expected.size(); ++i) {
    const double err = std::fabs(actual[i] - expected[i]) / std::max(std::fabs(expected[i]), 1e-300);
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
  }
  return worst;
}

absl::StatusOr<Tensor> RandomTensor(const Shape& shape, DType dtype, uint64_t seed, double lo,
                                    double hi) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<double> values(NumElements(shape));
  for (double& v : values) v = dist(rng);
  if (IsInteger(dtype)) {
    for (double& v : values) v = std::floor(v);
  }
  return Tensor::FromDoubles(values, shape, dtype);
}

}  // namespace lyra::testing
