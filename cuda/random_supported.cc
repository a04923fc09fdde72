// The "is this supported" predicates of the random kernels and their block counts; linked into
// both the CPU reference and the CUDA launchers, which validate with them.
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/random.h"
#include "cuda/random_ops.h"

namespace lyra::cuda {
namespace {

absl::Status CheckCount(absl::string_view op, int64_t n) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat(op, ": negative element count ", n));
  return absl::OkStatus();
}

}  // namespace

// f16 and bf16 are made like f32 (one word per element).
uint64_t RandBlocks(int64_t n, DType dtype) {
  return rng::BlocksFor(n, dtype == DType::kF64 ? rng::UniformFn<double>::kPerBlock
                                                : rng::UniformFn<float>::kPerBlock);
}

uint64_t RandnBlocks(int64_t n, DType dtype) {
  return rng::BlocksFor(n, dtype == DType::kF64 ? rng::NormalFn<double>::kPerBlock
                                                : rng::NormalFn<float>::kPerBlock);
}

uint64_t BernoulliBlocks(int64_t n) { return rng::BlocksFor(n, rng::BernoulliFn::kPerBlock); }

uint64_t RandIntBlocks(int64_t n) { return rng::BlocksFor(n, rng::RandIntFn<int64_t>::kPerBlock); }

absl::Status RandSupported(const RandParams& p) {
  LYRA_RETURN_IF_ERROR(CheckCount("Rand", p.n));
  return DispatchFloat(p.dtype, "Rand", [&]<typename T>() -> absl::Status {
    if (!(std::isfinite(p.lo) && std::isfinite(p.hi))) {
      return absl::InvalidArgumentError(
          absl::StrCat("Rand: lo (", p.lo, ") and hi (", p.hi, ") must be finite"));
    }
    if (!(p.hi > p.lo)) {
      return absl::InvalidArgumentError(
          absl::StrCat("Rand: hi (", p.hi, ") must be greater than lo (", p.lo, ")"));
    }
    const double lo_t = rng::RoundTo<T>(p.lo);
    const double hi_t = rng::RoundTo<T>(p.hi);
    if (!(std::isfinite(lo_t) && std::isfinite(hi_t))) {
      return absl::InvalidArgumentError(absl::StrCat("Rand: [lo, hi) = [", p.lo, ", ", p.hi,
                                                     ") overflows ", DTypeName(p.dtype)));
    }
    if (!(hi_t > lo_t)) {
      return absl::InvalidArgumentError(absl::StrCat("Rand: [lo, hi) = [", p.lo, ", ", p.hi,
                                                     ") is empty in ", DTypeName(p.dtype),
                                                     " (lo and hi round to ", lo_t, ", ", hi_t,
                                                     ")"));
    }
    if (!std::isfinite(rng::MakeUniformFn<T>(p.lo, p.hi).scale)) {
      return absl::UnimplementedError(absl::StrCat("Rand: hi - lo = ", p.hi, " - ", p.lo,
                                                   " overflows ", DTypeName(p.dtype)));
    }
    return absl::OkStatus();
  });
}

absl::Status RandnSupported(const RandnParams& p) {
  LYRA_RETURN_IF_ERROR(CheckCount("Randn", p.n));
  return DispatchFloat(p.dtype, "Randn", [&]<typename T>() -> absl::Status {
    if (!(std::isfinite(p.mean) && std::isfinite(p.std))) {
      return absl::InvalidArgumentError(
          absl::StrCat("Randn: mean (", p.mean, ") and std (", p.std, ") must be finite"));
    }
    if (!(p.std >= 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("Randn: std (", p.std, ") must be non-negative"));
    }
    return absl::OkStatus();
  });
}

absl::Status BernoulliSupported(const BernoulliParams& p) {
  LYRA_RETURN_IF_ERROR(CheckCount("Bernoulli", p.n));
  if (!(p.p >= 0 && p.p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("Bernoulli: p (", p.p, ") must be in [0, 1]"));
  }
  return absl::OkStatus();
}

absl::Status RandIntSupported(const RandIntParams& p) {
  LYRA_RETURN_IF_ERROR(CheckCount("RandInt", p.n));
  if (p.dtype != DType::kI32 && p.dtype != DType::kI64) {
    return absl::InvalidArgumentError(
        absl::StrCat("RandInt: expected dtype i32 or i64, got ", DTypeName(p.dtype)));
  }
  if (!(p.low < p.high)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RandInt: low (", p.low, ") must be less than high (", p.high, ")"));
  }
  constexpr int64_t kI32Min = std::numeric_limits<int32_t>::min();
  constexpr int64_t kI32End = int64_t{std::numeric_limits<int32_t>::max()} + 1;
  if (p.dtype == DType::kI32 && (p.low < kI32Min || p.high > kI32End)) {
    return absl::InvalidArgumentError(absl::StrCat("RandInt: [low, high) = [", p.low, ", ",
                                                   p.high, ") does not fit i32"));
  }
  return absl::OkStatus();
}

}  // namespace lyra::cuda
