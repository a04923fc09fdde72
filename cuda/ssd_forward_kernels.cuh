// CUDA kernels of the Mamba-2 SSD chunked forward (math and layouts in cuda/ssd.h, the
// per-chunk scalars dt / cum / seg in cuda/ssd_common.cuh), instantiated per dtype in
// ssd_forward_{float,f16,bf16}.cu. bf16 / f16 with P <= 128 run the mma.sync versions of steps 1
// and 3 (ssd_forward_mma_kernels.cuh, same math; H200 bf16 reference shape 0.424 ms against this
// file's 0.797); the WMMA kernels below serve f32 (split TF32) and P > 128.
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
//        out[l, :] = sum_{s <= l, seg[s] == seg[l]} (Cc[l] . Bc[s]) exp(cum[l] - cum[s]) dt[s]
//                    X[s, :]
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
// 16 bytes (bank spread) and every WMMA pointer is 32-byte aligned. Tiles of x, B and C travel
// global -> shared by 16-byte cp.async copies (zero-filled outside the valid rows / columns),
// double-buffered over the 64-row blocks of s where two buffers fit in shared memory (always for
// bf16 / f16; f32 at large P, N falls back to one): the next block is in flight while the
// current one is multiplied, and the first one while the per-chunk scalars are computed.
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

// Shared memory of SsdChunkStateKernel for chunk q, state size N and `stages` (1 or 2) buffers
// of the (x, B) tiles: with 2 the next block of s is copied while the current one is used.
template <typename T>
struct StateLayout {
  using E = typename MmaType<T>::Elem;
  int np, px, pb, po;
  size_t dt, cum, seg, scratch_f, scratch_i, x, b, stage, out, bytes;
  __host__ __device__ StateLayout(int64_t q, int64_t N, int stages) {
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
    const size_t xb = (static_cast<size_t>(kTile) * px * sizeof(E) + 127) / 128 * 128;
    stage = xb + (static_cast<size_t>(kTile) * pb * sizeof(E) + 127) / 128 * 128;
    const size_t outb = static_cast<size_t>(kTile) * po * sizeof(float);
    const size_t region = m.Take(stages * stage > outb ? stages * stage : outb);
    x = region;
    b = region + xb;
    out = region;
    bytes = m.bytes;
  }
};

// Shared memory of SsdChunkOutputKernel, `stages` buffers of the (B, x) tiles as above.
template <typename T>
struct OutputLayout {
  using E = typename MmaType<T>::Elem;
  int np, pp, pc, pb, px, ps, py, pcb, pm;
  size_t dt, cum, seg, scratch_f, scratch_i, c, b, x, stage, s, y, cb, m, bytes;
  __host__ __device__ OutputLayout(int64_t q, int64_t P, int64_t N, int stages) {
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
    const size_t bb = (static_cast<size_t>(kTile) * pb * sizeof(E) + 127) / 128 * 128;
    stage = bb + (static_cast<size_t>(kTile) * px * sizeof(E) + 127) / 128 * 128;
    const size_t sb = static_cast<size_t>(pp) * ps * sizeof(E);
    const size_t yb = static_cast<size_t>(kTile) * py * sizeof(float);
    size_t region_bytes = stages * stage > sb ? stages * stage : sb;
    region_bytes = region_bytes > yb ? region_bytes : yb;
    const size_t region = m.Take(region_bytes);
    b = region;
    x = region + bb;
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
// 8: <= 256). `stages`: 1 or 2 tile buffers (StateLayout).
template <typename T, int kFrags>
__global__ void __launch_bounds__(kThreads)
    SsdChunkStateKernel(const SsdParams p, float* states, float* chunk_decay, int stages) {
  using M = Mma<T, wmma::col_major, wmma::row_major>;
  using E = typename M::E;
  constexpr int kK = M::kK;
  extern __shared__ __align__(128) unsigned char smem[];
  const StateLayout<T> lay(p.chunk, p.dstate, stages);
  float* s_dt = reinterpret_cast<float*>(smem + lay.dt);
  float* s_cum = reinterpret_cast<float*>(smem + lay.cum);
  int* s_seg = reinterpret_cast<int*>(smem + lay.seg);
  float* s_out = reinterpret_cast<float*>(smem + lay.out);  // (64 p, po), after the products
  // Stage i: x tile (64 s, px), columns p0 + ., and B tile (64 s, pb).
  const auto s_x = [&](int i) { return reinterpret_cast<E*>(smem + lay.x + i * lay.stage); };
  const auto s_b = [&](int i) { return reinterpret_cast<E*>(smem + lay.b + i * lay.stage); };

  const int64_t H = p.heads, P = p.head_dim, N = p.dstate, L = p.length;
  const int Q = static_cast<int>(p.chunk);
  const int64_t n_chunks = (L + Q - 1) / Q;
  const int64_t c = blockIdx.x, b = blockIdx.y / H, h = blockIdx.y % H, g = h / (H / p.groups);
  const int p0 = blockIdx.z * kTile;
  const int64_t t0 = c * Q;
  const int valid = static_cast<int>(L - t0 < Q ? L - t0 : Q);
  const T* x_blk = static_cast<const T*>(p.x) + b * p.x_stride_b + t0 * p.x_stride_l +
                   h * p.x_stride_h + p0;
  const T* B_blk = static_cast<const T*>(p.B) + b * p.B_stride_b + t0 * p.B_stride_l +
                   g * p.B_stride_g;
  const int p_cols = static_cast<int>(P - p0 < kTile ? P - p0 : kTile);
  const int n_blocks = (valid + kTile - 1) / kTile;
  const auto issue = [&](int it) {
    const int s0 = it * kTile, s_rows = valid - s0 < kTile ? valid - s0 : kTile;
    StageTileAsync<T, E>(s_x(it % stages), lay.px, x_blk + s0 * p.x_stride_l, p.x_stride_l, kTile,
                         s_rows, kTile, p_cols);
    StageTileAsync<T, E>(s_b(it % stages), lay.pb, B_blk + s0 * p.B_stride_l, p.B_stride_l,
                         kTile, s_rows, lay.np, static_cast<int>(N));
    CpAsyncCommit();
  };
  issue(0);  // in flight while the scalars are computed
  LoadChunkScalars<T>(p, b, h, c, Q, s_dt, s_cum, s_seg,
                      reinterpret_cast<float*>(smem + lay.scratch_f),
                      reinterpret_cast<int*>(smem + lay.scratch_i));
  const float cum_end = s_cum[Q - 1];
  const int seg_end = s_seg[Q - 1];
  // s_dt becomes the row weight w[s] = dt[s] exp(cum_end - cum[s]) [seg[s] == seg_end].
  for (int l = threadIdx.x; l < Q; l += kThreads) {
    s_dt[l] = s_seg[l] == seg_end ? s_dt[l] * __expf(cum_end - s_cum[l]) : 0.f;
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, rt = warp % 4, parity = warp / 4;
  const int n_tiles = lay.np / 16;
  typename M::Acc acc[kFrags];
#pragma unroll
  for (int i = 0; i < kFrags; ++i) wmma::fill_fragment(acc[i], 0.f);

  for (int it = 0; it < n_blocks; ++it) {
    const int s0 = it * kTile, s_rows = valid - s0 < kTile ? valid - s0 : kTile;
    if (stages == 2 && it + 1 < n_blocks) {
      issue(it + 1);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // tile `it` (and the weights) visible to the block
    E* sx = s_x(it % stages);
    const E* sb = s_b(it % stages);
    for (int r = warp; r < kTile; r += kThreads / 32) {  // a warp per row of s
      const float w = r < s_rows ? s_dt[s0 + r] : 0.f;
      for (int col = lane; col < kTile; col += 32) {
        sx[r * lay.px + col] = ToElem<E>(FromElem(sx[r * lay.px + col]) * w);
      }
    }
    __syncthreads();
#pragma unroll 1
    for (int k = 0; k < kTile; k += kK) {
      typename M::A a;
      M::LoadA(a, sx + k * lay.px + rt * 16, lay.px);
#pragma unroll
      for (int i = 0; i < kFrags; ++i) {
        const int j = parity + 2 * i;
        if (j < n_tiles) {
          typename M::B bf;
          M::LoadB(bf, sb + k * lay.pb + j * 16, lay.pb);
          M::Step(acc[i], a, bf);
        }
      }
    }
    __syncthreads();  // buffer it % stages may be refilled
    if (stages == 1 && it + 1 < n_blocks) issue(it + 1);
  }
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
// states out; final_state; optionally a bf16 / f16 copy of the entering states), defined in
// ssd_forward.cu: it does not depend on the dtype.
absl::Status LaunchStatePassing(const SsdParams& p, float* states, const float* chunk_decay,
                                void* states16, bool bf16, cudaStream_t stream);

// kFrags: accumulator fragments per warp, enough for the padded P (as above); `stages` as in
// OutputLayout.
template <typename T, int kFrags>
__global__ void __launch_bounds__(kThreads, kFrags == 2 ? 3 : kFrags == 4 ? 2 : 1)
    SsdChunkOutputKernel(const SsdParams p, const float* states, int stages) {
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

  const OutputLayout<T> lay(Q, P, N, stages);
  float* s_dt = reinterpret_cast<float*>(smem + lay.dt);
  float* s_cum = reinterpret_cast<float*>(smem + lay.cum);
  int* s_seg = reinterpret_cast<int*>(smem + lay.seg);
  E* s_c = reinterpret_cast<E*>(smem + lay.c);     // (64 l, pc)
  E* s_s = reinterpret_cast<E*>(smem + lay.s);     // (pp p, ps): S_in[:, n0 + .]
  float* s_y = reinterpret_cast<float*>(smem + lay.y);  // (64 l, py)
  float* s_cb = reinterpret_cast<float*>(smem + lay.cb);  // (64 l, pcb)
  E* s_m = reinterpret_cast<E*>(smem + lay.m);     // (64 l, pm)
  // Stage i: B tile (64 s, pb) and x tile (64 s, px).
  const auto s_b = [&](int i) { return reinterpret_cast<E*>(smem + lay.b + i * lay.stage); };
  const auto s_x = [&](int i) { return reinterpret_cast<E*>(smem + lay.x + i * lay.stage); };

  const T* x_chunk = static_cast<const T*>(p.x) + b * p.x_stride_b + t0 * p.x_stride_l +
                     h * p.x_stride_h;
  const T* B_chunk = static_cast<const T*>(p.B) + b * p.B_stride_b + t0 * p.B_stride_l +
                     g * p.B_stride_g;
  const T* C_chunk = static_cast<const T*>(p.C) + b * p.C_stride_b + t0 * p.C_stride_l +
                     g * p.C_stride_g;
  const int n_blocks = l0 / kTile + 1;  // the blocks of s <= l
  const auto issue = [&](int it) {
    const int s0 = it * kTile, s_rows = valid - s0 < kTile ? valid - s0 : kTile;
    StageTileAsync<T, E>(s_b(it % stages), lay.pb, B_chunk + s0 * p.B_stride_l, p.B_stride_l,
                         kTile, s_rows, lay.np, static_cast<int>(N));
    StageTileAsync<T, E>(s_x(it % stages), lay.px, x_chunk + s0 * p.x_stride_l, p.x_stride_l,
                         kTile, s_rows, lay.pp, static_cast<int>(P));
    CpAsyncCommit();
  };
  // The C tile travels with the first block's group; both are in flight during the scalars.
  StageTileAsync<T, E>(s_c, lay.pc, C_chunk + l0 * p.C_stride_l, p.C_stride_l, kTile, l_rows,
                       lay.np, static_cast<int>(N));
  issue(0);
  LoadChunkScalars<T>(p, b, h, c, Q, s_dt, s_cum, s_seg,
                      reinterpret_cast<float*>(smem + lay.scratch_f),
                      reinterpret_cast<int*>(smem + lay.scratch_i));

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, rt = warp % 4, parity = warp / 4;
  const int p_tiles = lay.pp / 16;
  typename MX::Acc acc[kFrags];
#pragma unroll
  for (int i = 0; i < kFrags; ++i) wmma::fill_fragment(acc[i], 0.f);

  // The intra-chunk term, one 64-column block of s <= l at a time.
  for (int it = 0; it < n_blocks; ++it) {
    const int s0 = it * kTile, s_rows = valid - s0 < kTile ? valid - s0 : kTile;
    if (stages == 2 && it + 1 < n_blocks) {
      issue(it + 1);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // block `it`'s tiles visible
    const E* sb = s_b(it % stages);
    const E* sx = s_x(it % stages);
    // On the diagonal block (s0 == l0) the 16 x 16 tiles above the diagonal (column tile j > row
    // tile rt) are masked out entirely: they are neither computed nor read.
    const bool diag = s0 == l0;
    if (!diag || parity <= rt) {
      typename MR::Acc cb[2];
      wmma::fill_fragment(cb[0], 0.f);
      wmma::fill_fragment(cb[1], 0.f);
#pragma unroll 2
      for (int k = 0; k < lay.np; k += kK) {
        typename MR::A a;
        MR::LoadA(a, s_c + rt * 16 * lay.pc + k, lay.pc);
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          if (!diag || parity + 2 * i <= rt) {
            typename MR::B bf;
            MR::LoadB(bf, sb + (parity + 2 * i) * 16 * lay.pb + k, lay.pb);
            MR::Step(cb[i], a, bf);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        if (!diag || parity + 2 * i <= rt) {
          wmma::store_matrix_sync(s_cb + rt * 16 * lay.pcb + (parity + 2 * i) * 16, cb[i],
                                  lay.pcb, wmma::mem_row_major);
        }
      }
    }
    __syncthreads();
    {
      // M[r, cc] = (C Bᵀ)[r, cc] exp(cum[l] - cum[s]) dt[s] where s <= l in one segment, else 0;
      // a warp per row, each lane two columns whose scalars stay in registers over the rows.
      float cum_s[2], dt_s[2];
      int seg_s[2];
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int cc = lane + 32 * j;
        const bool ok = cc < s_rows;
        cum_s[j] = ok ? s_cum[s0 + cc] : 0.f;
        dt_s[j] = ok ? s_dt[s0 + cc] : 0.f;
        seg_s[j] = ok ? s_seg[s0 + cc] : -1;
      }
      for (int r = warp; r < kTile; r += kThreads / 32) {
        const int l = l0 + r;
        const bool row_ok = r < l_rows;
        const float cum_l = row_ok ? s_cum[l] : 0.f;
        const int seg_l = row_ok ? s_seg[l] : -2;
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int cc = lane + 32 * j;
          float v = 0.f;
          if (s0 + cc <= l && seg_s[j] == seg_l) {
            v = s_cb[r * lay.pcb + cc] * __expf(cum_l - cum_s[j]) * dt_s[j];
          }
          s_m[r * lay.pm + cc] = ToElem<E>(v);
        }
      }
    }
    __syncthreads();
    // Row tile rt of M is zero beyond column 16 rt + 15 on the diagonal block.
    const int k_end = diag ? 16 * (rt + 1) : kTile;
#pragma unroll 1
    for (int k = 0; k < k_end; k += kK) {
      typename MX::A a;
      MX::LoadA(a, s_m + rt * 16 * lay.pm + k, lay.pm);
#pragma unroll
      for (int i = 0; i < kFrags; ++i) {
        const int j = parity + 2 * i;
        if (j < p_tiles) {
          typename MX::B bf;
          MX::LoadB(bf, sx + k * lay.px + j * 16, lay.px);
          MX::Step(acc[i], a, bf);
        }
      }
    }
    __syncthreads();  // buffer it % stages, s_cb and s_m may be reused
    if (stages == 1 && it + 1 < n_blocks) issue(it + 1);
  }

  // The incoming state: rows before the chunk's first reset, decayed by exp(cum[l]); none in the
  // first chunk without an initial state.
  if (c > 0 || p.initial_state != nullptr) {
    for (int r = warp; r < kTile; r += kThreads / 32) {  // a warp per row: one exp per row
      const float w = (r < l_rows && s_seg[l0 + r] == 0) ? __expf(s_cum[l0 + r]) : 0.f;
      for (int n = lane; n < lay.np; n += 32) {
        s_c[r * lay.pc + n] = ToElem<E>(FromElem(s_c[r * lay.pc + n]) * w);
      }
    }
    const float* S = states + ((b * n_chunks + c) * H + h) * P * N;
    const bool vec4 = N % 4 == 0 && reinterpret_cast<uintptr_t>(S) % 16 == 0;
    for (int n0 = 0; n0 < lay.np; n0 += kTile) {
      const int nk = lay.np - n0 < kTile ? lay.np - n0 : kTile;
      if (n0 > 0) __syncthreads();  // the previous slice's products are done
      for (int i = threadIdx.x; i < lay.pp * (kTile / 4); i += kThreads) {
        const int pr = i / (kTile / 4), nn = (i % (kTile / 4)) * 4, n = n0 + nn;
        float v[4] = {0.f, 0.f, 0.f, 0.f};
        if (pr < P) {
          if (vec4 && n + 4 <= N) {
            const float4 v4 = *reinterpret_cast<const float4*>(S + pr * N + n);
            v[0] = v4.x, v[1] = v4.y, v[2] = v4.z, v[3] = v4.w;
          } else {
#pragma unroll
            for (int j = 0; j < 4; ++j) v[j] = n + j < N ? S[pr * N + n + j] : 0.f;
          }
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) s_s[pr * lay.ps + nn + j] = ToElem<E>(v[j]);
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
    __syncthreads();  // s_y reuses the operand region
  }

#pragma unroll
  for (int i = 0; i < kFrags; ++i) {
    const int j = parity + 2 * i;
    if (j < p_tiles) {
      wmma::store_matrix_sync(s_y + rt * 16 * lay.py + j * 16, acc[i], lay.py, wmma::mem_row_major);
    }
  }
  __syncthreads();
  // Epilogue: + D x, gate, round; a warp per row, lanes along P (coalesced).
  const float* Dp = static_cast<const float*>(p.D);
  const T* z_chunk = p.z != nullptr ? static_cast<const T*>(p.z) + b * p.z_stride_b +
                                          t0 * p.z_stride_l + h * p.z_stride_h
                                    : nullptr;
  T* y_chunk = static_cast<T*>(p.y) + b * p.y_stride_b + t0 * p.y_stride_l + h * p.y_stride_h;
  const int Pi = static_cast<int>(P);
  for (int r = warp; r < l_rows; r += kThreads / 32) {
    const int64_t l = l0 + r;
    for (int pc = lane; pc < Pi; pc += 32) {
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
}

template <typename K>
absl::Status SetSmem(K kernel, size_t bytes) {
  LYRA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  return absl::OkStatus();
}

}  // namespace ssd
}  // namespace lyra::cuda

#include "cuda/ssd_forward_mma_kernels.cuh"

namespace lyra::cuda {

template <typename T>
absl::Status SsdForwardTyped(const SsdParams& p, cudaStream_t stream) {
  // bf16 / f16 with P <= 128: the mma.sync kernels (ssd_forward_mma_kernels.cuh).
  if constexpr (!std::is_same_v<T, float>) {
    if (p.head_dim <= 128) return ssd::SsdForwardMmaTyped<T>(p, stream);
  }
  const int64_t B = p.batch, H = p.heads, P = p.head_dim, N = p.dstate, Q = p.chunk;
  const int64_t n_chunks = SsdNumChunks(p.length, Q);
  int device = 0, smem_limit = 0, smem_per_sm = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&smem_per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device));
  // Two tile buffers where two blocks of them still fit on a multiprocessor (1 KB of it is
  // reserved per block), else one: measured on the H200, the second buffer gained less than
  // the halved occupancy cost (bf16 N = 256: 2.46 -> 3.02 ms).
  const auto two_fit = [&](size_t bytes) {
    return 2 * (bytes + 1024) <= static_cast<size_t>(smem_per_sm);
  };
  const int state_stages = two_fit(ssd::StateLayout<T>(Q, N, 2).bytes) ? 2 : 1;
  const auto three_fit = [&](size_t bytes) {
    return 3 * (bytes + 1024) <= static_cast<size_t>(smem_per_sm);
  };
  // P <= 64: the output kernel is capped at 85 registers for 3 blocks per SM; one buffer when
  // that is what lets 3 blocks fit.
  int out_stages = two_fit(ssd::OutputLayout<T>(Q, P, N, 2).bytes) ? 2 : 1;
  if (ssd::FragsFor(P) == 2 && three_fit(ssd::OutputLayout<T>(Q, P, N, 1).bytes)) out_stages = 1;
  const ssd::StateLayout<T> state_lay(Q, N, state_stages);
  const ssd::OutputLayout<T> out_lay(Q, P, N, out_stages);
  if (state_lay.bytes > static_cast<size_t>(smem_limit) ||
      out_lay.bytes > static_cast<size_t>(smem_limit)) {
    return absl::UnimplementedError(absl::StrCat(
        "SsdCuda: P = ", P, ", N = ", N, " in ", DTypeName(p.dtype), " need ", out_lay.bytes,
        " bytes of shared memory per block; this device has ", smem_limit));
  }
  // The state workspace is chunk_states itself when the caller wants it.
  const size_t state_floats = static_cast<size_t>(B * n_chunks * H * P * N);
  const size_t decay_floats = static_cast<size_t>(B * n_chunks * H);
  // Workspace: the chunk decays, then (without chunk_states) the states; the decays rounded up
  // to 64 floats keep the states 256-byte aligned.
  const size_t decay_pad = (decay_floats + 63) / 64 * 64;
  CachingAllocator& allocator = CachingAllocator::ForDevice(device);
  const size_t ws_floats = decay_pad + (p.chunk_states == nullptr ? state_floats : 0);
  LYRA_ASSIGN_OR_RETURN(void* raw, allocator.Allocate(ws_floats * sizeof(float)));
  float* decay = static_cast<float*>(raw);
  float* states = p.chunk_states != nullptr ? static_cast<float*>(p.chunk_states)
                                            : decay + decay_pad;
  absl::Status status = ssd::DispatchFrags(N, [&]<int kFrags>() -> absl::Status {
    const auto kernel = &ssd::SsdChunkStateKernel<T, kFrags>;
    LYRA_RETURN_IF_ERROR(ssd::SetSmem(kernel, state_lay.bytes));
    const dim3 grid(static_cast<unsigned>(n_chunks), static_cast<unsigned>(B * H),
                    static_cast<unsigned>((P + ssd::kTile - 1) / ssd::kTile));
    kernel<<<grid, ssd::kThreads, state_lay.bytes, stream>>>(p, states, decay, state_stages);
    return LastLaunchStatus("SsdChunkStateKernel", __FILE__, __LINE__);
  });
  if (status.ok()) status.Update(ssd::LaunchStatePassing(p, states, decay, nullptr, false, stream));
  if (status.ok()) {
    status.Update(ssd::DispatchFrags(P, [&]<int kFrags>() -> absl::Status {
      const auto kernel = &ssd::SsdChunkOutputKernel<T, kFrags>;
      LYRA_RETURN_IF_ERROR(ssd::SetSmem(kernel, out_lay.bytes));
      const dim3 grid(static_cast<unsigned>(n_chunks),
                      static_cast<unsigned>((Q + ssd::kTile - 1) / ssd::kTile),
                      static_cast<unsigned>(B * H));
      kernel<<<grid, ssd::kThreads, out_lay.bytes, stream>>>(p, states, out_stages);
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
