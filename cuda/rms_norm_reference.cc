// CPU reference of RMSNorm with the fused residual add (cuda/rms_norm.h): a plain loop over
// rows in the compute type C (f32, or f64 for f64), two passes over each row.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/rms_norm.h"

namespace lyra::cuda {

absl::Status NormRowsSupported(absl::string_view op, DType dtype, int64_t rows, int64_t hidden,
                               int weight_grads) {
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": expected a floating-point dtype, got ", DTypeName(dtype)));
  }
  if (rows < 0 || hidden < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": needs rows >= 0 and hidden >= 1, got rows ", rows, ", hidden ",
                     hidden));
  }
  if (rows >= (int64_t{1} << 31)) {
    return absl::UnimplementedError(
        absl::StrCat(op, ": ", rows, " rows; at most 2^31 - 1 are supported"));
  }
  const int64_t compute_size = dtype == DType::kF64 ? 8 : 4;
  if (hidden * compute_size * weight_grads > kNormMaxGradSharedBytes) {
    return absl::UnimplementedError(absl::StrCat(
        op, ": hidden size ", hidden, " in ", DTypeName(dtype), " exceeds the supported maximum ",
        kNormMaxGradSharedBytes / (compute_size * weight_grads)));
  }
  return absl::OkStatus();
}

absl::Status RmsNormSupported(const RmsNormForwardParams& p) {
  LYRA_RETURN_IF_ERROR(NormRowsSupported("RmsNormForward", p.dtype, p.rows, p.hidden, 1));
  if (!(p.eps >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("RmsNormForward: eps must be >= 0, got ", p.eps));
  }
  if (p.rows > 0 && (p.x == nullptr || p.weight == nullptr || p.y == nullptr ||
                     p.rstd == nullptr)) {
    return absl::InvalidArgumentError("RmsNormForward: missing x, weight, y or rstd pointer");
  }
  return absl::OkStatus();
}

absl::Status RmsNormSupported(const RmsNormBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(NormRowsSupported("RmsNormBackward", p.dtype, p.rows, p.hidden, 1));
  if (p.dweight == nullptr || (p.rows > 0 && (p.dy == nullptr || p.h == nullptr ||
                                              p.weight == nullptr || p.rstd == nullptr ||
                                              p.dx == nullptr))) {
    return absl::InvalidArgumentError(
        "RmsNormBackward: missing dy, h, weight, rstd, dx or dweight pointer");
  }
  return absl::OkStatus();
}

namespace {

// The forward's value of T(v) read back in C: the rounding of Hugging Face's `.to(dtype)`.
template <typename T>
ComputeType<T> RoundTo(ComputeType<T> v) {
  return Load(Store<T>(v));
}

template <typename T>
void ForwardTyped(const RmsNormForwardParams& p) {
  using C = ComputeType<T>;
  const int64_t H = p.hidden;
  const C eps = static_cast<C>(p.eps);
  const C* weight = static_cast<const C*>(p.weight);
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* x = static_cast<const T*>(p.x) + r * p.x_stride;
    const C* residual =
        p.residual ? static_cast<const C*>(p.residual) + r * p.residual_stride : nullptr;
    T* y = static_cast<T*>(p.y) + r * p.y_stride;
    C* residual_out = p.residual_out
                          ? static_cast<C*>(p.residual_out) + r * p.residual_out_stride
                          : nullptr;
    auto h_at = [&](int64_t j) { return residual ? Load(x[j]) + residual[j] : Load(x[j]); };

    C sum_sq = 0;
    for (int64_t j = 0; j < H; ++j) sum_sq += h_at(j) * h_at(j);
    const C rstd = C(1) / std::sqrt(sum_sq / static_cast<C>(H) + eps);
    static_cast<C*>(p.rstd)[r] = rstd;
    for (int64_t j = 0; j < H; ++j) {
      const C h = h_at(j);
      if (residual_out) residual_out[j] = h;
      y[j] = Store<T>(RoundTo<T>(h * rstd) * weight[j]);
    }
  }
}

template <typename T>
void BackwardTyped(const RmsNormBackwardParams& p) {
  using C = ComputeType<T>;
  const int64_t H = p.hidden;
  const C* weight = static_cast<const C*>(p.weight);
  C* dweight = static_cast<C*>(p.dweight);
  for (int64_t j = 0; j < H; ++j) dweight[j] = 0;
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* dy = static_cast<const T*>(p.dy) + r * p.dy_stride;
    const C* dres_out = p.dresidual_out ? static_cast<const C*>(p.dresidual_out) +
                                              r * p.dresidual_out_stride
                                        : nullptr;
    const C* h = static_cast<const C*>(p.h) + r * p.h_stride;
    T* dx = static_cast<T*>(p.dx) + r * p.dx_stride;
    C* dres = p.dresidual ? static_cast<C*>(p.dresidual) + r * p.dresidual_stride : nullptr;
    const C rstd = static_cast<const C*>(p.rstd)[r];

    C dot = 0;  // sum_j g_j * xhat_j
    for (int64_t j = 0; j < H; ++j) {
      const C xhat = h[j] * rstd;
      dot += Load(dy[j]) * weight[j] * xhat;
      dweight[j] += Load(dy[j]) * RoundTo<T>(xhat);
    }
    const C mean_dot = dot / static_cast<C>(H);
    for (int64_t j = 0; j < H; ++j) {
      const C xhat = h[j] * rstd;
      C dh = rstd * (Load(dy[j]) * weight[j] - xhat * mean_dot);
      if (dres_out) dh += dres_out[j];
      dx[j] = Store<T>(dh);
      if (dres) dres[j] = dh;
    }
  }
}

}  // namespace

absl::Status RmsNormForwardReference(const RmsNormForwardParams& p) {
  LYRA_RETURN_IF_ERROR(RmsNormSupported(p));
  return DispatchFloat(p.dtype, "RmsNormForward", [&]<typename T>() -> absl::Status {
    ForwardTyped<T>(p);
    return absl::OkStatus();
  });
}

absl::Status RmsNormBackwardReference(const RmsNormBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(RmsNormSupported(p));
  return DispatchFloat(p.dtype, "RmsNormBackward", [&]<typename T>() -> absl::Status {
    BackwardTyped<T>(p);
    return absl::OkStatus();
  });
}

}  // namespace lyra::cuda
