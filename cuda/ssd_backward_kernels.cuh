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
#include <initializer_list>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/ssd.h"
#include "cuda/ssd_common.cuh"

namespace lyra::cuda {
namespace ssd_bwd {

namespace wmma = ::nvcuda::wmma;

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
  int64_t length = 0;      // the L extent of dB / dC (L, or L rounded up to whole chunks)
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
        const int64_t o = ((b * ws.part.length + t) * H + h) * N + nn;
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
// The last kernels of both versions. SsdBackwardReduceKernel: dB, dC = sums of the per-head
// partials over the heads of each group, one thread per output element. SsdParamReduceKernel:
// dA, ddt_bias, dD = sums of the (R, H[, P]) partials over R (and P for a per-head D), one block
// per output element (H for dA, H for ddt_bias, H or H P for dD), threads strided over the
// terms, then a tree. Both in a fixed order: deterministic.
template <typename T>
__global__ void SsdBackwardReduceKernel(const SsdBackwardParams bp, const Partials part) {
  const SsdParams& f = bp.forward;
  const int64_t H = f.heads, N = f.dstate, L = f.length, G = f.groups;
  const int64_t hpg = H / G;
  const int64_t n_bc = f.batch * L * G * N;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n_bc) return;
  const int64_t nn = i % N, gg = (i / N) % G, t = (i / (N * G)) % L, b = i / (N * G * L);
  const int64_t base = ((b * part.length + t) * H + gg * hpg) * N + nn;
  float db = 0.f, dc = 0.f;
  for (int64_t k = 0; k < hpg; ++k) {
    db += part.dB[base + k * N];
    dc += part.dC[base + k * N];
  }
  St<T>(bp.dB, b * bp.dB_stride_b + t * bp.dB_stride_l + gg * bp.dB_stride_g + nn * bp.dB_stride_n,
        db);
  St<T>(bp.dC, b * bp.dC_stride_b + t * bp.dC_stride_l + gg * bp.dC_stride_g + nn * bp.dC_stride_n,
        dc);
}

inline constexpr int kParamReduceThreads = 256;

// (A template only so that each dtype's .cu has its own.)
template <typename T>
__global__ void __launch_bounds__(kParamReduceThreads)
    SsdParamReduceKernel(const SsdBackwardParams bp, const Partials part) {
  const SsdParams& f = bp.forward;
  const int64_t H = f.heads, P = f.head_dim;
  __shared__ float red[kParamReduceThreads];
  int64_t o = blockIdx.x;
  // Which output: [0, H) dA, [H, 2H) ddt_bias, then dD (H or H P entries).
  const float* src;
  int64_t count, stride, inner = 1, inner_stride = 0;
  float* dst;
  if (o < H) {
    src = part.dA + o, count = part.rows, stride = H;
    dst = static_cast<float*>(bp.dA) + o * bp.dA_stride;
  } else if (o < 2 * H) {
    if (bp.ddt_bias == nullptr) return;
    o -= H;
    src = part.dbias + o, count = part.rows, stride = H;
    dst = static_cast<float*>(bp.ddt_bias) + o * bp.ddt_bias_stride;
  } else {
    if (bp.dD == nullptr) return;
    o -= 2 * H;
    if (f.D_per_head_dim) {
      src = part.dD + o, count = part.rows, stride = H * P;
      dst = static_cast<float*>(bp.dD) + (o / P) * bp.dD_stride_h + (o % P) * bp.dD_stride_p;
    } else {
      if (o >= H) return;
      src = part.dD + o * P, count = part.rows, stride = H * P, inner = P, inner_stride = 1;
      dst = static_cast<float*>(bp.dD) + o * bp.dD_stride_h;
    }
  }
  // Thread t sums column i = t % inner over the rows r = t / inner, + blockDim.x / inner, ...
  // (inner is 1 or P <= 256: at most one division per thread).
  float acc = 0.f;
  const int rows_per_pass = blockDim.x / static_cast<int>(inner);
  const int i = threadIdx.x % static_cast<int>(inner), r0 = threadIdx.x / static_cast<int>(inner);
  if (r0 < rows_per_pass) {
    const float* col = src + i * inner_stride;
    for (int64_t r = r0; r < count; r += rows_per_pass) acc += col[r * stride];
  }
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int s = kParamReduceThreads / 2; s > 0; s /= 2) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) *dst = red[0];
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

// The reduction partials for R rows; without `per_head_bc` no dB / dC partials (the chunk kernel
// then writes dB and dC itself).
inline absl::StatusOr<Partials> AllocatePartials(const SsdParams& f, int64_t rows, int64_t length,
                                                 Workspace& ws, bool per_head_bc = true) {
  Partials part;
  part.rows = rows;
  part.length = length;
  const int64_t n_bc = f.batch * length * f.heads * f.dstate;
  if (per_head_bc) {
    LYRA_ASSIGN_OR_RETURN(part.dB, ws.Floats(n_bc));
    LYRA_ASSIGN_OR_RETURN(part.dC, ws.Floats(n_bc));
  }
  LYRA_ASSIGN_OR_RETURN(part.dA, ws.Floats(rows * f.heads));
  LYRA_ASSIGN_OR_RETURN(part.dbias, ws.Floats(rows * f.heads));
  LYRA_ASSIGN_OR_RETURN(part.dD, ws.Floats(rows * f.heads * f.head_dim));
  return part;
}

template <typename T>
absl::Status LaunchReduce(const SsdBackwardParams& bp, const Partials& part, cudaStream_t stream) {
  const SsdParams& f = bp.forward;
  const int64_t total = f.batch * f.length * f.groups * f.dstate;
  constexpr int kThreads = 256;
  if (part.dB != nullptr) {  // else the chunk kernel wrote dB and dC
    SsdBackwardReduceKernel<T><<<static_cast<unsigned>((total + kThreads - 1) / kThreads),
                                 kThreads, 0, stream>>>(bp, part);
    LYRA_RETURN_IF_ERROR(LastLaunchStatus("SsdBackwardReduceKernel", __FILE__, __LINE__));
  }
  const int64_t outputs = 2 * f.heads + (f.D_per_head_dim ? f.heads * f.head_dim : f.heads);
  SsdParamReduceKernel<T><<<static_cast<unsigned>(outputs), kParamReduceThreads, 0, stream>>>(bp,
                                                                                          part);
  return LastLaunchStatus("SsdParamReduceKernel", __FILE__, __LINE__);
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
  LYRA_ASSIGN_OR_RETURN(ws.part, AllocatePartials(f, f.batch, f.length, arena));
  const size_t smem = (3 * f.head_dim + 2 * f.dstate + kSeqThreads) * sizeof(float);
  if (f.z != nullptr) {
    SsdSequentialBackwardKernel<T, true><<<static_cast<unsigned>(BH), kSeqThreads, smem, stream>>>(bp, ws);
  } else {
    SsdSequentialBackwardKernel<T, false><<<static_cast<unsigned>(BH), kSeqThreads, smem, stream>>>(bp, ws);
  }
  LYRA_RETURN_IF_ERROR(LastLaunchStatus("SsdSequentialBackwardKernel", __FILE__, __LINE__));
  return LaunchReduce<T>(bp, ws.part, stream);
}

// ---------------------------------------------------------------------------------------------
// Chunked backward (SsdBackwardCuda). Time is cut into chunks of q = 64 steps (32 or 16 when the
// forward's chunk is smaller, or when the tiles of a wide state do not fit in shared memory);
// the result does not depend on q except for rounding. Per chunk c of (b, h), positions
// l, s in [0, q) with the per-chunk scalars of ssd_common.cuh (dt', cum, seg):
//   Lmask[l, s] = exp(cum_l - cum_s) if s <= l and seg_s == seg_l, else 0
//   e_l = exp(cum_l) if seg_l == 0 (the entering state reaches l), else 0
//   w_s = exp(cum_end - cum_s) if seg_s == seg_end (x_s reaches the chunk's end), else 0
//   decay = e_end: the factor from the entering state to the leaving one
//   X, dOut = dy silu(z) (q x P), B, C (q x N), S_in, dS_out (P x N): the state entering the
//   chunk and the adjoint of the state leaving it.
// Forward of a chunk: out = (C Bᵀ ∘ Lmask) (dt' ∘ X) + e ∘ (C S_inᵀ) + D X,
//   S_out = decay S_in + Xᵀ diag(w dt') B.
// Its adjoint (G = dOut Xᵀ, M = C Bᵀ ∘ Lmask, LGd = G ∘ Lmask ∘ dt'_s, U2 = B dS_outᵀ):
//   dx   = dt' ∘ (Mᵀ dOut + w ∘ U2) + D dOut
//   dB   = LGdᵀ C + (w dt' ∘ X) dS_out           (this head's share)
//   dC   = LGd B + (e ∘ dOut) S_in                (this head's share)
//   dS_in = decay dS_out + dOutᵀ diag(e) C
//   ddt'_s (as x's multiplier) = x_s · (Mᵀ dOut + w ∘ U2)_s
//   d cum: K = M ∘ G ∘ dt'_s gives +rowsum(K)_l - colsum(K)_l; the entering state
//     +e_l (e_l dOut_l) · (C S_inᵀ)_l; the leaving state -W_s = -w_s dt'_s x_s · U2_s at s and
//     +sum_s W_s + decay <dS_out, S_in> at the end; then ddt'_s += A sum_{k >= s} dcum_k and
//     dA += sum_s dt'_s sum_{k >= s} dcum_k (cum_k = A sum_{j <= k} dt'_j).
// Kernels, in stream order:
//   1. ChunkLocalKernel, a block per (b, h, c): dS_loc = dOutᵀ diag(e) C and, when the states
//      are not given, S_loc = Xᵀ diag(w dt') B (tensor cores), into f32 workspaces; decay.
//   2. StatePassKernel, a thread per 4 state elements of (b, h) and direction: the forward passing
//      S_in[c + 1] = decay_c S_in[c] + S_loc[c] and the reverse one
//      dS_out[c - 1] = decay_c dS_out[c] + dS_loc[c] (dinitial_state = dS_in[0]), in place, f32.
//   3. ChunkBackwardKernel, a block per (b, h, c), or per (b, g, c) walking the group's heads
//      (grouped, ChunkWorkspace): everything above on tensor cores (operands in the 16-bit type
//      or split TF32 for f32, f32 accumulators): dx, dz, ddt written; dB, dC per-head partials
//      (or, grouped, summed over the heads in shared memory and written); dA, dD, ddt_bias
//      per-chunk partials.
//   4. SsdBackwardReduceKernel (above, not grouped) and SsdParamReduceKernel: the partials summed
//      in a fixed order.
inline constexpr int kChunkThreads = 256;
inline constexpr int kChunkWarps = kChunkThreads / 32;
// ChunkBackwardKernel: 16 warps (its one block per SM, bound by shared memory, hides more
// latency; 128 registers) without z, 8 with z (its extra registers do not fit 16 warps).
__host__ __device__ constexpr int ChunkBackwardThreads(bool has_z) { return has_z ? 256 : 512; }

template <typename T>
using MmaElem = typename ssd::MmaType<T>::Elem;

// acc += A B for the 16 x 16 output tile (tm, tn), depth k_depth. A is row-major (rows of
// `lda`) or, with LA = col_major, stored transposed (A[r][k] at a[k lda + r]); B likewise.
template <typename T, typename LA, typename LB>
__device__ __forceinline__ void TileProduct(typename ssd::Mma<T, LA, LB>::Acc& acc,
                                            const MmaElem<T>* a, int lda, const MmaElem<T>* b,
                                            int ldb, int tm, int tn, int k_depth) {
  using M = ssd::Mma<T, LA, LB>;
  constexpr bool kARow = std::is_same_v<LA, wmma::row_major>;
  constexpr bool kBRow = std::is_same_v<LB, wmma::row_major>;
  for (int k = 0; k < k_depth; k += M::kK) {
    typename M::A fa;
    typename M::B fb;
    M::LoadA(fa, kARow ? a + tm * 16 * lda + k : a + k * lda + tm * 16, lda);
    M::LoadB(fb, kBRow ? b + k * ldb + tn * 16 : b + tn * 16 * ldb + k, ldb);
    M::Step(acc, fa, fb);
  }
}

// Block reduction of one float per thread in a fixed order over kWarps warps; `scratch` holds
// kWarps (<= 16) floats.
// Every thread gets the sum; ends with a barrier.
template <int kWarps = kChunkWarps>
__device__ __forceinline__ float ChunkBlockSum(float v, float* scratch) {
#pragma unroll
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  __syncthreads();
  float r = 0.f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) r += scratch[w];
  __syncthreads();
  return r;
}

// Shared-memory tile pitches (elements) and the byte layout of the two chunk kernels.
struct ChunkLayout {
  int q, P, N;
  int pq, pp, pn;      // operand pitches (q, P, N plus the MmaType padding)
  int fq, fp;          // f32 pitches of the q x q and q x P products
  int fn;              // f32 pitch of the dB / dC sums over a group's heads (grouped blocks)
  size_t x, dout, xs, doute, b, c, state, m, lgd, f0, f1, scal, bytes;  // byte offsets
  size_t sum_db, sum_dc, grouped_bytes;  // grouped blocks: the two q x N sums after `bytes`
  size_t local_bytes;  // ChunkLocalKernel: xs, doute, b, c, scalars

  template <typename T>
  __host__ __device__ static ChunkLayout Make(int q, int P, int N) {
    using E = MmaElem<T>;
    constexpr int kPad = ssd::MmaType<T>::kPad;
    ChunkLayout l;
    l.q = q, l.P = P, l.N = N;
    l.pq = q + kPad, l.pp = P + kPad, l.pn = N + kPad;
    l.fq = q + 4, l.fp = P + 4;
    const int fw = l.fq > l.fp ? l.fq : l.fp;
    ssd::SmemCarve carve;
    l.x = carve.Take(sizeof(E) * q * l.pp);
    l.dout = carve.Take(sizeof(E) * q * l.pp);
    l.xs = carve.Take(sizeof(E) * q * l.pp);
    l.doute = carve.Take(sizeof(E) * q * l.pp);
    l.b = carve.Take(sizeof(E) * q * l.pn);
    l.c = carve.Take(sizeof(E) * q * l.pn);
    l.state = carve.Take(sizeof(E) * P * l.pn);
    l.m = carve.Take(sizeof(E) * q * l.pq);
    l.lgd = carve.Take(sizeof(E) * q * l.pq);
    l.f0 = carve.Take(sizeof(float) * q * fw);
    l.f1 = carve.Take(sizeof(float) * q * fw);
    l.scal = carve.Take(sizeof(float) * (10 * 64 + 2 * 32 + 16));
    l.bytes = carve.bytes;
    l.fn = N + 4;
    l.sum_db = carve.Take(sizeof(float) * q * l.fn);
    l.sum_dc = carve.Take(sizeof(float) * q * l.fn);
    l.grouped_bytes = carve.bytes;
    ssd::SmemCarve local;
    local.Take(sizeof(E) * q * l.pp);  // xs
    local.Take(sizeof(E) * q * l.pp);  // doute
    local.Take(sizeof(E) * q * l.pn);  // b
    local.Take(sizeof(E) * q * l.pn);  // c
    local.Take(sizeof(float) * (10 * 64 + 2 * 32 + 16));
    l.local_bytes = local.bytes;
    return l;
  }
};

// The per-chunk scalars in shared memory (q <= 64 each).
struct ChunkScalars {
  float* dt;    // dt'
  float* cum;   // cumulative dt' A
  int* seg;     // resets so far
  float* e;     // decay from the chunk's start
  float* w;     // decay to the chunk's end
  float* dcum;  // gradient of cum
  float* ddt;   // x-side gradient of dt'
  float* red;   // [32] block-sum scratch
  float* scan_f;
  int* scan_i;

  __device__ static ChunkScalars Carve(float* base) {
    ChunkScalars s;
    s.dt = base;
    s.cum = base + 64;
    s.seg = reinterpret_cast<int*>(base + 128);
    s.e = base + 192;
    s.w = base + 256;
    s.dcum = base + 320;
    s.ddt = base + 384;
    s.red = base + 10 * 64;
    s.scan_f = s.red + 16;
    s.scan_i = reinterpret_cast<int*>(s.scan_f + 32);
    return s;
  }
};

template <typename T>
__device__ __forceinline__ void LoadScalarsWithDecay(const SsdParams& f, int64_t b, int64_t h,
                                                     int64_t c, int q, const ChunkScalars& s) {
  ssd::LoadChunkScalars<T>(f, b, h, c, q, s.dt, s.cum, s.seg, s.scan_f, s.scan_i);
  const float cum_end = s.cum[q - 1];
  const int seg_end = s.seg[q - 1];
  for (int l = threadIdx.x; l < q; l += blockDim.x) {
    s.e[l] = s.seg[l] == 0 ? expf(s.cum[l]) : 0.f;
    s.w[l] = s.seg[l] == seg_end ? expf(cum_end - s.cum[l]) : 0.f;
  }
  __syncthreads();
}

// dout = dy silu(z) (or dy) at (b, t, h, p), f32.
template <typename T, bool kHasZ>
__device__ __forceinline__ float LoadDout(const SsdBackwardParams& bp, int64_t b, int64_t t,
                                          int64_t h, int64_t pp) {
  const SsdParams& f = bp.forward;
  const float dy = Ld<T>(bp.dy, b * bp.dy_stride_b + t * bp.dy_stride_l + h * bp.dy_stride_h + pp);
  if constexpr (kHasZ) {
    return dy * SiluF(Ld<T>(f.z, b * f.z_stride_b + t * f.z_stride_l + h * f.z_stride_h + pp));
  } else {
    return dy;
  }
}

// Staging loops in two phases: every load of kBatch items per thread is issued (into
// registers) before the first shared-memory store, so their memory latencies overlap (the
// compiler cannot move a generic load above a store itself). load(i) -> V, store(i, V).
inline constexpr int kStageBatch = 4;

template <typename V, typename LoadF, typename StoreF>
__device__ __forceinline__ void StageItems(int total, LoadF&& load, StoreF&& store) {
  const int threads = blockDim.x;
  for (int base = 0; base < total; base += kStageBatch * threads) {
    V v[kStageBatch];
#pragma unroll
    for (int k = 0; k < kStageBatch; ++k) {
      const int i = base + threadIdx.x + k * threads;
      if (i < total) v[k] = load(i);
    }
#pragma unroll
    for (int k = 0; k < kStageBatch; ++k) {
      const int i = base + threadIdx.x + k * threads;
      if (i < total) store(i, v[k]);
    }
  }
}

// kV consecutive T at `ptr + off` (one 16-byte read-only load when `vec`); zeros when !valid.
template <typename T, int kV>
__device__ __forceinline__ Vec<T, kV> LoadRun(const void* ptr, int64_t off, bool vec, bool valid) {
  Vec<T, kV> v;
  const T* p = static_cast<const T*>(ptr) + off;
  if (!valid) {
#pragma unroll
    for (int j = 0; j < kV; ++j) v.v[j] = DStore<T>(0.f);
  } else if (vec) {
    const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    v = *reinterpret_cast<const Vec<T, kV>*>(&raw);
  } else {
#pragma unroll
    for (int j = 0; j < kV; ++j) v.v[j] = p[j];
  }
  return v;
}

template <typename T, int kV>
struct XRun {
  Vec<T, kV> x, dy, z;
};

// Stages the chunk's x-like rows: for every (r, p) of the q x P tile, x and dout = dy silu(z)
// (zero past L), handed to `put(r, p0, x[kV], dout[kV])` kV columns at a time.
template <typename T, bool kHasZ, typename Put>
__device__ __forceinline__ void StageXRows(const SsdBackwardParams& bp, int64_t b, int64_t h,
                                           int64_t t0, int q, int P, bool vec, Put&& put) {
  constexpr int kV = 16 / sizeof(T);
  const SsdParams& f = bp.forward;
  const int per_row = P / kV;
  StageItems<XRun<T, kV>>(
      q * per_row,
      [&](int i) {
        const int r = i / per_row, p0 = (i % per_row) * kV;
        const int64_t t = t0 + r;
        const bool valid = t < f.length;
        XRun<T, kV> run;
        run.x = LoadRun<T, kV>(f.x, b * f.x_stride_b + t * f.x_stride_l + h * f.x_stride_h + p0,
                               vec, valid);
        run.dy = LoadRun<T, kV>(bp.dy,
                                b * bp.dy_stride_b + t * bp.dy_stride_l + h * bp.dy_stride_h + p0,
                                vec, valid);
        if constexpr (kHasZ) {
          run.z = LoadRun<T, kV>(f.z, b * f.z_stride_b + t * f.z_stride_l + h * f.z_stride_h + p0,
                                 vec, valid);
        }
        return run;
      },
      [&](int i, const XRun<T, kV>& run) {
        const int r = i / per_row, p0 = (i % per_row) * kV;
        float x[kV], d[kV];
#pragma unroll
        for (int j = 0; j < kV; ++j) {
          x[j] = DLoad(run.x.v[j]);
          d[j] = DLoad(run.dy.v[j]);
          if constexpr (kHasZ) d[j] *= SiluF(DLoad(run.z.v[j]));
        }
        put(r, p0, x, d);
      });
}

template <typename T, int kV>
struct BCRun {
  Vec<T, kV> b, c;
};

// Stages the chunk's B and C rows (q x N, zero past L) as E.
template <typename T, typename E>
__device__ __forceinline__ void StageBC(const SsdParams& f, int64_t b, int64_t g, int64_t t0, int q,
                                        int N, int pitch, bool vec, E* s_b, E* s_c) {
  constexpr int kV = 16 / sizeof(T);
  const int per_row = N / kV;
  StageItems<BCRun<T, kV>>(
      q * per_row,
      [&](int i) {
        const int r = i / per_row, n0 = (i % per_row) * kV;
        const int64_t t = t0 + r;
        const bool valid = t < f.length;
        BCRun<T, kV> run;
        run.b = LoadRun<T, kV>(f.B, b * f.B_stride_b + t * f.B_stride_l + g * f.B_stride_g + n0,
                               vec, valid);
        run.c = LoadRun<T, kV>(f.C, b * f.C_stride_b + t * f.C_stride_l + g * f.C_stride_g + n0,
                               vec, valid);
        return run;
      },
      [&](int i, const BCRun<T, kV>& run) {
        const int r = i / per_row, n0 = (i % per_row) * kV;
#pragma unroll
        for (int j = 0; j < kV; ++j) {
          s_b[r * pitch + n0 + j] = ssd::ToElem<E>(DLoad(run.b.v[j]));
          s_c[r * pitch + n0 + j] = ssd::ToElem<E>(DLoad(run.c.v[j]));
        }
      });
}

struct StateRun {
  float4 v, o;
};

// A contiguous (16-byte aligned) P x N f32 state into an E tile, optionally with
// <state, other> (the per-thread share; zero without `other`).
template <typename E>
__device__ __forceinline__ float StageState(const float* src, const float* other, int P, int N,
                                            int pitch, E* dst) {
  const int per_row = N / 4;
  float dot = 0.f;
  StageItems<StateRun>(
      P * per_row,
      [&](int i) {
        StateRun run;
        run.v = __ldg(reinterpret_cast<const float4*>(src) + i);
        run.o = other != nullptr ? __ldg(reinterpret_cast<const float4*>(other) + i)
                                 : make_float4(0.f, 0.f, 0.f, 0.f);
        return run;
      },
      [&](int i, const StateRun& run) {
        const int r = i / per_row, n0 = (i % per_row) * 4;
        dot += run.v.x * run.o.x + run.v.y * run.o.y + run.v.z * run.o.z + run.v.w * run.o.w;
        E* d = dst + r * pitch + n0;
        d[0] = ssd::ToElem<E>(run.v.x);
        d[1] = ssd::ToElem<E>(run.v.y);
        d[2] = ssd::ToElem<E>(run.v.z);
        d[3] = ssd::ToElem<E>(run.v.w);
      });
  return dot;
}

struct ChunkWorkspace {
  float* states = nullptr;         // (B, nq, H, P, N): S_loc, then S_in (when not given)
  const float* states_in = nullptr;  // S_in for the chunk kernel: `states` or the forward's
  float* dstates = nullptr;        // (B, nq, H, P, N): dS_loc, then dS_out
  float* decay = nullptr;          // (B, H, nq)
  int q = 0;                       // the chunk length of these kernels
  int64_t n_chunks = 0;            // nq
  bool compute_states = false;
  bool vec_x = false;              // 16-byte loads of x, dy, z rows
  bool vec_bc = false;             // 16-byte loads of B, C rows
  // Grouped blocks: a block per (c, g, b) walks the H / G heads of group g, summing dB and dC
  // in shared memory and writing them itself (no per-head partials, B and C staged once);
  // else a block per (c, h, b) and per-head dB / dC partials.
  bool grouped = false;
  Partials part;
};

template <typename T, bool kHasZ>
__global__ void __launch_bounds__(kChunkThreads, 3)
    ChunkLocalKernel(const SsdBackwardParams bp, const ChunkWorkspace ws, const ChunkLayout lay) {
  using E = MmaElem<T>;
  const SsdParams& f = bp.forward;
  const int64_t c = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t H = f.heads, g = h / (H / f.groups);
  const int q = lay.q, P = lay.P, N = lay.N;
  const int64_t t0 = c * q;
  extern __shared__ __align__(128) unsigned char chunk_smem[];
  ssd::SmemCarve carve;
  E* s_xs = reinterpret_cast<E*>(chunk_smem + carve.Take(sizeof(E) * q * lay.pp));
  E* s_doute = reinterpret_cast<E*>(chunk_smem + carve.Take(sizeof(E) * q * lay.pp));
  E* s_b = reinterpret_cast<E*>(chunk_smem + carve.Take(sizeof(E) * q * lay.pn));
  E* s_c = reinterpret_cast<E*>(chunk_smem + carve.Take(sizeof(E) * q * lay.pn));
  const ChunkScalars sc = ChunkScalars::Carve(
      reinterpret_cast<float*>(chunk_smem + carve.Take(sizeof(float) * (10 * 64 + 2 * 32 + 16))));
  LoadScalarsWithDecay<T>(f, b, h, c, q, sc);
  if (threadIdx.x == 0) {
    ws.decay[(b * H + h) * ws.n_chunks + c] = sc.seg[q - 1] == 0 ? expf(sc.cum[q - 1]) : 0.f;
  }
  StageXRows<T, kHasZ>(bp, b, h, t0, q, P, ws.vec_x,
                       [&](int r, int p0, const auto& x, const auto& d) {
                         const float ws_r = ws.compute_states ? sc.w[r] * sc.dt[r] : 0.f;
                         const float e_r = sc.e[r];
#pragma unroll
                         for (int j = 0; j < static_cast<int>(sizeof(x) / sizeof(float)); ++j) {
                           s_xs[r * lay.pp + p0 + j] = ssd::ToElem<E>(x[j] * ws_r);
                           s_doute[r * lay.pp + p0 + j] = ssd::ToElem<E>(d[j] * e_r);
                         }
                       });
  StageBC<T>(f, b, g, t0, q, N, lay.pn, ws.vec_bc, s_b, s_c);
  __syncthreads();
  using MT = ssd::Mma<T, wmma::col_major, wmma::row_major>;
  const int warp = threadIdx.x / 32;
  const int tiles = (P / 16) * (N / 16);
  const int64_t off = ((b * ws.n_chunks + c) * H + h) * static_cast<int64_t>(P) * N;
  for (int tile = warp; tile < tiles; tile += kChunkWarps) {
    const int tm = tile / (N / 16), tn = tile % (N / 16);
    typename MT::Acc acc;
    wmma::fill_fragment(acc, 0.f);
    TileProduct<T, wmma::col_major, wmma::row_major>(acc, s_doute, lay.pp, s_c, lay.pn, tm, tn, q);
    wmma::store_matrix_sync(ws.dstates + off + tm * 16 * N + tn * 16, acc, N, wmma::mem_row_major);
    if (ws.compute_states) {
      wmma::fill_fragment(acc, 0.f);
      TileProduct<T, wmma::col_major, wmma::row_major>(acc, s_xs, lay.pp, s_b, lay.pn, tm, tn, q);
      wmma::store_matrix_sync(ws.states + off + tm * 16 * N + tn * 16, acc, N, wmma::mem_row_major);
    }
  }
}

// Four consecutive state elements e .. e + 3 of (b, h) per thread (P N is a multiple of 4 on the
// chunked path, the workspaces 16-byte aligned), one direction per block (blockIdx.z = 2 b + dir):
// dir 0 the forward passing (when computed), dir 1 the reverse passing, in place. The two
// directions are independent, so they run side by side. (A template only so that each dtype's
// .cu has its own.)
inline constexpr int kPassThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kPassThreads)
    StatePassKernel(const SsdBackwardParams bp, const ChunkWorkspace ws) {
  const SsdParams& f = bp.forward;
  const int64_t H = f.heads, PN = f.head_dim * f.dstate, nq = ws.n_chunks;
  const int64_t h = blockIdx.y, b = blockIdx.z / 2;
  const bool reverse = blockIdx.z % 2 == 1;
  if (!reverse && !ws.compute_states) return;
  const int64_t e = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (e >= PN) return;
  const float* decay = ws.decay + (b * H + h) * nq;
  const int64_t bh_state = (b * H + h) * PN + e;  // contiguous (B, H, P, N)
  const float* start = static_cast<const float*>(reverse ? bp.dfinal_state : f.initial_state);
  float4 run = make_float4(0.f, 0.f, 0.f, 0.f);
  if (start != nullptr) {  // a caller's tensor: element-wise loads (no alignment promise)
    run = make_float4(start[bh_state], start[bh_state + 1], start[bh_state + 2],
                      start[bh_state + 3]);
  }
  float4* s = reinterpret_cast<float4*>((reverse ? ws.dstates : ws.states) +
                                        (b * nq * H + h) * PN + e);
  const int64_t stride = H * PN / 4;  // from chunk c to c + 1, in float4
  // Chunks in groups of kGroup, walked in the direction's order: the group's loads are issued
  // before its stores (independent addresses), so kGroup memory latencies overlap.
  constexpr int kGroup = 8;
  for (int64_t i0 = 0; i0 < nq; i0 += kGroup) {
    float4 local[kGroup];
    float dec[kGroup];
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      const int64_t i = i0 + k, c = reverse ? nq - 1 - i : i;
      const bool in = i < nq;
      local[k] = in ? s[c * stride] : make_float4(0.f, 0.f, 0.f, 0.f);
      dec[k] = in ? decay[c] : 0.f;
    }
#pragma unroll
    for (int k = 0; k < kGroup; ++k) {
      const int64_t i = i0 + k, c = reverse ? nq - 1 - i : i;
      if (i < nq) {
        s[c * stride] = run;
        run.x = fmaf(dec[k], run.x, local[k].x);
        run.y = fmaf(dec[k], run.y, local[k].y);
        run.z = fmaf(dec[k], run.z, local[k].z);
        run.w = fmaf(dec[k], run.w, local[k].w);
      }
    }
  }
  if (reverse && bp.dinitial_state != nullptr) {
    float* d = static_cast<float*>(bp.dinitial_state) + bh_state;
    d[0] = run.x, d[1] = run.y, d[2] = run.z, d[3] = run.w;
  }
}

template <typename T, bool kHasZ>
__global__ void __launch_bounds__(ChunkBackwardThreads(kHasZ))
    ChunkBackwardKernel(const SsdBackwardParams bp, const ChunkWorkspace ws, const ChunkLayout lay) {
  using E = MmaElem<T>;
  using RowRow = wmma::row_major;
  using Col = wmma::col_major;
  const SsdParams& f = bp.forward;
  const int64_t c = blockIdx.x, b = blockIdx.z;
  const int64_t H = f.heads, L = f.length, hpg = H / f.groups, nq = ws.n_chunks;
  const int64_t g = ws.grouped ? blockIdx.y : blockIdx.y / hpg;
  const int q = lay.q, P = lay.P, N = lay.N;
  const int64_t t0 = c * q;
  constexpr int kT = ChunkBackwardThreads(kHasZ), kW = kT / 32;
  const int tid = threadIdx.x, warp = tid / 32;
  extern __shared__ __align__(128) unsigned char chunk_smem[];
  E* s_x = reinterpret_cast<E*>(chunk_smem + lay.x);
  E* s_dout = reinterpret_cast<E*>(chunk_smem + lay.dout);
  E* s_xs = reinterpret_cast<E*>(chunk_smem + lay.xs);
  E* s_doute = reinterpret_cast<E*>(chunk_smem + lay.doute);
  E* s_b = reinterpret_cast<E*>(chunk_smem + lay.b);
  E* s_c = reinterpret_cast<E*>(chunk_smem + lay.c);
  E* s_state = reinterpret_cast<E*>(chunk_smem + lay.state);
  E* s_m = reinterpret_cast<E*>(chunk_smem + lay.m);
  E* s_lgd = reinterpret_cast<E*>(chunk_smem + lay.lgd);
  float* f0 = reinterpret_cast<float*>(chunk_smem + lay.f0);
  float* f1 = reinterpret_cast<float*>(chunk_smem + lay.f1);
  const ChunkScalars sc = ChunkScalars::Carve(reinterpret_cast<float*>(chunk_smem + lay.scal));
  float* sum_db = ws.grouped ? reinterpret_cast<float*>(chunk_smem + lay.sum_db) : nullptr;
  float* sum_dc = ws.grouped ? reinterpret_cast<float*>(chunk_smem + lay.sum_dc) : nullptr;
  const int64_t PN = static_cast<int64_t>(P) * N;
  // B and C are the group's: staged once for all the block's heads.
  StageBC<T>(f, b, g, t0, q, N, lay.pn, ws.vec_bc, s_b, s_c);
  if (ws.grouped) {
    for (int i = tid; i < q * lay.fn; i += blockDim.x) sum_db[i] = sum_dc[i] = 0.f;
  }
  const int64_t h_first = ws.grouped ? g * hpg : blockIdx.y;
  const int64_t h_count = ws.grouped ? hpg : 1;
  for (int64_t h = h_first; h < h_first + h_count; ++h) {
    LoadScalarsWithDecay<T>(f, b, h, c, q, sc);
    const float A = static_cast<const float*>(f.A)[h * f.A_stride];
    const float* Dp = static_cast<const float*>(f.D);
    const int64_t state_off = ((b * nq + c) * H + h) * PN;

    // Stage X, dOut, w dt' X, e dOut, B, C and dS_out.
    StageXRows<T, kHasZ>(bp, b, h, t0, q, P, ws.vec_x,
                         [&](int r, int p0, const auto& x, const auto& d) {
                           const float ws_r = sc.w[r] * sc.dt[r], e_r = sc.e[r];
#pragma unroll
                           for (int j = 0; j < static_cast<int>(sizeof(x) / sizeof(float)); ++j) {
                             const int o = r * lay.pp + p0 + j;
                             s_x[o] = ssd::ToElem<E>(x[j]);
                             s_dout[o] = ssd::ToElem<E>(d[j]);
                             s_xs[o] = ssd::ToElem<E>(x[j] * ws_r);
                             s_doute[o] = ssd::ToElem<E>(d[j] * e_r);
                           }
                         });
    StageState(ws.dstates + state_off, nullptr, P, N, lay.pn, s_state);
    __syncthreads();

    // C Bᵀ -> f0 and G = dOut Xᵀ -> f1 (q x q).
    {
      const int tq = q / 16;
      for (int tile = warp; tile < 2 * tq * tq; tile += kW) {
        const int which = tile / (tq * tq), tm = (tile % (tq * tq)) / tq, tn = tile % tq;
        typename ssd::Mma<T, RowRow, Col>::Acc acc;
        wmma::fill_fragment(acc, 0.f);
        if (which == 0) {
          TileProduct<T, RowRow, Col>(acc, s_c, lay.pn, s_b, lay.pn, tm, tn, N);
          wmma::store_matrix_sync(f0 + tm * 16 * lay.fq + tn * 16, acc, lay.fq,
                                  wmma::mem_row_major);
        } else {
          TileProduct<T, RowRow, Col>(acc, s_dout, lay.pp, s_x, lay.pp, tm, tn, P);
          wmma::store_matrix_sync(f1 + tm * 16 * lay.fq + tn * 16, acc, lay.fq,
                                  wmma::mem_row_major);
        }
      }
    }
    __syncthreads();
    // M = C Bᵀ ∘ Lmask, LGd = G ∘ Lmask ∘ dt'_s; K = M ∘ G ∘ dt'_s kept in f0.
    // A thread per column s (its scalars in registers), rows l = tid / q, + 256 / q, ...
    {
      const int s = tid % q;
      const float cum_s = sc.cum[s], dt_s = sc.dt[s];
      const int seg_s = sc.seg[s];
      for (int l = tid / q; l < q; l += kT / q) {
        float lm = 0.f;
        if (s <= l && seg_s == sc.seg[l]) lm = expf(sc.cum[l] - cum_s);
        const float m = f0[l * lay.fq + s] * lm;
        const float gg = f1[l * lay.fq + s];
        s_m[l * lay.pq + s] = ssd::ToElem<E>(m);
        s_lgd[l * lay.pq + s] = ssd::ToElem<E>(gg * lm * dt_s);
        f0[l * lay.fq + s] = m * gg * dt_s;
      }
    }
    __syncthreads();
    // dcum = rowsum(K) - colsum(K): `tpr` threads per row (and column), then a shuffle tree.
    const int tpr = kT / q;
    {
      const int r = tid / tpr, sub = tid % tpr;
      float row = 0.f, col = 0.f;
      for (int s = sub; s < q; s += tpr) {
        row += f0[r * lay.fq + s];
        col += f0[s * lay.fq + r];
      }
      for (int o = tpr / 2; o > 0; o /= 2) {
        row += __shfl_xor_sync(0xffffffffu, row, o);
        col += __shfl_xor_sync(0xffffffffu, col, o);
      }
      if (sub == 0) sc.dcum[r] = row - col;
    }
    __syncthreads();

    // U1 = Mᵀ dOut -> f1, U2 = B dS_outᵀ -> f0 (q x P); this head's dB = LGdᵀ C + (w dt' X) dS_out.
    const int64_t part_row = (b * ws.part.length + t0) * H + h;  // partial row of position 0
    {
      const int tq = q / 16, tp = P / 16, tnn = N / 16;
      const int n_u = tq * tp;
      for (int tile = warp; tile < 2 * n_u + tq * tnn; tile += kW) {
        if (tile < n_u) {
          const int tm = tile / tp, tn = tile % tp;
          typename ssd::Mma<T, Col, RowRow>::Acc acc;
          wmma::fill_fragment(acc, 0.f);
          TileProduct<T, Col, RowRow>(acc, s_m, lay.pq, s_dout, lay.pp, tm, tn, q);
          wmma::store_matrix_sync(f1 + tm * 16 * lay.fp + tn * 16, acc, lay.fp,
                                  wmma::mem_row_major);
        } else if (tile < 2 * n_u) {
          const int tm = (tile - n_u) / tp, tn = (tile - n_u) % tp;
          typename ssd::Mma<T, RowRow, Col>::Acc acc;
          wmma::fill_fragment(acc, 0.f);
          TileProduct<T, RowRow, Col>(acc, s_b, lay.pn, s_state, lay.pn, tm, tn, N);
          wmma::store_matrix_sync(f0 + tm * 16 * lay.fp + tn * 16, acc, lay.fp,
                                  wmma::mem_row_major);
        } else {
          const int tm = (tile - 2 * n_u) / tnn, tn = (tile - 2 * n_u) % tnn;
          typename ssd::Mma<T, Col, RowRow>::Acc acc;
          float* sum = ws.grouped ? sum_db + tm * 16 * lay.fn + tn * 16 : nullptr;
          if (ws.grouped) {
            wmma::load_matrix_sync(acc, sum, lay.fn, wmma::mem_row_major);
          } else {
            wmma::fill_fragment(acc, 0.f);
          }
          TileProduct<T, Col, RowRow>(acc, s_lgd, lay.pq, s_c, lay.pn, tm, tn, q);
          TileProduct<T, RowRow, RowRow>(acc, s_xs, lay.pp, s_state, lay.pn, tm, tn, P);
          if (ws.grouped) {
            wmma::store_matrix_sync(sum, acc, lay.fn, wmma::mem_row_major);
          } else {
            wmma::store_matrix_sync(ws.part.dB + (part_row + tm * 16 * H) * N + tn * 16, acc,
                                    static_cast<unsigned>(H * N), wmma::mem_row_major);
          }
        }
      }
    }
    __syncthreads();

    // dx, the x-side ddt' and W_s (row sums over p); `tpr` threads share a row.
    const int my_row = tid / tpr, my_sub = tid % tpr;
    {
      float acc_ddt = 0.f, acc_w = 0.f;
      const int r = my_row;
      const int64_t t = t0 + r;
      for (int pp = my_sub; pp < P; pp += tpr) {
        const float x = ssd::FromElem(s_x[r * lay.pp + pp]);
        const float u2 = f0[r * lay.fp + pp];
        const float u = f1[r * lay.fp + pp] + sc.w[r] * u2;
        if (t < L) {
          float dx = sc.dt[r] * u;
          if (Dp != nullptr) {
            // dout: exact in shared memory without z (it is dy); with z recomputed in f32.
            const float dout = kHasZ ? LoadDout<T, kHasZ>(bp, b, t, h, pp)
                                     : ssd::FromElem(s_dout[r * lay.pp + pp]);
            dx += Dp[h * f.D_stride_h + (f.D_per_head_dim ? pp * f.D_stride_p : 0)] * dout;
          }
          St<T>(bp.dx, b * bp.dx_stride_b + t * bp.dx_stride_l + h * bp.dx_stride_h + pp, dx);
        }
        acc_ddt += x * u;
        acc_w += x * u2;
      }
      for (int o = tpr / 2; o > 0; o /= 2) {
        acc_ddt += __shfl_xor_sync(0xffffffffu, acc_ddt, o);
        acc_w += __shfl_xor_sync(0xffffffffu, acc_w, o);
      }
      if (my_sub == 0) {
        sc.ddt[r] = acc_ddt;
        const float wv = sc.w[r] * sc.dt[r] * acc_w;
        sc.dcum[r] -= wv;
        f1[r * lay.fp + P] = wv;  // the pitch's spare column: W_s, summed below
      }
    }
    // M ∘ dt'_s for the recomputed output (dz).
    if constexpr (kHasZ) {
      for (int i = tid; i < q * q; i += blockDim.x) {
        const int l = i / q, s = i % q;
        s_m[l * lay.pq + s] = ssd::ToElem<E>(ssd::FromElem(s_m[l * lay.pq + s]) * sc.dt[s]);
      }
    }
    __syncthreads();
    // Stage S_in over dS_out; Z = decay <dS_out, S_in>; the end's dcum gets sum_s W_s + Z.
    {
      float z = StageState(ws.states_in + state_off, ws.dstates + state_off, P, N, lay.pn, s_state);
      float wsum = 0.f;
      if (warp == 0) {
        for (int s = tid; s < q; s += 32) wsum += f1[s * lay.fp + P];
#pragma unroll
        for (int o = 16; o > 0; o /= 2) wsum += __shfl_xor_sync(0xffffffffu, wsum, o);
      }
      z = ChunkBlockSum<kW>(z, sc.red);  // ends with a barrier
      if (tid == 0) sc.dcum[q - 1] += wsum + sc.e[q - 1] * z;
    }
    __syncthreads();

    // This head's dC = LGd B + (e dOut) S_in; out2 = C S_inᵀ -> f0; out1 = (M dt') X -> f1 (z).
    {
      const int tq = q / 16, tp = P / 16, tnn = N / 16;
      const int n_dc = tq * tnn, n_o = tq * tp;
      const int total = n_dc + n_o + (kHasZ ? n_o : 0);
      for (int tile = warp; tile < total; tile += kW) {
        if (tile < n_dc) {
          const int tm = tile / tnn, tn = tile % tnn;
          typename ssd::Mma<T, RowRow, RowRow>::Acc acc;
          float* sum = ws.grouped ? sum_dc + tm * 16 * lay.fn + tn * 16 : nullptr;
          if (ws.grouped) {
            wmma::load_matrix_sync(acc, sum, lay.fn, wmma::mem_row_major);
          } else {
            wmma::fill_fragment(acc, 0.f);
          }
          TileProduct<T, RowRow, RowRow>(acc, s_lgd, lay.pq, s_b, lay.pn, tm, tn, q);
          TileProduct<T, RowRow, RowRow>(acc, s_doute, lay.pp, s_state, lay.pn, tm, tn, P);
          if (ws.grouped) {
            wmma::store_matrix_sync(sum, acc, lay.fn, wmma::mem_row_major);
          } else {
            wmma::store_matrix_sync(ws.part.dC + (part_row + tm * 16 * H) * N + tn * 16, acc,
                                    static_cast<unsigned>(H * N), wmma::mem_row_major);
          }
        } else if (tile < n_dc + n_o) {
          const int tm = (tile - n_dc) / tp, tn = (tile - n_dc) % tp;
          typename ssd::Mma<T, RowRow, Col>::Acc acc;
          wmma::fill_fragment(acc, 0.f);
          TileProduct<T, RowRow, Col>(acc, s_c, lay.pn, s_state, lay.pn, tm, tn, N);
          wmma::store_matrix_sync(f0 + tm * 16 * lay.fp + tn * 16, acc, lay.fp,
                                  wmma::mem_row_major);
        } else {
          const int tm = (tile - n_dc - n_o) / tp, tn = (tile - n_dc - n_o) % tp;
          typename ssd::Mma<T, RowRow, RowRow>::Acc acc;
          wmma::fill_fragment(acc, 0.f);
          TileProduct<T, RowRow, RowRow>(acc, s_m, lay.pq, s_x, lay.pp, tm, tn, q);
          wmma::store_matrix_sync(f1 + tm * 16 * lay.fp + tn * 16, acc, lay.fp,
                                  wmma::mem_row_major);
        }
      }
    }
    __syncthreads();

    // V_l = (e dOut)_l · out2_l into dcum; dz; dout x into f1 for the dD column sums.
    {
      float acc_v = 0.f;
      const int r = my_row;
      const int64_t t = t0 + r;
      for (int pp = my_sub; pp < P; pp += tpr) {
        const float o2 = f0[r * lay.fp + pp];
        acc_v += ssd::FromElem(s_doute[r * lay.pp + pp]) * o2;
        // x (and dy without z) are exact in shared memory (E holds every value of T).
        const float x = ssd::FromElem(s_x[r * lay.pp + pp]);
        float dout = ssd::FromElem(s_dout[r * lay.pp + pp]);
        if (kHasZ && t < L) {
          const float Dv = Dp != nullptr
                               ? Dp[h * f.D_stride_h + (f.D_per_head_dim ? pp * f.D_stride_p : 0)]
                               : 0.f;
          const float dy =
              Ld<T>(bp.dy, b * bp.dy_stride_b + t * bp.dy_stride_l + h * bp.dy_stride_h + pp);
          {
            const float zv =
                Ld<T>(f.z, b * f.z_stride_b + t * f.z_stride_l + h * f.z_stride_h + pp);
            const float out = f1[r * lay.fp + pp] + sc.e[r] * o2 + Dv * x;
            St<T>(bp.dz, b * bp.dz_stride_b + t * bp.dz_stride_l + h * bp.dz_stride_h + pp,
                  dy * out * SiluGradF(zv));
            dout = dy * SiluF(zv);
          }
        }
        f1[r * lay.fp + pp] = dout * x;
      }
      for (int o = tpr / 2; o > 0; o /= 2) acc_v += __shfl_xor_sync(0xffffffffu, acc_v, o);
      if (my_sub == 0) sc.dcum[r] += acc_v;
    }
    __syncthreads();

    // dD partial (column sums), then ddt, dA and ddt_bias from the reverse cumulative dcum.
    const int64_t prow = (b * nq + c) * H + h;  // partial row of (b, c, h)
    {
      // Threads per column (a power of two, at most kT / P), then a shuffle tree.
      const int tpc = kT / P >= 8 ? 8 : kT / P >= 4 ? 4 : 2;
      const int pp = tid / tpc, sub = tid % tpc;
      float s = 0.f;
      if (pp < P) {
        for (int r = sub; r < q; r += tpc) s += f1[r * lay.fp + pp];
      }
      for (int o = tpc / 2; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
      if (pp < P && sub == 0) ws.part.dD[prow * P + pp] = s;
    }
    if (warp == 0) {
      // Reverse inclusive scan of dcum over q <= 64 positions: two per lane.
      const int lane = tid;
      const int l0 = q - 1 - 2 * lane, l1 = l0 - 1;  // lane 0 takes the end
      float v0 = l0 >= 0 ? sc.dcum[l0] : 0.f, v1 = l1 >= 0 ? sc.dcum[l1] : 0.f;
      float pair = v0 + v1;
      float incl = pair;
#pragma unroll
      for (int o = 1; o < 32; o *= 2) {
        const float u = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += u;
      }
      const float before = incl - pair;  // sum over positions after l0
      const float r0 = before + v0, r1 = r0 + v1;
      const float bias =
          f.dt_bias != nullptr ? static_cast<const float*>(f.dt_bias)[h * f.dt_bias_stride] : 0.f;
      float da = 0.f, dbias = 0.f;
      for (int k = 0; k < 2; ++k) {
        const int l = k == 0 ? l0 : l1;
        const float rev = k == 0 ? r0 : r1;
        if (l < 0) continue;
        const int64_t t = t0 + l;
        da += sc.dt[l] * rev;
        if (t < L) {
          const DtPrime d = ComputeDtPrime(
              Ld<T>(f.dt, b * f.dt_stride_b + t * f.dt_stride_l + h * f.dt_stride_h), bias,
              f.dt_softplus, static_cast<float>(f.dt_min), static_cast<float>(f.dt_max));
          const float ddt = (sc.ddt[l] + A * rev) * d.grad;
          St<T>(bp.ddt, b * bp.ddt_stride_b + t * bp.ddt_stride_l + h * bp.ddt_stride_h, ddt);
          dbias += ddt;
        }
      }
#pragma unroll
      for (int o = 16; o > 0; o /= 2) {
        da += __shfl_xor_sync(0xffffffffu, da, o);
        dbias += __shfl_xor_sync(0xffffffffu, dbias, o);
      }
      if (lane == 0) {
        ws.part.dA[prow] = da;
        ws.part.dbias[prow] = dbias;
      }
    }
    __syncthreads();  // the next head overwrites the scalars and the staged tiles
  }                   // heads

  // Grouped blocks: the dB / dC sums over the group's heads, rounded once.
  if (ws.grouped) {
    for (int i = tid; i < q * N; i += blockDim.x) {
      const int r = i / N, n = i % N;
      const int64_t t = t0 + r;
      if (t >= L) continue;
      St<T>(bp.dB,
            b * bp.dB_stride_b + t * bp.dB_stride_l + g * bp.dB_stride_g + n * bp.dB_stride_n,
            sum_db[r * lay.fn + n]);
      St<T>(bp.dC,
            b * bp.dC_stride_b + t * bp.dC_stride_l + g * bp.dC_stride_g + n * bp.dC_stride_n,
            sum_dc[r * lay.fn + n]);
    }
  }
}

// Whether the chunked kernels take this problem, and with which chunk length.
inline int ChunkedChunkLength(const SsdParams& f, size_t smem_limit, bool f32) {
  if (f.head_dim % 16 != 0 || f.head_dim > 128 || f.dstate % 16 != 0) return 0;
  for (int q = 64; q >= 16; q /= 2) {
    if (q > f.chunk) continue;
    const ChunkLayout lay = f32 ? ChunkLayout::Make<float>(q, static_cast<int>(f.head_dim),
                                                           static_cast<int>(f.dstate))
                                : ChunkLayout::Make<BFloat16>(q, static_cast<int>(f.head_dim),
                                                              static_cast<int>(f.dstate));
    if (lay.bytes <= smem_limit) return q;
  }
  return 0;
}

template <typename T, bool kHasZ>
absl::Status ChunkedBackwardWithZ(const SsdBackwardParams& bp, int q, cudaStream_t stream) {
  const SsdParams& f = bp.forward;
  const int64_t B = f.batch, H = f.heads, P = f.head_dim, N = f.dstate;
  const int64_t nq = SsdNumChunks(f.length, q);
  const ChunkLayout lay = ChunkLayout::Make<T>(q, static_cast<int>(P), static_cast<int>(N));
  Workspace arena;
  ChunkWorkspace ws;
  ws.q = q;
  ws.n_chunks = nq;
  ws.compute_states = !(bp.chunk_states != nullptr && q == f.chunk &&
                         reinterpret_cast<uintptr_t>(bp.chunk_states) % 16 == 0);
  constexpr int64_t kV = 16 / sizeof(T);
  const auto aligned = [&](const void* ptr, std::initializer_list<int64_t> strides) {
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return false;
    for (int64_t st : strides) {
      if (st % kV != 0) return false;
    }
    return true;
  };
  ws.vec_x = aligned(f.x, {f.x_stride_b, f.x_stride_l, f.x_stride_h}) &&
             aligned(bp.dy, {bp.dy_stride_b, bp.dy_stride_l, bp.dy_stride_h}) &&
             (f.z == nullptr || aligned(f.z, {f.z_stride_b, f.z_stride_l, f.z_stride_h}));
  ws.vec_bc = aligned(f.B, {f.B_stride_b, f.B_stride_l, f.B_stride_g}) &&
              aligned(f.C, {f.C_stride_b, f.C_stride_l, f.C_stride_g});
  const int64_t n_states = B * nq * H * P * N;
  LYRA_ASSIGN_OR_RETURN(ws.dstates, arena.Floats(n_states));
  if (ws.compute_states) {
    LYRA_ASSIGN_OR_RETURN(ws.states, arena.Floats(n_states));
    ws.states_in = ws.states;
  } else {
    ws.states_in = static_cast<const float*>(bp.chunk_states);
  }
  LYRA_ASSIGN_OR_RETURN(ws.decay, arena.Floats(B * H * nq));
  // Grouped blocks where they fill the device (a block per SM at these shared-memory sizes) and
  // their two sums fit in shared memory.
  int device = 0, sms = 0, smem_limit = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  ws.grouped = H / f.groups > 1 && B * nq * f.groups >= sms &&
               lay.grouped_bytes <= static_cast<size_t>(smem_limit);
  LYRA_ASSIGN_OR_RETURN(ws.part, AllocatePartials(f, B * nq, nq * q, arena, !ws.grouped));
  const size_t chunk_bytes = ws.grouped ? lay.grouped_bytes : lay.bytes;

  const dim3 grid(static_cast<unsigned>(nq), static_cast<unsigned>(H), static_cast<unsigned>(B));
  const dim3 chunk_grid(static_cast<unsigned>(nq),
                        static_cast<unsigned>(ws.grouped ? f.groups : H),
                        static_cast<unsigned>(B));
  LYRA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(ChunkLocalKernel<T, kHasZ>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(lay.local_bytes)));
  ChunkLocalKernel<T, kHasZ><<<grid, kChunkThreads, lay.local_bytes, stream>>>(bp, ws, lay);
  LYRA_RETURN_IF_ERROR(LastLaunchStatus("ChunkLocalKernel", __FILE__, __LINE__));
  const dim3 pass_grid(static_cast<unsigned>((P * N / 4 + kPassThreads - 1) / kPassThreads),
                       static_cast<unsigned>(H), static_cast<unsigned>(2 * B));
  StatePassKernel<T><<<pass_grid, kPassThreads, 0, stream>>>(bp, ws);
  LYRA_RETURN_IF_ERROR(LastLaunchStatus("StatePassKernel", __FILE__, __LINE__));
  LYRA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(ChunkBackwardKernel<T, kHasZ>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(chunk_bytes)));
  ChunkBackwardKernel<T, kHasZ><<<chunk_grid, ChunkBackwardThreads(kHasZ), chunk_bytes, stream>>>(
      bp, ws, lay);
  LYRA_RETURN_IF_ERROR(LastLaunchStatus("ChunkBackwardKernel", __FILE__, __LINE__));
  return LaunchReduce<T>(bp, ws.part, stream);
}

// The chunked backward where it applies, else the sequential one.
template <typename T>
absl::Status ChunkedBackwardTyped(const SsdBackwardParams& bp, cudaStream_t stream) {
  int device = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  int smem_limit = 0;
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const int q = ChunkedChunkLength(bp.forward, static_cast<size_t>(smem_limit),
                                   std::is_same_v<T, float>);
  if (q == 0) return SequentialBackwardTyped<T>(bp, stream);
  if (bp.forward.z != nullptr) return ChunkedBackwardWithZ<T, true>(bp, q, stream);
  return ChunkedBackwardWithZ<T, false>(bp, q, stream);
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
absl::Status SsdBackwardChunkedFor(float, const SsdBackwardParams& p, cudaStream_t stream);
absl::Status SsdBackwardChunkedFor(Float16, const SsdBackwardParams& p, cudaStream_t stream);
absl::Status SsdBackwardChunkedFor(BFloat16, const SsdBackwardParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_SSD_BACKWARD_KERNELS_CUH_
