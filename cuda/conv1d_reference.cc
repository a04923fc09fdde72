// CPU reference of the causal depthwise conv1d (cuda/conv1d.h): the math written as plain loops.
// Per-element arithmetic in ComputeType<T> (f32 for f32 / f16 / bf16, f64 for f64); the
// dweight / dbias sums over B and L accumulate in f64.
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/conv1d.h"

namespace lyra::cuda {
namespace {

template <typename C>
C Sigmoid(C v) {
  return C(1) / (C(1) + std::exp(-v));
}

// Runs fn<T, W>() for x's storage type T and the weight's W (f32 or T).
template <typename Fn>
absl::Status DispatchConv(DType dtype, DType weight_dtype, absl::string_view op, Fn&& fn) {
  return DispatchFloat(dtype, op, [&]<typename T>() -> absl::Status {
    if (weight_dtype == DType::kF32) return fn.template operator()<T, float>();
    return fn.template operator()<T, T>();
  });
}

// Read-only view of the forward's inputs for one (b, d) row, shared by forward and backward.
template <typename T, typename W>
struct Row {
  using C = ComputeType<T>;
  const CausalConv1dParams& p;
  int64_t b, d;

  // xs[b, d, t] for t in [-(K-1), L).
  C X(int64_t t) const {
    if (t >= 0) {
      return Load(static_cast<const T*>(p.x)[b * p.x_stride_b + d * p.x_stride_d +
                                             t * p.x_stride_l]);
    }
    if (p.initial_state == nullptr) return C(0);
    const int64_t j = t + p.width - 1;
    return Load(static_cast<const T*>(p.initial_state)[b * p.initial_state_stride_b +
                                                       d * p.initial_state_stride_d +
                                                       j * p.initial_state_stride_k]);
  }
  C Weight(int k) const {
    return static_cast<C>(Load(
        static_cast<const W*>(p.weight)[d * p.weight_stride_d + k * p.weight_stride_k]));
  }
  C Bias() const {
    if (p.bias == nullptr) return C(0);
    return static_cast<C>(Load(static_cast<const W*>(p.bias)[d * p.bias_stride]));
  }
  // seq(b, t): seq_idx[b, t], and seq_idx[b, 0] before the row starts.
  int32_t Seq(int64_t t) const {
    return p.seq_idx[b * p.seq_idx_stride_b + (t < 0 ? 0 : t) * p.seq_idx_stride_l];
  }
  // Whether the input at t' = t - (K-1) + k reaches the output at t.
  bool Tap(int64_t t, int k) const {
    return p.seq_idx == nullptr || Seq(t - (p.width - 1) + k) == Seq(t);
  }
  C Pre(int64_t t) const {
    C acc = Bias();
    for (int k = 0; k < p.width; ++k) {
      if (Tap(t, k)) acc += Weight(k) * X(t - (p.width - 1) + k);
    }
    return acc;
  }
};

template <typename T, typename W>
absl::Status Forward(const CausalConv1dParams& p) {
  using C = ComputeType<T>;
  T* y = static_cast<T*>(p.y);
  T* final_state = static_cast<T*>(p.final_state);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t d = 0; d < p.channels; ++d) {
      const Row<T, W> row{p, b, d};
      for (int64_t t = 0; t < p.length; ++t) {
        C v = row.Pre(t);
        if (p.silu) v = v * Sigmoid(v);
        y[b * p.y_stride_b + d * p.y_stride_d + t * p.y_stride_l] = Store<T>(v);
      }
      if (final_state == nullptr) continue;
      for (int j = 0; j < p.width - 1; ++j) {
        final_state[b * p.final_state_stride_b + d * p.final_state_stride_d +
                    j * p.final_state_stride_k] =
            Store<T>(row.X(p.length - (p.width - 1) + j));
      }
    }
  }
  return absl::OkStatus();
}

template <typename T, typename W>
absl::Status Backward(const CausalConv1dBackwardParams& bp) {
  using C = ComputeType<T>;
  const CausalConv1dParams& p = bp.forward;
  const int K = p.width;
  const int64_t L = p.length;
  const T* dy = static_cast<const T*>(bp.dy);
  T* dx = static_cast<T*>(bp.dx);
  T* dinit = static_cast<T*>(bp.dinitial_state);
  std::vector<C> dpre(L);
  for (int64_t d = 0; d < p.channels; ++d) {
    std::vector<double> dw(K, 0.0);
    double db = 0;
    for (int64_t b = 0; b < p.batch; ++b) {
      const Row<T, W> row{p, b, d};
      for (int64_t t = 0; t < L; ++t) {
        C g = Load(dy[b * bp.dy_stride_b + d * bp.dy_stride_d + t * bp.dy_stride_l]);
        if (p.silu) {
          const C pre = row.Pre(t);
          const C s = Sigmoid(pre);
          g = g * s * (C(1) + pre * (C(1) - s));
        }
        dpre[t] = g;
        db += static_cast<double>(g);
        for (int k = 0; k < K; ++k) {
          if (row.Tap(t, k)) dw[k] += static_cast<double>(g * row.X(t - (K - 1) + k));
        }
      }
      // dxs[t'] for t' in [-(K-1), L): the outputs t = t' + (K-1) - k that read it.
      const int64_t first = dinit != nullptr ? -(K - 1) : 0;
      for (int64_t tp = first; tp < L; ++tp) {
        C acc = C(0);
        for (int k = 0; k < K; ++k) {
          const int64_t t = tp + (K - 1) - k;
          if (t < 0 || t >= L || !row.Tap(t, k)) continue;
          acc += row.Weight(k) * dpre[t];
        }
        if (tp >= 0) {
          dx[b * bp.dx_stride_b + d * bp.dx_stride_d + tp * bp.dx_stride_l] = Store<T>(acc);
        } else {
          dinit[b * bp.dinitial_state_stride_b + d * bp.dinitial_state_stride_d +
                (tp + K - 1) * bp.dinitial_state_stride_k] = Store<T>(acc);
        }
      }
    }
    W* dweight = static_cast<W*>(bp.dweight);
    for (int k = 0; k < K; ++k) {
      dweight[d * bp.dweight_stride_d + k * bp.dweight_stride_k] =
          Store<W>(static_cast<ComputeType<W>>(dw[k]));
    }
    if (bp.dbias != nullptr) {
      static_cast<W*>(bp.dbias)[d * bp.dbias_stride] = Store<W>(static_cast<ComputeType<W>>(db));
    }
  }
  return absl::OkStatus();
}

template <typename T, typename W>
absl::Status Update(const CausalConv1dUpdateParams& p) {
  using C = ComputeType<T>;
  const int K = p.width;
  const T* x = static_cast<const T*>(p.x);
  const W* w = static_cast<const W*>(p.weight);
  const W* bias = static_cast<const W*>(p.bias);
  T* state = static_cast<T*>(p.conv_state);
  T* y = static_cast<T*>(p.y);
  std::vector<C> window(K);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t d = 0; d < p.channels; ++d) {
      T* s = state + b * p.state_stride_b + d * p.state_stride_d;
      for (int k = 0; k < K - 1; ++k) window[k] = Load(s[k * p.state_stride_k]);
      window[K - 1] = Load(x[b * p.x_stride_b + d * p.x_stride_d]);
      C acc = bias != nullptr ? static_cast<C>(Load(bias[d * p.bias_stride])) : C(0);
      for (int k = 0; k < K; ++k) {
        acc += static_cast<C>(Load(w[d * p.weight_stride_d + k * p.weight_stride_k])) * window[k];
      }
      if (p.silu) acc = acc * Sigmoid(acc);
      y[b * p.y_stride_b + d * p.y_stride_d] = Store<T>(acc);
      for (int k = 0; k < K - 1; ++k) s[k * p.state_stride_k] = Store<T>(window[k + 1]);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CausalConv1dReference(const CausalConv1dParams& p) {
  LYRA_RETURN_IF_ERROR(CausalConv1dSupported(p, /*cuda=*/false));
  return DispatchConv(p.dtype, p.weight_dtype, "CausalConv1d",
                      [&]<typename T, typename W>() { return Forward<T, W>(p); });
}

absl::Status CausalConv1dBackwardReference(const CausalConv1dBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(CausalConv1dBackwardSupported(p, /*cuda=*/false));
  return DispatchConv(p.forward.dtype, p.forward.weight_dtype, "CausalConv1dBackward",
                      [&]<typename T, typename W>() { return Backward<T, W>(p); });
}

absl::Status CausalConv1dUpdateReference(const CausalConv1dUpdateParams& p) {
  LYRA_RETURN_IF_ERROR(CausalConv1dUpdateSupported(p, /*cuda=*/false));
  return DispatchConv(p.dtype, p.weight_dtype, "CausalConv1dUpdate",
                      [&]<typename T, typename W>() { return Update<T, W>(p); });
}

}  // namespace lyra::cuda
