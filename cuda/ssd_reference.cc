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
  double Bias() const { return p.dt_bias == nullptr ? 0.0 : Get<PT>(p.dt_bias, h * p.dt_bias_stride); }
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

}  // namespace lyra::cuda
