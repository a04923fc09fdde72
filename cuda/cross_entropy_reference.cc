// CPU reference of the fused cross-entropy (cuda/cross_entropy.h) and the target check: for
// every row, a max pass and a sum-of-exp pass in the compute type (f32, or f64 for f64 logits),
// then the loss and, for the backward ops, a pass writing the gradient.
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/cross_entropy.h"

namespace lyra::cuda {

absl::string_view CrossEntropyOpName(CrossEntropyOp op) {
  switch (op) {
    case CrossEntropyOp::kForward: return "CrossEntropyForward";
    case CrossEntropyOp::kBackward: return "CrossEntropyBackward";
    case CrossEntropyOp::kForwardBackward: return "CrossEntropyForwardBackward";
  }
  return "UnknownCrossEntropy";
}

namespace {

absl::Status CheckTargetDType(absl::string_view op, DType dtype) {
  if (dtype == DType::kI32 || dtype == DType::kI64) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": targets must be i32 or i64, got ", DTypeName(dtype)));
}

int64_t TargetAt(const void* targets, DType dtype, int64_t index) {
  return dtype == DType::kI64 ? static_cast<const int64_t*>(targets)[index]
                              : static_cast<const int32_t*>(targets)[index];
}

}  // namespace

absl::Status CrossEntropySupported(const CrossEntropyParams& p) {
  const absl::string_view name = CrossEntropyOpName(p.op);
  if (!IsFloating(p.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected floating-point logits, got ", DTypeName(p.dtype)));
  }
  LYRA_RETURN_IF_ERROR(CheckTargetDType(name, p.target_dtype));
  if (p.rows < 0 || p.vocab < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": negative size (rows ", p.rows, ", vocab ", p.vocab, ")"));
  }
  if (p.rows >= (int64_t{1} << 31)) {
    return absl::UnimplementedError(
        absl::StrCat(name, ": ", p.rows, " rows; at most 2^31 - 1 are supported"));
  }
  if (p.rows == 0) return absl::OkStatus();
  const bool forward = p.op != CrossEntropyOp::kBackward;
  const bool backward = p.op != CrossEntropyOp::kForward;
  const bool missing =
      p.targets == nullptr || (p.vocab > 0 && p.logits == nullptr) ||
      (forward && p.loss == nullptr) ||
      (p.op == CrossEntropyOp::kBackward && (p.lse == nullptr || p.grad_loss == nullptr)) ||
      (backward && p.vocab > 0 && p.dlogits == nullptr);
  if (missing) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": missing input or output pointer"));
  }
  return absl::OkStatus();
}

namespace {

template <typename T>
absl::Status CrossEntropyTyped(const CrossEntropyParams& p) {
  using C = ComputeType<T>;
  constexpr C kNaN = std::numeric_limits<C>::quiet_NaN();
  const T* logits = static_cast<const T*>(p.logits);
  T* dlogits = static_cast<T*>(p.dlogits);
  C* loss = static_cast<C*>(p.loss);
  C* lse_out = static_cast<C*>(p.lse);
  const C g = p.op == CrossEntropyOp::kBackward ? Load(*static_cast<const T*>(p.grad_loss)) : C(1);
  const C scale = g * static_cast<C>(p.grad_scale);

  for (int64_t r = 0; r < p.rows; ++r) {
    const T* x = logits + r * p.logits_row_stride;
    T* dx = dlogits + r * p.dlogits_row_stride;
    const int64_t t = TargetAt(p.targets, p.target_dtype, r * p.targets_stride);
    const bool ignored = t == p.ignore_index;
    const bool forward = p.op != CrossEntropyOp::kBackward;
    const bool backward = p.op != CrossEntropyOp::kForward;

    C lse = 0;
    if (p.op == CrossEntropyOp::kBackward) {
      lse = lse_out[r];
    } else if (!ignored) {
      C m = -std::numeric_limits<C>::infinity();
      bool has_nan = false;
      for (int64_t j = 0; j < p.vocab; ++j) {
        const C v = Load(x[j]);
        has_nan = has_nan || std::isnan(v);
        if (v > m) m = v;
      }
      if (has_nan) m = kNaN;
      // A row of -inf would form -inf - -inf; its lse is -inf (and its loss NaN, as torch).
      const C shift = std::isinf(m) && m < 0 ? C(0) : m;
      // The sum of exponentials in f64 whatever the dtype: summed in order in f32, the many tiny
      // terms of a 50k-word row fall below half an ulp of the running sum and are lost (a
      // systematic ~1e-5 low bias in lse), which would make the reference the least accurate.
      double s = 0;
      for (int64_t j = 0; j < p.vocab; ++j) s += std::exp(static_cast<double>(Load(x[j]) - shift));
      lse = shift + static_cast<C>(std::log(s));
    }
    if (forward) {
      // Read the target logit before a kForwardBackward in place overwrites the row.
      const bool in_range = t >= 0 && t < p.vocab;
      loss[r] = ignored ? C(0) : in_range ? lse - Load(x[t]) : kNaN;
      if (lse_out != nullptr) lse_out[r] = ignored ? C(0) : lse;
    }
    if (backward) {
      for (int64_t j = 0; j < p.vocab; ++j) {
        const C d = ignored ? C(0) : scale * (std::exp(Load(x[j]) - lse) - (j == t ? C(1) : C(0)));
        dx[j] = Store<T>(d);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CrossEntropyReference(const CrossEntropyParams& p) {
  LYRA_RETURN_IF_ERROR(CrossEntropySupported(p));
  return DispatchFloat(p.dtype, CrossEntropyOpName(p.op),
                       [&]<typename T>() -> absl::Status { return CrossEntropyTyped<T>(p); });
}

absl::Status CrossEntropyTargetsSupported(const CrossEntropyTargetsParams& p) {
  LYRA_RETURN_IF_ERROR(CheckTargetDType(p.op, p.target_dtype));
  if (p.rows < 0 || p.vocab < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(p.op, ": negative size (rows ", p.rows, ", vocab ", p.vocab, ")"));
  }
  if (p.kept == nullptr || (p.rows > 0 && p.targets == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(p.op, ": missing targets or count pointer"));
  }
  return absl::OkStatus();
}

absl::Status CrossEntropyBadTarget(absl::string_view op, int64_t row, int64_t value,
                                   int64_t vocab, int64_t ignore_index) {
  return absl::InvalidArgumentError(absl::StrCat(op, ": target ", value, " at row ", row,
                                                 " is out of range [0, ", vocab,
                                                 ") and is not ignore_index (", ignore_index,
                                                 ")"));
}

absl::Status CrossEntropyCheckTargetsReference(const CrossEntropyTargetsParams& p) {
  LYRA_RETURN_IF_ERROR(CrossEntropyTargetsSupported(p));
  int64_t kept = 0;
  for (int64_t r = 0; r < p.rows; ++r) {
    const int64_t t = TargetAt(p.targets, p.target_dtype, r * p.targets_stride);
    if (t == p.ignore_index) continue;
    if (t < 0 || t >= p.vocab) return CrossEntropyBadTarget(p.op, r, t, p.vocab, p.ignore_index);
    ++kept;
  }
  *p.kept = kept;
  return absl::OkStatus();
}

}  // namespace lyra::cuda
