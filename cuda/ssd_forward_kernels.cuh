// CUDA kernels of the Mamba-2 SSD chunked forward (math and layouts in cuda/ssd.h, the
// per-chunk scalars dt / cum / seg in cuda/ssd_common.cuh), instantiated per dtype in
// ssd_forward_{float,f16,bf16}.cu.
//
// Time is cut into chunks of Q steps; for (b, h) and chunk c (positions l, s in 0 .. Q - 1 of
// the chunk, X = x[b, t0 + ., h, :] (Q, P), Bc, Cc = B, C[b, t0 + ., g, :] (Q, N)):
//
//   1. SsdChunkStateKernel, grid (chunks, B H, ceil(P / 64)): the chunk-local state
//        S_loc[p, n] = sum_s X[s, p] dt[s] exp(cum[Q-1] - cum[s]) [seg[s] == seg[Q-1]] Bc[s, n]
//      a (P x Q) (Q x N) product on the tensor cores (the row scale folded into X while it is
//      staged), written to the state workspace slot c; and the chunk's decay
//        decay_c = exp(cum[Q-1]) if the chunk has no reset, else 0.
//   2. SsdStatePassingKernel, grid (ceil(P N / 256), B H): sequential over chunks per state
//      element, in place: S_in(0) = initial_state (or 0), S_in(c + 1) = decay_c S_in(c) +
//      S_loc(c); slot c is overwritten with S_in(c) (= chunk_states, cuda/ssd.h); the last
//      S_in is final_state.
//   3. SsdChunkOutputKernel, grid (chunks, ceil(Q / 64), B H): 64 output rows l of a chunk
//        out[l, :] = sum_{s <= l, seg[s] == seg[l]} (Cc[l] . Bc[s]) exp(cum[l] - cum[s]) dt[s] X[s, :]
//                  + [seg[l] == 0] exp(cum[l]) Cc[l] S_in(c)ᵀ + D x[l, :]
//        y[l, :]  = out[l, :] silu(z[l, :])
//      per 64-column block of s <= l: (Cc Bcᵀ) (64 x N)(N x 64) on the tensor cores, the mask
//      and decay applied in f32 and rounded to the operand type, then (64 x 64)(64 x P); then the
//      incoming-state term as (C scaled by the row decay) (64 x N) times S_inᵀ (N x P).
//
// Tiles: 256 threads (8 warps); a block's 64-row output (64 x P or 64 x N) is 4 row tiles of 16
// times up to 16 column tiles; warp w owns row tile w % 4 and the column tiles of parity w / 4
// (at most kMaxFrags = 8 accumulator fragments). P and N are padded to multiples of 16 with
// zeros in shared memory, so any P, N <= 256 runs the same code. Shared-memory rows are padded by
// 16 bytes (bank spread) and every WMMA pointer is 32-byte aligned.
//
// Precision: dt, cum, decays and all states in f32; tensor-core operands in the storage type
// (bf16 / f16: C Bᵀ ∘ decay, X dt decay and S_in are rounded to it) with f32 accumulation; f32
// inputs use split TF32 (three products per step: near f32). Outputs written (=): y, the
// chunk_states / final_state. Deterministic: fixed summation orders, no atomics.
#ifndef LYRA_CUDA_SSD_FORWARD_KERNELS_CUH_
#define LYRA_CUDA_SSD_FORWARD_KERNELS_CUH_

#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/ssd.h"
#include "cuda/ssd_common.cuh"

namespace lyra::cuda {
namespace ssd {

inline constexpr int kThreads = 256;  // 8 warps
inline constexpr int kTile = 64;      // rows of a block's output tile
inline constexpr int kMaxFrags = 8;   // (64 x 256) / (8 warps x 16 x 16)

// Accumulator fragments per warp for a padded output width (N in step 1, P in step 3).
inline int FragsFor(int64_t dim) { return dim <= 64 ? 2 : dim <= 128 ? 4 : kMaxFrags; }

// fn<kFrags>() for FragsFor(dim).
template <typename Fn>
absl::Status DispatchFrags(int64_t dim, Fn&& fn) {
  switch (FragsFor(dim)) {
    case 2: return fn.template operator()<2>();
    case 4: return fn.template operator()<4>();
    default: return fn.template operator()<kMaxFrags>();
  }
}

// Shared memory of SsdChunkStateKernel for chunk q, head dim P, state size N.
template <typename T>
struct StateLayout {
  using E = typename MmaType<T>::Elem;
  int np, px, pb, po;
  size_t dt, cum, seg, scratch_f, scratch_i, x, b, out, bytes;
  __host__ __device__ StateLayout(int64_t q, int64_t N) {
    constexpr int kPad = MmaType<T>::kPad;
    np = RoundUp16(N);
    px = kTile + kPad;  // x tile (s, p), 64 columns of P
    pb = np + kPad;     // B tile (s, n)
    po = np + 4;        // f32 output (p, n)
    SmemCarve m;
    dt = m.Take(q * sizeof(float));
    cum = m.Take(q * sizeof(float));
    seg = m.Take(q * sizeof(int));
    scratch_f = m.Take(32 * sizeof(float));
    scratch_i = m.Take(32 * sizeof(int));
    const size_t tiles = static_cast<size_t>(kTile) * (px + pb) * sizeof(E) + 128;
    const size_t outb = static_cast<size_t>(kTile) * po * sizeof(float);
    const size_t region = m.Take(tiles > outb ? tiles : outb);
    x = region;
    b = region + (static_cast<size_t>(kTile) * px * sizeof(E) + 127) / 128 * 128;
    out = region;
    bytes = m.bytes;
  }
};

// Shared memory of SsdChunkOutputKernel.
template <typename T>
struct OutputLayout {
  using E = typename MmaType<T>::Elem;
  int np, pp, pc, pb, px, ps, py, pcb, pm;
  size_t dt, cum, seg, scratch_f, scratch_i, c, b, x, s, y, cb, m, bytes;
  __host__ __device__ OutputLayout(int64_t q, int64_t P, int64_t N) {
    constexpr int kPad = MmaType<T>::kPad;
    np = RoundUp16(N);
    pp = RoundUp16(P);
    pc = np + kPad;     // C tile (l, n)
    pb = np + kPad;     // B tile (s, n)
    px = pp + kPad;     // x tile (s, p)
    ps = kTile + kPad;  // S_in slice (p, n), 64 columns of N
    py = pp + 4;        // f32 output (l, p)
    pcb = kTile + 4;    // f32 C Bᵀ tile (l, s)
    pm = kTile + kPad;  // masked operand (l, s)
    SmemCarve m;
    dt = m.Take(q * sizeof(float));
    cum = m.Take(q * sizeof(float));
    seg = m.Take(q * sizeof(int));
    scratch_f = m.Take(32 * sizeof(float));
    scratch_i = m.Take(32 * sizeof(int));
    c = m.Take(static_cast<size_t>(kTile) * pc * sizeof(E));
    const size_t bx = (static_cast<size_t>(kTile) * pb * sizeof(E) + 127) / 128 * 128 +
                      static_cast<size_t>(kTile) * px * sizeof(E);
    const size_t sb = static_cast<size_t>(pp) * ps * sizeof(E);
    const size_t yb = static_cast<size_t>(kTile) * py * sizeof(float);
    size_t region_bytes = bx > sb ? bx : sb;
    region_bytes = region_bytes > yb ? region_bytes : yb;
    const size_t region = m.Take(region_bytes);
    b = region;
    x = region + (static_cast<size_t>(kTile) * pb * sizeof(E) + 127) / 128 * 128;
    s = region;
    y = region;
    cb = m.Take(static_cast<size_t>(kTile) * pcb * sizeof(float));
    // f32: the masked operand overwrites the C Bᵀ tile in place (same element type and pitch),
    // which keeps P = N = 256 within the 227 KB of shared memory.
    if constexpr (std::is_same_v<E, float>) {
      this->m = cb;
    } else {
      this->m = m.Take(static_cast<size_t>(kTile) * pm * sizeof(E));
    }
    bytes = m.bytes;
  }
};

// kFrags: accumulator fragments per warp, enough for the padded N (2: N <= 64, 4: <= 128,
// 8: <= 256).
template <typename T, int kFrags>
__global__ void __launch_bounds__(kThreads)
    SsdChunkStateKernel(const SsdParams p, float* states, float* chunk_decay) {
  using M = Mma<T, wmma::col_major, wmma::row_major>;
  using E = typename M::E;
  constexpr int kK = M::kK;
  extern __shared__ __align__(128) unsigned char smem[];
  const StateLayout<T> lay(p.chunk, p.dstate);
  float* s_dt = reinterpret_cast<float*>(smem + lay.dt);
  float* s_cum = reinterpret_cast<float*>(smem + lay.cum);
  int* s_seg = reinterpret_cast<int*>(smem + lay.seg);
  E* s_x = reinterpret_cast<E*>(smem + lay.x);    // (64 s, px): x dt decay, columns p0 + .
  E* s_b = reinterpret_cast<E*>(smem + lay.b);    // (64 s, pb)
  float* s_out = reinterpret_cast<float*>(smem + lay.out);  // (64 p, po), after the products

  const int64_t H = p.heads, P = p.head_dim, N = p.dstate, L = p.length;
  const int Q = static_cast<int>(p.chunk);
  const int64_t n_chunks = (L + Q - 1) / Q;
  const int64_t c = blockIdx.x, b = blockIdx.y / H, h = blockIdx.y % H, g = h / (H / p.groups);
  const int p0 = blockIdx.z * kTile;
  const int64_t t0 = c * Q;
  const int valid = static_cast<int>(L - t0 < Q ? L - t0 : Q);
  LoadChunkScalars<T>(p, b, h, c, Q, s_dt, s_cum, s_seg,
                      reinterpret_cast<float*>(smem + lay.scratch_f),
                      reinterpret_cast<int*>(smem + lay.scratch_i));
  const float cum_end = s_cum[Q - 1];
  const int seg_end = s_seg[Q - 1];

  const int warp = threadIdx.x / 32, rt = warp % 4, parity = warp / 4;
  const int n_tiles = lay.np / 16;
  typename M::Acc acc[kFrags];
#pragma unroll
  for (int i = 0; i < kFrags; ++i) wmma::fill_fragment(acc[i], 0.f);

  const T* x_blk = static_cast<const T*>(p.x) + b * p.x_stride_b + t0 * p.x_stride_l +
                   h * p.x_stride_h + p0;
  const T* B_blk = static_cast<const T*>(p.B) + b * p.B_stride_b + t0 * p.B_stride_l +
                   g * p.B_stride_g;
  const int p_cols = static_cast<int>(P - p0 < kTile ? P - p0 : kTile);
  for (int s0 = 0; s0 < valid; s0 += kTile) {
    const int s_rows = valid - s0 < kTile ? valid - s0 : kTile;
    __syncthreads();  // the previous block of s is done with the tiles
    StageTile<T, E>(s_x, lay.px, x_blk + s0 * p.x_stride_l, p.x_stride_l, kTile, s_rows, kTile,
                    p_cols, [&](int r) {
                      const int s = s0 + r;
                      return s_seg[s] == seg_end ? s_dt[s] * __expf(cum_end - s_cum[s]) : 0.f;
                    });
    StageTile<T, E>(s_b, lay.pb, B_blk + s0 * p.B_stride_l, p.B_stride_l, kTile, s_rows, lay.np,
                    static_cast<int>(N), NoScale());
    __syncthreads();
#pragma unroll 1
    for (int k = 0; k < kTile; k += kK) {
      typename M::A a;
      M::LoadA(a, s_x + k * lay.px + rt * 16, lay.px);
#pragma unroll
      for (int i = 0; i < kFrags; ++i) {
        const int j = parity + 2 * i;
        if (j < n_tiles) {
          typename M::B bf;
          M::LoadB(bf, s_b + k * lay.pb + j * 16, lay.pb);
          M::Step(acc[i], a, bf);
        }
      }
    }
  }
  __syncthreads();  // the output staging reuses the tiles
#pragma unroll
  for (int i = 0; i < kFrags; ++i) {
    const int j = parity + 2 * i;
    if (j < n_tiles) {
      wmma::store_matrix_sync(s_out + rt * 16 * lay.po + j * 16, acc[i], lay.po,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  float* dst = states + ((b * n_chunks + c) * H + h) * P * N + p0 * N;
  const int total = p_cols * static_cast<int>(N);
  for (int i = threadIdx.x; i < total; i += kThreads) {
    const int r = i / static_cast<int>(N), n = i % static_cast<int>(N);
    dst[i] = s_out[r * lay.po + n];
  }
  if (blockIdx.z == 0 && threadIdx.x == 0) {
    chunk_decay[(b * n_chunks + c) * H + h] = seg_end == 0 ? expf(cum_end) : 0.f;
  }
}

// Step 2 (the state passing, in place over the state workspace: local states in, entering
// states out; final_state), defined in ssd_forward.cu: it does not depend on the dtype.
absl::Status LaunchStatePassing(const SsdParams& p, float* states, const float* chunk_decay,
                                cudaStream_t stream);

// kFrags: accumulator fragments per warp, enough for the padded P (as above).
template <typename T, int kFrags>
__global__ void __launch_bounds__(kThreads)
    SsdChunkOutputKernel(const SsdParams p, const float* states) {
  using MR = Mma<T, wmma::row_major, wmma::col_major>;  // C Bᵀ and C S_inᵀ
  using MX = Mma<T, wmma::row_major, wmma::row_major>;  // masked (C Bᵀ) X
  using E = typename MR::E;
  constexpr int kK = MR::kK;
  extern __shared__ __align__(128) unsigned char smem[];
  const int64_t H = p.heads, P = p.head_dim, N = p.dstate, L = p.length;
  const int Q = static_cast<int>(p.chunk);
  const int64_t n_chunks = (L + Q - 1) / Q;
  const int64_t c = blockIdx.x, b = blockIdx.z / H, h = blockIdx.z % H, g = h / (H / p.groups);
  const int l0 = blockIdx.y * kTile;
  const int64_t t0 = c * Q;
  const int valid = static_cast<int>(L - t0 < Q ? L - t0 : Q);
  if (l0 >= valid) return;  // the partial last chunk has fewer row tiles
  const int l_rows = valid - l0 < kTile ? valid - l0 : kTile;

  const OutputLayout<T> lay(Q, P, N);
  float* s_dt = reinterpret_cast<float*>(smem + lay.dt);
  float* s_cum = reinterpret_cast<float*>(smem + lay.cum);
  int* s_seg = reinterpret_cast<int*>(smem + lay.seg);
  E* s_c = reinterpret_cast<E*>(smem + lay.c);     // (64 l, pc)
  E* s_b = reinterpret_cast<E*>(smem + lay.b);     // (64 s, pb)
  E* s_x = reinterpret_cast<E*>(smem + lay.x);     // (64 s, px)
  E* s_s = reinterpret_cast<E*>(smem + lay.s);     // (pp p, ps): S_in[:, n0 + .]
  float* s_y = reinterpret_cast<float*>(smem + lay.y);  // (64 l, py)
  float* s_cb = reinterpret_cast<float*>(smem + lay.cb);  // (64 l, pcb)
  E* s_m = reinterpret_cast<E*>(smem + lay.m);     // (64 l, pm)

  LoadChunkScalars<T>(p, b, h, c, Q, s_dt, s_cum, s_seg,
                      reinterpret_cast<float*>(smem + lay.scratch_f),
                      reinterpret_cast<int*>(smem + lay.scratch_i));
  const T* x_chunk = static_cast<const T*>(p.x) + b * p.x_stride_b + t0 * p.x_stride_l +
                     h * p.x_stride_h;
  const T* B_chunk = static_cast<const T*>(p.B) + b * p.B_stride_b + t0 * p.B_stride_l +
                     g * p.B_stride_g;
  const T* C_chunk = static_cast<const T*>(p.C) + b * p.C_stride_b + t0 * p.C_stride_l +
                     g * p.C_stride_g;
  StageTile<T, E>(s_c, lay.pc, C_chunk + l0 * p.C_stride_l, p.C_stride_l, kTile, l_rows, lay.np,
                  static_cast<int>(N), NoScale());

  const int warp = threadIdx.x / 32, rt = warp % 4, parity = warp / 4;
  const int p_tiles = lay.pp / 16;
  typename MX::Acc acc[kFrags];
#pragma unroll
  for (int i = 0; i < kFrags; ++i) wmma::fill_fragment(acc[i], 0.f);

  // The intra-chunk term, one 64-column block of s <= l at a time.
  for (int s0 = 0; s0 <= l0; s0 += kTile) {
    const int s_rows = valid - s0 < kTile ? valid - s0 : kTile;
    __syncthreads();  // the previous block is done with s_b, s_x, s_m
    StageTile<T, E>(s_b, lay.pb, B_chunk + s0 * p.B_stride_l, p.B_stride_l, kTile, s_rows, lay.np,
                    static_cast<int>(N), NoScale());
    StageTile<T, E>(s_x, lay.px, x_chunk + s0 * p.x_stride_l, p.x_stride_l, kTile, s_rows, lay.pp,
                    static_cast<int>(P), NoScale());
    __syncthreads();
    {
      typename MR::Acc cb[2];
      wmma::fill_fragment(cb[0], 0.f);
      wmma::fill_fragment(cb[1], 0.f);
#pragma unroll 2
      for (int k = 0; k < lay.np; k += kK) {
        typename MR::A a;
        MR::LoadA(a, s_c + rt * 16 * lay.pc + k, lay.pc);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          typename MR::B bf;
          MR::LoadB(bf, s_b + (parity + 2 * i) * 16 * lay.pb + k, lay.pb);
          MR::Step(cb[i], a, bf);
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::store_matrix_sync(s_cb + rt * 16 * lay.pcb + (parity + 2 * i) * 16, cb[i], lay.pcb,
                                wmma::mem_row_major);
      }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < kTile * kTile; i += kThreads) {
      const int r = i / kTile, cc = i % kTile, l = l0 + r, s = s0 + cc;
      float v = 0.f;
      if (r < l_rows && cc < s_rows && s <= l && s_seg[s] == s_seg[l]) {
        v = s_cb[r * lay.pcb + cc] * __expf(s_cum[l] - s_cum[s]) * s_dt[s];
      }
      s_m[r * lay.pm + cc] = ToElem<E>(v);
    }
    __syncthreads();
#pragma unroll 1
    for (int k = 0; k < kTile; k += kK) {
      typename MX::A a;
      MX::LoadA(a, s_m + rt * 16 * lay.pm + k, lay.pm);
#pragma unroll
      for (int i = 0; i < kFrags; ++i) {
        const int j = parity + 2 * i;
        if (j < p_tiles) {
          typename MX::B bf;
          MX::LoadB(bf, s_x + k * lay.px + j * 16, lay.px);
          MX::Step(acc[i], a, bf);
        }
      }
    }
  }

  // The incoming state: rows before the chunk's first reset, decayed by exp(cum[l]); none in the
  // first chunk without an initial state.
  if (c > 0 || p.initial_state != nullptr) {
    __syncthreads();  // every warp is done with s_x (the region S_in goes to)
    for (int i = threadIdx.x; i < kTile * lay.np; i += kThreads) {
      const int r = i / lay.np, n = i % lay.np, l = l0 + r;
      const float w = (r < l_rows && s_seg[l] == 0) ? __expf(s_cum[l]) : 0.f;
      s_c[r * lay.pc + n] = ToElem<E>(FromElem(s_c[r * lay.pc + n]) * w);
    }
    const float* S = states + ((b * n_chunks + c) * H + h) * P * N;
    for (int n0 = 0; n0 < lay.np; n0 += kTile) {
      const int nk = lay.np - n0 < kTile ? lay.np - n0 : kTile;
      if (n0 > 0) __syncthreads();  // the previous slice's products are done
      for (int i = threadIdx.x; i < lay.pp * kTile; i += kThreads) {
        const int pr = i / kTile, nn = i % kTile, n = n0 + nn;
        const float v = (pr < P && n < N) ? S[pr * N + n] : 0.f;
        s_s[pr * lay.ps + nn] = ToElem<E>(v);
      }
      __syncthreads();
#pragma unroll 1
      for (int k = 0; k < nk; k += kK) {
        typename MR::A a;
        MR::LoadA(a, s_c + rt * 16 * lay.pc + n0 + k, lay.pc);
#pragma unroll
        for (int i = 0; i < kFrags; ++i) {
          const int j = parity + 2 * i;
          if (j < p_tiles) {
            typename MR::B bf;
            MR::LoadB(bf, s_s + j * 16 * lay.ps + k, lay.ps);
            MR::Step(acc[i], a, bf);
          }
        }
      }
    }
  }

  __syncthreads();  // s_y reuses the operand region
#pragma unroll
  for (int i = 0; i < kFrags; ++i) {
    const int j = parity + 2 * i;
    if (j < p_tiles) {
      wmma::store_matrix_sync(s_y + rt * 16 * lay.py + j * 16, acc[i], lay.py, wmma::mem_row_major);
    }
  }
  __syncthreads();
  // Epilogue: + D x, gate, round; threads run along P (coalesced).
  const float* Dp = static_cast<const float*>(p.D);
  const T* z_chunk = p.z != nullptr ? static_cast<const T*>(p.z) + b * p.z_stride_b +
                                          t0 * p.z_stride_l + h * p.z_stride_h
                                    : nullptr;
  T* y_chunk = static_cast<T*>(p.y) + b * p.y_stride_b + t0 * p.y_stride_l + h * p.y_stride_h;
  const int Pi = static_cast<int>(P);
  for (int i = threadIdx.x; i < l_rows * Pi; i += kThreads) {
    const int r = i / Pi, pc = i % Pi, l = l0 + r;
    float out = s_y[r * lay.py + pc];
    if (Dp != nullptr) {
      const float d = Dp[h * p.D_stride_h + (p.D_per_head_dim ? pc * p.D_stride_p : 0)];
      out = fmaf(d, static_cast<float>(DLoad(x_chunk[l * p.x_stride_l + pc])), out);
    }
    if (z_chunk != nullptr) {
      const float zv = static_cast<float>(DLoad(z_chunk[l * p.z_stride_l + pc]));
      out *= zv / (1.f + __expf(-zv));
    }
    y_chunk[l * p.y_stride_l + pc] = DStore<T>(out);
  }
}

template <typename K>
absl::Status SetSmem(K kernel, size_t bytes) {
  LYRA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  return absl::OkStatus();
}

}  // namespace ssd

template <typename T>
absl::Status SsdForwardTyped(const SsdParams& p, cudaStream_t stream) {
  const int64_t B = p.batch, H = p.heads, P = p.head_dim, N = p.dstate, Q = p.chunk;
  const int64_t n_chunks = SsdNumChunks(p.length, Q);
  const ssd::StateLayout<T> state_lay(Q, N);
  const ssd::OutputLayout<T> out_lay(Q, P, N);
  // The state workspace is chunk_states itself when the caller wants it.
  const size_t state_floats = static_cast<size_t>(B * n_chunks * H * P * N);
  const size_t decay_floats = static_cast<size_t>(B * n_chunks * H);
  int device = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  CachingAllocator& allocator = CachingAllocator::ForDevice(device);
  const size_t ws_floats = (p.chunk_states == nullptr ? state_floats : 0) + decay_floats;
  LYRA_ASSIGN_OR_RETURN(void* raw, allocator.Allocate(ws_floats * sizeof(float)));
  float* decay = static_cast<float*>(raw);
  float* states = p.chunk_states != nullptr ? static_cast<float*>(p.chunk_states)
                                            : decay + decay_floats;
  absl::Status status = ssd::DispatchFrags(N, [&]<int kFrags>() -> absl::Status {
    const auto kernel = &ssd::SsdChunkStateKernel<T, kFrags>;
    LYRA_RETURN_IF_ERROR(ssd::SetSmem(kernel, state_lay.bytes));
    const dim3 grid(static_cast<unsigned>(n_chunks), static_cast<unsigned>(B * H),
                    static_cast<unsigned>((P + ssd::kTile - 1) / ssd::kTile));
    kernel<<<grid, ssd::kThreads, state_lay.bytes, stream>>>(p, states, decay);
    return LastLaunchStatus("SsdChunkStateKernel", __FILE__, __LINE__);
  });
  if (status.ok()) status.Update(ssd::LaunchStatePassing(p, states, decay, stream));
  if (status.ok()) {
    status.Update(ssd::DispatchFrags(P, [&]<int kFrags>() -> absl::Status {
      const auto kernel = &ssd::SsdChunkOutputKernel<T, kFrags>;
      LYRA_RETURN_IF_ERROR(ssd::SetSmem(kernel, out_lay.bytes));
      const dim3 grid(static_cast<unsigned>(n_chunks),
                      static_cast<unsigned>((Q + ssd::kTile - 1) / ssd::kTile),
                      static_cast<unsigned>(B * H));
      kernel<<<grid, ssd::kThreads, out_lay.bytes, stream>>>(p, states);
      return LastLaunchStatus("SsdChunkOutputKernel", __FILE__, __LINE__);
    }));
  }
  // Stream-ordered reuse: the block may be handed out again only to work queued after this.
  allocator.Free(raw);
  return status;
}

// The per-dtype entry points (the first argument only selects the overload), defined in
// ssd_forward_<dtype>.cu.
absl::Status SsdForwardFor(float, const SsdParams& p, cudaStream_t stream);
absl::Status SsdForwardFor(Float16, const SsdParams& p, cudaStream_t stream);
absl::Status SsdForwardFor(BFloat16, const SsdParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_SSD_FORWARD_KERNELS_CUH_
