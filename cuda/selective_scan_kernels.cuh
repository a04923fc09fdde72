// CUDA kernels of the Mamba-1 selective scan (math in cuda/selective_scan.h), instantiated per
// dtype in selective_scan_{forward,backward}_{float,f16,bf16}.cu.
//
// Design: the scan is sequential in time for each (b, d, n), which costs one exp and three FMAs
// per step; the parallelism is over (b, d, n), which is B * D * N = 196k lanes for Mamba-130M's
// D = 1536 at B = 8, enough to fill an H100 / H200 without a parallel prefix scan over time (a
// scan would double the arithmetic and add shuffles to every step). So:
//   - a block of 128 threads owns kChannels channels of one batch row and one group; each
//     channel is walked by kThreadsPerChannel threads, each holding kStatesPerThread states in
//     registers (N rounded up to a power of two >= 16; padded states have A = B = C = 0);
//   - time goes in chunks of kChunk = 64 steps: u, delta, z (and dy) of the block's channels are
//     staged in shared memory with coalesced 16-byte loads (delta' = softplus(delta + bias) is
//     computed once per element while staging), and B, C of the chunk are staged once and read
//     by every channel of the block (broadcast reads);
//   - a step is: per state a = exp2(delta' A log2e), x = a x + delta' u B, partial y += C x; the
//     partials of a channel are summed by xor shuffles among its threads; y is staged and
//     written coalesced at the end of the chunk;
//   - the forward saves the state entering every chunk, chunk_states (B, D, n_chunks, N) f32.
// Backward, per chunk from the last to the first: pass 1 recomputes the chunk's states from its
// saved state, keeping the state at every sub-chunk of kSub steps in shared memory (and, with z,
// the pre-gate output for dz); pass 2 walks the sub-chunks backwards, recomputes each one's
// states and decay factors into registers and runs the reverse recurrence of the state adjoint
// h (carried in registers across chunks). du, ddelta, dz are staged and written per chunk. dB,
// dC (sums over the channels of a group) are reduced over the channels of a warp by a
// reduce-scatter butterfly of shuffles, over the block's warps through one shared-memory slot per
// warp summed in order every kPartSteps steps, and
// over the group's blocks by a second kernel from per-block partials (fixed order: the result is
// deterministic). dA, dD, ddelta_bias are summed over t in registers, written per (b, d), and
// summed over b by the second kernel. Precision: everything in f32; 16-bit inputs are widened
// when staged and outputs rounded once when written.
#ifndef LYRA_CUDA_SELECTIVE_SCAN_KERNELS_CUH_
#define LYRA_CUDA_SELECTIVE_SCAN_KERNELS_CUH_

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/selective_scan.h"

namespace lyra::cuda {

// Compile-time shape of the kernels for a state size bucket kNPad (16, 32, 64, 128, 256).
template <int kNPad>
struct ScanTraits {
  static constexpr int kThreads = 128;
  static constexpr int kStatesPerThread = kNPad >= 256 ? 8 : 4;
  static constexpr int kThreadsPerChannel = kNPad / kStatesPerThread;
  static constexpr int kChannels = kThreads / kThreadsPerChannel;  // per block
  static constexpr int kChannelsPerWarp = 32 / kThreadsPerChannel;
  static constexpr int kChunk = kSelectiveScanChunk;
  // (channel, t) tiles: rows 16-byte aligned (float4 reads of 4 steps) and 4 banks apart, so
  // the <= 8 channels of a warp read distinct banks.
  static constexpr int kPitch = kChunk + 4;
  static constexpr int kBcPitch = kNPad + 4;    // (t, n) tiles: 16-byte rows
  static constexpr int kSub = 32 / kStatesPerThread;  // backward register sub-chunk
  static constexpr int kNumSub = kChunk / kSub;
  // The dB / dC reduce-scatter over a warp's channels: log2(kChannelsPerWarp) rounds, leaving
  // kScatterValues values in each lane.
  static constexpr int kScatterRounds = kChannelsPerWarp >= 8   ? 3
                                        : kChannelsPerWarp == 4 ? 2
                                        : kChannelsPerWarp == 2 ? 1
                                                                : 0;
  static constexpr int kScatterValues = 2 * kStatesPerThread / kChannelsPerWarp;
  // Steps of dB / dC partials kept in shared memory (one slot per warp, summed in a fixed
  // order: deterministic) before they go to the workspace: a sub-chunk, 2 steps for N = 256.
  static constexpr int kWarps = kThreads / 32;
  static constexpr int kPartSteps = kNPad >= 256 ? 2 : kSub;
  static constexpr int kPartPitch = kPartSteps + 1;

  static_assert(kNPad >= 16 && kNPad <= kSelectiveScanMaxState && (kNPad & (kNPad - 1)) == 0);
  static_assert(kThreadsPerChannel <= 32 && 32 % kThreadsPerChannel == 0);
  static_assert(kScatterValues >= 1, "the butterfly needs a value per round");
  static_assert((1 << kScatterRounds) == kChannelsPerWarp && kChannelsPerWarp <= 8);
  static_assert(kChunk % kSub == 0 && kStatesPerThread % 4 == 0 && kSub % kPartSteps == 0);

  // Shared memory of the forward: delta', u, z, y tiles, B and C tiles, reset flags, biases.
  static constexpr size_t kForwardFloats = 4 * kChannels * kPitch + 2 * kChunk * kBcPitch;
  static constexpr size_t kForwardBytes =
      kForwardFloats * sizeof(float) + (kChunk + kChannels) * sizeof(float);
  // Backward: delta', u, z, dy tiles, B, C, the sub-chunk states and the dB / dC block partials.
  static constexpr size_t kBackwardFloats = 4 * kChannels * kPitch + 2 * kChunk * kBcPitch +
                                            kNumSub * kChannels * kNPad + kWarps * 2 * kNPad * kPartPitch;
  static constexpr size_t kBackwardBytes =
      kBackwardFloats * sizeof(float) + (kChunk + kChannels) * sizeof(float);
};

inline constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float FastExp2(float v) {
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(v));
  return r;
}

// softplus(v) = log(1 + e^v) = max(v, 0) + log1p(w), w = e^-|v| in (0, 1]. log1p goes through
// log1p(w) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = w / (2 + w) in (0, 1/3]: six terms
// leave a relative error below s^12 / 13 <= 1.4e-7 (f32 rounding level) for every v, small
// softplus values included, in ~15 instructions where log1pf costs about twice that (this runs
// once per (channel, step) while staging and was ~15% of the forward's instructions).
__device__ __forceinline__ float SoftplusF(float v) {
  const float w = __expf(-fabsf(v));
  const float s = __fdividef(w, 2.f + w), s2 = s * s;
  float series = fmaf(s2, 1.f / 11.f, 1.f / 9.f);
  series = fmaf(s2, series, 1.f / 7.f);
  series = fmaf(s2, series, 1.f / 5.f);
  series = fmaf(s2, series, 1.f / 3.f);
  series = fmaf(s2, series, 1.f);
  return fmaf(2.f * s, series, fmaxf(v, 0.f));
}

// 1 / (1 + e^-v) with the approximate reciprocal (2 ulp; 0 for v -> -inf, where e^-v = inf).
__device__ __forceinline__ float SigmoidF(float v) { return __fdividef(1.f, 1.f + __expf(-v)); }

// Where a block works: batch row b, group g, channels [d0, d0 + rows) of that group.
struct BlockPlace {
  int64_t b, g, block_in_group, d0;
  int rows;
};

template <int kChannels>
__device__ __forceinline__ BlockPlace PlaceBlock(int64_t dim, int64_t groups) {
  const int64_t per_group = dim / groups;
  const int64_t blocks_per_group = (per_group + kChannels - 1) / kChannels;
  BlockPlace pl;
  pl.b = blockIdx.y;
  pl.g = blockIdx.x / blocks_per_group;
  pl.block_in_group = blockIdx.x % blocks_per_group;
  const int64_t c0 = pl.block_in_group * kChannels;
  pl.rows = static_cast<int>(per_group - c0 < kChannels ? per_group - c0 : kChannels);
  pl.d0 = pl.g * per_group + c0;
  return pl;
}

// Rows [0, kRows) x time [t0, t0 + kChunk) of a (rows, L) operand with unit stride along L,
// staged through registers: Load issues every global load of the tile at once (16-byte loads
// where the rows are aligned; zeros for rows >= rows_valid or t0 + t >= L), so a tile costs one
// memory latency, and the forward issues the next tile's loads before computing this one;
// Store widens to f32 into shared memory: s[row * row_step + t * t_step] = f(row, t, value, in).
template <typename T, int kRows, int kChunk, int kThreads>
struct RowTile {
  static constexpr int kVec = 16 / sizeof(T);
  static constexpr int kVecPerRow = kChunk / kVec;
  static constexpr int kTotal = kRows * kVecPerRow;
  static constexpr int kIters = (kTotal + kThreads - 1) / kThreads;
  static_assert(kChunk % kVec == 0);
  Vec<T, kVec> v[kIters];

  __device__ __forceinline__ void Load(const T* g, int64_t row_stride, int rows_valid, int64_t t0,
                                       int64_t length) {
    const bool aligned = (reinterpret_cast<uintptr_t>(g) % 16 == 0) && (row_stride % kVec == 0);
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int i = threadIdx.x + it * kThreads;
      const int row = i / kVecPerRow, t = (i % kVecPerRow) * kVec;
      const bool row_ok = i < kTotal && row < rows_valid;
      const T* src = g + row * row_stride + t0 + t;
      if (row_ok && aligned && t0 + t + kVec <= length) {
        v[it] = *reinterpret_cast<const Vec<T, kVec>*>(src);
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          v[it].v[j] = (row_ok && t0 + t + j < length) ? src[j] : DStore<T>(0.f);
        }
      }
    }
  }

  template <typename F>
  __device__ __forceinline__ void Store(float* s, int row_step, int t_step, int64_t t0,
                                        int64_t length, F f) const {
#pragma unroll
    for (int it = 0; it < kIters; ++it) {
      const int i = threadIdx.x + it * kThreads;
      if (i >= kTotal) continue;
      const int row = i / kVecPerRow, t = (i % kVecPerRow) * kVec;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        s[row * row_step + (t + j) * t_step] =
            f(row, t + j, static_cast<float>(DLoad(v[it].v[j])), t0 + t + j < length);
      }
    }
  }
};

// Identity transform for RowTile::Store.
struct AsIs {
  __device__ __forceinline__ float operator()(int, int, float v, bool) const { return v; }
};

// B or C of one chunk, (N, L) rows of the group, into the (t, n) tile s[t * bc_pitch + n] (zeros
// for n >= N), 16 rows at a time to bound the registers in flight.
template <typename TB, int kNPad, int kChunk, int kThreads>
__device__ __forceinline__ void StageStateRows(float* s, int bc_pitch, const TB* g,
                                               int64_t stride_n, int64_t dstate, int64_t t0,
                                               int64_t length) {
  constexpr int kRowsAtOnce = 16;
#pragma unroll 1
  for (int r0 = 0; r0 < kNPad; r0 += kRowsAtOnce) {
    RowTile<TB, kRowsAtOnce, kChunk, kThreads> tile;
    tile.Load(g + r0 * stride_n, stride_n, static_cast<int>(dstate - r0), t0, length);
    tile.Store(s + r0, 1, bc_pitch, t0, length, AsIs());
  }
}

// Writes s[row * pitch + t] (rows < rows_valid, t0 + t < L) to a (rows, L) operand with unit L
// stride, rounding to T, 16-byte stores when aligned.
template <typename T, int kRows, int kChunk, int kThreads>
__device__ __forceinline__ void WriteRows(const float* s, int pitch, T* g, int64_t row_stride,
                                          int rows_valid, int64_t t0, int64_t length) {
  constexpr int kVec = 16 / sizeof(T);
  constexpr int kVecPerRow = kChunk / kVec;
  const bool aligned = (reinterpret_cast<uintptr_t>(g) % 16 == 0) && (row_stride % kVec == 0);
  for (int i = threadIdx.x; i < kRows * kVecPerRow; i += kThreads) {
    const int row = i / kVecPerRow, t = (i % kVecPerRow) * kVec;
    if (row >= rows_valid) continue;
    T* dst = g + row * row_stride + t0 + t;
    if (aligned && t0 + t + kVec <= length) {
      Vec<T, kVec> w;
#pragma unroll
      for (int j = 0; j < kVec; ++j) w.v[j] = DStore<T>(s[row * pitch + t + j]);
      *reinterpret_cast<Vec<T, kVec>*>(dst) = w;
    } else {
      for (int j = 0; j < kVec && t0 + t + j < length; ++j) dst[j] = DStore<T>(s[row * pitch + t + j]);
    }
  }
}

// reset[t] = 1 where the state resets before step t0 + t (seq_idx changes), else 0.
template <int kChunk, int kThreads>
__device__ __forceinline__ void StageResets(float* s_reset, const int32_t* seq, int64_t stride_l,
                                            int64_t t0, int64_t length) {
  for (int t = threadIdx.x; t < kChunk; t += kThreads) {
    const int64_t tt = t0 + t;
    bool r = false;
    if (seq != nullptr && tt > 0 && tt < length) r = seq[tt * stride_l] != seq[(tt - 1) * stride_l];
    s_reset[t] = r ? 1.f : 0.f;
  }
}

// kHasSeq: seq_idx is given; without it the step loop has no per-state reset select.
template <typename T, typename TB, int kNPad, bool kHasZ, bool kHasSeq>
__global__ void __launch_bounds__(ScanTraits<kNPad>::kThreads)
    SelectiveScanForwardKernel(const SelectiveScanParams p) {
  using Tr = ScanTraits<kNPad>;
  constexpr int kNpt = Tr::kStatesPerThread, kTpc = Tr::kThreadsPerChannel;
  constexpr int kCb = Tr::kChannels, kT = Tr::kChunk, kP = Tr::kPitch, kBp = Tr::kBcPitch;
  extern __shared__ float4 smem4[];
  float* s_delta = reinterpret_cast<float*>(smem4);  // (kCb, kP)
  float* s_u = s_delta + kCb * kP;                   // (kCb, kP)
  float* s_z = s_u + kCb * kP;                       // (kCb, kP): silu(z)
  float* s_y = s_z + kCb * kP;                       // (kCb, kP)
  float* s_B = s_y + kCb * kP;                       // (kT, kBp)
  float* s_C = s_B + kT * kBp;                       // (kT, kBp)
  float* s_reset = s_C + kT * kBp;                   // (kT,)
  float* s_bias = s_reset + kT;                      // (kCb,)

  const BlockPlace pl = PlaceBlock<kCb>(p.dim, p.groups);
  const int c = threadIdx.x / kTpc, s = threadIdx.x % kTpc;
  const bool active = c < pl.rows;
  const int64_t d = pl.d0 + (active ? c : 0), b = pl.b, N = p.dstate;
  const float* A = static_cast<const float*>(p.A);
  const float* init = static_cast<const float*>(p.initial_state);
  float A2[kNpt], x[kNpt];
#pragma unroll
  for (int i = 0; i < kNpt; ++i) {
    const int64_t n = s * kNpt + i;
    const bool on = active && n < N;
    A2[i] = on ? A[d * p.A_stride_d + n * p.A_stride_n] * kLog2e : 0.f;
    x[i] = (on && init != nullptr)
               ? init[b * p.initial_state_stride_b + d * p.initial_state_stride_d +
                      n * p.initial_state_stride_n]
               : 0.f;
  }
  const float skip = (active && p.D != nullptr) ? static_cast<const float*>(p.D)[d * p.D_stride] : 0.f;
  if (threadIdx.x < kCb) {
    s_bias[threadIdx.x] = (p.delta_bias != nullptr && threadIdx.x < pl.rows)
                              ? static_cast<const float*>(p.delta_bias)[(pl.d0 + threadIdx.x) *
                                                                        p.delta_bias_stride]
                              : 0.f;
  }
  const T* u_blk = static_cast<const T*>(p.u) + b * p.u_stride_b + pl.d0 * p.u_stride_d;
  const T* delta_blk =
      static_cast<const T*>(p.delta) + b * p.delta_stride_b + pl.d0 * p.delta_stride_d;
  const T* z_blk = kHasZ ? static_cast<const T*>(p.z) + b * p.z_stride_b + pl.d0 * p.z_stride_d
                         : nullptr;
  const TB* B_blk = static_cast<const TB*>(p.B) + b * p.B_stride_b + pl.g * p.B_stride_g;
  const TB* C_blk = static_cast<const TB*>(p.C) + b * p.C_stride_b + pl.g * p.C_stride_g;
  const int32_t* seq = p.seq_idx != nullptr ? p.seq_idx + b * p.seq_idx_stride_b : nullptr;
  const int64_t L = p.length, n_chunks = (L + kSelectiveScanChunk - 1) / kSelectiveScanChunk;
  const bool softplus = p.delta_softplus;
  float* chunk_states = static_cast<float*>(p.chunk_states);

  // The (channel, t) tiles of chunk 0 are loaded here; each iteration then issues the next
  // chunk's loads before its steps. B and C tiles are prefetched too for N <= 32 (for larger N
  // they would take too many registers and are loaded after the barrier).
  constexpr bool kPrefetchBC = kNPad <= 32;
  using RowsT = RowTile<T, kCb, kT, Tr::kThreads>;
  using RowsB = RowTile<TB, kNPad, kT, Tr::kThreads>;
  RowsT t_delta, t_u, t_z;
  RowsB t_B, t_C;
  const auto load = [&](int64_t t0) {
    t_delta.Load(delta_blk, p.delta_stride_d, pl.rows, t0, L);
    t_u.Load(u_blk, p.u_stride_d, pl.rows, t0, L);
    if constexpr (kHasZ) t_z.Load(z_blk, p.z_stride_d, pl.rows, t0, L);
    if constexpr (kPrefetchBC) {
      t_B.Load(B_blk, p.B_stride_n, static_cast<int>(N), t0, L);
      t_C.Load(C_blk, p.C_stride_n, static_cast<int>(N), t0, L);
    }
  };
  load(0);
  // Steps go in groups of kG: the y partials of a group are summed over the channel's threads
  // by a reduce-scatter (log2 kG shuffle rounds for kG values) after which thread s holds the
  // total of step index_base(s) of the group, then a butterfly over the remaining threads.
  constexpr int kG = kTpc < 8 ? kTpc : 8;
  constexpr int kGRounds = kG == 8 ? 3 : kG == 4 ? 2 : kG == 2 ? 1 : 0;
  static_assert((1 << kGRounds) == kG && kG % 4 == 0);

  for (int64_t k = 0; k < n_chunks; ++k) {
    const int64_t t0 = k * kT;
    if (chunk_states != nullptr && active) {
#pragma unroll
      for (int i = 0; i < kNpt; ++i) {
        const int64_t n = s * kNpt + i;
        if (n < N) chunk_states[((b * p.dim + d) * n_chunks + k) * N + n] = x[i];
      }
    }
    __syncthreads();  // the previous chunk's steps and y writes are done with shared memory
    t_delta.Store(s_delta, kP, 1, t0, L, [&](int row, int, float v, bool in) {
      v += s_bias[row];
      return in ? (softplus ? SoftplusF(v) : v) : 0.f;
    });
    t_u.Store(s_u, kP, 1, t0, L, AsIs());
    if constexpr (kHasZ) {
      t_z.Store(s_z, kP, 1, t0, L, [](int, int, float v, bool) { return v * SigmoidF(v); });
    }
    if constexpr (kPrefetchBC) {
      t_B.Store(s_B, 1, kBp, t0, L, AsIs());
      t_C.Store(s_C, 1, kBp, t0, L, AsIs());
    } else {
      StageStateRows<TB, kNPad, kT, Tr::kThreads>(s_B, kBp, B_blk, p.B_stride_n, N, t0, L);
      StageStateRows<TB, kNPad, kT, Tr::kThreads>(s_C, kBp, C_blk, p.C_stride_n, N, t0, L);
    }
    if constexpr (kHasSeq) StageResets<kT, Tr::kThreads>(s_reset, seq, p.seq_idx_stride_l, t0, L);
    __syncthreads();
    if (k + 1 < n_chunks) load(t0 + kT);

#pragma unroll 1
    for (int tg = 0; tg < kT; tg += kG) {
      float yp[kG], dlv[kG], uv[kG], rv[kG];
#pragma unroll
      for (int q = 0; q < kG; q += 4) {
        const float4 d4 = *reinterpret_cast<const float4*>(&s_delta[c * kP + tg + q]);
        const float4 u4 = *reinterpret_cast<const float4*>(&s_u[c * kP + tg + q]);
        dlv[q] = d4.x, dlv[q + 1] = d4.y, dlv[q + 2] = d4.z, dlv[q + 3] = d4.w;
        uv[q] = u4.x, uv[q + 1] = u4.y, uv[q + 2] = u4.z, uv[q + 3] = u4.w;
        if constexpr (kHasSeq) {
          const float4 r4 = *reinterpret_cast<const float4*>(&s_reset[tg + q]);
          rv[q] = r4.x, rv[q + 1] = r4.y, rv[q + 2] = r4.z, rv[q + 3] = r4.w;
        }
      }
#pragma unroll
      for (int q = 0; q < kG; ++q) {
        const int t = tg + q;
        const float dl = dlv[q];
        const bool reset = kHasSeq && rv[q] != 0.f;
        const float dlu = dl * uv[q];
        float Bv[kNpt], Cv[kNpt];
#pragma unroll
        for (int i = 0; i < kNpt; i += 4) {
          const float4 b4 = *reinterpret_cast<const float4*>(&s_B[t * kBp + s * kNpt + i]);
          const float4 c4 = *reinterpret_cast<const float4*>(&s_C[t * kBp + s * kNpt + i]);
          Bv[i] = b4.x, Bv[i + 1] = b4.y, Bv[i + 2] = b4.z, Bv[i + 3] = b4.w;
          Cv[i] = c4.x, Cv[i + 1] = c4.y, Cv[i + 2] = c4.z, Cv[i + 3] = c4.w;
        }
        yp[q] = 0.f;
#pragma unroll
        for (int i = 0; i < kNpt; ++i) {
          float a = FastExp2(dl * A2[i]);
          if constexpr (kHasSeq) a = reset ? 0.f : a;
          x[i] = fmaf(a, x[i], dlu * Bv[i]);
          yp[q] = fmaf(Cv[i], x[i], yp[q]);
        }
      }
      int index_base = 0;
#pragma unroll
      for (int r = 0; r < kGRounds; ++r) {
        const int half = kG >> (r + 1), o = 1 << r;
        const bool bit = (s >> r) & 1;
#pragma unroll
        for (int q = 0; q < half; ++q) {
          const float send = bit ? yp[q] : yp[q + half];
          const float keep = bit ? yp[q + half] : yp[q];
          yp[q] = keep + __shfl_xor_sync(0xffffffffu, send, o);
        }
        if (bit) index_base += half;
      }
#pragma unroll
      for (int o = kG; o < kTpc; o *= 2) yp[0] += __shfl_xor_sync(0xffffffffu, yp[0], o);
      if (s < kG) {
        const int t = tg + index_base;
        float out = fmaf(skip, s_u[c * kP + t], yp[0]);
        if constexpr (kHasZ) out *= s_z[c * kP + t];
        s_y[c * kP + t] = out;
      }
    }
    __syncthreads();
    if (p.y != nullptr) {
      WriteRows<T, kCb, kT, Tr::kThreads>(
          s_y, kP, static_cast<T*>(p.y) + b * p.y_stride_b + pl.d0 * p.y_stride_d, p.y_stride_d,
          pl.rows, t0, L);
    }
  }
  if (p.final_state != nullptr && active) {
    float* fs = static_cast<float*>(p.final_state);
#pragma unroll
    for (int i = 0; i < kNpt; ++i) {
      const int64_t n = s * kNpt + i;
      if (n < N) {
        fs[b * p.final_state_stride_b + d * p.final_state_stride_d + n * p.final_state_stride_n] =
            x[i];
      }
    }
  }
}

// Workspace of the backward's second stage (f32, written by the scan kernel, summed by
// SelectiveScanReduceKernel): bc (blocks_per_group, B, G, 2, N, L) per-block dB / dC partials;
// dA (B, D, N); dD and ddelta_bias (B, D).
struct ScanBackwardWorkspace {
  float* bc = nullptr;
  float* dA = nullptr;
  float* dD = nullptr;
  float* dbias = nullptr;
};

// kHasSeq: seq_idx is given; without it neither pass has a per-state reset select.
template <typename T, typename TB, int kNPad, bool kHasZ, bool kHasSeq>
__global__ void __launch_bounds__(ScanTraits<kNPad>::kThreads)
    SelectiveScanBackwardKernel(const SelectiveScanBackwardParams bp,
                                const ScanBackwardWorkspace ws) {
  using Tr = ScanTraits<kNPad>;
  constexpr int kNpt = Tr::kStatesPerThread, kTpc = Tr::kThreadsPerChannel;
  constexpr int kCb = Tr::kChannels, kT = Tr::kChunk, kP = Tr::kPitch, kBp = Tr::kBcPitch;
  constexpr int kSub = Tr::kSub, kNumSub = Tr::kNumSub, kV = 2 * kNpt;
  const SelectiveScanParams& p = bp.forward;
  extern __shared__ float4 smem4[];
  float* s_delta = reinterpret_cast<float*>(smem4);  // (kCb, kP): delta', then ddelta
  float* s_u = s_delta + kCb * kP;                   // (kCb, kP): u, then du
  float* s_z = s_u + kCb * kP;                       // (kCb, kP): z, then dz
  float* s_dy = s_z + kCb * kP;                      // (kCb, kP): dy, then dout
  float* s_B = s_dy + kCb * kP;                      // (kT, kBp)
  float* s_C = s_B + kT * kBp;                       // (kT, kBp)
  float* s_xb = s_C + kT * kBp;                      // (kNumSub, kCb, kNPad)
  float* s_part = s_xb + kNumSub * kCb * kNPad;  // (kWarps, 2, kNPad, kPartPitch): dB, dC
  float* s_reset = s_part + Tr::kWarps * 2 * kNPad * Tr::kPartPitch;  // (kT,)
  float* s_bias = s_reset + kT;                      // (kCb,)

  const BlockPlace pl = PlaceBlock<kCb>(p.dim, p.groups);
  const int c = threadIdx.x / kTpc, s = threadIdx.x % kTpc;
  const int lane = threadIdx.x % 32, cw = lane / kTpc;  // channel within the warp
  const bool active = c < pl.rows;
  const int64_t d = pl.d0 + (active ? c : 0), b = pl.b, N = p.dstate, L = p.length;
  const int64_t n_chunks = (L + kSelectiveScanChunk - 1) / kSelectiveScanChunk;
  const float* A = static_cast<const float*>(p.A);
  float A2[kNpt], An[kNpt], carry[kNpt], dA_acc[kNpt];
#pragma unroll
  for (int i = 0; i < kNpt; ++i) {
    const int64_t n = s * kNpt + i;
    const bool on = active && n < N;
    An[i] = on ? A[d * p.A_stride_d + n * p.A_stride_n] : 0.f;
    A2[i] = An[i] * kLog2e;
    carry[i] = (on && bp.dfinal_state != nullptr)
                   ? static_cast<const float*>(bp.dfinal_state)[b * bp.dfinal_state_stride_b +
                                                                d * bp.dfinal_state_stride_d +
                                                                n * bp.dfinal_state_stride_n]
                   : 0.f;
    dA_acc[i] = 0.f;
  }
  const float skip = (active && p.D != nullptr) ? static_cast<const float*>(p.D)[d * p.D_stride] : 0.f;
  float dD_acc = 0.f, dbias_acc = 0.f;
  if (threadIdx.x < kCb) {
    s_bias[threadIdx.x] = (p.delta_bias != nullptr && threadIdx.x < pl.rows)
                              ? static_cast<const float*>(p.delta_bias)[(pl.d0 + threadIdx.x) *
                                                                        p.delta_bias_stride]
                              : 0.f;
  }
  const T* u_blk = static_cast<const T*>(p.u) + b * p.u_stride_b + pl.d0 * p.u_stride_d;
  const T* delta_blk =
      static_cast<const T*>(p.delta) + b * p.delta_stride_b + pl.d0 * p.delta_stride_d;
  const T* z_blk = kHasZ ? static_cast<const T*>(p.z) + b * p.z_stride_b + pl.d0 * p.z_stride_d
                         : nullptr;
  const T* dy_blk = static_cast<const T*>(bp.dy) + b * bp.dy_stride_b + pl.d0 * bp.dy_stride_d;
  const TB* B_blk = static_cast<const TB*>(p.B) + b * p.B_stride_b + pl.g * p.B_stride_g;
  const TB* C_blk = static_cast<const TB*>(p.C) + b * p.C_stride_b + pl.g * p.C_stride_g;
  const int32_t* seq = p.seq_idx != nullptr ? p.seq_idx + b * p.seq_idx_stride_b : nullptr;
  const bool softplus = p.delta_softplus;
  const float* chunk_states = static_cast<const float*>(bp.chunk_states);
  float* part = ws.bc + ((pl.block_in_group * p.batch + b) * p.groups + pl.g) * 2 * N * L;
  __syncthreads();  // s_bias

  for (int64_t k = n_chunks - 1; k >= 0; --k) {
    const int64_t t0 = k * kT;
    const int valid = static_cast<int>(L - t0 < kT ? L - t0 : kT);
    {
      // Every load of the chunk in flight at once, then the shared-memory stores.
      RowTile<T, kCb, kT, Tr::kThreads> t_delta, t_u, t_z, t_dy;
      t_delta.Load(delta_blk, p.delta_stride_d, pl.rows, t0, L);
      t_u.Load(u_blk, p.u_stride_d, pl.rows, t0, L);
      if constexpr (kHasZ) t_z.Load(z_blk, p.z_stride_d, pl.rows, t0, L);
      t_dy.Load(dy_blk, bp.dy_stride_d, pl.rows, t0, L);
      t_delta.Store(s_delta, kP, 1, t0, L, [&](int row, int, float v, bool in) {
        v += s_bias[row];
        return in ? (softplus ? SoftplusF(v) : v) : 0.f;
      });
      t_u.Store(s_u, kP, 1, t0, L, AsIs());
      if constexpr (kHasZ) t_z.Store(s_z, kP, 1, t0, L, AsIs());
      t_dy.Store(s_dy, kP, 1, t0, L, AsIs());
      StageStateRows<TB, kNPad, kT, Tr::kThreads>(s_B, kBp, B_blk, p.B_stride_n, N, t0, L);
      StageStateRows<TB, kNPad, kT, Tr::kThreads>(s_C, kBp, C_blk, p.C_stride_n, N, t0, L);
    }
    if constexpr (kHasSeq) StageResets<kT, Tr::kThreads>(s_reset, seq, p.seq_idx_stride_l, t0, L);
    __syncthreads();

    // Pass 1: the chunk's states from its saved entry state; the state entering every
    // sub-chunk goes to s_xb (read back only by this thread); with z, dout and dz.
    float x[kNpt];
#pragma unroll
    for (int i = 0; i < kNpt; ++i) {
      const int64_t n = s * kNpt + i;
      x[i] = (active && n < N) ? chunk_states[((b * p.dim + d) * n_chunks + k) * N + n] : 0.f;
    }
#pragma unroll 1
    for (int j = 0; j < kNumSub; ++j) {
#pragma unroll
      for (int i = 0; i < kNpt; ++i) s_xb[(j * kCb + c) * kNPad + s * kNpt + i] = x[i];
#pragma unroll
      for (int kk = 0; kk < kSub; ++kk) {
        const int t = j * kSub + kk;
        const float dl = s_delta[c * kP + t], u = s_u[c * kP + t];
        const bool reset = kHasSeq && s_reset[t] != 0.f;
        const float dlu = dl * u;
        float yp = 0.f;
#pragma unroll
        for (int i = 0; i < kNpt; ++i) {
          float a = FastExp2(dl * A2[i]);
          if constexpr (kHasSeq) a = reset ? 0.f : a;
          x[i] = fmaf(a, x[i], dlu * s_B[t * kBp + s * kNpt + i]);
          if constexpr (kHasZ) yp = fmaf(s_C[t * kBp + s * kNpt + i], x[i], yp);
        }
        if constexpr (kHasZ) {
#pragma unroll
          for (int o = kTpc / 2; o > 0; o /= 2) yp += __shfl_xor_sync(0xffffffffu, yp, o);
          if (s == 0) {
            const float out = fmaf(skip, u, yp);
            const float z = s_z[c * kP + t], sg = SigmoidF(z), dy = s_dy[c * kP + t];
            s_dy[c * kP + t] = dy * z * sg;
            s_z[c * kP + t] = dy * out * sg * (1.f + z * (1.f - sg));
          }
        }
      }
    }
    __syncthreads();

    // Pass 2: the sub-chunks backwards.
#pragma unroll 1
    for (int j = kNumSub - 1; j >= 0; --j) {
      float xs[kNpt], xh[kSub][kNpt], ah[kSub][kNpt];
#pragma unroll
      for (int i = 0; i < kNpt; ++i) xs[i] = s_xb[(j * kCb + c) * kNPad + s * kNpt + i];
      float dlv[kSub], uv[kSub], rv[kSub];
#pragma unroll
      for (int q = 0; q < kSub; q += 4) {
        const int t = j * kSub + q;
        const float4 d4 = *reinterpret_cast<const float4*>(&s_delta[c * kP + t]);
        const float4 u4 = *reinterpret_cast<const float4*>(&s_u[c * kP + t]);
        dlv[q] = d4.x, dlv[q + 1] = d4.y, dlv[q + 2] = d4.z, dlv[q + 3] = d4.w;
        uv[q] = u4.x, uv[q + 1] = u4.y, uv[q + 2] = u4.z, uv[q + 3] = u4.w;
        if constexpr (kHasSeq) {
          const float4 r4 = *reinterpret_cast<const float4*>(&s_reset[t]);
          rv[q] = r4.x, rv[q + 1] = r4.y, rv[q + 2] = r4.z, rv[q + 3] = r4.w;
        }
      }
#pragma unroll
      for (int kk = 0; kk < kSub; ++kk) {
        const int t = j * kSub + kk;
        const float dl = dlv[kk], dlu = dl * uv[kk];
        const bool reset = kHasSeq && rv[kk] != 0.f;
#pragma unroll
        for (int i = 0; i < kNpt; ++i) {
          ah[kk][i] = FastExp2(dl * A2[i]);
          if constexpr (kHasSeq) ah[kk][i] = reset ? 0.f : ah[kk][i];
          xh[kk][i] = fmaf(ah[kk][i], kk == 0 ? xs[i] : xh[kk - 1][i],
                           dlu * s_B[t * kBp + s * kNpt + i]);
        }
      }
#pragma unroll
      for (int kk = kSub - 1; kk >= 0; --kk) {
        const int t = j * kSub + kk;
        const float dl = s_delta[c * kP + t], u = s_u[c * kP + t], dout = s_dy[c * kP + t];
        float Bv[kNpt], Cv[kNpt];
#pragma unroll
        for (int i = 0; i < kNpt; i += 4) {
          const float4 b4 = *reinterpret_cast<const float4*>(&s_B[t * kBp + s * kNpt + i]);
          const float4 c4 = *reinterpret_cast<const float4*>(&s_C[t * kBp + s * kNpt + i]);
          Bv[i] = b4.x, Bv[i + 1] = b4.y, Bv[i + 2] = b4.z, Bv[i + 3] = b4.w;
          Cv[i] = c4.x, Cv[i + 1] = c4.y, Cv[i + 2] = c4.z, Cv[i + 3] = c4.w;
        }
        float du_p = 0.f, dd_p = 0.f, v[kV];
        const float dlu = dl * u;
#pragma unroll
        for (int i = 0; i < kNpt; ++i) {
          const float h = fmaf(dout, Cv[i], carry[i]);
          const float x_prev = kk == 0 ? xs[i] : xh[kk - 1][i];
          const float xa = x_prev * ah[kk][i];
          du_p = fmaf(h, Bv[i], du_p);
          dd_p = fmaf(h, fmaf(Bv[i], u, xa * An[i]), dd_p);
          dA_acc[i] = fmaf(h * xa, dl, dA_acc[i]);
          v[i] = h * dlu;
          v[kNpt + i] = dout * xh[kk][i];
          carry[i] = ah[kk][i] * h;
        }
#pragma unroll
        for (int o = kTpc / 2; o > 0; o /= 2) {
          du_p += __shfl_xor_sync(0xffffffffu, du_p, o);
          dd_p += __shfl_xor_sync(0xffffffffu, dd_p, o);
        }
        // Reduce-scatter of v over the warp's channels: each round halves the values a lane
        // keeps; afterwards v[j] (j < kScatterValues) is value j + sum_r bit_r * (kV >> (r+1))
        // summed over the warp's channels, bit_r being bit r of the lane's channel cw.
        int index_base = 0;
#pragma unroll
        for (int r = 0; r < Tr::kScatterRounds; ++r) {
          const int half = kV >> (r + 1), o = kTpc << r;
          const bool bit = (cw >> r) & 1;
#pragma unroll
          for (int q = 0; q < half; ++q) {
            const float send = bit ? v[q] : v[q + half];
            const float keep = bit ? v[q + half] : v[q];
            v[q] = keep + __shfl_xor_sync(0xffffffffu, send, o);
          }
          if (bit) index_base += half;
        }
        // Every (which, n) of this warp's slot is written once per step.
        const int tp = t % Tr::kPartSteps, warp = threadIdx.x / 32;
#pragma unroll
        for (int q = 0; q < Tr::kScatterValues; ++q) {
          const int orig = index_base + q;  // < kV
          const int which = orig / kNpt, n = s * kNpt + orig % kNpt;
          s_part[((warp * 2 + which) * kNPad + n) * Tr::kPartPitch + tp] = v[q];
        }
        if (s == 0 && active && t < valid) {
          const float du = fmaf(dout, skip, dl * du_p);
          const float dd = softplus ? dd_p * -expm1f(-dl) : dd_p;
          s_u[c * kP + t] = du;
          s_delta[c * kP + t] = dd;
          dD_acc = fmaf(dout, u, dD_acc);
          dbias_acc += dd;
        }
        if (kk % Tr::kPartSteps == 0) {
          // Steps [t, t + kPartSteps) are done: the block's dB / dC partial of them, the warps'
          // slots summed in order, to ws.bc.
          __syncthreads();
          for (int i = threadIdx.x; i < 2 * kNPad * Tr::kPartSteps; i += Tr::kThreads) {
            const int row = i / Tr::kPartSteps, tp = i % Tr::kPartSteps;
            const int which = row / kNPad, n = row % kNPad;
            if (n < N && t + tp < valid) {
              float acc = 0.f;
#pragma unroll
              for (int w = 0; w < Tr::kWarps; ++w) {
                acc += s_part[(w * 2 * kNPad + row) * Tr::kPartPitch + tp];
              }
              part[(which * N + n) * L + t0 + t + tp] = acc;
            }
          }
          __syncthreads();
        }
      }
    }
    WriteRows<T, kCb, kT, Tr::kThreads>(
        s_u, kP, static_cast<T*>(bp.du) + b * bp.du_stride_b + pl.d0 * bp.du_stride_d,
        bp.du_stride_d, pl.rows, t0, L);
    WriteRows<T, kCb, kT, Tr::kThreads>(
        s_delta, kP,
        static_cast<T*>(bp.ddelta) + b * bp.ddelta_stride_b + pl.d0 * bp.ddelta_stride_d,
        bp.ddelta_stride_d, pl.rows, t0, L);
    if constexpr (kHasZ) {
      WriteRows<T, kCb, kT, Tr::kThreads>(
          s_z, kP, static_cast<T*>(bp.dz) + b * bp.dz_stride_b + pl.d0 * bp.dz_stride_d,
          bp.dz_stride_d, pl.rows, t0, L);
    }
    __syncthreads();
  }

  if (active) {
#pragma unroll
    for (int i = 0; i < kNpt; ++i) {
      const int64_t n = s * kNpt + i;
      if (n >= N) continue;
      ws.dA[(b * p.dim + d) * N + n] = dA_acc[i];
      if (bp.dinitial_state != nullptr) {
        static_cast<float*>(bp.dinitial_state)[b * bp.dinitial_state_stride_b +
                                               d * bp.dinitial_state_stride_d +
                                               n * bp.dinitial_state_stride_n] = carry[i];
      }
    }
    if (s == 0) {
      ws.dD[b * p.dim + d] = dD_acc;
      ws.dbias[b * p.dim + d] = dbias_acc;
    }
  }
}

// Second stage of the backward: dB / dC summed over the group's channel blocks, and dA, dD,
// ddelta_bias summed over the batch, in a fixed order. One thread per output element.
template <typename TB>
__global__ void SelectiveScanReduceKernel(const SelectiveScanBackwardParams bp,
                                          const ScanBackwardWorkspace ws,
                                          int64_t blocks_per_group) {
  const SelectiveScanParams& p = bp.forward;
  const int64_t N = p.dstate, L = p.length, G = p.groups;
  const int64_t n_bc = p.batch * G * 2 * N * L, n_dA = p.dim * N;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n_bc) {
    float acc = 0.f;
    for (int64_t k = 0; k < blocks_per_group; ++k) acc += ws.bc[k * n_bc + i];
    const int64_t t = i % L, n = (i / L) % N, which = (i / (L * N)) % 2, g = (i / (2 * L * N)) % G,
                  b = i / (2 * L * N * G);
    if (which == 0) {
      static_cast<TB*>(bp.dB)[b * bp.dB_stride_b + g * bp.dB_stride_g + n * bp.dB_stride_n +
                              t * bp.dB_stride_l] = DStore<TB>(acc);
    } else {
      static_cast<TB*>(bp.dC)[b * bp.dC_stride_b + g * bp.dC_stride_g + n * bp.dC_stride_n +
                              t * bp.dC_stride_l] = DStore<TB>(acc);
    }
  } else if (i < n_bc + n_dA) {
    const int64_t j = i - n_bc, d = j / N, n = j % N;
    float acc = 0.f;
    for (int64_t b = 0; b < p.batch; ++b) acc += ws.dA[(b * p.dim + d) * N + n];
    static_cast<float*>(bp.dA)[d * bp.dA_stride_d + n * bp.dA_stride_n] = acc;
  } else if (i < n_bc + n_dA + p.dim) {
    const int64_t d = i - n_bc - n_dA;
    float dD = 0.f, dbias = 0.f;
    for (int64_t b = 0; b < p.batch; ++b) {
      dD += ws.dD[b * p.dim + d];
      dbias += ws.dbias[b * p.dim + d];
    }
    if (bp.dD != nullptr) static_cast<float*>(bp.dD)[d * bp.dD_stride] = dD;
    if (bp.ddelta_bias != nullptr) {
      static_cast<float*>(bp.ddelta_bias)[d * bp.ddelta_bias_stride] = dbias;
    }
  }
}

// The runtime choices as template arguments: the state bucket and whether z is given.
template <typename Fn>
absl::Status DispatchScanShape(int64_t dstate, bool has_z, Fn&& fn) {
  const auto with_n = [&]<int kNPad>() -> absl::Status {
    if (has_z) return fn.template operator()<kNPad, true>();
    return fn.template operator()<kNPad, false>();
  };
  if (dstate <= 16) return with_n.template operator()<16>();
  if (dstate <= 32) return with_n.template operator()<32>();
  if (dstate <= 64) return with_n.template operator()<64>();
  if (dstate <= 128) return with_n.template operator()<128>();
  return with_n.template operator()<256>();
}

inline dim3 ScanGrid(const SelectiveScanParams& p, int channels_per_block) {
  const int64_t per_group = p.dim / p.groups;
  const int64_t blocks_per_group = (per_group + channels_per_block - 1) / channels_per_block;
  return dim3(static_cast<unsigned>(blocks_per_group * p.groups), static_cast<unsigned>(p.batch));
}

template <typename T, typename TB>
absl::Status SelectiveScanForwardTyped(const SelectiveScanParams& p, cudaStream_t stream) {
  return DispatchScanShape(p.dstate, p.z != nullptr, [&]<int kNPad, bool kHasZ>() -> absl::Status {
    using Tr = ScanTraits<kNPad>;
    const auto kernel = p.seq_idx != nullptr ? &SelectiveScanForwardKernel<T, TB, kNPad, kHasZ, true>
                                             : &SelectiveScanForwardKernel<T, TB, kNPad, kHasZ, false>;
    LYRA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Tr::kForwardBytes)));
    kernel<<<ScanGrid(p, Tr::kChannels), Tr::kThreads, Tr::kForwardBytes, stream>>>(p);
    LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("SelectiveScanForwardKernel");
    return absl::OkStatus();
  });
}

template <typename T, typename TB>
absl::Status SelectiveScanBackwardTyped(const SelectiveScanBackwardParams& bp,
                                        cudaStream_t stream) {
  const SelectiveScanParams& p = bp.forward;
  return DispatchScanShape(p.dstate, p.z != nullptr, [&]<int kNPad, bool kHasZ>() -> absl::Status {
    using Tr = ScanTraits<kNPad>;
    const int64_t blocks_per_group = (p.dim / p.groups + Tr::kChannels - 1) / Tr::kChannels;
    const int64_t n_bc = p.batch * p.groups * 2 * p.dstate * p.length;
    const int64_t n_bd = p.batch * p.dim;
    const size_t floats = static_cast<size_t>(blocks_per_group * n_bc + n_bd * p.dstate + 2 * n_bd);
    int device = 0;
    LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
    CachingAllocator& allocator = CachingAllocator::ForDevice(device);
    LYRA_ASSIGN_OR_RETURN(void* raw, allocator.Allocate(floats * sizeof(float)));
    ScanBackwardWorkspace ws;
    ws.bc = static_cast<float*>(raw);
    ws.dA = ws.bc + blocks_per_group * n_bc;
    ws.dD = ws.dA + n_bd * p.dstate;
    ws.dbias = ws.dD + n_bd;
    const auto kernel = p.seq_idx != nullptr
                            ? &SelectiveScanBackwardKernel<T, TB, kNPad, kHasZ, true>
                            : &SelectiveScanBackwardKernel<T, TB, kNPad, kHasZ, false>;
    absl::Status status;
    const cudaError_t attr = cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(Tr::kBackwardBytes));
    if (attr != cudaSuccess) status = CudaStatus(attr, "cudaFuncSetAttribute", __FILE__, __LINE__);
    if (status.ok()) {
      kernel<<<ScanGrid(p, Tr::kChannels), Tr::kThreads, Tr::kBackwardBytes, stream>>>(bp, ws);
      status.Update(LastLaunchStatus("SelectiveScanBackwardKernel", __FILE__, __LINE__));
    }
    if (status.ok()) {
      const int64_t total = n_bc + p.dim * p.dstate + p.dim;
      constexpr int kReduceThreads = 256;
      SelectiveScanReduceKernel<TB>
          <<<static_cast<unsigned>((total + kReduceThreads - 1) / kReduceThreads), kReduceThreads,
             0, stream>>>(bp, ws, blocks_per_group);
      status.Update(LastLaunchStatus("SelectiveScanReduceKernel", __FILE__, __LINE__));
    }
    // Stream-ordered reuse: the block may be handed out again only to work queued after this.
    allocator.Free(raw);
    return status;
  });
}

// fn<T>() for the storage type of u (f32, f16, bf16).
template <typename Fn>
absl::Status DispatchScanDType(DType dtype, absl::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: return fn.template operator()<float>();
    case DType::kF16: return fn.template operator()<Float16>();
    case DType::kBF16: return fn.template operator()<BFloat16>();
    default:
      return absl::UnimplementedError(
          absl::StrCat(op, ": no CUDA kernel for ", DTypeName(dtype)));
  }
}

// The per-dtype entry points (the first argument only selects the overload), defined in
// selective_scan_{forward,backward}_<dtype>.cu.
absl::Status SelectiveScanForwardFor(float, const SelectiveScanParams& p, cudaStream_t stream);
absl::Status SelectiveScanForwardFor(Float16, const SelectiveScanParams& p, cudaStream_t stream);
absl::Status SelectiveScanForwardFor(BFloat16, const SelectiveScanParams& p, cudaStream_t stream);
absl::Status SelectiveScanBackwardFor(float, const SelectiveScanBackwardParams& p,
                                      cudaStream_t stream);
absl::Status SelectiveScanBackwardFor(Float16, const SelectiveScanBackwardParams& p,
                                      cudaStream_t stream);
absl::Status SelectiveScanBackwardFor(BFloat16, const SelectiveScanBackwardParams& p,
                                      cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_SELECTIVE_SCAN_KERNELS_CUH_
