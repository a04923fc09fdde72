// CPU references of the Mamba-2 SSD (cuda/ssd.h): the math as plain loops, every input loaded as
// double and every sum accumulated in f64 for every dtype; outputs are rounded once to their
// tensor's dtype when written.
//
// SsdReference is the chunked algorithm (transformers' Mamba2Mixer.torch_forward), per (b, h) and
// chunk c of Q steps [t0, t1), with S_in the state entering the chunk and the decay
//   decay(i, j) = a_{j+1} ... a_i = exp(sum_{k=j+1..i} dt'_k A)   (0 if a reset lies in (j, i])
// (the "segment sum" matrix, here summed directly, never as a difference of cumulative sums):
//   y_diag[i] = sum_{j=t0..i} (C_i . B_j) decay(i, j) dt'_j x_j        (the quadratic term)
//   y_off[i]  = decay(i, t0 - 1) S_in C_i                                (the off-diagonal term)
//   S_out     = decay(t1 - 1, t0 - 1) S_in + sum_j decay(t1 - 1, j) dt'_j x_j ⊗ B_j
// and S_out enters chunk c + 1 (the inter-chunk recurrence). SsdSequentialReference runs the
// recurrence one step at a time; SsdBackwardReference is its hand-derived adjoint.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/ssd.h"

namespace lyra::cuda {
namespace {

// torch.nn.functional.softplus (beta 1, threshold 20), its derivative, the logistic sigmoid.
double Softplus(double v) { return v > 20.0 ? v : std::log1p(std::exp(v)); }
double SoftplusGrad(double v) { return v > 20.0 ? 1.0 : 1.0 / (1.0 + std::exp(-v)); }
double Sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// Element i of a buffer of storage type S, as a double; and the store back.
template <typename S>
double Get(const void* p, int64_t i) {
  return static_cast<double>(Load(static_cast<const S*>(p)[i]));
}
template <typename S>
void Put(void* p, int64_t i, double v) {
  static_cast<S*>(p)[i] = Store<S>(static_cast<ComputeType<S>>(v));
}

// dt' from the raw dt: bias, softplus, clamp. `pre` receives dt + dt_bias (the softplus input)
// and `in_range` whether the clamp let it through (the gradient's mask).
double DtPrime(double raw, double bias, bool softplus, double dt_min, double dt_max,
               double* pre = nullptr, bool* in_range = nullptr) {
  const double v = raw + bias;
  const double s = softplus ? Softplus(v) : v;
  if (pre != nullptr) *pre = v;
  if (in_range != nullptr) *in_range = dt_min <= s && s <= dt_max;
  return s < dt_min ? dt_min : (s > dt_max ? dt_max : s);
}

// Read-only accessors of the forward's inputs for one (b, h); T is the storage type of x, dt, B,
// C, z and PT that of A, D, dt_bias and the states.
template <typename T, typename PT>
struct Head {
  const SsdParams& p;
  int64_t b, h, g;

  Head(const SsdParams& params, int64_t b_, int64_t h_)
      : p(params), b(b_), h(h_), g(h_ / (params.heads / params.groups)) {}

  double X(int64_t t, int64_t i) const {
    return Get<T>(p.x, b * p.x_stride_b + t * p.x_stride_l + h * p.x_stride_h + i * p.x_stride_p);
  }
  double Z(int64_t t, int64_t i) const {
    return Get<T>(p.z, b * p.z_stride_b + t * p.z_stride_l + h * p.z_stride_h + i * p.z_stride_p);
  }
  double Bv(int64_t t, int64_t n) const {
    return Get<T>(p.B, b * p.B_stride_b + t * p.B_stride_l + g * p.B_stride_g + n * p.B_stride_n);
  }
  double Cv(int64_t t, int64_t n) const {
    return Get<T>(p.C, b * p.C_stride_b + t * p.C_stride_l + g * p.C_stride_g + n * p.C_stride_n);
  }
  double A() const { return Get<PT>(p.A, h * p.A_stride); }
  double Bias() const {
    return p.dt_bias == nullptr ? 0.0 : Get<PT>(p.dt_bias, h * p.dt_bias_stride);
  }
  double Dv(int64_t i) const {
    if (p.D == nullptr) return 0.0;
    return Get<PT>(p.D, h * p.D_stride_h + (p.D_per_head_dim ? i * p.D_stride_p : 0));
  }
  double RawDt(int64_t t) const {
    return Get<T>(p.dt, b * p.dt_stride_b + t * p.dt_stride_l + h * p.dt_stride_h);
  }
  double Dt(int64_t t, double* pre = nullptr, bool* in_range = nullptr) const {
    return DtPrime(RawDt(t), Bias(), p.dt_softplus, p.dt_min, p.dt_max, pre, in_range);
  }
  double Initial(int64_t i, int64_t n) const {
    if (p.initial_state == nullptr) return 0.0;
    return Get<PT>(p.initial_state, b * p.initial_state_stride_b + h * p.initial_state_stride_h +
                                        i * p.initial_state_stride_p +
                                        n * p.initial_state_stride_n);
  }
  // Whether the state resets to zero before step t (a_t = 0).
  bool Reset(int64_t t) const {
    if (p.seq_idx == nullptr || t == 0) return false;
    const int32_t* s = p.seq_idx + b * p.seq_idx_stride_b;
    return s[t * p.seq_idx_stride_l] != s[(t - 1) * p.seq_idx_stride_l];
  }
  // y_t[i] from the pre-gate output.
  void PutY(int64_t t, int64_t i, double out) const {
    if (p.z != nullptr) {
      const double z = Z(t, i);
      out *= z * Sigmoid(z);
    }
    Put<T>(p.y, b * p.y_stride_b + t * p.y_stride_l + h * p.y_stride_h + i * p.y_stride_p, out);
  }
  void PutFinal(const std::vector<double>& S) const {
    if (p.final_state == nullptr) return;
    const int64_t N = p.dstate;
    for (int64_t i = 0; i < p.head_dim; ++i) {
      for (int64_t n = 0; n < N; ++n) {
        Put<PT>(p.final_state, b * p.final_state_stride_b + h * p.final_state_stride_h +
                                   i * p.final_state_stride_p + n * p.final_state_stride_n,
                S[i * N + n]);
      }
    }
  }
};

// Runs fn<T, PT>() for the storage type T of x and the param / state type PT (f32; f64 with f64).
template <typename Fn>
absl::Status DispatchSsd(DType dtype, absl::string_view op, Fn&& fn) {
  return DispatchFloat(dtype, op, [&]<typename T>() -> absl::Status {
    if constexpr (std::is_same_v<T, double>) {
      return fn.template operator()<T, double>();
    } else {
      return fn.template operator()<T, float>();
    }
  });
}

template <typename T, typename PT>
absl::Status Chunked(const SsdParams& p) {
  const int64_t L = p.length, P = p.head_dim, N = p.dstate, Q = p.chunk;
  const int64_t n_chunks = SsdNumChunks(L, Q);
  std::vector<double> S(P * N), S_next(P * N);
  std::vector<double> dt(Q), log_a(Q), x(Q * P), Bm(Q * N), Cm(Q * N);
  std::vector<char> reset(Q);
  std::vector<double> decay(Q * Q), decay_in(Q);  // decay(i, j), decay(i, t0 - 1)
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < p.heads; ++h) {
      const Head<T, PT> hd(p, b, h);
      const double A = hd.A();
      for (int64_t i = 0; i < P; ++i) {
        for (int64_t n = 0; n < N; ++n) S[i * N + n] = hd.Initial(i, n);
      }
      for (int64_t c = 0; c < n_chunks; ++c) {
        const int64_t t0 = c * Q, len = std::min(Q, L - t0);
        if (p.chunk_states != nullptr) {
          const int64_t base = ((b * n_chunks + c) * p.heads + h) * P * N;
          for (int64_t k = 0; k < P * N; ++k) Put<PT>(p.chunk_states, base + k, S[k]);
        }
        for (int64_t j = 0; j < len; ++j) {
          dt[j] = hd.Dt(t0 + j);
          log_a[j] = dt[j] * A;
          reset[j] = hd.Reset(t0 + j);
          for (int64_t i = 0; i < P; ++i) x[j * P + i] = hd.X(t0 + j, i);
          for (int64_t n = 0; n < N; ++n) {
            Bm[j * N + n] = hd.Bv(t0 + j, n);
            Cm[j * N + n] = hd.Cv(t0 + j, n);
          }
        }
        // The segment-sum decays: walking j down from i, the sum of log a over (j, i].
        for (int64_t i = 0; i < len; ++i) {
          double sum = 0.0;
          bool dead = false;
          for (int64_t j = i; j >= 0; --j) {
            decay[i * Q + j] = dead ? 0.0 : std::exp(sum);
            dead = dead || reset[j];
            sum += log_a[j];
          }
          decay_in[i] = dead ? 0.0 : std::exp(sum);
        }
        // Outputs of the chunk: the quadratic (diagonal-block) term plus the off-diagonal term.
        for (int64_t i = 0; i < len; ++i) {
          std::vector<double> out(P, 0.0);
          for (int64_t j = 0; j <= i; ++j) {
            double cb = 0.0;
            for (int64_t n = 0; n < N; ++n) cb += Cm[i * N + n] * Bm[j * N + n];
            const double w = cb * decay[i * Q + j] * dt[j];
            for (int64_t k = 0; k < P; ++k) out[k] += w * x[j * P + k];
          }
          for (int64_t k = 0; k < P; ++k) {
            double sc = 0.0;
            for (int64_t n = 0; n < N; ++n) sc += S[k * N + n] * Cm[i * N + n];
            const double total = out[k] + decay_in[i] * sc + hd.Dv(k) * x[i * P + k];
            hd.PutY(t0 + i, k, total);
          }
        }
        // The state leaving the chunk.
        const int64_t last = len - 1;
        for (int64_t k = 0; k < P; ++k) {
          for (int64_t n = 0; n < N; ++n) {
            double s = decay_in[last] * S[k * N + n];
            for (int64_t j = 0; j < len; ++j) {
              s += decay[last * Q + j] * dt[j] * x[j * P + k] * Bm[j * N + n];
            }
            S_next[k * N + n] = s;
          }
        }
        S.swap(S_next);
      }
      hd.PutFinal(S);
    }
  }
  return absl::OkStatus();
}

template <typename T, typename PT>
absl::Status Sequential(const SsdParams& p) {
  const int64_t L = p.length, P = p.head_dim, N = p.dstate;
  std::vector<double> S(P * N);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < p.heads; ++h) {
      const Head<T, PT> hd(p, b, h);
      const double A = hd.A();
      for (int64_t i = 0; i < P; ++i) {
        for (int64_t n = 0; n < N; ++n) S[i * N + n] = hd.Initial(i, n);
      }
      for (int64_t t = 0; t < L; ++t) {
        const double dt = hd.Dt(t);
        const double a = hd.Reset(t) ? 0.0 : std::exp(dt * A);
        for (int64_t i = 0; i < P; ++i) {
          const double x = hd.X(t, i);
          double out = hd.Dv(i) * x;
          for (int64_t n = 0; n < N; ++n) {
            double& s = S[i * N + n];
            s = a * s + dt * x * hd.Bv(t, n);
            out += s * hd.Cv(t, n);
          }
          hd.PutY(t, i, out);
        }
      }
      hd.PutFinal(S);
    }
  }
  return absl::OkStatus();
}

// The adjoint of Sequential, per (b, h), with dout_t = dy_t * silu(z_t) and the state adjoint
// Hs_t = dLoss / dS_t [P, N]:
//   Hs_{L-1} = dout_{L-1} C_{L-1}ᵀ + dfinal_state,   Hs_t = dout_t C_tᵀ + a_{t+1} Hs_{t+1}
//   dz_t   = dy_t * out_t * silu'(z_t)             dD    += dout_t * x_t   (summed over p per head)
//   dx_t   = D dout_t + dt'_t Hs_t B_t             dC_t  += S_tᵀ dout_t  (over the group's heads)
//   dB_t  += dt'_t Hs_tᵀ x_t                       ddt'_t = <Hs_t, x_t B_tᵀ + A a_t S_{t-1}>
//   dA    += dt'_t a_t <Hs_t, S_{t-1}>             dinitial_state = a_0 Hs_0
//   ddt_t  = ddt'_t * 1[dt_min <= dt'_t <= dt_max before the clamp] * softplus'(dt_t + dt_bias)
//   ddt_bias += ddt_t
// (a_t = 0 at a reset, which removes the A and S_{t-1} terms there). The states S_t are kept
// for the whole sequence; every sum is in f64.
template <typename T, typename PT>
absl::Status Backward(const SsdBackwardParams& bp) {
  const SsdParams& p = bp.forward;
  const int64_t L = p.length, P = p.head_dim, N = p.dstate, G = p.groups, H = p.heads;
  const int64_t PN = P * N;
  std::vector<double> dA(H, 0.0), dbias(H, 0.0), dD(H * P, 0.0);
  std::vector<double> dB(p.batch * L * G * N, 0.0), dC(p.batch * L * G * N, 0.0);
  std::vector<double> S((L + 1) * PN);  // S[(t + 1) * PN + ...] = S_t, t = -1 .. L-1
  std::vector<double> dt(L), a(L), out(L * P), Hs(PN), carry(PN);
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const Head<T, PT> hd(p, b, h);
      const double A = hd.A();
      // Forward, keeping every state and the pre-gate output.
      for (int64_t i = 0; i < P; ++i) {
        for (int64_t n = 0; n < N; ++n) S[i * N + n] = hd.Initial(i, n);
      }
      for (int64_t t = 0; t < L; ++t) {
        dt[t] = hd.Dt(t);
        a[t] = hd.Reset(t) ? 0.0 : std::exp(dt[t] * A);
        const double* prev = &S[t * PN];
        double* cur = &S[(t + 1) * PN];
        for (int64_t i = 0; i < P; ++i) {
          const double x = hd.X(t, i);
          double o = hd.Dv(i) * x;
          for (int64_t n = 0; n < N; ++n) {
            cur[i * N + n] = a[t] * prev[i * N + n] + dt[t] * x * hd.Bv(t, n);
            o += cur[i * N + n] * hd.Cv(t, n);
          }
          out[t * P + i] = o;
        }
      }
      // Reverse: carry = a_{t+1} Hs_{t+1} (dfinal_state at the end).
      for (int64_t i = 0; i < P; ++i) {
        for (int64_t n = 0; n < N; ++n) {
          carry[i * N + n] =
              bp.dfinal_state == nullptr
                  ? 0.0
                  : Get<PT>(bp.dfinal_state,
                            b * bp.dfinal_state_stride_b + h * bp.dfinal_state_stride_h +
                                i * bp.dfinal_state_stride_p + n * bp.dfinal_state_stride_n);
        }
      }
      for (int64_t t = L - 1; t >= 0; --t) {
        double pre = 0.0;
        bool in_range = true;
        hd.Dt(t, &pre, &in_range);
        const double* prev = &S[t * PN];
        const double* cur = &S[(t + 1) * PN];
        const int64_t bc = ((b * L + t) * G + hd.g) * N;
        double ddt = 0.0, da = 0.0;
        for (int64_t i = 0; i < P; ++i) {
          const double x = hd.X(t, i);
          const double dy = Get<T>(bp.dy, b * bp.dy_stride_b + t * bp.dy_stride_l +
                                              h * bp.dy_stride_h + i * bp.dy_stride_p);
          double dout = dy;
          if (p.z != nullptr) {
            const double z = hd.Z(t, i), sg = Sigmoid(z);
            dout = dy * z * sg;
            Put<T>(bp.dz, b * bp.dz_stride_b + t * bp.dz_stride_l + h * bp.dz_stride_h +
                              i * bp.dz_stride_p,
                   dy * out[t * P + i] * sg * (1.0 + z * (1.0 - sg)));
          }
          dD[h * P + i] += dout * x;
          double dx = hd.Dv(i) * dout, hb = 0.0;
          for (int64_t n = 0; n < N; ++n) {
            const int64_t k = i * N + n;
            const double Bn = hd.Bv(t, n);
            Hs[k] = carry[k] + dout * hd.Cv(t, n);
            hb += Hs[k] * Bn;
            da += Hs[k] * prev[k];
            dB[bc + n] += dt[t] * Hs[k] * x;
            dC[bc + n] += dout * cur[k];
            carry[k] = a[t] * Hs[k];
          }
          dx += dt[t] * hb;
          ddt += hb * x;
          Put<T>(bp.dx, b * bp.dx_stride_b + t * bp.dx_stride_l + h * bp.dx_stride_h +
                            i * bp.dx_stride_p,
                 dx);
        }
        ddt += A * a[t] * da;
        dA[h] += dt[t] * a[t] * da;
        ddt *= in_range ? (p.dt_softplus ? SoftplusGrad(pre) : 1.0) : 0.0;
        dbias[h] += ddt;
        Put<T>(bp.ddt, b * bp.ddt_stride_b + t * bp.ddt_stride_l + h * bp.ddt_stride_h, ddt);
      }
      if (bp.dinitial_state != nullptr) {
        for (int64_t i = 0; i < P; ++i) {
          for (int64_t n = 0; n < N; ++n) {
            Put<PT>(bp.dinitial_state,
                    b * bp.dinitial_state_stride_b + h * bp.dinitial_state_stride_h +
                        i * bp.dinitial_state_stride_p + n * bp.dinitial_state_stride_n,
                    carry[i * N + n]);
          }
        }
      }
    }
  }
  for (int64_t h = 0; h < H; ++h) {
    Put<PT>(bp.dA, h * bp.dA_stride, dA[h]);
    if (bp.ddt_bias != nullptr) Put<PT>(bp.ddt_bias, h * bp.ddt_bias_stride, dbias[h]);
    if (bp.dD != nullptr) {
      if (p.D_per_head_dim) {
        for (int64_t i = 0; i < P; ++i) {
          Put<PT>(bp.dD, h * bp.dD_stride_h + i * bp.dD_stride_p, dD[h * P + i]);
        }
      } else {
        double sum = 0.0;
        for (int64_t i = 0; i < P; ++i) sum += dD[h * P + i];
        Put<PT>(bp.dD, h * bp.dD_stride_h, sum);
      }
    }
  }
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t t = 0; t < L; ++t) {
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t n = 0; n < N; ++n) {
          const int64_t k = ((b * L + t) * G + g) * N + n;
          Put<T>(bp.dB, b * bp.dB_stride_b + t * bp.dB_stride_l + g * bp.dB_stride_g +
                            n * bp.dB_stride_n,
                 dB[k]);
          Put<T>(bp.dC, b * bp.dC_stride_b + t * bp.dC_stride_l + g * bp.dC_stride_g +
                            n * bp.dC_stride_n,
                 dC[k]);
        }
      }
    }
  }
  return absl::OkStatus();
}

// One step of Sequential on a state updated in place (no reset).
template <typename T, typename PT>
absl::Status Update(const SsdStateUpdateParams& p) {
  const int64_t heads_per_group = p.heads / p.groups;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (int64_t h = 0; h < p.heads; ++h) {
      const int64_t g = h / heads_per_group;
      const double bias = p.dt_bias == nullptr ? 0.0 : Get<PT>(p.dt_bias, h * p.dt_bias_stride);
      const double dt = DtPrime(Get<T>(p.dt, b * p.dt_stride_b + h * p.dt_stride_h), bias,
                                p.dt_softplus, p.dt_min, p.dt_max);
      const double a = std::exp(dt * Get<PT>(p.A, h * p.A_stride));
      for (int64_t i = 0; i < p.head_dim; ++i) {
        const double x = Get<T>(p.x, b * p.x_stride_b + h * p.x_stride_h + i * p.x_stride_p);
        double out = 0.0;
        if (p.D != nullptr) {
          out = x * Get<PT>(p.D, h * p.D_stride_h + (p.D_per_head_dim ? i * p.D_stride_p : 0));
        }
        for (int64_t n = 0; n < p.dstate; ++n) {
          const int64_t si = b * p.state_stride_b + h * p.state_stride_h + i * p.state_stride_p +
                             n * p.state_stride_n;
          const double bn = Get<T>(p.B, b * p.B_stride_b + g * p.B_stride_g + n * p.B_stride_n);
          const double cn = Get<T>(p.C, b * p.C_stride_b + g * p.C_stride_g + n * p.C_stride_n);
          const double s = a * Get<PT>(p.state, si) + dt * x * bn;
          Put<PT>(p.state, si, s);
          out += cn * s;
        }
        if (p.z != nullptr) {
          const double z = Get<T>(p.z, b * p.z_stride_b + h * p.z_stride_h + i * p.z_stride_p);
          out *= z * Sigmoid(z);
        }
        Put<T>(p.y, b * p.y_stride_b + h * p.y_stride_h + i * p.y_stride_p, out);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SsdReference(const SsdParams& p) {
  LYRA_RETURN_IF_ERROR(SsdSupported(p, /*cuda=*/false));
  return DispatchSsd(p.dtype, "SsdReference",
                     [&]<typename T, typename PT>() { return Chunked<T, PT>(p); });
}

absl::Status SsdSequentialReference(const SsdParams& p) {
  LYRA_RETURN_IF_ERROR(SsdSupported(p, /*cuda=*/false));
  return DispatchSsd(p.dtype, "SsdSequentialReference",
                     [&]<typename T, typename PT>() { return Sequential<T, PT>(p); });
}


absl::Status SsdBackwardReference(const SsdBackwardParams& p) {
  LYRA_RETURN_IF_ERROR(SsdBackwardSupported(p, /*cuda=*/false));
  return DispatchSsd(p.forward.dtype, "SsdBackwardReference",
                     [&]<typename T, typename PT>() { return Backward<T, PT>(p); });
}

absl::Status SsdStateUpdateReference(const SsdStateUpdateParams& p) {
  LYRA_RETURN_IF_ERROR(SsdStateUpdateSupported(p, /*cuda=*/false));
  return DispatchSsd(p.dtype, "SsdStateUpdateReference",
                     [&]<typename T, typename PT>() { return Update<T, PT>(p); });
}

}  // namespace lyra::cuda
