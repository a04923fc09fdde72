// Warp- and block-level building blocks of the reduction, softmax and scan kernels.
//
// An "op" is a struct with `Acc Identity() const` and `Acc Combine(Acc, Acc) const` (associative
// and commutative), so one tree reduction serves sums, NaN-propagating max, argmax pairs and the
// softmax (max, sum of exp) pair. Blocks are one-dimensional with a multiple of 32 threads.
#ifndef LYRA_CUDA_REDUCE_BLOCK_CUH_
#define LYRA_CUDA_REDUCE_BLOCK_CUH_

#include <cuda_runtime.h>

#include <cstdint>

namespace lyra::cuda {

inline constexpr int kWarpSize = 32;
inline constexpr unsigned kFullWarpMask = 0xffffffffu;

// __shfl_xor_sync / __shfl_up_sync of any trivially copyable value, one 32-bit word at a time
// (covers bool, i64, f64 and small structs such as (value, index) pairs).
template <typename A>
__device__ __forceinline__ A ShflXor(const A& v, int lane_mask) {
  constexpr int kWords = (sizeof(A) + 3) / 4;
  int words[kWords] = {};
  memcpy(words, &v, sizeof(A));
#pragma unroll
  for (int w = 0; w < kWords; ++w) words[w] = __shfl_xor_sync(kFullWarpMask, words[w], lane_mask);
  A out;
  memcpy(&out, words, sizeof(A));
  return out;
}

template <typename A>
__device__ __forceinline__ A ShflUp(const A& v, int delta) {
  constexpr int kWords = (sizeof(A) + 3) / 4;
  int words[kWords] = {};
  memcpy(words, &v, sizeof(A));
#pragma unroll
  for (int w = 0; w < kWords; ++w) words[w] = __shfl_up_sync(kFullWarpMask, words[w], delta);
  A out;
  memcpy(&out, words, sizeof(A));
  return out;
}

// Butterfly reduction: every lane ends with the warp's combined value.
template <typename Op, typename A>
__device__ __forceinline__ A WarpReduce(const Op& op, A v) {
#pragma unroll
  for (int mask = kWarpSize / 2; mask > 0; mask >>= 1) v = op.Combine(v, ShflXor(v, mask));
  return v;
}

// Combines one value per thread of the block; every thread gets the result. `scratch` holds one
// Acc per warp (32 entries) in shared memory; the call ends with a barrier, so the same scratch
// may be reused by the next call.
template <typename Op, typename A>
__device__ __forceinline__ A BlockReduce(const Op& op, A v, A* scratch) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  v = WarpReduce(op, v);
  if (num_warps == 1) return v;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < num_warps ? scratch[lane] : op.Identity();
  v = WarpReduce(op, v);
  __syncthreads();
  return v;
}

// Rounds `n` threads up to whole warps within [kWarpSize, max_threads].
inline int WarpMultiple(int64_t n, int max_threads) {
  int64_t t = (n + kWarpSize - 1) / kWarpSize * kWarpSize;
  if (t < kWarpSize) t = kWarpSize;
  if (t > max_threads) t = max_threads;
  return static_cast<int>(t);
}

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_REDUCE_BLOCK_CUH_
