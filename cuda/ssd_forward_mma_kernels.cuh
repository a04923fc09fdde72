// The fast 16-bit (bf16 / f16) kernels of the Mamba-2 SSD chunked forward: steps 1 and 3 of
// ssd_forward_kernels.cuh (same math, same three-kernel structure, same state passing in
// between) written with mma.sync / ldmatrix (cuda/ssd_mma.cuh) so that products stay in
// registers:
//
//   1. SsdChunkStateMmaKernel, grid (chunks, B H, ceil(P / 64)), 8 warps: the chunk-local state
//        S_loc[p, n] = sum_s X[s, p] w[s] Bc[s, n],  w[s] = dt[s] exp(cum[Q-1] - cum[s]) [seg]
//      warp w owns 16 rows p (w % 4) and half of the columns n (w / 4), accumulating over the
//      chunk's 64-row blocks of s (x scaled by w in shared memory, double-buffered cp.async).
//   3. SsdChunkOutputMmaKernel, grid (chunks, ceil(Q / 64), B H), 4 warps: 64 output rows l, warp
//      w owns rows 16 w .. 16 w + 15 and all of P. First the incoming-state term
//        acc = e[l] (Cc[l] S_in(c)ᵀ),  e[l] = exp(cum[l]) [seg[l] == 0]
//      (the product in f32, then the exact row scale), then per 64-column block of s <= l
//        G = Cc Bcᵀ (16 x 64 per warp, f32 registers)
//        M = G exp(cum[l] - cum[s]) dt[s] [s <= l, same segment]   (in registers)
//        acc += M X[s-block]                                      (M rounded to bf16 / f16:
//                                                                   the registers of G become
//                                                                   the A operand directly)
//      and the epilogue + D x, silu(z) from the registers. The row blocks are launched heaviest
//      first (the last row block of a chunk has the most s-blocks). S_in arrives as a 16-bit copy
//      the state passing writes next to the f32 chunk_states, the values the old kernel rounded
//      to when it staged them.
//
// Precision as the WMMA kernels: f32 scalars, decays and accumulators; C Bᵀ ∘ decay and S_in
// rounded to the operand type; and slightly better for the state term (e[l] applied in f32 to
// the product instead of to C before rounding). Deterministic: fixed orders, no atomics.
// Included by ssd_forward_kernels.cuh after its declarations of SetSmem and LaunchStatePassing.
// Supported: P <= 128 (accumulators of 16 x P per warp in registers), any N <= 256, every chunk
// length (Q < 64 pads the scalars to 64 positions).
#ifndef LYRA_CUDA_SSD_FORWARD_MMA_KERNELS_CUH_
#define LYRA_CUDA_SSD_FORWARD_MMA_KERNELS_CUH_

#include <cuda_runtime.h>

#include <climits>
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
#include "cuda/ssd_mma.cuh"

namespace lyra::cuda::ssd {

inline constexpr int kMmaOutThreads = 128;   // 4 warps of 16 rows
inline constexpr int kMmaStateThreads = 256;  // 8 warps: 4 row tiles x 2 column halves

inline __host__ __device__ int RoundUpTo(int64_t v, int m) {
  return static_cast<int>((v + m - 1) / m * m);
}
// Scalar arrays cover at least one 64-row block (chunks of 16 and 32 included).
inline __host__ __device__ int ScalarLength(int64_t q) { return q < 64 ? 64 : static_cast<int>(q); }

// Shared memory of SsdChunkOutputMmaKernel for chunk q, padded head dim pp (64 or 128) and N:
// scalars, the C tile (64 x np), and two stages of (B tile 64 x np, x tile 64 x pp); S_in
// (pp x np) shares the second stage's bytes (it is used before that stage is first filled).
template <typename E>
struct MmaOutputLayout {
  int np, pp, pc, pb, px, ps;
  size_t dt, cum, seg, scratch_f, scratch_i, c, stage0, stage1, xoff, s, bytes;
  __host__ __device__ MmaOutputLayout(int64_t q, int padded_p, int64_t N) {
    np = RoundUp16(N);
    pp = padded_p;
    pc = pb = np + 8;
    px = pp + 8;
    ps = np + 8;
    const int ql = ScalarLength(q);
    SmemCarve m;
    dt = m.Take(ql * sizeof(float));
    cum = m.Take(ql * sizeof(float));
    seg = m.Take(ql * sizeof(int));
    scratch_f = m.Take(32 * sizeof(float));
    scratch_i = m.Take(32 * sizeof(int));
    c = m.Take(static_cast<size_t>(kTileRows) * pc * sizeof(E));
    xoff = (static_cast<size_t>(kTileRows) * pb * sizeof(E) + 127) / 128 * 128;
    const size_t stage = xoff + static_cast<size_t>(kTileRows) * px * sizeof(E);
    const size_t sbytes = static_cast<size_t>(pp) * ps * sizeof(E);
    stage0 = m.Take(stage);
    stage1 = m.Take(stage > sbytes ? stage : sbytes);
    s = stage1;
    bytes = m.bytes;
  }
  static constexpr int kTileRows = 64;
};

// Shared memory of SsdChunkStateMmaKernel: scalars and two stages of (x tile 64 x 64, B tile
// 64 x n32) with n32 = N rounded up to 32 (each column half a whole number of 16-column pairs).
template <typename E>
struct MmaStateLayout {
  int n32, px, pb;
  size_t dt, cum, seg, scratch_f, scratch_i, stage0, stage1, boff, bytes;
  __host__ __device__ MmaStateLayout(int64_t q, int64_t N) {
    n32 = RoundUpTo(N, 32);
    px = 64 + 8;
    pb = n32 + 8;
    const int ql = ScalarLength(q);
    SmemCarve m;
    dt = m.Take(ql * sizeof(float));
    cum = m.Take(ql * sizeof(float));
    seg = m.Take(ql * sizeof(int));
    scratch_f = m.Take(32 * sizeof(float));
    scratch_i = m.Take(32 * sizeof(int));
    boff = (static_cast<size_t>(64) * px * sizeof(E) + 127) / 128 * 128;
    const size_t stage = boff + static_cast<size_t>(64) * pb * sizeof(E);
    stage0 = m.Take(stage);
    stage1 = m.Take(stage);
    bytes = m.bytes;
  }
};

// Pads the scalar arrays past q (to ScalarLength(q)) so that 64-wide loops may read them: dt 0
// (adds nothing), cum 0, seg INT_MIN (matches no row). Call before LoadChunkScalars (whose
// barriers publish these writes).
__device__ __forceinline__ void PadChunkScalars(int q, float* s_dt, float* s_cum, int* s_seg) {
  for (int l = q + threadIdx.x; l < ScalarLength(q); l += blockDim.x) {
    s_dt[l] = 0.f;
    s_cum[l] = 0.f;
    s_seg[l] = INT_MIN;
  }
}

// Whether the fast tile copies (CopyTile) apply: x, B, C rows and the 16-bit states in whole
// 16-byte pieces (P, N and the row strides multiples of 8 elements, 16-byte aligned bases) and
// the staged widths (np, padded P, n32) a power-of-two number of pieces.
inline bool FastCopies(const SsdParams& p, int64_t np, int64_t padded_p, int64_t n32) {
  const auto pow2 = [](int64_t v) { return v > 0 && (v & (v - 1)) == 0; };
  const auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  return p.head_dim % 8 == 0 && p.dstate % 8 == 0 && p.x_stride_l % 8 == 0 &&
         p.x_stride_b % 8 == 0 && p.x_stride_h % 8 == 0 && p.B_stride_l % 8 == 0 &&
         p.B_stride_b % 8 == 0 && p.B_stride_g % 8 == 0 && p.C_stride_l % 8 == 0 &&
         p.C_stride_b % 8 == 0 && p.C_stride_g % 8 == 0 && aligned(p.x) && aligned(p.B) &&
         aligned(p.C) && pow2(np / 8) && pow2(padded_p / 8) && pow2(n32 / 8);
}

// Rows [0, rows) x `pieces` 16-byte pieces of a row-major global tile (rows `row_bytes` apart)
// into shared memory at byte address `dst` (rows `pitch_bytes` apart) by cp.async; rows past
// rows_valid and pieces past pieces_valid are zero-filled. `pieces` is a power of two dividing
// kBlock (the block's threads); each thread copies one piece column, every kBlock / pieces-th
// row: no divisions or 64-bit products in the loop (StageTileAsync's general form has both).
template <int kBlock>
__device__ __forceinline__ void CopyTile(unsigned dst, int pitch_bytes, const void* g,
                                         int64_t row_bytes, int rows, int rows_valid,
                                         int pieces, int pieces_valid) {
  const int piece = threadIdx.x & (pieces - 1), r0 = threadIdx.x / pieces;
  const int step = kBlock / pieces;
  const char* src = static_cast<const char*>(g) + r0 * row_bytes + piece * 16;
  unsigned d = dst + r0 * pitch_bytes + piece * 16;
  const bool piece_ok = piece < pieces_valid;
  for (int r = r0; r < rows; r += step) {
    const bool ok = piece_ok && r < rows_valid;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d),
                 "l"(ok ? src : g), "r"(ok ? 16 : 0)
                 : "memory");
    src += step * row_bytes;
    d += step * pitch_bytes;
  }
}

// kNW: the largest number of 8-column n-tiles a warp owns (n32 / 16 <= kNW).
template <typename T, int kNW>
__global__ void __launch_bounds__(kMmaStateThreads, kNW <= 8 ? 3 : 2)
    SsdChunkStateMmaKernel(const SsdParams p, float* states, float* chunk_decay, bool fast) {
  using E = typename MmaType<T>::Elem;
  extern __shared__ __align__(128) unsigned char smem[];
  const MmaStateLayout<E> lay(p.chunk, p.dstate);
  float* s_dt = reinterpret_cast<float*>(smem + lay.dt);
  float* s_cum = reinterpret_cast<float*>(smem + lay.cum);
  int* s_seg = reinterpret_cast<int*>(smem + lay.seg);
  const auto s_x = [&](int i) { return reinterpret_cast<E*>(smem + (i ? lay.stage1 : lay.stage0)); };
  const auto s_b = [&](int i) {
    return reinterpret_cast<E*>(smem + (i ? lay.stage1 : lay.stage0) + lay.boff);
  };

  const int64_t H = p.heads, P = p.head_dim, N = p.dstate, L = p.length;
  const int Q = static_cast<int>(p.chunk);
  const int64_t n_chunks = (L + Q - 1) / Q;
  const int64_t c = blockIdx.x, b = blockIdx.y / H, h = blockIdx.y % H, g = h / (H / p.groups);
  const int p0 = blockIdx.z * 64;
  const int64_t t0 = c * Q;
  const int valid = static_cast<int>(L - t0 < Q ? L - t0 : Q);
  const T* x_blk = static_cast<const T*>(p.x) + b * p.x_stride_b + t0 * p.x_stride_l +
                   h * p.x_stride_h + p0;
  const T* B_blk = static_cast<const T*>(p.B) + b * p.B_stride_b + t0 * p.B_stride_l +
                   g * p.B_stride_g;
  const int p_cols = static_cast<int>(P - p0 < 64 ? P - p0 : 64);
  const int n_blocks = (valid + 63) / 64;
  const auto issue = [&](int it) {
    const int s0 = it * 64, s_rows = valid - s0 < 64 ? valid - s0 : 64;
    if (fast) {
      constexpr int kE = sizeof(E);
      CopyTile<kMmaStateThreads>(SmemAddress(s_x(it % 2)), lay.px * kE, x_blk + s0 * p.x_stride_l,
                                 p.x_stride_l * kE, 64, s_rows, 8, p_cols / 8);
      CopyTile<kMmaStateThreads>(SmemAddress(s_b(it % 2)), lay.pb * kE, B_blk + s0 * p.B_stride_l,
                                 p.B_stride_l * kE, 64, s_rows, lay.n32 / 8,
                                 static_cast<int>(N / 8));
    } else {
      StageTileAsync<T, E>(s_x(it % 2), lay.px, x_blk + s0 * p.x_stride_l, p.x_stride_l, 64,
                           s_rows, 64, p_cols);
      StageTileAsync<T, E>(s_b(it % 2), lay.pb, B_blk + s0 * p.B_stride_l, p.B_stride_l, 64,
                           s_rows, lay.n32, static_cast<int>(N));
    }
    CpAsyncCommit();
  };
  issue(0);  // in flight while the scalars are computed
  PadChunkScalars(Q, s_dt, s_cum, s_seg);
  LoadChunkScalars<T>(p, b, h, c, Q, s_dt, s_cum, s_seg,
                      reinterpret_cast<float*>(smem + lay.scratch_f),
                      reinterpret_cast<int*>(smem + lay.scratch_i));
  const float cum_end = s_cum[Q - 1];
  const int seg_end = s_seg[Q - 1];
  // s_dt becomes the row weight w[s] = dt[s] exp(cum_end - cum[s]) [seg[s] == seg_end].
  for (int l = threadIdx.x; l < Q; l += blockDim.x) {
    s_dt[l] = s_seg[l] == seg_end ? s_dt[l] * __expf(cum_end - s_cum[l]) : 0.f;
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int pt = warp % 4, nh = warp / 4;
  const int nw = lay.n32 / 16;  // n-tiles per warp (even)
  const int n_base = nh * nw * 8;
  // This lane's ldmatrix addresses: A = Xᵀ at rows p 16 pt, B = B rows from column n_base.
  const unsigned a_lane = ATransposedLaneOffset(lay.px) + 16 * pt * 2;
  const unsigned b_lane = BKMajorLaneOffset(lay.pb) + n_base * 2;
  float acc[kNW][4];
#pragma unroll
  for (int j = 0; j < kNW; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

  for (int it = 0; it < n_blocks; ++it) {
    const int s0 = it * 64;
    if (it + 1 < n_blocks) {
      issue(it + 1);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // tile `it` (and the weights) visible to the block
    E* sx = s_x(it % 2);
    const unsigned sx_addr = SmemAddress(sx) + a_lane, sb_addr = SmemAddress(s_b(it % 2)) + b_lane;
    // x[s, :] *= w[s], two columns per step (64 x 64 tile; rows past the chunk are zero).
    for (int i = threadIdx.x; i < 64 * 32; i += blockDim.x) {
      const int r = i / 32, col = 2 * (i % 32);
      unsigned* v = reinterpret_cast<unsigned*>(sx + r * lay.px + col);
      const float w = s_dt[s0 + r];
      const float2 f = Unpack2<E>(*v);
      *v = Pack2<E>(f.x * w, f.y * w);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      unsigned a[4];
      LdMatrixTrans(a, sx_addr + 16 * kk * lay.px * 2);
#pragma unroll
      for (int j = 0; j < kNW / 2; ++j) {
        if (2 * j < nw) {
          unsigned bb[4];
          LdMatrixTrans(bb, sb_addr + (16 * kk * lay.pb + 16 * j) * 2);
          MmaStep<E>(acc[2 * j], a, bb);
          MmaStep<E>(acc[2 * j + 1], a, bb + 2);
        }
      }
    }
    __syncthreads();  // buffer it % 2 may be refilled
  }

  // Rows p0 + 16 pt + g (+ 8), columns n_base + 8 j + 2 t (+ 1), straight to the workspace.
  const int gq = lane / 4, tq = lane % 4;
  float* dst = states + ((b * n_chunks + c) * H + h) * P * N;
  const bool pairs = N % 2 == 0;
#pragma unroll
  for (int j = 0; j < kNW; ++j) {
    if (j >= nw) break;
    const int n = n_base + 8 * j + 2 * tq;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int pr = p0 + 16 * pt + gq + 8 * half;
      if (pr >= P || n >= N) continue;
      float* o = dst + static_cast<int64_t>(pr) * N + n;
      if (pairs) {
        *reinterpret_cast<float2*>(o) = make_float2(acc[j][2 * half], acc[j][2 * half + 1]);
      } else {
        o[0] = acc[j][2 * half];
        if (n + 1 < N) o[1] = acc[j][2 * half + 1];
      }
    }
  }
  if (blockIdx.z == 0 && threadIdx.x == 0) {
    chunk_decay[(b * n_chunks + c) * H + h] = seg_end == 0 ? expf(cum_end) : 0.f;
  }
}

// kPP: P padded to 64 or 128 (the accumulator tiles per warp: kPP / 8). states16: the entering
// states S_in in the operand type, (B, chunks, H, P, N) contiguous.
template <typename T, int kPP>
__global__ void __launch_bounds__(kMmaOutThreads, kPP <= 64 ? 3 : 2)
    SsdChunkOutputMmaKernel(const SsdParams p, const void* states16, bool fast) {
  using E = typename MmaType<T>::Elem;
  constexpr int kPT = kPP / 8;  // n-tiles of the output per warp
  extern __shared__ __align__(128) unsigned char smem[];
  const int64_t H = p.heads, P = p.head_dim, N = p.dstate, L = p.length;
  const int Q = static_cast<int>(p.chunk);
  const int64_t n_chunks = (L + Q - 1) / Q;
  const int row_blocks = (Q + 63) / 64;
  const int rb = row_blocks - 1 - static_cast<int>(blockIdx.y);  // heaviest first
  const int64_t c = blockIdx.x, b = blockIdx.z / H, h = blockIdx.z % H, g = h / (H / p.groups);
  const int l0 = rb * 64;
  const int64_t t0 = c * Q;
  const int valid = static_cast<int>(L - t0 < Q ? L - t0 : Q);
  if (l0 >= valid) return;  // the partial last chunk has fewer row blocks
  const int l_end = valid - l0 < 64 ? valid : l0 + 64;  // rows l < l_end are written

  const MmaOutputLayout<E> lay(Q, kPP, N);
  float* s_dt = reinterpret_cast<float*>(smem + lay.dt);
  float* s_cum = reinterpret_cast<float*>(smem + lay.cum);
  int* s_seg = reinterpret_cast<int*>(smem + lay.seg);
  E* s_c = reinterpret_cast<E*>(smem + lay.c);  // (64 l, pc)
  E* s_s = reinterpret_cast<E*>(smem + lay.s);  // (pp p, ps): S_in, before stage 1 is used
  const auto s_b = [&](int i) { return reinterpret_cast<E*>(smem + (i ? lay.stage1 : lay.stage0)); };
  const auto s_x = [&](int i) {
    return reinterpret_cast<E*>(smem + (i ? lay.stage1 : lay.stage0) + lay.xoff);
  };

  const T* x_chunk = static_cast<const T*>(p.x) + b * p.x_stride_b + t0 * p.x_stride_l +
                     h * p.x_stride_h;
  const T* B_chunk = static_cast<const T*>(p.B) + b * p.B_stride_b + t0 * p.B_stride_l +
                     g * p.B_stride_g;
  const T* C_chunk = static_cast<const T*>(p.C) + b * p.C_stride_b + t0 * p.C_stride_l +
                     g * p.C_stride_g;
  const int Ni = static_cast<int>(N), Pi = static_cast<int>(P);
  const bool has_state = c > 0 || p.initial_state != nullptr;
  const int n_blocks = rb + 1;  // the 64-column blocks of s <= l
  constexpr int kE = sizeof(E);
  const auto issue = [&](int it) {
    const int s0 = it * 64, s_rows = valid - s0 < 64 ? valid - s0 : 64;
    if (fast) {
      CopyTile<kMmaOutThreads>(SmemAddress(s_b(it % 2)), lay.pb * kE, B_chunk + s0 * p.B_stride_l,
                               p.B_stride_l * kE, 64, s_rows, lay.np / 8, Ni / 8);
      CopyTile<kMmaOutThreads>(SmemAddress(s_x(it % 2)), lay.px * kE, x_chunk + s0 * p.x_stride_l,
                               p.x_stride_l * kE, 64, s_rows, kPP / 8, Pi / 8);
    } else {
      StageTileAsync<T, E>(s_b(it % 2), lay.pb, B_chunk + s0 * p.B_stride_l, p.B_stride_l, 64,
                           s_rows, lay.np, Ni);
      StageTileAsync<T, E>(s_x(it % 2), lay.px, x_chunk + s0 * p.x_stride_l, p.x_stride_l, 64,
                           s_rows, kPP, Pi);
    }
    CpAsyncCommit();
  };
  // Group 1: the C rows and S_in; group 2: the first s-block. Both fly during the scalars.
  const T* S16 = static_cast<const T*>(states16) + ((b * n_chunks + c) * H + h) * P * N;
  if (fast) {
    CopyTile<kMmaOutThreads>(SmemAddress(s_c), lay.pc * kE, C_chunk + l0 * p.C_stride_l,
                             p.C_stride_l * kE, 64, l_end - l0, lay.np / 8, Ni / 8);
    if (has_state) {
      CopyTile<kMmaOutThreads>(SmemAddress(s_s), lay.ps * kE, S16, N * kE, kPP, Pi, lay.np / 8,
                               Ni / 8);
    }
  } else {
    StageTileAsync<T, E>(s_c, lay.pc, C_chunk + l0 * p.C_stride_l, p.C_stride_l, 64, l_end - l0,
                         lay.np, Ni);
    if (has_state) StageTileAsync<T, E>(s_s, lay.ps, S16, N, kPP, Pi, lay.np, Ni);
  }
  CpAsyncCommit();
  issue(0);
  PadChunkScalars(Q, s_dt, s_cum, s_seg);
  LoadChunkScalars<T>(p, b, h, c, Q, s_dt, s_cum, s_seg,
                      reinterpret_cast<float*>(smem + lay.scratch_f),
                      reinterpret_cast<int*>(smem + lay.scratch_i));

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const int la = l0 + 16 * warp + gq, lb = la + 8;  // this thread's two rows (chunk positions)
  const float cum_a = s_cum[la], cum_b = s_cum[lb];
  const int seg_a = s_seg[la], seg_b = s_seg[lb];
  const bool has_seg = p.seq_idx != nullptr;
  // This lane's ldmatrix addresses (bytes): C rows of the warp (A), S_in and B rows (n-major B
  // operands), x rows (k-major B operand).
  const unsigned c_addr = SmemAddress(s_c) + 16 * warp * lay.pc * kE + ALaneOffset(lay.pc);
  const unsigned s_addr = SmemAddress(s_s) + BNMajorLaneOffset(lay.ps);
  const unsigned b_lane = BNMajorLaneOffset(lay.pb), x_lane = BKMajorLaneOffset(lay.px);

  float acc[kPT][4];
#pragma unroll
  for (int j = 0; j < kPT; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

  CpAsyncWait<1>();  // C and S_in
  __syncthreads();
  if (has_state) {
    // acc = (C S_inᵀ) for the warp's 16 rows, then times e[l].
    for (int k = 0; k < lay.np; k += 16) {
      unsigned a[4];
      LdMatrix(a, c_addr + k * kE);
#pragma unroll
      for (int j = 0; j < kPT / 2; ++j) {
        unsigned bb[4];
        LdMatrix(bb, s_addr + (16 * j * lay.ps + k) * kE);
        MmaStep<E>(acc[2 * j], a, bb);
        MmaStep<E>(acc[2 * j + 1], a, bb + 2);
      }
    }
    const float e_a = seg_a == 0 ? __expf(cum_a) : 0.f;
    const float e_b = seg_b == 0 ? __expf(cum_b) : 0.f;
#pragma unroll
    for (int j = 0; j < kPT; ++j) {
      acc[j][0] *= e_a;
      acc[j][1] *= e_a;
      acc[j][2] *= e_b;
      acc[j][3] *= e_b;
    }
  }
  __syncthreads();  // S_in's bytes become stage 1

  for (int it = 0; it < n_blocks; ++it) {
    const int s0 = it * 64;
    if (it + 1 < n_blocks) {
      issue(it + 1);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // block `it` visible
    const unsigned sb_addr = SmemAddress(s_b(it % 2)) + b_lane;
    const unsigned sx_addr = SmemAddress(s_x(it % 2)) + x_lane;
    // On the diagonal block the warp's rows reach column 16 warp + 15: 16-column tiles past
    // that are masked out entirely (neither computed nor used).
    const int s_tiles = it == rb ? warp + 1 : 4;
    float cb[8][4];
#pragma unroll
    for (int j = 0; j < 8; ++j) cb[j][0] = cb[j][1] = cb[j][2] = cb[j][3] = 0.f;
#pragma unroll 2
    for (int k = 0; k < lay.np; k += 16) {
      unsigned a[4];
      LdMatrix(a, c_addr + k * kE);
#pragma unroll
      for (int jp = 0; jp < 4; ++jp) {
        if (jp < s_tiles) {
          unsigned bb[4];
          LdMatrix(bb, sb_addr + (16 * jp * lay.pb + k) * kE);
          MmaStep<E>(cb[2 * jp], a, bb);
          MmaStep<E>(cb[2 * jp + 1], a, bb + 2);
        }
      }
    }
    // M = G exp(cum[l] - cum[s]) dt[s] where s <= l in one segment, else 0. Column pair
    // (s, s + 1) of n-tile j: s = s0 + 8 j + 2 t. Below the diagonal block without resets every
    // (l, s) qualifies: no tests.
    if (it != rb && !has_seg) {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int s = s0 + 8 * j + 2 * tq;
        const float2 cs = *reinterpret_cast<const float2*>(s_cum + s);
        const float2 ds = *reinterpret_cast<const float2*>(s_dt + s);
        cb[j][0] *= __expf(cum_a - cs.x) * ds.x;
        cb[j][1] *= __expf(cum_a - cs.y) * ds.y;
        cb[j][2] *= __expf(cum_b - cs.x) * ds.x;
        cb[j][3] *= __expf(cum_b - cs.y) * ds.y;
      }
    } else {
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        if (j / 2 < s_tiles) {
          const int s = s0 + 8 * j + 2 * tq;
          const float2 cs = *reinterpret_cast<const float2*>(s_cum + s);
          const float2 ds = *reinterpret_cast<const float2*>(s_dt + s);
          int2 ss = make_int2(0, 0);
          if (has_seg) ss = *reinterpret_cast<const int2*>(s_seg + s);
          const bool a0 = s <= la && ss.x == seg_a, a1 = s + 1 <= la && ss.y == seg_a;
          const bool b0 = s <= lb && ss.x == seg_b, b1 = s + 1 <= lb && ss.y == seg_b;
          cb[j][0] = a0 ? cb[j][0] * __expf(cum_a - cs.x) * ds.x : 0.f;
          cb[j][1] = a1 ? cb[j][1] * __expf(cum_a - cs.y) * ds.y : 0.f;
          cb[j][2] = b0 ? cb[j][2] * __expf(cum_b - cs.x) * ds.x : 0.f;
          cb[j][3] = b1 ? cb[j][3] * __expf(cum_b - cs.y) * ds.y : 0.f;
        }
      }
    }
    // acc += M X: the 16-column tile kk of M is the A operand of depth 16.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (kk < s_tiles) {
        const unsigned a[4] = {Pack2<E>(cb[2 * kk][0], cb[2 * kk][1]),
                               Pack2<E>(cb[2 * kk][2], cb[2 * kk][3]),
                               Pack2<E>(cb[2 * kk + 1][0], cb[2 * kk + 1][1]),
                               Pack2<E>(cb[2 * kk + 1][2], cb[2 * kk + 1][3])};
#pragma unroll
        for (int j = 0; j < kPT / 2; ++j) {
          unsigned bb[4];
          LdMatrixTrans(bb, sx_addr + (16 * kk * lay.px + 16 * j) * kE);
          MmaStep<E>(acc[2 * j], a, bb);
          MmaStep<E>(acc[2 * j + 1], a, bb + 2);
        }
      }
    }
    if (it + 1 < n_blocks) __syncthreads();  // buffer it % 2 is refilled next iteration
  }

  // Epilogue: + D x (x of rows l from the diagonal block's tile, still in shared memory), gate,
  // round. Thread: rows la, lb; columns 8 j + 2 t, + 1.
  const E* sx = s_x(rb % 2);
  const float* Dp = static_cast<const float*>(p.D);
  const T* z_chunk = p.z != nullptr ? static_cast<const T*>(p.z) + b * p.z_stride_b +
                                          t0 * p.z_stride_l + h * p.z_stride_h
                                    : nullptr;
  T* y_chunk = static_cast<T*>(p.y) + b * p.y_stride_b + t0 * p.y_stride_l + h * p.y_stride_h;
  // Row pointers of the thread's two rows; pairs of columns as one 4-byte store where aligned.
  T* y_row[2] = {y_chunk + la * p.y_stride_l, y_chunk + lb * p.y_stride_l};
  const T* z_row[2] = {z_chunk != nullptr ? z_chunk + la * p.z_stride_l : nullptr,
                       z_chunk != nullptr ? z_chunk + lb * p.z_stride_l : nullptr};
  const bool row_ok[2] = {la < l_end, lb < l_end};
  const bool pairs = Pi % 2 == 0 && p.y_stride_l % 2 == 0 &&
                     reinterpret_cast<uintptr_t>(y_chunk) % 4 == 0;
  const E* x_row[2] = {sx + (la - l0) * lay.px, sx + (lb - l0) * lay.px};
#pragma unroll
  for (int j = 0; j < kPT; ++j) {
    const int pc = 8 * j + 2 * tq;
    if (pc >= Pi) continue;
    const bool two = pc + 1 < Pi;
    float d0 = 0.f, d1 = 0.f;
    if (Dp != nullptr) {
      d0 = Dp[h * p.D_stride_h + (p.D_per_head_dim ? pc * p.D_stride_p : 0)];
      d1 = two ? Dp[h * p.D_stride_h + (p.D_per_head_dim ? (pc + 1) * p.D_stride_p : 0)] : 0.f;
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      if (!row_ok[half]) continue;
      const float2 xv = Unpack2<E>(*reinterpret_cast<const unsigned*>(x_row[half] + pc));
      float o0 = fmaf(d0, xv.x, acc[j][2 * half]);
      float o1 = fmaf(d1, xv.y, acc[j][2 * half + 1]);
      if (z_row[half] != nullptr) {
        const float z0 = static_cast<float>(DLoad(z_row[half][pc]));
        o0 *= z0 / (1.f + __expf(-z0));
        if (two) {
          const float z1 = static_cast<float>(DLoad(z_row[half][pc + 1]));
          o1 *= z1 / (1.f + __expf(-z1));
        }
      }
      if (pairs) {
        *reinterpret_cast<unsigned*>(y_row[half] + pc) = Pack2<E>(o0, o1);
      } else {
        y_row[half][pc] = DStore<T>(o0);
        if (two) y_row[half][pc + 1] = DStore<T>(o1);
      }
    }
  }
}

// Host side: the three steps with the 16-bit kernels above (T = BFloat16 or Float16, P <= 128).
// Unimplemented when a kernel's shared memory exceeds the device's per-block limit.
template <typename T>
absl::Status SsdForwardMmaTyped(const SsdParams& p, cudaStream_t stream) {
  using E = typename MmaType<T>::Elem;
  const int64_t B = p.batch, H = p.heads, P = p.head_dim, N = p.dstate, Q = p.chunk;
  const int64_t n_chunks = SsdNumChunks(p.length, Q);
  const int padded_p = P <= 64 ? 64 : 128;
  const MmaStateLayout<E> state_lay(Q, N);
  const MmaOutputLayout<E> out_lay(Q, padded_p, N);
  int device = 0, smem_limit = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&smem_limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (out_lay.bytes > static_cast<size_t>(smem_limit) ||
      state_lay.bytes > static_cast<size_t>(smem_limit)) {
    return absl::UnimplementedError(absl::StrCat(
        "SsdCuda: P = ", P, ", N = ", N, " in ", DTypeName(p.dtype), " need ", out_lay.bytes,
        " bytes of shared memory per block; this device has ", smem_limit));
  }
  // Workspace: the chunk decays (rounded up to 64 floats), the f32 states unless the caller's
  // chunk_states are the workspace, and their 16-bit copy.
  const size_t state_count = static_cast<size_t>(B * n_chunks * H * P * N);
  const size_t decay_pad = static_cast<size_t>(B * n_chunks * H + 63) / 64 * 64;
  const size_t f32_floats = decay_pad + (p.chunk_states == nullptr ? state_count : 0);
  const size_t f32_bytes = (f32_floats * sizeof(float) + 255) / 256 * 256;
  CachingAllocator& allocator = CachingAllocator::ForDevice(device);
  LYRA_ASSIGN_OR_RETURN(void* raw, allocator.Allocate(f32_bytes + state_count * sizeof(E)));
  float* decay = static_cast<float*>(raw);
  float* states = p.chunk_states != nullptr ? static_cast<float*>(p.chunk_states)
                                            : decay + decay_pad;
  void* states16 = static_cast<unsigned char*>(raw) + f32_bytes;

  const int nw = state_lay.n32 / 16;
  const bool fast = FastCopies(p, out_lay.np, padded_p, state_lay.n32);
  absl::Status status = [&]() -> absl::Status {
    const auto launch_state = [&]<int kNW>() -> absl::Status {
      const auto kernel = &SsdChunkStateMmaKernel<T, kNW>;
      LYRA_RETURN_IF_ERROR(SetSmem(kernel, state_lay.bytes));
      const dim3 grid(static_cast<unsigned>(n_chunks), static_cast<unsigned>(B * H),
                      static_cast<unsigned>((P + 63) / 64));
      kernel<<<grid, kMmaStateThreads, state_lay.bytes, stream>>>(p, states, decay, fast);
      return LastLaunchStatus("SsdChunkStateMmaKernel", __FILE__, __LINE__);
    };
    if (nw <= 4) {
      LYRA_RETURN_IF_ERROR(launch_state.template operator()<4>());
    } else if (nw <= 8) {
      LYRA_RETURN_IF_ERROR(launch_state.template operator()<8>());
    } else {
      LYRA_RETURN_IF_ERROR(launch_state.template operator()<16>());
    }
    LYRA_RETURN_IF_ERROR(LaunchStatePassing(p, states, decay, states16,
                                            std::is_same_v<T, BFloat16>, stream));
    const auto launch_out = [&]<int kPP>() -> absl::Status {
      const auto kernel = &SsdChunkOutputMmaKernel<T, kPP>;
      LYRA_RETURN_IF_ERROR(SetSmem(kernel, out_lay.bytes));
      const dim3 grid(static_cast<unsigned>(n_chunks), static_cast<unsigned>((Q + 63) / 64),
                      static_cast<unsigned>(B * H));
      kernel<<<grid, kMmaOutThreads, out_lay.bytes, stream>>>(p, states16, fast);
      return LastLaunchStatus("SsdChunkOutputMmaKernel", __FILE__, __LINE__);
    };
    return padded_p == 64 ? launch_out.template operator()<64>()
                          : launch_out.template operator()<128>();
  }();
  // Stream-ordered reuse: the block may be handed out again only to work queued after this.
  allocator.Free(raw);
  return status;
}

}  // namespace lyra::cuda::ssd

#endif  // LYRA_CUDA_SSD_FORWARD_MMA_KERNELS_CUH_
