// Fused cross-entropy CUDA kernels (cuda/cross_entropy.h); included by cross_entropy_<dtype>.cu
// and cross_entropy_launch.cu.
//
// One block per row r of logits x (N, V); its threads stride along V. When a row is contiguous
// and every row starts on a 16-byte boundary, threads move 16-byte vectors (8 f16/bf16, 4 f32,
// 2 f64 per load).
//
// CrossEntropyRowKernel (kForward, and kForwardBackward with kGrad):
//   1. Online log-sum-exp in one read of the row: each thread keeps (m, s), s = sum exp(x - m);
//      per vector it takes the vector's max first, rescales s only when that max exceeds m
//      (rare after the first few vectors), then adds one exp per element. The block combines
//      the pairs with (m, s) + (m', s') = (M, s exp(m - M) + s' exp(m' - M)). lse = m + log s.
//   2. Thread 0 writes loss_r = lse - x[t_r] (x[t_r] read before pass 3 can overwrite it) and
//      lse_r.
//   3. kGrad only: dx = s (exp(x - lse) - [j == t]) over the row (the second read usually hits
//      L2); dx may be x itself.
// CrossEntropyBackwardKernel (kBackward): one pass, dx = g * grad_scale * (exp(x - lse_r) -
//   [j == t]) with g read from device memory by every block (no host sync).
// CheckTargetsKernel: grid-stride over the targets; per block a count of kept rows and the
//   lowest bad row, combined across blocks with one atomicAdd / atomicMin each.
//
// Precision: f32 statistics and gradient for f16/bf16/f32 (exp as exp2f of a log2(e)-scaled
// argument: one FMA and one MUFU.EX2 per element), f64 for f64. Outputs are written (=). Ignored
// rows: loss 0, lse 0, dx 0. A row holding NaN gives NaN; a row with +inf or all -inf gives NaN
// loss (as the CPU reference).
#ifndef LYRA_CUDA_CROSS_ENTROPY_KERNELS_CUH_
#define LYRA_CUDA_CROSS_ENTROPY_KERNELS_CUH_

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/cross_entropy.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/reduce_block.cuh"

namespace lyra::cuda {
namespace cross_entropy_internal {

inline constexpr int kRowThreads = 512;    // threads per row block (at most)
inline constexpr int kCheckThreads = 256;  // threads per target-check block
inline constexpr int kCheckMaxBlocks = 1024;
inline constexpr unsigned long long kNoBadRow = ~0ull;
inline constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float CExp(float x) { return exp2f(x * kLog2e); }
__device__ __forceinline__ double CExp(double x) { return exp(x); }
__device__ __forceinline__ float CLog(float x) { return logf(x); }
__device__ __forceinline__ double CLog(double x) { return log(x); }

// Sizes and strides (elements) of one row launch.
struct RowGeometry {
  int64_t vocab;
  int64_t logits_row_stride;
  int64_t dlogits_row_stride;
  int64_t targets_stride;
  int64_t ignore_index;
  bool targets_i64;
};

__device__ __forceinline__ int64_t LoadTarget(const void* targets, bool is_i64, int64_t index) {
  return is_i64 ? static_cast<const int64_t*>(targets)[index]
                : static_cast<int64_t>(static_cast<const int32_t*>(targets)[index]);
}

template <typename C>
struct MaxSum {
  C max;  // never NaN (NaN inputs are carried by sum)
  C sum;  // sum of exp(x - max)
};

template <typename C>
struct MaxSumOp {
  __device__ __forceinline__ MaxSum<C> Identity() const {
    return MaxSum<C>{-std::numeric_limits<C>::infinity(), C(0)};
  }
  __device__ __forceinline__ MaxSum<C> Combine(MaxSum<C> a, MaxSum<C> b) const {
    const C m = a.max > b.max ? a.max : b.max;
    if (m == -std::numeric_limits<C>::infinity()) return MaxSum<C>{m, a.sum + b.sum};
    return MaxSum<C>{m, a.sum * CExp(a.max - m) + b.sum * CExp(b.max - m)};
  }
};

struct CountSumOp {
  __device__ __forceinline__ unsigned long long Identity() const { return 0; }
  __device__ __forceinline__ unsigned long long Combine(unsigned long long a,
                                                        unsigned long long b) const {
    return a + b;
  }
};

struct RowMinOp {
  __device__ __forceinline__ unsigned long long Identity() const { return kNoBadRow; }
  __device__ __forceinline__ unsigned long long Combine(unsigned long long a,
                                                        unsigned long long b) const {
    return a < b ? a : b;
  }
};

// Visits [0, vocab) block-strided: f(std::integral_constant<int, kVec>, l) for each whole pack
// starting at l, then f(std::integral_constant<int, 1>, l) for the last vocab % kVec elements.
template <int kVec, typename F>
__device__ __forceinline__ void ForEachPack(int64_t vocab, F&& f) {
  const int64_t packs = vocab / kVec;
#pragma unroll 4
  for (int64_t v = threadIdx.x; v < packs; v += blockDim.x) {
    f(std::integral_constant<int, kVec>{}, v * kVec);
  }
  if constexpr (kVec > 1) {
    for (int64_t l = packs * kVec + threadIdx.x; l < vocab; l += blockDim.x) {
      f(std::integral_constant<int, 1>{}, l);
    }
  }
}

// N elements at x + l (a vector load when N > 1: the launcher checked the alignment).
template <int N, typename T>
__device__ __forceinline__ Vec<T, N> LoadPack(const T* x, int64_t l) {
  return *reinterpret_cast<const Vec<T, N>*>(x + l);
}
template <int N, typename T>
__device__ __forceinline__ void StorePack(T* x, int64_t l, const Vec<T, N>& v) {
  *reinterpret_cast<Vec<T, N>*>(x + l) = v;
}

template <typename T>
__device__ __forceinline__ void ZeroRow(T* dx, int64_t vocab) {
  constexpr int kVecAny = 1;  // zero rows are rare (ignored targets): scalar stores suffice
  ForEachPack<kVecAny>(vocab, [&](auto, int64_t l) { dx[l] = DStore<T>(ComputeType<T>(0)); });
}

// Grid (N). logits (N, V); targets (N); loss, lse (N) compute type; dlogits (N, V), kGrad only,
// may equal logits.
template <typename T, int kVec, bool kGrad>
__global__ void __launch_bounds__(kRowThreads)
    CrossEntropyRowKernel(RowGeometry g, const T* logits, const void* __restrict__ targets,
                          ComputeType<T>* __restrict__ loss, ComputeType<T>* __restrict__ lse_out,
                          T* dlogits, ComputeType<T> grad_scale) {
  using C = ComputeType<T>;
  constexpr C kNegInf = -std::numeric_limits<C>::infinity();
  constexpr C kNaN = std::numeric_limits<C>::quiet_NaN();
  __shared__ MaxSum<C> scratch[kWarpSize];
  const int64_t r = blockIdx.x;
  const T* x = logits + r * g.logits_row_stride;
  const int64_t t = LoadTarget(targets, g.targets_i64, r * g.targets_stride);
  if (t == g.ignore_index) {  // uniform across the block
    if (threadIdx.x == 0) {
      loss[r] = C(0);
      if (lse_out != nullptr) lse_out[r] = C(0);
    }
    if constexpr (kGrad) ZeroRow(dlogits + r * g.dlogits_row_stride, g.vocab);
    return;
  }
  const bool in_range = t >= 0 && t < g.vocab;
  C target_logit = kNaN;
  if (threadIdx.x == 0 && in_range) target_logit = DLoad(x[t]);

  C m = kNegInf, s = 0;
  ForEachPack<kVec>(g.vocab, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    const Vec<T, N> pack = LoadPack<N>(x, l);
    C v[N];
    C pack_max = kNegInf;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      v[j] = DLoad(pack.v[j]);
      pack_max = v[j] > pack_max ? v[j] : pack_max;  // NaN is skipped here, carried by s
    }
    if (pack_max > m) {
      s *= CExp(m - pack_max);  // 0 while m is -inf (NaN stays NaN)
      m = pack_max;
    }
    const C shift = m == kNegInf ? C(0) : m;
#pragma unroll
    for (int j = 0; j < N; ++j) s += CExp(v[j] - shift);
  });
  const MaxSum<C> stats = BlockReduce(MaxSumOp<C>{}, MaxSum<C>{m, s}, scratch);
  const C lse = (stats.max == kNegInf ? C(0) : stats.max) + CLog(stats.sum);
  if (threadIdx.x == 0) {
    loss[r] = in_range ? lse - target_logit : kNaN;
    if (lse_out != nullptr) lse_out[r] = lse;
  }

  if constexpr (kGrad) {
    __syncthreads();  // thread 0 has read x[t] before any thread overwrites the row in place
    T* dx = dlogits + r * g.dlogits_row_stride;
    const C bad = in_range ? C(0) : kNaN;
    ForEachPack<kVec>(g.vocab, [&](auto n, int64_t l) {
      constexpr int N = decltype(n)::value;
      const Vec<T, N> pack = LoadPack<N>(x, l);
      Vec<T, N> out;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const C p = CExp(DLoad(pack.v[j]) - lse);
        out.v[j] = DStore<T>(grad_scale * (p - (l + j == t ? C(1) : C(0))) + bad);
      }
      StorePack<N>(dx, l, out);
    });
  }
}

// Grid (N). logits (N, V); targets (N); lse (N) compute type; grad_loss () g; dlogits (N, V),
// not overlapping logits.
template <typename T, int kVec>
__global__ void __launch_bounds__(kRowThreads)
    CrossEntropyBackwardKernel(RowGeometry g, const T* __restrict__ logits,
                               const void* __restrict__ targets,
                               const ComputeType<T>* __restrict__ lse_in,
                               const T* __restrict__ grad_loss, ComputeType<T> grad_scale,
                               T* __restrict__ dlogits) {
  using C = ComputeType<T>;
  const int64_t r = blockIdx.x;
  const T* x = logits + r * g.logits_row_stride;
  T* dx = dlogits + r * g.dlogits_row_stride;
  const int64_t t = LoadTarget(targets, g.targets_i64, r * g.targets_stride);
  if (t == g.ignore_index) {
    ZeroRow(dx, g.vocab);
    return;
  }
  const C scale = DLoad(*grad_loss) * grad_scale;
  const C lse = lse_in[r];
  const C bad = t >= 0 && t < g.vocab ? C(0) : std::numeric_limits<C>::quiet_NaN();
  ForEachPack<kVec>(g.vocab, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    const Vec<T, N> pack = LoadPack<N>(x, l);
    Vec<T, N> out;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const C p = CExp(DLoad(pack.v[j]) - lse);
      out.v[j] = DStore<T>(scale * (p - (l + j == t ? C(1) : C(0))) + bad);
    }
    StorePack<N>(dx, l, out);
  });
}

// Grid-stride over targets (N). result[0]: lowest bad row (preset to kNoBadRow); result[1]:
// kept rows (preset to 0).
template <typename I>
__global__ void __launch_bounds__(kCheckThreads)
    CheckTargetsKernel(int64_t rows, const I* __restrict__ targets, int64_t stride,
                       int64_t vocab, int64_t ignore_index, unsigned long long* result) {
  __shared__ unsigned long long scratch[kWarpSize];
  unsigned long long kept = 0, bad = kNoBadRow;
  for (int64_t r = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; r < rows;
       r += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = static_cast<int64_t>(targets[r * stride]);
    if (t == ignore_index) continue;
    if (t < 0 || t >= vocab) {
      if (static_cast<unsigned long long>(r) < bad) bad = static_cast<unsigned long long>(r);
    } else {
      ++kept;
    }
  }
  kept = BlockReduce(CountSumOp{}, kept, scratch);
  bad = BlockReduce(RowMinOp{}, bad, scratch);
  if (threadIdx.x == 0) {
    if (kept != 0) atomicAdd(&result[1], kept);
    if (bad != kNoBadRow) atomicMin(&result[0], bad);
  }
}

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// True if 16-byte vectors can read every row: the first row is aligned and so is the row stride.
inline bool RowsVectorizable(const void* data, int64_t row_stride, int64_t rows,
                             size_t element_size) {
  return Aligned16(data) && (rows == 1 || (row_stride * element_size) % 16 == 0);
}

}  // namespace cross_entropy_internal

template <typename T>
absl::Status CrossEntropyCudaTyped(const CrossEntropyParams& p, cudaStream_t stream) {
  using namespace cross_entropy_internal;
  using C = ComputeType<T>;
  if (p.rows == 0) return absl::OkStatus();
  constexpr int kVec = 16 / sizeof(T);
  const bool writes_grad = p.op != CrossEntropyOp::kForward;
  const bool vectorized =
      p.vocab > 0 && RowsVectorizable(p.logits, p.logits_row_stride, p.rows, sizeof(T)) &&
      (!writes_grad || RowsVectorizable(p.dlogits, p.dlogits_row_stride, p.rows, sizeof(T)));
  const RowGeometry g{p.vocab,          p.logits_row_stride, p.dlogits_row_stride,
                      p.targets_stride, p.ignore_index,      p.target_dtype == DType::kI64};
  const int64_t per_thread = vectorized ? kVec : 1;
  const int threads = WarpMultiple((p.vocab + per_thread - 1) / per_thread, kRowThreads);
  const unsigned blocks = static_cast<unsigned>(p.rows);
  const T* logits = static_cast<const T*>(p.logits);
  T* dlogits = static_cast<T*>(p.dlogits);
  C* loss = static_cast<C*>(p.loss);
  C* lse = static_cast<C*>(p.lse);
  const C grad_scale = static_cast<C>(p.grad_scale);

  auto launch = [&]<int kV>() {
    switch (p.op) {
      case CrossEntropyOp::kForward:
        CrossEntropyRowKernel<T, kV, false><<<blocks, threads, 0, stream>>>(
            g, logits, p.targets, loss, lse, nullptr, grad_scale);
        break;
      case CrossEntropyOp::kForwardBackward:
        CrossEntropyRowKernel<T, kV, true><<<blocks, threads, 0, stream>>>(
            g, logits, p.targets, loss, lse, dlogits, grad_scale);
        break;
      case CrossEntropyOp::kBackward:
        CrossEntropyBackwardKernel<T, kV><<<blocks, threads, 0, stream>>>(
            g, logits, p.targets, lse, static_cast<const T*>(p.grad_loss), grad_scale, dlogits);
        break;
    }
  };
  if (vectorized) {
    launch.template operator()<kVec>();
  } else {
    launch.template operator()<1>();
  }
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR(CrossEntropyOpName(p.op).data());
  return absl::OkStatus();
}

#define LYRA_CROSS_ENTROPY_INSTANTIATE(T) \
  template absl::Status CrossEntropyCudaTyped<T>(const CrossEntropyParams&, cudaStream_t);
#define LYRA_CROSS_ENTROPY_DECLARE(T) \
  extern template absl::Status CrossEntropyCudaTyped<T>(const CrossEntropyParams&, cudaStream_t);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_CROSS_ENTROPY_KERNELS_CUH_
