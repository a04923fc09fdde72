// CPU reference of the gated, grouped RMSNorm (cuda/gated_rms_norm.h): a plain loop over rows
// and groups, elementwise math in the compute type C, every sum in f64.
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/gated_rms_norm.h"
#include "cuda/rms_norm.h"

namespace lyra::cuda {
namespace {

absl::Status CheckSizes(const char* op, DType dtype, int64_t rows, int64_t hidden,
                        int64_t group_size) {
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": expected a floating-point dtype, got ", DTypeName(dtype)));
  }
  if (rows < 0 || hidden < 1 || group_size < 1 || hidden % group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": needs rows >= 0, hidden >= 1 and a group size dividing hidden, got rows ", rows,
        ", hidden ", hidden, ", group size ", group_size));
  }
  if (rows >= (int64_t{1} << 31)) {
    return absl::UnimplementedError(
        absl::StrCat(op, ": ", rows, " rows; at most 2^31 - 1 are supported"));
  }
  if (hidden / group_size > kGatedNormMaxGroups) {
    return absl::UnimplementedError(absl::StrCat(op, ": ", hidden / group_size,
                                                 " groups; at most ", kGatedNormMaxGroups,
                                                 " are supported"));
  }
  const int64_t compute_size = dtype == DType::kF64 ? 8 : 4;
  if (group_size * compute_size > kNormMaxGradSharedBytes) {
    return absl::UnimplementedError(absl::StrCat(
        op, ": group size ", group_size, " in ", DTypeName(dtype),
        " exceeds the supported maximum ", kNormMaxGradSharedBytes / compute_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status GatedRmsNormSupported(const GatedRmsNormForwardParams& p) {
  LYRA_RETURN_IF_ERROR(
      CheckSizes("GatedRmsNormForward", p.dtype, p.rows, p.hidden, p.group_size));
  if (!(p.eps >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GatedRmsNormForward: eps must be >= 0, got ", p.eps));
  }
  if (p.rows > 0 &&
      (p.x == nullptr || p.weight == nullptr || p.y == nullptr || p.rstd == nullptr)) {
    return absl::InvalidArgumentError("GatedRmsNormForward: missing x, weight, y or rstd pointer");
  }
  return absl::OkStatus();
}

absl::Status GatedRmsNormSupported(const GatedRmsNormBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(
      CheckSizes("GatedRmsNormBackward", p.dtype, p.rows, p.hidden, p.group_size));
  if (p.dweight == nullptr ||
      (p.rows > 0 && (p.dy == nullptr || p.x == nullptr || p.weight == nullptr ||
                      p.rstd == nullptr || p.dx == nullptr || (p.z != nullptr && p.dz == nullptr)))) {
    return absl::InvalidArgumentError(
        "GatedRmsNormBackward: missing dy, x, weight, rstd, dx, dz (with z) or dweight pointer");
  }
  return absl::OkStatus();
}

namespace {

// The forward's value of T(v) read back in C: the rounding of Hugging Face's `.to(dtype)`.
template <typename T>
ComputeType<T> RoundTo(ComputeType<T> v) {
  return Load(Store<T>(v));
}

template <typename C>
C Sigmoid(C v) {
  return C(1) / (C(1) + std::exp(-v));
}

// torch's silu: v / (1 + exp(-v)).
template <typename C>
C Silu(C v) {
  return v / (C(1) + std::exp(-v));
}

template <typename T>
void ForwardTyped(const GatedRmsNormForwardParams& p) {
  using C = ComputeType<T>;
  const int64_t S = p.group_size, groups = p.hidden / S;
  const C eps = static_cast<C>(p.eps);
  const C* weight = static_cast<const C*>(p.weight);
  C* rstd_out = static_cast<C*>(p.rstd);
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* x = static_cast<const T*>(p.x) + r * p.x_stride;
    const T* z = p.z ? static_cast<const T*>(p.z) + r * p.z_stride : nullptr;
    T* y = static_cast<T*>(p.y) + r * p.y_stride;
    auto h_at = [&](int64_t j) { return z ? Load(x[j]) * Silu(Load(z[j])) : Load(x[j]); };
    for (int64_t g = 0; g < groups; ++g) {
      double sum_sq = 0;
      for (int64_t j = g * S; j < (g + 1) * S; ++j) {
        const C h = h_at(j);
        sum_sq += static_cast<double>(h) * h;
      }
      const C mean_sq = static_cast<C>(sum_sq / static_cast<double>(S));
      const C rstd = C(1) / std::sqrt(mean_sq + eps);
      rstd_out[r * groups + g] = rstd;
      for (int64_t j = g * S; j < (g + 1) * S; ++j) {
        y[j] = Store<T>(RoundTo<T>(h_at(j) * rstd) * weight[j]);
      }
    }
  }
}

template <typename T>
void BackwardTyped(const GatedRmsNormBackwardParams& p) {
  using C = ComputeType<T>;
  const int64_t H = p.hidden, S = p.group_size, groups = H / S;
  const C* weight = static_cast<const C*>(p.weight);
  const C* rstd_in = static_cast<const C*>(p.rstd);
  std::vector<double> dweight(H, 0.0);
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* dy = static_cast<const T*>(p.dy) + r * p.dy_stride;
    const T* x = static_cast<const T*>(p.x) + r * p.x_stride;
    const T* z = p.z ? static_cast<const T*>(p.z) + r * p.z_stride : nullptr;
    T* dx = static_cast<T*>(p.dx) + r * p.dx_stride;
    T* dz = z ? static_cast<T*>(p.dz) + r * p.dz_stride : nullptr;
    auto h_at = [&](int64_t j) { return z ? Load(x[j]) * Silu(Load(z[j])) : Load(x[j]); };
    for (int64_t g = 0; g < groups; ++g) {
      const C rstd = rstd_in[r * groups + g];
      double dot = 0;  // sum_j g_j * n_j
      for (int64_t j = g * S; j < (g + 1) * S; ++j) {
        const C n = h_at(j) * rstd;
        dot += static_cast<double>(Load(dy[j]) * weight[j]) * n;
        dweight[j] += static_cast<double>(Load(dy[j])) * RoundTo<T>(n);
      }
      const C mean_dot = static_cast<C>(dot / static_cast<double>(S));
      for (int64_t j = g * S; j < (g + 1) * S; ++j) {
        const C n = h_at(j) * rstd;
        const C dh = rstd * (Load(dy[j]) * weight[j] - n * mean_dot);
        if (z) {
          const C zj = Load(z[j]), s = Sigmoid(zj);
          dx[j] = Store<T>(dh * Silu(zj));
          dz[j] = Store<T>(dh * Load(x[j]) * s * (C(1) + zj * (C(1) - s)));
        } else {
          dx[j] = Store<T>(dh);
        }
      }
    }
  }
  C* dweight_out = static_cast<C*>(p.dweight);
  for (int64_t j = 0; j < H; ++j) dweight_out[j] = static_cast<C>(dweight[j]);
}

}  // namespace

absl::Status GatedRmsNormForwardReference(const GatedRmsNormForwardParams& p) {
  LYRA_RETURN_IF_ERROR(GatedRmsNormSupported(p));
  return DispatchFloat(p.dtype, "GatedRmsNormForward", [&]<typename T>() -> absl::Status {
    ForwardTyped<T>(p);
    return absl::OkStatus();
  });
}

absl::Status GatedRmsNormBackwardReference(const GatedRmsNormBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(GatedRmsNormSupported(p));
  return DispatchFloat(p.dtype, "GatedRmsNormBackward", [&]<typename T>() -> absl::Status {
    BackwardTyped<T>(p);
    return absl::OkStatus();
  });
}

}  // namespace lyra::cuda
