// The causal conv1d CUDA kernels (math and layouts: cuda/conv1d.h); included by the
// conv1d_<dtype>.cu files, one per x dtype, so that nvcc compiles them in parallel. Each file
// instantiates the kernels for its T with W = float and W = T (weight dtypes).
//
// Tiling: a block of kThreads threads owns a tile of kTileD channels x kTileL positions of one
// batch row b (grid: D tiles, L tiles, B). It stages x for the tile plus a halo of K-1 columns
// (left halo for the forward, both sides for the backward) in shared memory as f32, with the
// initial state (or zeros) standing in for t < 0. Loads and stores walk each operand along its
// smaller stride: lanes run along L for a channel-first [B, D, L] tensor and along D for a
// channel-last one (a transposed [B, L, D] buffer), so both are coalesced. Rows of the shared
// tiles have an odd length, so a warp walking down a column (lanes along D) hits 32 banks.
//
//   CausalConv1dForwardKernel: y (=) and, in the blocks of the first L tile, final_state (=).
//   CausalConv1dBackwardKernel: grid (D tiles, L chunks, B); a block walks the kTileL tiles of
//     its chunk, recomputes pre (for SiLU) on the tile plus a right halo of K-1, forms dpre in
//     shared memory, writes dx (=) and dinitial_state (=, first tile only), and accumulates the
//     tile's dweight / dbias contributions in registers; at the end it writes them to its row of
//     a partial buffer (rows = B * chunks, D * (K+1) f32 columns; tap K is the bias).
//   CausalConv1dWeightGradKernel: one thread per column sums the partial rows in order and
//     writes dweight / dbias (=). Deterministic: no atomics.
//   CausalConv1dUpdateKernel: one thread per (b, d): y_t (=) and the state shifted in place.
//   CausalConv1dNaiveKernel: version 1, one thread per output reading global memory (baseline).
//
// Precision: everything in f32 (T is float, Float16 or BFloat16; f64 is CPU-only).
#ifndef LYRA_CUDA_CONV1D_KERNELS_CUH_
#define LYRA_CUDA_CONV1D_KERNELS_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/conv1d.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"

namespace lyra::cuda {
namespace conv1d_internal {

inline constexpr int kThreads = 256;
inline constexpr int kTileD = 64;                            // channels per tile
inline constexpr int kTileL = 64;                            // positions per tile
inline constexpr int kHalo = kCausalConv1dMaxWidth - 1;      // halo columns reserved per side
inline constexpr int kForwardRow = kTileL + kHalo;           // 71: [left halo | tile]
inline constexpr int kBackwardRow = kTileL + 2 * kHalo + 1;  // 79: [left halo | tile | right halo]
inline constexpr int kGradRow = kTileL + kHalo;              // 71: dpre for [tile | right halo]
inline constexpr int kTaps = kCausalConv1dMaxWidth + 1;      // K weight taps + the bias
inline constexpr int kWeightRow = kCausalConv1dMaxWidth + 1;  // 9: odd, as the x rows
// Accumulators per thread for the tile's (channel, tap) pairs.
inline constexpr int kPairsPerThread = (kTileD * kTaps + kThreads - 1) / kThreads;
inline constexpr int kUpdateThreads = 256;
inline constexpr int kNaiveThreads = 256;
inline constexpr int kReduceThreads = 256;
// The backward aims for this many blocks per SM before it makes blocks walk several tiles.
inline constexpr int kBackwardBlocksPerSm = 8;

static_assert(kForwardRow % 2 == 1 && kBackwardRow % 2 == 1 && kGradRow % 2 == 1 &&
                  kWeightRow % 2 == 1,
              "odd shared-memory rows keep column walks free of bank conflicts");
static_assert(kTileD * kTileL % kThreads == 0, "every thread handles whole tile elements");
static_assert(kTileL == 64, "CausalConv1dSupported's L limit assumes 64 positions per tile");

__device__ __forceinline__ float Sigmoid(float v) { return 1.f / (1.f + expf(-v)); }

// Lanes run along D when D has the smaller stride (channel-last), else along L.
__device__ __forceinline__ bool ChannelFast(int64_t stride_d, int64_t stride_l) {
  const int64_t ad = stride_d < 0 ? -stride_d : stride_d;
  const int64_t al = stride_l < 0 ? -stride_l : stride_l;
  return ad < al;
}

// Maps element i of a (kTileD x cols) tile to (channel, column), lanes along the fast dim.
__device__ __forceinline__ void TileIndex(int i, int cols, bool channel_fast, int& dl, int& c) {
  if (channel_fast) {
    dl = i % kTileD;
    c = i / kTileD;
  } else {
    c = i % cols;
    dl = i / cols;
  }
}

// xs[b, d, t] for t in [-(K-1), L) (the caller checks d < D and t < L).
template <typename T>
__device__ __forceinline__ float LoadX(const CausalConv1dParams& p, int64_t b, int64_t d,
                                       int64_t t) {
  if (t >= 0) {
    return DLoad(static_cast<const T*>(p.x)[b * p.x_stride_b + d * p.x_stride_d +
                                            t * p.x_stride_l]);
  }
  if (p.initial_state == nullptr) return 0.f;
  const int64_t j = t + p.width - 1;
  return DLoad(static_cast<const T*>(p.initial_state)[b * p.initial_state_stride_b +
                                                      d * p.initial_state_stride_d +
                                                      j * p.initial_state_stride_k]);
}

// seq(b, t) for t < L: seq_idx[b, max(t, 0)].
__device__ __forceinline__ int32_t LoadSeq(const CausalConv1dParams& p, int64_t b, int64_t t) {
  return p.seq_idx[b * p.seq_idx_stride_b + (t < 0 ? 0 : t) * p.seq_idx_stride_l];
}

// Weights and bias of channels [d0, d0 + kTileD) into shared memory (zeros past D and K).
template <typename W>
__device__ __forceinline__ void LoadWeights(const CausalConv1dParams& p, int64_t d0,
                                            float (*ws)[kWeightRow], float* bs) {
  const W* w = static_cast<const W*>(p.weight);
  const W* bias = static_cast<const W*>(p.bias);
  for (int i = threadIdx.x; i < kTileD * kCausalConv1dMaxWidth; i += blockDim.x) {
    const int dl = i / kCausalConv1dMaxWidth, k = i % kCausalConv1dMaxWidth;
    const int64_t d = d0 + dl;
    ws[dl][k] = (d < p.channels && k < p.width)
                    ? DLoad(w[d * p.weight_stride_d + k * p.weight_stride_k])
                    : 0.f;
  }
  for (int dl = threadIdx.x; dl < kTileD; dl += blockDim.x) {
    const int64_t d = d0 + dl;
    bs[dl] = (bias != nullptr && d < p.channels) ? DLoad(bias[d * p.bias_stride]) : 0.f;
  }
}

// Stages xs[b, d0 + dl, t0 - kHalo + pos] in xs_tile[dl][pos] and seq(b, ·) in seq_tile[pos] for
// pos in [kHalo - (K-1), end_pos); zeros (and seq -1) past D or L.
template <typename T, int kRow>
__device__ __forceinline__ void LoadXTile(const CausalConv1dParams& p, int64_t b, int64_t d0,
                                          int64_t t0, int end_pos, float (*xs_tile)[kRow],
                                          int32_t* seq_tile) {
  const int first = kHalo - (p.width - 1);
  const int cols = end_pos - first;
  const bool channel_fast = ChannelFast(p.x_stride_d, p.x_stride_l);
  for (int i = threadIdx.x; i < kTileD * cols; i += blockDim.x) {
    int dl, c;
    TileIndex(i, cols, channel_fast, dl, c);
    const int pos = first + c;
    const int64_t d = d0 + dl, t = t0 - kHalo + pos;
    xs_tile[dl][pos] = (d < p.channels && t < p.length) ? LoadX<T>(p, b, d, t) : 0.f;
  }
  if (p.seq_idx != nullptr) {
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
      const int64_t t = t0 - kHalo + first + c;
      seq_tile[first + c] = t < p.length ? LoadSeq(p, b, t) : -1;
    }
  }
}

// pre at the output whose column is `pos` (kHalo + local t) of a staged x tile.
template <int kRow>
__device__ __forceinline__ float PreAt(const CausalConv1dParams& p, const float (*xs_tile)[kRow],
                                       const int32_t* seq_tile,
                                       const float (*ws)[kWeightRow], const float* bs,
                                       int dl, int pos) {
  float acc = bs[dl];
  const int start = pos - (p.width - 1);
#pragma unroll
  for (int k = 0; k < kCausalConv1dMaxWidth; ++k) {
    if (k < p.width) {
      const bool tap = p.seq_idx == nullptr || seq_tile[start + k] == seq_tile[pos];
      if (tap) acc += ws[dl][k] * xs_tile[dl][start + k];
    }
  }
  return acc;
}

template <typename T, typename W>
__global__ void __launch_bounds__(kThreads) CausalConv1dForwardKernel(CausalConv1dParams p) {
  __shared__ float xs[kTileD][kForwardRow];
  __shared__ float ws[kTileD][kWeightRow];
  __shared__ float bs[kTileD];
  __shared__ int32_t seq[kForwardRow];
  const int64_t d0 = static_cast<int64_t>(blockIdx.x) * kTileD;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kTileL;
  const int64_t b = blockIdx.z;
  LoadWeights<W>(p, d0, ws, bs);
  LoadXTile<T, kForwardRow>(p, b, d0, t0, kForwardRow, xs, seq);
  __syncthreads();

  T* y = static_cast<T*>(p.y);
  const bool channel_fast = ChannelFast(p.y_stride_d, p.y_stride_l);
  for (int i = threadIdx.x; i < kTileD * kTileL; i += blockDim.x) {
    int dl, tl;
    TileIndex(i, kTileL, channel_fast, dl, tl);
    const int64_t d = d0 + dl, t = t0 + tl;
    if (d >= p.channels || t >= p.length) continue;
    float v = PreAt<kForwardRow>(p, xs, seq, ws, bs, dl, kHalo + tl);
    if (p.silu) v *= Sigmoid(v);
    y[b * p.y_stride_b + d * p.y_stride_d + t * p.y_stride_l] = DStore<T>(v);
  }

  if (p.final_state != nullptr && blockIdx.y == 0) {
    T* fs = static_cast<T*>(p.final_state);
    const int taps = p.width - 1;
    for (int i = threadIdx.x; i < kTileD * taps; i += blockDim.x) {
      const int dl = i / taps, j = i % taps;
      const int64_t d = d0 + dl;
      if (d >= p.channels) continue;
      fs[b * p.final_state_stride_b + d * p.final_state_stride_d + j * p.final_state_stride_k] =
          DStore<T>(LoadX<T>(p, b, d, p.length - taps + j));
    }
  }
}

// Grid (D tiles, chunks, B); block (b, chunk) walks L tiles [chunk * tiles_per_chunk, ...).
template <typename T, typename W>
__global__ void __launch_bounds__(kThreads)
    CausalConv1dBackwardKernel(CausalConv1dBackwardParams bp, int tiles_per_chunk,
                               float* __restrict__ partial) {  // (B * chunks, D, K + 1)
  __shared__ float xs[kTileD][kBackwardRow];
  __shared__ float gs[kTileD][kGradRow];
  __shared__ float ws[kTileD][kWeightRow];
  __shared__ float bs[kTileD];
  __shared__ int32_t seq[kBackwardRow];
  const CausalConv1dParams& p = bp.forward;
  const int K = p.width;
  const int64_t d0 = static_cast<int64_t>(blockIdx.x) * kTileD;
  const int64_t b = blockIdx.z;
  LoadWeights<W>(p, d0, ws, bs);

  float acc[kPairsPerThread];
#pragma unroll
  for (int j = 0; j < kPairsPerThread; ++j) acc[j] = 0.f;

  const T* dy = static_cast<const T*>(bp.dy);
  T* dx = static_cast<T*>(bp.dx);
  T* dinit = static_cast<T*>(bp.dinitial_state);
  const bool dy_channel_fast = ChannelFast(bp.dy_stride_d, bp.dy_stride_l);
  const bool dx_channel_fast = ChannelFast(bp.dx_stride_d, bp.dx_stride_l);
  const int64_t num_tiles = (p.length + kTileL - 1) / kTileL;
  const int64_t tile_begin = static_cast<int64_t>(blockIdx.y) * tiles_per_chunk;
  const int64_t tile_end =
      tile_begin + tiles_per_chunk < num_tiles ? tile_begin + tiles_per_chunk : num_tiles;
  const int grad_cols = kTileL + K - 1;  // dpre for t in [t0, t0 + kTileL + K - 1)

  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    const int64_t t0 = tile * kTileL;
    __syncthreads();  // the previous tile's readers are done with xs, gs and seq
    LoadXTile<T, kBackwardRow>(p, b, d0, t0, kHalo + grad_cols, xs, seq);
    __syncthreads();

    // dpre[t0 + j] = dy * act'(pre), zero past L or D.
    for (int i = threadIdx.x; i < kTileD * grad_cols; i += blockDim.x) {
      int dl, j;
      TileIndex(i, grad_cols, dy_channel_fast, dl, j);
      const int64_t d = d0 + dl, t = t0 + j;
      float g = 0.f;
      if (d < p.channels && t < p.length) {
        g = DLoad(dy[b * bp.dy_stride_b + d * bp.dy_stride_d + t * bp.dy_stride_l]);
        if (p.silu) {
          const float pre = PreAt<kBackwardRow>(p, xs, seq, ws, bs, dl, kHalo + j);
          const float s = Sigmoid(pre);
          g *= s * (1.f + pre * (1.f - s));
        }
      }
      gs[dl][j] = g;
    }
    __syncthreads();

    // dx[t'] for t' in [t0, t0 + kTileL), and dinitial_state (t' in [-(K-1), 0)) on tile 0.
    const int first = (t0 == 0 && dinit != nullptr) ? -(K - 1) : 0;
    const int cols = kTileL - first;
    for (int i = threadIdx.x; i < kTileD * cols; i += blockDim.x) {
      int dl, c;
      TileIndex(i, cols, dx_channel_fast, dl, c);
      const int tl = first + c;
      const int64_t d = d0 + dl, tp = t0 + tl;
      if (d >= p.channels || tp >= p.length) continue;
      float v = 0.f;
#pragma unroll
      for (int k = 0; k < kCausalConv1dMaxWidth; ++k) {
        const int j = tl + (K - 1) - k;  // the output t = t0 + j that reads t' through tap k
        if (k < K && j >= 0) {
          const bool tap = p.seq_idx == nullptr || seq[kHalo + tl] == seq[kHalo + j];
          if (tap) v += ws[dl][k] * gs[dl][j];
        }
      }
      if (tp >= 0) {
        dx[b * bp.dx_stride_b + d * bp.dx_stride_d + tp * bp.dx_stride_l] = DStore<T>(v);
      } else {
        dinit[b * bp.dinitial_state_stride_b + d * bp.dinitial_state_stride_d +
              (tp + K - 1) * bp.dinitial_state_stride_k] = DStore<T>(v);
      }
    }

    // This tile's dweight / dbias terms: pair (dl, k), lanes along dl; k == K is the bias.
    const int taps = K + 1;
#pragma unroll
    for (int j = 0; j < kPairsPerThread; ++j) {
      const int pair = threadIdx.x + j * kThreads;
      if (pair >= kTileD * taps) continue;
      const int dl = pair % kTileD, k = pair / kTileD;
      const int valid = static_cast<int>(p.length - t0 < kTileL ? p.length - t0 : kTileL);
      float sum = 0.f;
      if (k == K) {
        for (int tl = 0; tl < valid; ++tl) sum += gs[dl][tl];
      } else {
        for (int tl = 0; tl < valid; ++tl) {
          const int src = kHalo + tl - (K - 1) + k;
          const bool tap = p.seq_idx == nullptr || seq[src] == seq[kHalo + tl];
          if (tap) sum += gs[dl][tl] * xs[dl][src];
        }
      }
      acc[j] += sum;
    }
  }

  const int taps = K + 1;
  const int64_t row = static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y;
  float* out = partial + row * p.channels * taps;
#pragma unroll
  for (int j = 0; j < kPairsPerThread; ++j) {
    const int pair = threadIdx.x + j * kThreads;
    if (pair >= kTileD * taps) continue;
    const int dl = pair % kTileD, k = pair / kTileD;
    const int64_t d = d0 + dl;
    if (d < p.channels) out[d * taps + k] = acc[j];
  }
}

// Column c = d * (K+1) + k of the partials, summed over rows in order.
template <typename W>
__global__ void __launch_bounds__(kReduceThreads)
    CausalConv1dWeightGradKernel(const float* __restrict__ partial,  // (rows, D * (K+1))
                                 int64_t rows, CausalConv1dBackwardParams bp) {
  const CausalConv1dParams& p = bp.forward;
  const int taps = p.width + 1;
  const int64_t columns = p.channels * taps;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= columns) return;
  float sum = 0.f;
  for (int64_t r = 0; r < rows; ++r) sum += partial[r * columns + c];
  const int64_t d = c / taps;
  const int k = static_cast<int>(c % taps);
  if (k < p.width) {
    static_cast<W*>(bp.dweight)[d * bp.dweight_stride_d + k * bp.dweight_stride_k] =
        DStore<W>(sum);
  } else if (bp.dbias != nullptr) {
    static_cast<W*>(bp.dbias)[d * bp.dbias_stride] = DStore<W>(sum);
  }
}

template <typename T, typename W>
__global__ void __launch_bounds__(kUpdateThreads)
    CausalConv1dUpdateKernel(CausalConv1dUpdateParams p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.batch * p.channels) return;
  const int64_t b = i / p.channels, d = i % p.channels;
  const int K = p.width;
  const W* w = static_cast<const W*>(p.weight);
  const W* bias = static_cast<const W*>(p.bias);
  T* state = static_cast<T*>(p.conv_state) + b * p.state_stride_b + d * p.state_stride_d;
  float window[kCausalConv1dMaxWidth];
#pragma unroll
  for (int k = 0; k < kCausalConv1dMaxWidth; ++k) {
    if (k < K - 1) window[k] = DLoad(state[k * p.state_stride_k]);
  }
  window[K - 1] = DLoad(static_cast<const T*>(p.x)[b * p.x_stride_b + d * p.x_stride_d]);
  float acc = bias != nullptr ? DLoad(bias[d * p.bias_stride]) : 0.f;
#pragma unroll
  for (int k = 0; k < kCausalConv1dMaxWidth; ++k) {
    if (k < K) acc += DLoad(w[d * p.weight_stride_d + k * p.weight_stride_k]) * window[k];
  }
  if (p.silu) acc *= Sigmoid(acc);
  static_cast<T*>(p.y)[b * p.y_stride_b + d * p.y_stride_d] = DStore<T>(acc);
#pragma unroll
  for (int k = 0; k < kCausalConv1dMaxWidth - 1; ++k) {
    if (k < K - 1) state[k * p.state_stride_k] = DStore<T>(window[k + 1]);
  }
}

// Version 1: thread i = (b, d, t) with t fastest; the thread of t = 0 writes final_state.
template <typename T, typename W>
__global__ void __launch_bounds__(kNaiveThreads) CausalConv1dNaiveKernel(CausalConv1dParams p) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.batch * p.channels * p.length) return;
  const int64_t t = i % p.length, d = (i / p.length) % p.channels, b = i / (p.length * p.channels);
  const int K = p.width;
  const W* w = static_cast<const W*>(p.weight);
  float acc = p.bias != nullptr ? DLoad(static_cast<const W*>(p.bias)[d * p.bias_stride]) : 0.f;
  const int32_t own = p.seq_idx != nullptr ? LoadSeq(p, b, t) : 0;
  for (int k = 0; k < K; ++k) {
    const int64_t src = t - (K - 1) + k;
    if (p.seq_idx != nullptr && LoadSeq(p, b, src) != own) continue;
    acc += DLoad(w[d * p.weight_stride_d + k * p.weight_stride_k]) * LoadX<T>(p, b, d, src);
  }
  if (p.silu) acc *= Sigmoid(acc);
  static_cast<T*>(p.y)[b * p.y_stride_b + d * p.y_stride_d + t * p.y_stride_l] = DStore<T>(acc);
  if (p.final_state != nullptr && t == 0) {
    for (int j = 0; j < K - 1; ++j) {
      static_cast<T*>(p.final_state)[b * p.final_state_stride_b + d * p.final_state_stride_d +
                                     j * p.final_state_stride_k] =
          DStore<T>(LoadX<T>(p, b, d, p.length - (K - 1) + j));
    }
  }
}

// --- Launchers ----------------------------------------------------------------------------

inline unsigned Blocks(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

template <typename T, typename W>
absl::Status ForwardCudaTyped(const CausalConv1dParams& p, cudaStream_t stream) {
  const dim3 grid(Blocks(p.channels, kTileD), Blocks(p.length, kTileL),
                  static_cast<unsigned>(p.batch));
  CausalConv1dForwardKernel<T, W><<<grid, kThreads, 0, stream>>>(p);
  return LastLaunchStatus("CausalConv1dForwardKernel", __FILE__, __LINE__);
}

template <typename T, typename W>
absl::Status NaiveCudaTyped(const CausalConv1dParams& p, cudaStream_t stream) {
  CausalConv1dNaiveKernel<T, W>
      <<<Blocks(p.batch * p.channels * p.length, kNaiveThreads), kNaiveThreads, 0, stream>>>(p);
  return LastLaunchStatus("CausalConv1dNaiveKernel", __FILE__, __LINE__);
}

template <typename T, typename W>
absl::Status BackwardCudaTyped(const CausalConv1dBackwardParams& bp, cudaStream_t stream) {
  const CausalConv1dParams& p = bp.forward;
  int device = 0, sms = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  // Enough blocks to fill the GPU; beyond that blocks walk several tiles, which keeps the
  // partial buffer (B * chunks rows) small.
  const int64_t d_tiles = Blocks(p.channels, kTileD);
  const int64_t l_tiles = Blocks(p.length, kTileL);
  const int64_t target = static_cast<int64_t>(sms) * kBackwardBlocksPerSm;
  const int64_t per_chunk_wanted = (d_tiles * l_tiles * p.batch + target - 1) / target;
  const int64_t tiles_per_chunk = std::clamp<int64_t>(per_chunk_wanted, 1, l_tiles);
  const int64_t chunks = (l_tiles + tiles_per_chunk - 1) / tiles_per_chunk;
  const int64_t rows = p.batch * chunks;
  const int64_t columns = p.channels * (p.width + 1);

  CachingAllocator& allocator = CachingAllocator::ForDevice(device);
  LYRA_ASSIGN_OR_RETURN(void* workspace,
                        allocator.Allocate(static_cast<size_t>(rows * columns) * sizeof(float)));
  float* partial = static_cast<float*>(workspace);
  const dim3 grid(static_cast<unsigned>(d_tiles), static_cast<unsigned>(chunks),
                  static_cast<unsigned>(p.batch));
  CausalConv1dBackwardKernel<T, W>
      <<<grid, kThreads, 0, stream>>>(bp, static_cast<int>(tiles_per_chunk), partial);
  absl::Status status = LastLaunchStatus("CausalConv1dBackwardKernel", __FILE__, __LINE__);
  if (status.ok()) {
    CausalConv1dWeightGradKernel<W>
        <<<Blocks(columns, kReduceThreads), kReduceThreads, 0, stream>>>(partial, rows, bp);
    status.Update(LastLaunchStatus("CausalConv1dWeightGradKernel", __FILE__, __LINE__));
  }
  // Stream order makes the immediate free safe: the next user of the block runs after us.
  allocator.Free(workspace);
  return status;
}

template <typename T, typename W>
absl::Status UpdateCudaTyped(const CausalConv1dUpdateParams& p, cudaStream_t stream) {
  CausalConv1dUpdateKernel<T, W>
      <<<Blocks(p.batch * p.channels, kUpdateThreads), kUpdateThreads, 0, stream>>>(p);
  return LastLaunchStatus("CausalConv1dUpdateKernel", __FILE__, __LINE__);
}

}  // namespace conv1d_internal

// The typed entry points each conv1d_<dtype>.cu defines (for W = float and W = T).
#define LYRA_CONV1D_DECLARE_ONE(T, W)                                                         \
  absl::Status CausalConv1dCudaTyped_##T##_##W(const CausalConv1dParams& p, cudaStream_t s);   \
  absl::Status CausalConv1dNaiveCudaTyped_##T##_##W(const CausalConv1dParams& p,               \
                                                    cudaStream_t s);                           \
  absl::Status CausalConv1dBackwardCudaTyped_##T##_##W(const CausalConv1dBackwardParams& p,    \
                                                       cudaStream_t s);                        \
  absl::Status CausalConv1dUpdateCudaTyped_##T##_##W(const CausalConv1dUpdateParams& p,        \
                                                     cudaStream_t s);

#define LYRA_CONV1D_DEFINE_ONE(T, W)                                                          \
  absl::Status CausalConv1dCudaTyped_##T##_##W(const CausalConv1dParams& p, cudaStream_t s) {  \
    return conv1d_internal::ForwardCudaTyped<T, W>(p, s);                                      \
  }                                                                                            \
  absl::Status CausalConv1dNaiveCudaTyped_##T##_##W(const CausalConv1dParams& p,               \
                                                    cudaStream_t s) {                          \
    return conv1d_internal::NaiveCudaTyped<T, W>(p, s);                                        \
  }                                                                                            \
  absl::Status CausalConv1dBackwardCudaTyped_##T##_##W(const CausalConv1dBackwardParams& p,    \
                                                       cudaStream_t s) {                       \
    return conv1d_internal::BackwardCudaTyped<T, W>(p, s);                                     \
  }                                                                                            \
  absl::Status CausalConv1dUpdateCudaTyped_##T##_##W(const CausalConv1dUpdateParams& p,        \
                                                     cudaStream_t s) {                         \
    return conv1d_internal::UpdateCudaTyped<T, W>(p, s);                                       \
  }

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_CONV1D_KERNELS_CUH_
