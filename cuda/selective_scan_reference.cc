// CPU reference of the Mamba-1 selective scan (cuda/selective_scan.h): the math as plain loops.
// Per-element arithmetic in ComputeType<T> (f32 for f32 / f16 / bf16, f64 for f64); the
// backward's reductions over (b, t) and over the channels of a group accumulate in f64.
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/selective_scan.h"

namespace lyra::cuda {
namespace {

// torch.nn.functional.softplus (beta 1, threshold 20) and its derivative.
template <typename Acc>
Acc Softplus(Acc v) {
  return v > Acc(20) ? v : std::log1p(std::exp(v));
}
template <typename Acc>
Acc SoftplusGrad(Acc v) {
  return v > Acc(20) ? Acc(1) : Acc(1) / (Acc(1) + std::exp(-v));
}
template <typename Acc>
Acc Sigmoid(Acc v) {
  return Acc(1) / (Acc(1) + std::exp(-v));
}

// Element i of a buffer of storage type S, in the compute type Acc.
template <typename Acc, typename S>
Acc Get(const void* p, int64_t i) {
  return static_cast<Acc>(Load(static_cast<const S*>(p)[i]));
}
template <typename S, typename Acc>
void Put(void* p, int64_t i, Acc v) {
  static_cast<S*>(p)[i] = Store<S>(static_cast<ComputeType<S>>(v));
}

// Runs fn<T, TB>() for the storage type T of u and the type TB of B / C (f32 or T).
template <typename Fn>
absl::Status DispatchScan(DType dtype, DType bc_dtype, absl::string_view op, Fn&& fn) {
  return DispatchFloat(dtype, op, [&]<typename T>() -> absl::Status {
    if (bc_dtype == DType::kF32 && dtype != DType::kF64) {
      return fn.template operator()<T, float>();
    }
    return fn.template operator()<T, T>();
  });
}

// Read-only accessors of the forward's inputs for one (b, d) row.
template <typename T, typename TB>
struct Row {
  using Acc = ComputeType<T>;  // also the param and state type
  const SelectiveScanParams& p;
  int64_t b, d, g;

  Row(const SelectiveScanParams& params, int64_t b_, int64_t d_)
      : p(params), b(b_), d(d_), g(d_ / (params.dim / params.groups)) {}

  Acc U(int64_t t) const {
    return Get<Acc, T>(p.u, b * p.u_stride_b + d * p.u_stride_d + t * p.u_stride_l);
  }
  Acc DeltaPre(int64_t t) const {
    Acc v = Get<Acc, T>(p.delta, b * p.delta_stride_b + d * p.delta_stride_d +
                                     t * p.delta_stride_l);
    if (p.delta_bias != nullptr) v += Get<Acc, Acc>(p.delta_bias, d * p.delta_bias_stride);
    return v;
  }
  Acc Delta(int64_t t) const {
    const Acc v = DeltaPre(t);
    return p.delta_softplus ? Softplus(v) : v;
  }
  Acc A(int64_t n) const { return Get<Acc, Acc>(p.A, d * p.A_stride_d + n * p.A_stride_n); }
  Acc Bv(int64_t n, int64_t t) const {
    return Get<Acc, TB>(p.B, b * p.B_stride_b + g * p.B_stride_g + n * p.B_stride_n +
                                 t * p.B_stride_l);
  }
  Acc Cv(int64_t n, int64_t t) const {
    return Get<Acc, TB>(p.C, b * p.C_stride_b + g * p.C_stride_g + n * p.C_stride_n +
                                 t * p.C_stride_l);
  }
  Acc Dv() const { return p.D == nullptr ? Acc(0) : Get<Acc, Acc>(p.D, d * p.D_stride); }
  Acc Z(int64_t t) const {
    return Get<Acc, T>(p.z, b * p.z_stride_b + d * p.z_stride_d + t * p.z_stride_l);
  }
  Acc Initial(int64_t n) const {
    if (p.initial_state == nullptr) return Acc(0);
    return Get<Acc, Acc>(p.initial_state, b * p.initial_state_stride_b +
                                              d * p.initial_state_stride_d +
                                              n * p.initial_state_stride_n);
  }
  // Whether the state resets to zero before step t.
  bool Reset(int64_t t) const {
    if (p.seq_idx == nullptr || t == 0) return false;
    const int32_t* s = p.seq_idx + b * p.seq_idx_stride_b;
    return s[t * p.seq_idx_stride_l] != s[(t - 1) * p.seq_idx_stride_l];
  }
};

template <typename T, typename TB>
absl::Status Forward(const SelectiveScanParams& p) {
  using Acc = ComputeType<T>;
  const int64_t N = p.dstate, n_chunks = SelectiveScanNumChunks(p.length);
  std::vector<Acc> x(N);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t d = 0; d < p.dim; ++d) {
      const Row<T, TB> row(p, b, d);
      for (int64_t n = 0; n < N; ++n) x[n] = row.Initial(n);
      const Acc skip = row.Dv();
      for (int64_t t = 0; t < p.length; ++t) {
        if (p.chunk_states != nullptr && t % kSelectiveScanChunk == 0) {
          const int64_t base = ((b * p.dim + d) * n_chunks + t / kSelectiveScanChunk) * N;
          for (int64_t n = 0; n < N; ++n) Put<Acc>(p.chunk_states, base + n, x[n]);
        }
        const bool reset = row.Reset(t);
        const Acc delta = row.Delta(t), u = row.U(t);
        Acc out = skip * u;
        for (int64_t n = 0; n < N; ++n) {
          const Acc a = reset ? Acc(0) : std::exp(delta * row.A(n));
          x[n] = a * x[n] + delta * row.Bv(n, t) * u;
          out += row.Cv(n, t) * x[n];
        }
        if (p.z != nullptr) {
          const Acc z = row.Z(t);
          out *= z * Sigmoid(z);
        }
        if (p.y != nullptr) {
          Put<T>(p.y, b * p.y_stride_b + d * p.y_stride_d + t * p.y_stride_l, out);
        }
      }
      if (p.final_state != nullptr) {
        for (int64_t n = 0; n < N; ++n) {
          Put<Acc>(p.final_state,
                   b * p.final_state_stride_b + d * p.final_state_stride_d +
                       n * p.final_state_stride_n,
                   x[n]);
        }
      }
    }
  }
  return absl::OkStatus();
}

template <typename T, typename TB>
absl::Status Backward(const SelectiveScanBackwardParams& bp) {
  using Acc = ComputeType<T>;
  const SelectiveScanParams& p = bp.forward;
  const int64_t N = p.dstate, L = p.length, G = p.groups;
  // f64 accumulators of the reductions.
  std::vector<double> dA(p.dim * N, 0.0), dD(p.dim, 0.0), dbias(p.dim, 0.0);
  std::vector<double> dB(p.batch * G * N * L, 0.0), dC(p.batch * G * N * L, 0.0);
  std::vector<Acc> xs((L + 1) * N);  // xs[(t + 1) * N + n] = x_t[n], t = -1 .. L-1
  std::vector<Acc> out(L), h(N), carry(N);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t d = 0; d < p.dim; ++d) {
      const Row<T, TB> row(p, b, d);
      const Acc skip = row.Dv();
      // Forward, keeping every state and the pre-gate output.
      for (int64_t n = 0; n < N; ++n) xs[n] = row.Initial(n);
      for (int64_t t = 0; t < L; ++t) {
        const bool reset = row.Reset(t);
        const Acc delta = row.Delta(t), u = row.U(t);
        Acc o = skip * u;
        for (int64_t n = 0; n < N; ++n) {
          const Acc a = reset ? Acc(0) : std::exp(delta * row.A(n));
          xs[(t + 1) * N + n] = a * xs[t * N + n] + delta * row.Bv(n, t) * u;
          o += row.Cv(n, t) * xs[(t + 1) * N + n];
        }
        out[t] = o;
      }
      // Reverse: carry[n] = a_{t+1} h_{t+1} (dfinal_state at the end).
      for (int64_t n = 0; n < N; ++n) {
        carry[n] = bp.dfinal_state == nullptr
                       ? Acc(0)
                       : Get<Acc, Acc>(bp.dfinal_state, b * bp.dfinal_state_stride_b +
                                                            d * bp.dfinal_state_stride_d +
                                                            n * bp.dfinal_state_stride_n);
      }
      const int64_t g = row.g;
      for (int64_t t = L - 1; t >= 0; --t) {
        const bool reset = row.Reset(t);
        const Acc pre = row.DeltaPre(t);
        const Acc delta = p.delta_softplus ? Softplus(pre) : pre;
        const Acc u = row.U(t);
        const Acc dy = Get<Acc, T>(bp.dy, b * bp.dy_stride_b + d * bp.dy_stride_d +
                                              t * bp.dy_stride_l);
        Acc dout = dy;
        if (p.z != nullptr) {
          const Acc z = row.Z(t), s = Sigmoid(z);
          dout = dy * z * s;
          const Acc dz = dy * out[t] * s * (Acc(1) + z * (Acc(1) - s));
          Put<T>(bp.dz, b * bp.dz_stride_b + d * bp.dz_stride_d + t * bp.dz_stride_l, dz);
        }
        Acc du = dout * skip, ddelta = 0;
        dD[d] += static_cast<double>(dout) * static_cast<double>(u);
        for (int64_t n = 0; n < N; ++n) {
          const Acc An = row.A(n), Bn = row.Bv(n, t), Cn = row.Cv(n, t);
          const Acc a = reset ? Acc(0) : std::exp(delta * An);
          const Acc x_prev = xs[t * N + n], x_t = xs[(t + 1) * N + n];
          h[n] = carry[n] + dout * Cn;
          du += h[n] * delta * Bn;
          ddelta += h[n] * (Bn * u + x_prev * a * An);
          dA[d * N + n] += static_cast<double>(h[n] * x_prev * a * delta);
          const int64_t i = ((b * G + g) * N + n) * L + t;
          dB[i] += static_cast<double>(h[n] * delta * u);
          dC[i] += static_cast<double>(dout * x_t);
          carry[n] = a * h[n];
        }
        if (p.delta_softplus) ddelta *= SoftplusGrad(pre);
        dbias[d] += static_cast<double>(ddelta);
        Put<T>(bp.du, b * bp.du_stride_b + d * bp.du_stride_d + t * bp.du_stride_l, du);
        Put<T>(bp.ddelta, b * bp.ddelta_stride_b + d * bp.ddelta_stride_d + t * bp.ddelta_stride_l,
               ddelta);
      }
      if (bp.dinitial_state != nullptr) {
        for (int64_t n = 0; n < N; ++n) {
          Put<Acc>(bp.dinitial_state,
                   b * bp.dinitial_state_stride_b + d * bp.dinitial_state_stride_d +
                       n * bp.dinitial_state_stride_n,
                   carry[n]);
        }
      }
    }
  }
  for (int64_t d = 0; d < p.dim; ++d) {
    for (int64_t n = 0; n < N; ++n) {
      Put<Acc>(bp.dA, d * bp.dA_stride_d + n * bp.dA_stride_n, dA[d * N + n]);
    }
    if (bp.dD != nullptr) Put<Acc>(bp.dD, d * bp.dD_stride, dD[d]);
    if (bp.ddelta_bias != nullptr) Put<Acc>(bp.ddelta_bias, d * bp.ddelta_bias_stride, dbias[d]);
  }
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t t = 0; t < L; ++t) {
          const int64_t i = ((b * G + g) * N + n) * L + t;
          Put<TB>(bp.dB,
                  b * bp.dB_stride_b + g * bp.dB_stride_g + n * bp.dB_stride_n +
                      t * bp.dB_stride_l,
                  dB[i]);
          Put<TB>(bp.dC,
                  b * bp.dC_stride_b + g * bp.dC_stride_g + n * bp.dC_stride_n +
                      t * bp.dC_stride_l,
                  dC[i]);
        }
      }
    }
  }
  return absl::OkStatus();
}

template <typename T, typename TB>
absl::Status Update(const SelectiveStateUpdateParams& p) {
  using Acc = ComputeType<T>;
  const int64_t channels_per_group = p.dim / p.groups;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t d = 0; d < p.dim; ++d) {
      const int64_t g = d / channels_per_group;
      const Acc x = Get<Acc, T>(p.x, b * p.x_stride_b + d * p.x_stride_d);
      Acc delta = Get<Acc, T>(p.dt, b * p.dt_stride_b + d * p.dt_stride_d);
      if (p.dt_bias != nullptr) delta += Get<Acc, Acc>(p.dt_bias, d * p.dt_bias_stride);
      if (p.dt_softplus) delta = Softplus(delta);
      Acc out = p.D == nullptr ? Acc(0) : Get<Acc, Acc>(p.D, d * p.D_stride) * x;
      for (int64_t n = 0; n < p.dstate; ++n) {
        const int64_t si = b * p.state_stride_b + d * p.state_stride_d + n * p.state_stride_n;
        const Acc a = std::exp(delta * Get<Acc, Acc>(p.A, d * p.A_stride_d + n * p.A_stride_n));
        const Acc bn =
            Get<Acc, TB>(p.B, b * p.B_stride_b + g * p.B_stride_g + n * p.B_stride_n);
        const Acc cn =
            Get<Acc, TB>(p.C, b * p.C_stride_b + g * p.C_stride_g + n * p.C_stride_n);
        const Acc s = a * Get<Acc, Acc>(p.state, si) + delta * bn * x;
        Put<Acc>(p.state, si, s);
        out += cn * s;
      }
      if (p.z != nullptr) {
        const Acc z = Get<Acc, T>(p.z, b * p.z_stride_b + d * p.z_stride_d);
        out *= z * Sigmoid(z);
      }
      Put<T>(p.y, b * p.y_stride_b + d * p.y_stride_d, out);
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SelectiveScanReference(const SelectiveScanParams& p) {
  LYRA_RETURN_IF_ERROR(SelectiveScanSupported(p, /*cuda=*/false));
  return DispatchScan(p.dtype, p.bc_dtype, "SelectiveScanReference",
                      [&]<typename T, typename TB>() { return Forward<T, TB>(p); });
}

absl::Status SelectiveScanBackwardReference(const SelectiveScanBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(SelectiveScanBackwardSupported(p, /*cuda=*/false));
  return DispatchScan(p.forward.dtype, p.forward.bc_dtype, "SelectiveScanBackwardReference",
                      [&]<typename T, typename TB>() { return Backward<T, TB>(p); });
}

absl::Status SelectiveStateUpdateReference(const SelectiveStateUpdateParams& p) {
  LYRA_RETURN_IF_ERROR(SelectiveStateUpdateSupported(p, /*cuda=*/false));
  return DispatchScan(p.dtype, p.bc_dtype, "SelectiveStateUpdateReference",
                      [&]<typename T, typename TB>() { return Update<T, TB>(p); });
}

}  // namespace lyra::cuda
