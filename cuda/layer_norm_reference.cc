// CPU reference of LayerNorm with the fused residual add (cuda/layer_norm.h): a plain loop over
// rows in the compute type C (f32, or f64 for f64); the variance takes a second pass around the
// mean.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/layer_norm.h"

namespace lyra::cuda {

absl::Status LayerNormSupported(const LayerNormForwardParams& p) {
  LYRA_RETURN_IF_ERROR(NormRowsSupported("LayerNormForward", p.dtype, p.rows, p.hidden, 2));
  if (!(p.eps >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LayerNormForward: eps must be >= 0, got ", p.eps));
  }
  if (p.rows > 0 && (p.x == nullptr || p.weight == nullptr || p.y == nullptr ||
                     p.mean == nullptr || p.rstd == nullptr)) {
    return absl::InvalidArgumentError(
        "LayerNormForward: missing x, weight, y, mean or rstd pointer");
  }
  return absl::OkStatus();
}

absl::Status LayerNormSupported(const LayerNormBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(NormRowsSupported("LayerNormBackward", p.dtype, p.rows, p.hidden, 2));
  if (p.dweight == nullptr || (p.rows > 0 && (p.dy == nullptr || p.h == nullptr ||
                                              p.weight == nullptr || p.mean == nullptr ||
                                              p.rstd == nullptr || p.dx == nullptr))) {
    return absl::InvalidArgumentError(
        "LayerNormBackward: missing dy, h, weight, mean, rstd, dx or dweight pointer");
  }
  return absl::OkStatus();
}

namespace {

template <typename T>
void ForwardTyped(const LayerNormForwardParams& p) {
  using C = ComputeType<T>;
  const int64_t H = p.hidden;
  const C eps = static_cast<C>(p.eps);
  const C* weight = static_cast<const C*>(p.weight);
  const C* bias = static_cast<const C*>(p.bias);
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* x = static_cast<const T*>(p.x) + r * p.x_stride;
    const C* residual =
        p.residual ? static_cast<const C*>(p.residual) + r * p.residual_stride : nullptr;
    T* y = static_cast<T*>(p.y) + r * p.y_stride;
    C* residual_out = p.residual_out
                          ? static_cast<C*>(p.residual_out) + r * p.residual_out_stride
                          : nullptr;
    auto h_at = [&](int64_t j) { return residual ? Load(x[j]) + residual[j] : Load(x[j]); };

    C sum = 0;
    for (int64_t j = 0; j < H; ++j) sum += h_at(j);
    const C mean = sum / static_cast<C>(H);
    C sum_sq = 0;
    for (int64_t j = 0; j < H; ++j) sum_sq += (h_at(j) - mean) * (h_at(j) - mean);
    const C rstd = C(1) / std::sqrt(sum_sq / static_cast<C>(H) + eps);
    static_cast<C*>(p.mean)[r] = mean;
    static_cast<C*>(p.rstd)[r] = rstd;
    for (int64_t j = 0; j < H; ++j) {
      const C h = h_at(j);
      if (residual_out) residual_out[j] = h;
      y[j] = Store<T>((h - mean) * rstd * weight[j] + (bias ? bias[j] : C(0)));
    }
  }
}

template <typename T>
void BackwardTyped(const LayerNormBackwardParams& p) {
  using C = ComputeType<T>;
  const int64_t H = p.hidden;
  const C* weight = static_cast<const C*>(p.weight);
  C* dweight = static_cast<C*>(p.dweight);
  C* dbias = static_cast<C*>(p.dbias);
  for (int64_t j = 0; j < H; ++j) {
    dweight[j] = 0;
    if (dbias) dbias[j] = 0;
  }
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* dy = static_cast<const T*>(p.dy) + r * p.dy_stride;
    const C* dres_out = p.dresidual_out ? static_cast<const C*>(p.dresidual_out) +
                                              r * p.dresidual_out_stride
                                        : nullptr;
    const C* h = static_cast<const C*>(p.h) + r * p.h_stride;
    T* dx = static_cast<T*>(p.dx) + r * p.dx_stride;
    C* dres = p.dresidual ? static_cast<C*>(p.dresidual) + r * p.dresidual_stride : nullptr;
    const C mean = static_cast<const C*>(p.mean)[r];
    const C rstd = static_cast<const C*>(p.rstd)[r];

    C sum_g = 0, dot = 0;  // sum_j g_j and sum_j g_j * xhat_j
    for (int64_t j = 0; j < H; ++j) {
      const C xhat = (h[j] - mean) * rstd;
      const C g = Load(dy[j]) * weight[j];
      sum_g += g;
      dot += g * xhat;
      dweight[j] += Load(dy[j]) * xhat;
      if (dbias) dbias[j] += Load(dy[j]);
    }
    const C mean_g = sum_g / static_cast<C>(H);
    const C mean_dot = dot / static_cast<C>(H);
    for (int64_t j = 0; j < H; ++j) {
      const C xhat = (h[j] - mean) * rstd;
      C dh = rstd * (Load(dy[j]) * weight[j] - mean_g - xhat * mean_dot);
      if (dres_out) dh += dres_out[j];
      dx[j] = Store<T>(dh);
      if (dres) dres[j] = dh;
    }
  }
}

}  // namespace

absl::Status LayerNormForwardReference(const LayerNormForwardParams& p) {
  LYRA_RETURN_IF_ERROR(LayerNormSupported(p));
  return DispatchFloat(p.dtype, "LayerNormForward", [&]<typename T>() -> absl::Status {
    ForwardTyped<T>(p);
    return absl::OkStatus();
  });
}

absl::Status LayerNormBackwardReference(const LayerNormBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(LayerNormSupported(p));
  return DispatchFloat(p.dtype, "LayerNormBackward", [&]<typename T>() -> absl::Status {
    BackwardTyped<T>(p);
    return absl::OkStatus();
  });
}

}  // namespace lyra::cuda
