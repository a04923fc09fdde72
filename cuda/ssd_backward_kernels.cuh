// CUDA kernels of the Mamba-2 SSD backward (math in cuda/ssd.h), instantiated per dtype in
// ssd_backward_{float,f16,bf16}.cu; the host entry points are in ssd_backward.cu.
//
// Notation per (b, h): dt'_t = clamp(softplus(dt_t + bias)), a_t = exp(dt'_t A) (0 at a reset),
// S_t = a_t S_{t-1} + dt'_t x_t B_tᵀ (P x N), out_t = S_t C_t + D x_t, y_t = out_t silu(z_t).
// The adjoint of the recurrence, from t = L - 1 down to 0, with g_{L-1} = dfinal_state:
//   dout_t = dy_t silu(z_t)                    dz_t = dy_t out_t silu'(z_t)
//   dS_t   = g_t + dout_t C_tᵀ                 g_{t-1} = a_t dS_t     (dinitial_state = g_{-1})
//   dx_t   = dt'_t dS_t B_t + D dout_t         dC_t = S_tᵀ dout_t     (summed over the group's heads)
//   dB_t   = dt'_t dS_tᵀ x_t                   (summed over the group's heads)
//   ddt'_t = x_tᵀ dS_t B_t + A a_t <dS_t, S_{t-1}>       dA += dt'_t a_t <dS_t, S_{t-1}>
//   ddt_t  = ddt'_t [not clamped] sigmoid(dt_t + bias) (softplus) ; ddt_bias = sum of ddt
//   dD     = sum_t dout_t x_t (per head dim, or summed over P for a per-head D)
//
// Two implementations:
//   - the sequential one (SsdBackwardSequentialCuda): one block per (b, h) walks the recurrence
//     above one step at a time, keeping S_t of one chunk and the adjoint in an f32 workspace
//     (global memory, L2-resident); chunk states come from the forward or from a first pass of
//     the same kernel. Slow (a few barriers per step), simple: the oracle of the fast one on
//     the GPU and the baseline of the benchmark.
//   - the chunked one (SsdBackwardCuda), described above its kernels below.
// Reductions over heads (dB, dC), over the batch (dA, dD, ddt_bias) go through per-(b, h)
// partials in f32 workspaces summed by a last kernel in a fixed order: deterministic. Every
// output is written (=). Arithmetic in f32; 16-bit inputs are widened when read, outputs
// rounded once when written.
#ifndef LYRA_CUDA_SSD_BACKWARD_KERNELS_CUH_
#define LYRA_CUDA_SSD_BACKWARD_KERNELS_CUH_

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/ssd.h"

namespace lyra::cuda {
namespace ssd_bwd {

// dt' and the factor d dt' / d dt (0 where the clamp is active).
struct DtPrime {
  float value;
  float grad;
};

__device__ __forceinline__ DtPrime ComputeDtPrime(float dt, float bias, bool softplus,
                                                  float dt_min, float dt_max) {
  const float v = dt + bias;
  float d = v, g = 1.f;
  if (softplus) {
    d = v > 20.f ? v : log1pf(expf(v));
    g = 1.f / (1.f + expf(-v));
  }
  if (d < dt_min) {
    d = dt_min;
    g = 0.f;
  } else if (d > dt_max) {
    d = dt_max;
    g = 0.f;
  }
  return {d, g};
}

__device__ __forceinline__ float SiluF(float v) { return v / (1.f + expf(-v)); }
// d silu(v) / dv = s (1 + v (1 - s)) with s = sigmoid(v).
__device__ __forceinline__ float SiluGradF(float v) {
  const float s = 1.f / (1.f + expf(-v));
  return s * (1.f + v * (1.f - s));
}

template <typename T>
__device__ __forceinline__ float Ld(const void* ptr, int64_t offset) {
  return DLoad(static_cast<const T*>(ptr)[offset]);
}
template <typename T>
__device__ __forceinline__ void St(void* ptr, int64_t offset, float v) {
  static_cast<T*>(ptr)[offset] = DStore<T>(v);
}

// The per-step scalars of (b, h) at time t.
struct StepScalars {
  float dtp;      // dt'
  float dtp_grad; // d dt' / d dt
  float a;        // exp(dt' A), 0 at a reset
};

template <typename T>
__device__ __forceinline__ StepScalars LoadStep(const SsdParams& f, int64_t b, int64_t h, int64_t t,
                                                float A, float bias) {
  const DtPrime d =
      ComputeDtPrime(Ld<T>(f.dt, b * f.dt_stride_b + t * f.dt_stride_l + h * f.dt_stride_h), bias,
                     f.dt_softplus, static_cast<float>(f.dt_min), static_cast<float>(f.dt_max));
  bool reset = false;
  if (f.seq_idx != nullptr && t > 0) {
    const int32_t* s = f.seq_idx + b * f.seq_idx_stride_b;
    reset = s[t * f.seq_idx_stride_l] != s[(t - 1) * f.seq_idx_stride_l];
  }
  return {d.value, d.grad, reset ? 0.f : expf(d.value * A)};
}

// f32 partials of the reductions, summed by SsdBackwardReduceKernel.
struct Partials {
  float* dB = nullptr;     // (B, L, H, N): this head's share of dB
  float* dC = nullptr;     // (B, L, H, N)
  float* dA = nullptr;     // (R, H): R partial rows (batch rows, or batch rows x chunks)
  float* dbias = nullptr;  // (R, H)
  float* dD = nullptr;     // (R, H, P)
  int64_t rows = 0;        // R
};

// ---------------------------------------------------------------------------------------------
// Sequential backward: one block of kSeqThreads per (b, h). The state S (P x N, row-major) is
// split over the threads by element e = p N + n, e = tid, tid + kSeqThreads, ...
inline constexpr int kSeqThreads = 256;

struct SeqWorkspace {
  float* chunk_states = nullptr;  // (B, n_chunks, H, P, N): computed here when not given
  float* states = nullptr;        // (B H, Q, P, N): S_t of the chunk being walked back
  float* adjoint = nullptr;       // (B H, P, N): g_t, then dS_t
  Partials part;
};

// Block-wide sum of one value per thread, in a fixed order (deterministic). `red` holds
// kSeqThreads floats; every thread gets the sum.
__device__ __forceinline__ float BlockSum(float v, float* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = kSeqThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const float r = red[0];
  __syncthreads();
  return r;
}

template <typename T, bool kHasZ>
__global__ void __launch_bounds__(kSeqThreads)
    SsdSequentialBackwardKernel(const SsdBackwardParams bp, const SeqWorkspace ws) {
  const SsdParams& f = bp.forward;
  const int64_t H = f.heads, P = f.head_dim, N = f.dstate, L = f.length, Q = f.chunk;
  const int64_t b = blockIdx.x / H, h = blockIdx.x % H, bh = blockIdx.x;
  const int64_t g = h / (H / f.groups);
  const int64_t n_chunks = (L + Q - 1) / Q;
  const int64_t PN = P * N;
  const int tid = threadIdx.x;

  extern __shared__ float smem[];
  float* sx = smem;         // [P] x_t
  float* sdout = sx + P;    // [P] dout_t
  float* srow = sdout + P;  // [P] dS_t B_t
  float* sB = srow + P;     // [N]
  float* sC = sB + N;       // [N]
  float* red = sC + N;      // [kSeqThreads]

  const float A = static_cast<const float*>(f.A)[h * f.A_stride];
  const float bias =
      f.dt_bias != nullptr ? static_cast<const float*>(f.dt_bias)[h * f.dt_bias_stride] : 0.f;
  float* states = ws.states + bh * Q * PN;
  float* adj = ws.adjoint + bh * PN;
  const float* cs_base = bp.chunk_states != nullptr ? static_cast<const float*>(bp.chunk_states)
                                                    : ws.chunk_states;
  // Chunk state c of (b, h).
  const auto chunk_state = [&](int64_t c) { return cs_base + ((b * n_chunks + c) * H + h) * PN; };

  const auto stage_xb = [&](int64_t t) {
    for (int64_t i = tid; i < P; i += kSeqThreads)
      sx[i] = Ld<T>(f.x, b * f.x_stride_b + t * f.x_stride_l + h * f.x_stride_h + i * f.x_stride_p);
    for (int64_t i = tid; i < N; i += kSeqThreads) {
      sB[i] = Ld<T>(f.B, b * f.B_stride_b + t * f.B_stride_l + g * f.B_stride_g + i * f.B_stride_n);
      sC[i] = Ld<T>(f.C, b * f.C_stride_b + t * f.C_stride_l + g * f.C_stride_g + i * f.C_stride_n);
    }
  };

  // Pass 0: the chunk states, when the forward did not save them (S kept in `adj` meanwhile).
  if (bp.chunk_states == nullptr) {
    const float* init = static_cast<const float*>(f.initial_state);
    for (int64_t e = tid; e < PN; e += kSeqThreads) {
      const int64_t pp = e / N, nn = e % N;
      adj[e] = init != nullptr ? init[b * f.initial_state_stride_b + h * f.initial_state_stride_h +
                                      pp * f.initial_state_stride_p + nn * f.initial_state_stride_n]
                               : 0.f;
    }
    for (int64_t t = 0; t < L; ++t) {
      const StepScalars st = LoadStep<T>(f, b, h, t, A, bias);
      stage_xb(t);
      __syncthreads();
      float* cs = t % Q == 0 ? ws.chunk_states + ((b * n_chunks + t / Q) * H + h) * PN : nullptr;
      for (int64_t e = tid; e < PN; e += kSeqThreads) {
        const float s = adj[e];
        if (cs != nullptr) cs[e] = s;
        adj[e] = st.a * s + st.dtp * sx[e / N] * sB[e % N];
      }
      __syncthreads();
    }
  }

  // The adjoint starts as dfinal_state (g_{L-1}).
  const float* dfin = static_cast<const float*>(bp.dfinal_state);
  for (int64_t e = tid; e < PN; e += kSeqThreads) {
    const int64_t pp = e / N, nn = e % N;
    adj[e] = dfin != nullptr ? dfin[b * bp.dfinal_state_stride_b + h * bp.dfinal_state_stride_h +
                                    pp * bp.dfinal_state_stride_p + nn * bp.dfinal_state_stride_n]
                             : 0.f;
  }
  float dA_acc = 0.f, dbias_acc = 0.f;  // thread 0
  float dD_acc[(kSsdMaxDim + kSeqThreads - 1) / kSeqThreads] = {};  // p = tid + k kSeqThreads
  const float* Dp = static_cast<const float*>(f.D);

  for (int64_t c = n_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * Q, t1 = t0 + Q < L ? t0 + Q : L;
    // Recompute S_t of the chunk from its entering state.
    const float* s_in = chunk_state(c);
    for (int64_t t = t0; t < t1; ++t) {
      const StepScalars st = LoadStep<T>(f, b, h, t, A, bias);
      stage_xb(t);
      __syncthreads();
      const float* prev = t == t0 ? s_in : states + (t - t0 - 1) * PN;
      float* cur = states + (t - t0) * PN;
      for (int64_t e = tid; e < PN; e += kSeqThreads)
        cur[e] = st.a * prev[e] + st.dtp * sx[e / N] * sB[e % N];
      __syncthreads();
    }
    // Walk back through the chunk.
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const StepScalars st = LoadStep<T>(f, b, h, t, A, bias);
      stage_xb(t);
      const float* cur = states + (t - t0) * PN;
      const float* prev = t == t0 ? s_in : states + (t - t0 - 1) * PN;
      const int64_t dyo = b * bp.dy_stride_b + t * bp.dy_stride_l + h * bp.dy_stride_h;
      __syncthreads();
      for (int64_t pp = tid; pp < P; pp += kSeqThreads) {
        const float dy = Ld<T>(bp.dy, dyo + pp * bp.dy_stride_p);
        if constexpr (kHasZ) {
          const float z =
              Ld<T>(f.z, b * f.z_stride_b + t * f.z_stride_l + h * f.z_stride_h + pp * f.z_stride_p);
          float out = 0.f;
          for (int64_t nn = 0; nn < N; ++nn) out += cur[pp * N + nn] * sC[nn];
          if (Dp != nullptr)
            out += Dp[h * f.D_stride_h + (f.D_per_head_dim ? pp * f.D_stride_p : 0)] * sx[pp];
          sdout[pp] = dy * SiluF(z);
          St<T>(bp.dz, b * bp.dz_stride_b + t * bp.dz_stride_l + h * bp.dz_stride_h +
                           pp * bp.dz_stride_p,
                dy * out * SiluGradF(z));
        } else {
          sdout[pp] = dy;
        }
      }
      __syncthreads();
      // dS_t = g_t + dout_t C_tᵀ
      for (int64_t e = tid; e < PN; e += kSeqThreads) adj[e] += sdout[e / N] * sC[e % N];
      __syncthreads();
      // Row sums: dx, the x-term of ddt', dD.
      float ddt_x = 0.f;
      for (int64_t pp = tid, k = 0; pp < P; pp += kSeqThreads, ++k) {
        float r = 0.f;
        for (int64_t nn = 0; nn < N; ++nn) r += adj[pp * N + nn] * sB[nn];
        float dx = st.dtp * r;
        if (Dp != nullptr)
          dx += Dp[h * f.D_stride_h + (f.D_per_head_dim ? pp * f.D_stride_p : 0)] * sdout[pp];
        St<T>(bp.dx, b * bp.dx_stride_b + t * bp.dx_stride_l + h * bp.dx_stride_h +
                         pp * bp.dx_stride_p,
              dx);
        ddt_x += sx[pp] * r;
        dD_acc[k] += sdout[pp] * sx[pp];
      }
      // Column sums: this head's dB_t, dC_t.
      for (int64_t nn = tid; nn < N; nn += kSeqThreads) {
        float db = 0.f, dc = 0.f;
        for (int64_t pp = 0; pp < P; ++pp) {
          db += sx[pp] * adj[pp * N + nn];
          dc += sdout[pp] * cur[pp * N + nn];
        }
        const int64_t o = ((b * L + t) * H + h) * N + nn;
        ws.part.dB[o] = st.dtp * db;
        ws.part.dC[o] = dc;
      }
      float da = 0.f;
      for (int64_t e = tid; e < PN; e += kSeqThreads) da += adj[e] * prev[e];
      da = BlockSum(da, red);
      ddt_x = BlockSum(ddt_x, red);
      if (tid == 0) {
        const float ddtp = ddt_x + A * st.a * da;
        dA_acc += st.dtp * st.a * da;
        const float ddt = ddtp * st.dtp_grad;
        dbias_acc += ddt;
        St<T>(bp.ddt, b * bp.ddt_stride_b + t * bp.ddt_stride_l + h * bp.ddt_stride_h, ddt);
      }
      // g_{t-1} = a_t dS_t
      for (int64_t e = tid; e < PN; e += kSeqThreads) adj[e] *= st.a;
      __syncthreads();
    }
  }
  if (bp.dinitial_state != nullptr) {
    float* di = static_cast<float*>(bp.dinitial_state);
    for (int64_t e = tid; e < PN; e += kSeqThreads) {
      const int64_t pp = e / N, nn = e % N;
      di[b * bp.dinitial_state_stride_b + h * bp.dinitial_state_stride_h +
         pp * bp.dinitial_state_stride_p + nn * bp.dinitial_state_stride_n] = adj[e];
    }
  }
  if (tid == 0) {
    ws.part.dA[bh] = dA_acc;
    ws.part.dbias[bh] = dbias_acc;
  }
  for (int64_t pp = tid, k = 0; pp < P; pp += kSeqThreads, ++k) ws.part.dD[bh * P + pp] = dD_acc[k];
}

// ---------------------------------------------------------------------------------------------
// The last kernel of both versions: dB, dC = sums of the per-head partials over the heads of
// each group; dA, ddt_bias, dD = sums of the (R, H[, P]) partials over R. One thread per output
// element, fixed order.
template <typename T>
__global__ void SsdBackwardReduceKernel(const SsdBackwardParams bp, const Partials part) {
  const SsdParams& f = bp.forward;
  const int64_t H = f.heads, P = f.head_dim, N = f.dstate, L = f.length, G = f.groups;
  const int64_t hpg = H / G;
  const int64_t n_bc = f.batch * L * G * N;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_bc) {
    const int64_t nn = i % N, gg = (i / N) % G, t = (i / (N * G)) % L, b = i / (N * G * L);
    const int64_t base = ((b * L + t) * H + gg * hpg) * N + nn;
    float db = 0.f, dc = 0.f;
    for (int64_t k = 0; k < hpg; ++k) {
      db += part.dB[base + k * N];
      dc += part.dC[base + k * N];
    }
    St<T>(bp.dB, b * bp.dB_stride_b + t * bp.dB_stride_l + gg * bp.dB_stride_g + nn * bp.dB_stride_n,
          db);
    St<T>(bp.dC, b * bp.dC_stride_b + t * bp.dC_stride_l + gg * bp.dC_stride_g + nn * bp.dC_stride_n,
          dc);
    return;
  }
  const int64_t j = i - n_bc;
  if (j < H) {
    float da = 0.f, dbias = 0.f;
    for (int64_t r = 0; r < part.rows; ++r) {
      da += part.dA[r * H + j];
      dbias += part.dbias[r * H + j];
    }
    static_cast<float*>(bp.dA)[j * bp.dA_stride] = da;
    if (bp.ddt_bias != nullptr) static_cast<float*>(bp.ddt_bias)[j * bp.ddt_bias_stride] = dbias;
    if (bp.dD != nullptr && !f.D_per_head_dim) {
      float dd = 0.f;
      for (int64_t r = 0; r < part.rows; ++r)
        for (int64_t pp = 0; pp < P; ++pp) dd += part.dD[(r * H + j) * P + pp];
      static_cast<float*>(bp.dD)[j * bp.dD_stride_h] = dd;
    }
    return;
  }
  const int64_t k = j - H;
  if (k < H * P && bp.dD != nullptr && f.D_per_head_dim) {
    float dd = 0.f;
    for (int64_t r = 0; r < part.rows; ++r) dd += part.dD[r * H * P + k];
    static_cast<float*>(bp.dD)[(k / P) * bp.dD_stride_h + (k % P) * bp.dD_stride_p] = dd;
  }
}

// Allocations from the device's caching allocator, returned in stream order on destruction.
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() {
    for (int i = 0; i < count_; ++i) allocator_->Free(blocks_[i]);
  }
  absl::StatusOr<float*> Floats(int64_t n) {
    if (allocator_ == nullptr) {
      int device = 0;
      LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
      allocator_ = &CachingAllocator::ForDevice(device);
    }
    if (count_ == kMaxBlocks) return absl::InternalError("ssd backward: too many workspaces");
    LYRA_ASSIGN_OR_RETURN(void* raw, allocator_->Allocate(static_cast<size_t>(n) * sizeof(float)));
    blocks_[count_++] = raw;
    return static_cast<float*>(raw);
  }

 private:
  static constexpr int kMaxBlocks = 24;
  CachingAllocator* allocator_ = nullptr;
  void* blocks_[kMaxBlocks] = {};
  int count_ = 0;
};

// The reduction partials for R rows.
inline absl::StatusOr<Partials> AllocatePartials(const SsdParams& f, int64_t rows, Workspace& ws) {
  Partials part;
  part.rows = rows;
  const int64_t n_bc = f.batch * f.length * f.heads * f.dstate;
  LYRA_ASSIGN_OR_RETURN(part.dB, ws.Floats(n_bc));
  LYRA_ASSIGN_OR_RETURN(part.dC, ws.Floats(n_bc));
  LYRA_ASSIGN_OR_RETURN(part.dA, ws.Floats(rows * f.heads));
  LYRA_ASSIGN_OR_RETURN(part.dbias, ws.Floats(rows * f.heads));
  LYRA_ASSIGN_OR_RETURN(part.dD, ws.Floats(rows * f.heads * f.head_dim));
  return part;
}

template <typename T>
absl::Status LaunchReduce(const SsdBackwardParams& bp, const Partials& part, cudaStream_t stream) {
  const SsdParams& f = bp.forward;
  const int64_t total = f.batch * f.length * f.groups * f.dstate + f.heads + f.heads * f.head_dim;
  constexpr int kThreads = 256;
  SsdBackwardReduceKernel<T><<<static_cast<unsigned>((total + kThreads - 1) / kThreads), kThreads,
                               0, stream>>>(bp, part);
  return LastLaunchStatus("SsdBackwardReduceKernel", __FILE__, __LINE__);
}

template <typename T>
absl::Status SequentialBackwardTyped(const SsdBackwardParams& bp, cudaStream_t stream) {
  const SsdParams& f = bp.forward;
  const int64_t BH = f.batch * f.heads, PN = f.head_dim * f.dstate;
  Workspace arena;
  SeqWorkspace ws;
  if (bp.chunk_states == nullptr) {
    LYRA_ASSIGN_OR_RETURN(ws.chunk_states,
                          arena.Floats(BH * SsdNumChunks(f.length, f.chunk) * PN));
  }
  LYRA_ASSIGN_OR_RETURN(ws.states, arena.Floats(BH * f.chunk * PN));
  LYRA_ASSIGN_OR_RETURN(ws.adjoint, arena.Floats(BH * PN));
  LYRA_ASSIGN_OR_RETURN(ws.part, AllocatePartials(f, f.batch, arena));
  const size_t smem = (3 * f.head_dim + 2 * f.dstate + kSeqThreads) * sizeof(float);
  if (f.z != nullptr) {
    SsdSequentialBackwardKernel<T, true><<<static_cast<unsigned>(BH), kSeqThreads, smem, stream>>>(bp, ws);
  } else {
    SsdSequentialBackwardKernel<T, false><<<static_cast<unsigned>(BH), kSeqThreads, smem, stream>>>(bp, ws);
  }
  LYRA_RETURN_IF_ERROR(LastLaunchStatus("SsdSequentialBackwardKernel", __FILE__, __LINE__));
  return LaunchReduce<T>(bp, ws.part, stream);
}

}  // namespace ssd_bwd

// fn<T>() for the storage type (f32, f16, bf16).
template <typename Fn>
absl::Status DispatchSsdBackwardDType(DType dtype, absl::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: return fn.template operator()<float>();
    case DType::kF16: return fn.template operator()<Float16>();
    case DType::kBF16: return fn.template operator()<BFloat16>();
    default:
      return absl::UnimplementedError(absl::StrCat(op, ": no CUDA kernel for ", DTypeName(dtype)));
  }
}

// The per-dtype entry points (the first argument only selects the overload), defined in
// ssd_backward_<dtype>.cu.
absl::Status SsdBackwardSequentialFor(float, const SsdBackwardParams& p, cudaStream_t stream);
absl::Status SsdBackwardSequentialFor(Float16, const SsdBackwardParams& p, cudaStream_t stream);
absl::Status SsdBackwardSequentialFor(BFloat16, const SsdBackwardParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_SSD_BACKWARD_KERNELS_CUH_
