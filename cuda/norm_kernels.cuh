// RMSNorm and LayerNorm CUDA kernels with the fused residual add (the math is in cuda/rms_norm.h
// and cuda/layer_norm.h); included by rms_norm_<dtype>.cu and layer_norm_<dtype>.cu. One
// template serves both norms: kLayer adds the mean (and bias) to RMSNorm's statistics.
//
// Shapes: every row operand is (rows, H) with a row stride and unit column stride; weight and
// bias are (H); mean and rstd are (rows). T is x's / y's / dy's / dx's storage type, C its
// compute type (residual, residual_out, weight, bias, statistics and gradients of those are C).
//
// Forward: one block per row, threads strided along H, moving 16 bytes of T (kVec elements) per
// load when every row operand starts 16-byte aligned (kVec * sizeof(C) for the C operands).
//   pass 1: h = x + residual, written to residual_out; per-thread sum of h^2 (RMSNorm) or a
//           Welford (count, mean, M2) triple (LayerNorm), combined across the block.
//   pass 2: re-reads x and residual (L1/L2 hits: the row was read a moment ago) and writes y.
// Backward: a grid of `blocks` (enough to fill the GPU) striding over rows; each block keeps
// its dweight (and dbias) partial sums in shared memory (each column belongs to one thread for
// every row, so no atomics and no barriers are needed), writes them to a (blocks, H) scratch
// buffer, and a second kernel sums that buffer over blocks in a fixed order: dweight is
// deterministic for a given GPU.
//   pass 1: the row sums  sum_j g_j * xhat_j  (and sum_j g_j),  g = dy * weight; dweight += ...
//   pass 2: dx = T(dh) and dresidual = dh.
// Precision: C for all arithmetic and sums. Outputs are written (=).
#ifndef LYRA_CUDA_NORM_KERNELS_CUH_
#define LYRA_CUDA_NORM_KERNELS_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/layer_norm.h"
#include "cuda/reduce_block.cuh"
#include "cuda/rms_norm.h"

namespace lyra::cuda {
namespace norm_internal {

inline constexpr int kNormMaxThreads = 512;
// The dweight column sum: blocks of kColumnSumWidth columns x kColumnSumDepth threads that
// stride over the partial rows.
inline constexpr int kColumnSumWidth = 32;
inline constexpr int kColumnSumDepth = 16;
// Dynamic shared memory beyond this needs an explicit opt-in per kernel.
inline constexpr size_t kDefaultDynamicSharedBytes = size_t{48} << 10;
// The bias partials start this many (compute-type) elements into shared memory, rounded so that
// vector accesses stay aligned.
inline constexpr int64_t kSharedRowAlign = 8;

template <typename T>
struct ForwardArgs {
  using C = ComputeType<T>;
  int64_t rows;
  int64_t hidden;
  C eps;
  const T* x;  // (rows, H)
  int64_t x_stride;
  const C* residual;  // (rows, H) or null
  int64_t residual_stride;
  const C* weight;  // (H)
  const C* bias;    // (H) or null; LayerNorm only
  T* y;             // (rows, H)
  int64_t y_stride;
  C* residual_out;  // (rows, H) or null
  int64_t residual_out_stride;
  C* mean;  // (rows); LayerNorm only
  C* rstd;  // (rows)
};

template <typename T>
struct BackwardArgs {
  using C = ComputeType<T>;
  int64_t rows;
  int64_t hidden;
  const T* dy;  // (rows, H)
  int64_t dy_stride;
  const C* dresidual_out;  // (rows, H) or null
  int64_t dresidual_out_stride;
  const C* h;  // (rows, H)
  int64_t h_stride;
  const C* weight;  // (H)
  const C* mean;    // (rows); LayerNorm only
  const C* rstd;    // (rows)
  T* dx;            // (rows, H)
  int64_t dx_stride;
  C* dresidual;  // (rows, H) or null
  int64_t dresidual_stride;
  C* weight_partials;  // (gridDim.x, H)
  C* bias_partials;    // (gridDim.x, H) or null; LayerNorm only
};

// N elements of T at p (N * sizeof(T)-aligned), converted to C.
template <int N, typename T, typename C>
__device__ __forceinline__ void LoadPack(const T* p, C (&out)[N]) {
  const Vec<T, N> v = *reinterpret_cast<const Vec<T, N>*>(p);
#pragma unroll
  for (int j = 0; j < N; ++j) out[j] = static_cast<C>(DLoad(v.v[j]));
}

template <int N, typename T, typename C>
__device__ __forceinline__ void StorePack(T* p, const C (&in)[N]) {
  Vec<T, N> v;
#pragma unroll
  for (int j = 0; j < N; ++j) v.v[j] = DStore<T>(in[j]);
  *reinterpret_cast<Vec<T, N>*>(p) = v;
}

// p[0, N) += add, as one vector access (p is N * sizeof(C)-aligned): the shared-memory dweight
// partials, so that a warp's accesses stay free of bank conflicts.
template <int N, typename C>
__device__ __forceinline__ void AccumulatePack(C* p, const C (&add)[N]) {
  Vec<C, N> v = *reinterpret_cast<Vec<C, N>*>(p);
#pragma unroll
  for (int j = 0; j < N; ++j) v.v[j] += add[j];
  *reinterpret_cast<Vec<C, N>*>(p) = v;
}

// v rounded to T and read back: Hugging Face's `.to(input_dtype)` before the weight multiply.
template <typename T>
__device__ __forceinline__ ComputeType<T> RoundTo(ComputeType<T> v) {
  return DLoad(DStore<T>(v));
}

// Visits [0, hidden) block-strided: f(std::integral_constant<int, kVec>, l) for each whole pack
// starting at l, then f(std::integral_constant<int, 1>, l) for the last hidden % kVec elements.
// The element-to-thread map depends only on blockDim.x and hidden, so it is the same in every
// row and every pass.
template <int kVec, typename F>
__device__ __forceinline__ void ForEachPack(int64_t hidden, F&& f) {
  const int64_t packs = hidden / kVec;
  for (int64_t v = threadIdx.x; v < packs; v += blockDim.x) {
    f(std::integral_constant<int, kVec>{}, v * kVec);
  }
  if constexpr (kVec > 1) {
    for (int64_t l = packs * kVec + threadIdx.x; l < hidden; l += blockDim.x) {
      f(std::integral_constant<int, 1>{}, l);
    }
  }
}

template <typename C>
struct SumOp {
  __device__ __forceinline__ C Identity() const { return C(0); }
  __device__ __forceinline__ C Combine(C a, C b) const { return a + b; }
};

// Running (count, mean, M2 = sum of squared deviations) of a set of values.
template <typename C>
struct Welford {
  C count;
  C mean;
  C m2;
};

// Chan et al.'s pairwise combination of two Welford triples.
template <typename C>
struct WelfordOp {
  __device__ __forceinline__ Welford<C> Identity() const { return Welford<C>{0, 0, 0}; }
  __device__ __forceinline__ Welford<C> Combine(Welford<C> a, Welford<C> b) const {
    const C count = a.count + b.count;
    if (count == C(0)) return a;
    const C delta = b.mean - a.mean;
    const C b_share = b.count / count;
    return Welford<C>{count, a.mean + delta * b_share, a.m2 + b.m2 + delta * delta * a.count * b_share};
  }
};

// The backward's two row sums: sum_j g_j (LayerNorm only) and sum_j g_j * xhat_j.
template <typename C>
struct RowSums {
  C g;
  C g_xhat;
};

template <typename C>
struct RowSumsOp {
  __device__ __forceinline__ RowSums<C> Identity() const { return RowSums<C>{0, 0}; }
  __device__ __forceinline__ RowSums<C> Combine(RowSums<C> a, RowSums<C> b) const {
    return RowSums<C>{a.g + b.g, a.g_xhat + b.g_xhat};
  }
};

__device__ __forceinline__ float SqrtC(float x) { return sqrtf(x); }
__device__ __forceinline__ double SqrtC(double x) { return sqrt(x); }

// Grid (rows), block (threads along H).
template <typename T, int kVec, bool kLayer>
__global__ void __launch_bounds__(kNormMaxThreads) NormForwardKernel(ForwardArgs<T> a) {
  using C = ComputeType<T>;
  using Stats = std::conditional_t<kLayer, Welford<C>, C>;
  using Op = std::conditional_t<kLayer, WelfordOp<C>, SumOp<C>>;
  __shared__ Stats scratch[kWarpSize];
  const int64_t r = blockIdx.x;
  const T* x = a.x + r * a.x_stride;
  const C* residual = a.residual != nullptr ? a.residual + r * a.residual_stride : nullptr;
  C* residual_out = a.residual_out != nullptr ? a.residual_out + r * a.residual_out_stride : nullptr;
  T* y = a.y + r * a.y_stride;

  // h = x + residual for the N elements at l.
  auto load_h = [&](auto n, int64_t l, auto& h) {
    constexpr int N = decltype(n)::value;
    LoadPack<N>(x + l, h);
    if (residual != nullptr) {
      C res[N];
      LoadPack<N>(residual + l, res);
#pragma unroll
      for (int j = 0; j < N; ++j) h[j] += res[j];
    }
  };

  Stats stats = Op{}.Identity();
  ForEachPack<kVec>(a.hidden, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    C h[N];
    load_h(n, l, h);
    if (residual_out != nullptr) StorePack<N>(residual_out + l, h);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      if constexpr (kLayer) {
        stats.count += C(1);
        const C delta = h[j] - stats.mean;
        stats.mean += delta / stats.count;
        stats.m2 += delta * (h[j] - stats.mean);
      } else {
        stats += h[j] * h[j];
      }
    }
  });
  stats = BlockReduce(Op{}, stats, scratch);
  const C hidden = static_cast<C>(a.hidden);
  C mean = 0, var;
  if constexpr (kLayer) {
    mean = stats.mean;
    var = stats.m2 / hidden;
  } else {
    var = stats / hidden;
  }
  const C rstd = C(1) / SqrtC(var + a.eps);
  if (threadIdx.x == 0) {
    a.rstd[r] = rstd;
    if constexpr (kLayer) a.mean[r] = mean;
  }

  ForEachPack<kVec>(a.hidden, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    C h[N], w[N], out[N];
    load_h(n, l, h);
    LoadPack<N>(a.weight + l, w);
    if constexpr (kLayer) {
      C b[N] = {};
      if (a.bias != nullptr) LoadPack<N>(a.bias + l, b);
#pragma unroll
      for (int j = 0; j < N; ++j) out[j] = (h[j] - mean) * rstd * w[j] + b[j];
    } else {
#pragma unroll
      for (int j = 0; j < N; ++j) out[j] = RoundTo<T>(h[j] * rstd) * w[j];
    }
    StorePack<N>(y + l, out);
  });
}

// Shared memory of the backward: dweight partials (H), then, at a kSharedRowAlign boundary,
// dbias partials (H).
__host__ __device__ inline int64_t BiasSharedOffset(int64_t hidden) {
  return (hidden + kSharedRowAlign - 1) / kSharedRowAlign * kSharedRowAlign;
}

// Grid (blocks <= rows) striding over rows, block (threads along H); dynamic shared memory as
// BiasSharedOffset describes.
template <typename T, int kVec, bool kLayer>
__global__ void __launch_bounds__(kNormMaxThreads) NormBackwardKernel(BackwardArgs<T> a) {
  using C = ComputeType<T>;
  __shared__ RowSums<C> scratch[kWarpSize];
  extern __shared__ __align__(32) unsigned char norm_shared[];
  C* dweight = reinterpret_cast<C*>(norm_shared);                      // (H)
  const bool with_bias = kLayer && a.bias_partials != nullptr;
  C* dbias = dweight + BiasSharedOffset(a.hidden);                     // (H) if with_bias
  const int64_t H = a.hidden;

  ForEachPack<kVec>(H, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      dweight[l + j] = 0;
      if (with_bias) dbias[l + j] = 0;
    }
  });

  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const T* dy = a.dy + r * a.dy_stride;
    const C* h = a.h + r * a.h_stride;
    const C* dres_out =
        a.dresidual_out != nullptr ? a.dresidual_out + r * a.dresidual_out_stride : nullptr;
    T* dx = a.dx + r * a.dx_stride;
    C* dres = a.dresidual != nullptr ? a.dresidual + r * a.dresidual_stride : nullptr;
    const C rstd = a.rstd[r];
    C mean = 0;
    if constexpr (kLayer) mean = a.mean[r];

    RowSums<C> sums{0, 0};
    ForEachPack<kVec>(H, [&](auto n, int64_t l) {
      constexpr int N = decltype(n)::value;
      C g[N], hv[N], w[N], dw[N];
      LoadPack<N>(dy + l, g);
      LoadPack<N>(h + l, hv);
      LoadPack<N>(a.weight + l, w);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const C xhat = (hv[j] - mean) * rstd;
        const C gw = g[j] * w[j];
        sums.g += gw;
        sums.g_xhat += gw * xhat;
        dw[j] = g[j] * (kLayer ? xhat : RoundTo<T>(xhat));
      }
      AccumulatePack<N>(dweight + l, dw);
      if (with_bias) AccumulatePack<N>(dbias + l, g);
    });
    sums = BlockReduce(RowSumsOp<C>{}, sums, scratch);
    const C hidden = static_cast<C>(H);
    const C mean_g = kLayer ? sums.g / hidden : C(0);
    const C mean_g_xhat = sums.g_xhat / hidden;

    ForEachPack<kVec>(H, [&](auto n, int64_t l) {
      constexpr int N = decltype(n)::value;
      C g[N], hv[N], w[N], dh[N];
      LoadPack<N>(dy + l, g);
      LoadPack<N>(h + l, hv);
      LoadPack<N>(a.weight + l, w);
      C extra[N] = {};
      if (dres_out != nullptr) LoadPack<N>(dres_out + l, extra);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const C xhat = (hv[j] - mean) * rstd;
        dh[j] = rstd * (g[j] * w[j] - mean_g - xhat * mean_g_xhat) + extra[j];
      }
      StorePack<N>(dx + l, dh);
      if (dres != nullptr) StorePack<N>(dres + l, dh);
    });
  }

  __syncthreads();  // the copy below reads columns other threads accumulated
  C* weight_row = a.weight_partials + static_cast<int64_t>(blockIdx.x) * H;
  C* bias_row = with_bias ? a.bias_partials + static_cast<int64_t>(blockIdx.x) * H : nullptr;
  for (int64_t c = threadIdx.x; c < H; c += blockDim.x) {
    weight_row[c] = dweight[c];
    if (with_bias) bias_row[c] = dbias[c];
  }
}

// out[c] = sum over b of partials[b, c], b in a fixed order. Grid (ceil(H / kColumnSumWidth)),
// block (kColumnSumWidth, kColumnSumDepth).
template <typename C>
__global__ void __launch_bounds__(kColumnSumWidth * kColumnSumDepth)
    ColumnSumKernel(const C* __restrict__ partials, int64_t blocks, int64_t hidden,
                    C* __restrict__ out) {
  __shared__ C tile[kColumnSumDepth][kColumnSumWidth + 1];
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kColumnSumWidth + threadIdx.x;
  C s = 0;
  if (c < hidden) {
    for (int64_t b = threadIdx.y; b < blocks; b += kColumnSumDepth) s += partials[b * hidden + c];
  }
  tile[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < hidden) {
    C total = 0;
#pragma unroll
    for (int k = 0; k < kColumnSumDepth; ++k) total += tile[k][threadIdx.x];
    out[c] = total;
  }
}

inline bool Aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// True if an operand of element type E (or a missing one) can be read kVec elements at a time:
// its base and every row start are kVec * sizeof(E)-aligned.
template <int kVec, typename E>
bool RowsVectorizable(const E* p, int64_t stride, int64_t rows) {
  return p == nullptr ||
         (Aligned(p, kVec * sizeof(E)) && (rows == 1 || stride % kVec == 0));
}

template <typename T, bool kLayer>
absl::Status NormForwardLaunch(const ForwardArgs<T>& a, cudaStream_t stream, const char* name) {
  if (a.rows == 0) return absl::OkStatus();
  constexpr int kVec = 16 / sizeof(T);
  const bool vectorized = RowsVectorizable<kVec>(a.x, a.x_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.residual, a.residual_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.y, a.y_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.residual_out, a.residual_out_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.weight, 0, 1) &&
                          RowsVectorizable<kVec>(a.bias, 0, 1);
  const int per_thread = vectorized ? kVec : 1;
  const int threads = WarpMultiple((a.hidden + per_thread - 1) / per_thread, kNormMaxThreads);
  const unsigned blocks = static_cast<unsigned>(a.rows);
  if (vectorized) {
    NormForwardKernel<T, kVec, kLayer><<<blocks, threads, 0, stream>>>(a);
  } else {
    NormForwardKernel<T, 1, kLayer><<<blocks, threads, 0, stream>>>(a);
  }
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR(name);
  return absl::OkStatus();
}

// dweight (and dbias, if non-null) are (H) C outputs.
template <typename T, bool kLayer>
absl::Status NormBackwardLaunch(BackwardArgs<T> a, ComputeType<T>* dweight,
                                ComputeType<T>* dbias, cudaStream_t stream, const char* name) {
  using C = ComputeType<T>;
  const int64_t H = a.hidden;
  if (a.rows == 0) {
    LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dweight, 0, H * sizeof(C), stream));
    if (dbias != nullptr) {
      LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dbias, 0, H * sizeof(C), stream));
    }
    return absl::OkStatus();
  }
  constexpr int kVec = 16 / sizeof(T);
  const bool vectorized =
      RowsVectorizable<kVec>(a.dy, a.dy_stride, a.rows) &&
      RowsVectorizable<kVec>(a.dresidual_out, a.dresidual_out_stride, a.rows) &&
      RowsVectorizable<kVec>(a.h, a.h_stride, a.rows) &&
      RowsVectorizable<kVec>(a.dx, a.dx_stride, a.rows) &&
      RowsVectorizable<kVec>(a.dresidual, a.dresidual_stride, a.rows) &&
      RowsVectorizable<kVec>(a.weight, 0, 1);
  const int per_thread = vectorized ? kVec : 1;
  const int threads = WarpMultiple((H + per_thread - 1) / per_thread, kNormMaxThreads);
  const bool with_bias = kLayer && dbias != nullptr;
  const size_t shared =
      static_cast<size_t>(with_bias ? BiasSharedOffset(H) + H : H) * sizeof(C);
  void (*kernel)(BackwardArgs<T>) = vectorized ? NormBackwardKernel<T, kVec, kLayer>
                                               : NormBackwardKernel<T, 1, kLayer>;
  if (shared > kDefaultDynamicSharedBytes) {
    LYRA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
  }
  int device = 0, sms = 0, per_sm = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, shared));
  const int64_t blocks =
      std::min<int64_t>(a.rows, static_cast<int64_t>(std::max(sms, 1)) * std::max(per_sm, 1));

  const size_t partial_elems = static_cast<size_t>(blocks * H);
  CachingAllocator& allocator = CachingAllocator::ForDevice(device);
  LYRA_ASSIGN_OR_RETURN(void* scratch,
                        allocator.Allocate(partial_elems * sizeof(C) * (with_bias ? 2 : 1)));
  a.weight_partials = static_cast<C*>(scratch);
  a.bias_partials = with_bias ? a.weight_partials + partial_elems : nullptr;
  kernel<<<static_cast<unsigned>(blocks), threads, shared, stream>>>(a);
  const absl::Status launched = LastLaunchStatus(name, __FILE__, __LINE__);
  absl::Status status = launched;
  if (launched.ok()) {
    const unsigned column_blocks =
        static_cast<unsigned>((H + kColumnSumWidth - 1) / kColumnSumWidth);
    const dim3 column_threads(kColumnSumWidth, kColumnSumDepth);
    ColumnSumKernel<C><<<column_blocks, column_threads, 0, stream>>>(a.weight_partials, blocks,
                                                                     H, dweight);
    if (with_bias) {
      ColumnSumKernel<C><<<column_blocks, column_threads, 0, stream>>>(a.bias_partials, blocks,
                                                                       H, dbias);
    }
    const absl::Status summed = LastLaunchStatus(name, __FILE__, __LINE__);
    status.Update(summed);
  }
  // Stream-ordered: work queued after this on `stream` (the only stream that may reuse the
  // block) runs after the kernels above.
  allocator.Free(scratch);
  return status;
}

}  // namespace norm_internal

template <typename T>
absl::Status RmsNormForwardCudaTyped(const RmsNormForwardParams& p, cudaStream_t stream) {
  using C = ComputeType<T>;
  norm_internal::ForwardArgs<T> a{};
  a.rows = p.rows;
  a.hidden = p.hidden;
  a.eps = static_cast<C>(p.eps);
  a.x = static_cast<const T*>(p.x);
  a.x_stride = p.x_stride;
  a.residual = static_cast<const C*>(p.residual);
  a.residual_stride = p.residual_stride;
  a.weight = static_cast<const C*>(p.weight);
  a.bias = nullptr;
  a.y = static_cast<T*>(p.y);
  a.y_stride = p.y_stride;
  a.residual_out = static_cast<C*>(p.residual_out);
  a.residual_out_stride = p.residual_out_stride;
  a.mean = nullptr;
  a.rstd = static_cast<C*>(p.rstd);
  return norm_internal::NormForwardLaunch<T, false>(a, stream, "RmsNormForward");
}

template <typename T>
absl::Status RmsNormBackwardCudaTyped(const RmsNormBackwardParams& p, cudaStream_t stream) {
  using C = ComputeType<T>;
  norm_internal::BackwardArgs<T> a{};
  a.rows = p.rows;
  a.hidden = p.hidden;
  a.dy = static_cast<const T*>(p.dy);
  a.dy_stride = p.dy_stride;
  a.dresidual_out = static_cast<const C*>(p.dresidual_out);
  a.dresidual_out_stride = p.dresidual_out_stride;
  a.h = static_cast<const C*>(p.h);
  a.h_stride = p.h_stride;
  a.weight = static_cast<const C*>(p.weight);
  a.mean = nullptr;
  a.rstd = static_cast<const C*>(p.rstd);
  a.dx = static_cast<T*>(p.dx);
  a.dx_stride = p.dx_stride;
  a.dresidual = static_cast<C*>(p.dresidual);
  a.dresidual_stride = p.dresidual_stride;
  return norm_internal::NormBackwardLaunch<T, false>(a, static_cast<C*>(p.dweight), nullptr,
                                                     stream, "RmsNormBackward");
}

template <typename T>
absl::Status LayerNormForwardCudaTyped(const LayerNormForwardParams& p, cudaStream_t stream) {
  using C = ComputeType<T>;
  norm_internal::ForwardArgs<T> a{};
  a.rows = p.rows;
  a.hidden = p.hidden;
  a.eps = static_cast<C>(p.eps);
  a.x = static_cast<const T*>(p.x);
  a.x_stride = p.x_stride;
  a.residual = static_cast<const C*>(p.residual);
  a.residual_stride = p.residual_stride;
  a.weight = static_cast<const C*>(p.weight);
  a.bias = static_cast<const C*>(p.bias);
  a.y = static_cast<T*>(p.y);
  a.y_stride = p.y_stride;
  a.residual_out = static_cast<C*>(p.residual_out);
  a.residual_out_stride = p.residual_out_stride;
  a.mean = static_cast<C*>(p.mean);
  a.rstd = static_cast<C*>(p.rstd);
  return norm_internal::NormForwardLaunch<T, true>(a, stream, "LayerNormForward");
}

template <typename T>
absl::Status LayerNormBackwardCudaTyped(const LayerNormBackwardParams& p, cudaStream_t stream) {
  using C = ComputeType<T>;
  norm_internal::BackwardArgs<T> a{};
  a.rows = p.rows;
  a.hidden = p.hidden;
  a.dy = static_cast<const T*>(p.dy);
  a.dy_stride = p.dy_stride;
  a.dresidual_out = static_cast<const C*>(p.dresidual_out);
  a.dresidual_out_stride = p.dresidual_out_stride;
  a.h = static_cast<const C*>(p.h);
  a.h_stride = p.h_stride;
  a.weight = static_cast<const C*>(p.weight);
  a.mean = static_cast<const C*>(p.mean);
  a.rstd = static_cast<const C*>(p.rstd);
  a.dx = static_cast<T*>(p.dx);
  a.dx_stride = p.dx_stride;
  a.dresidual = static_cast<C*>(p.dresidual);
  a.dresidual_stride = p.dresidual_stride;
  return norm_internal::NormBackwardLaunch<T, true>(a, static_cast<C*>(p.dweight),
                                                    static_cast<C*>(p.dbias), stream,
                                                    "LayerNormBackward");
}

#define LYRA_RMS_NORM_INSTANTIATE(T)                                                        \
  template absl::Status RmsNormForwardCudaTyped<T>(const RmsNormForwardParams&, cudaStream_t); \
  template absl::Status RmsNormBackwardCudaTyped<T>(const RmsNormBackwardParams&, cudaStream_t);
#define LYRA_RMS_NORM_DECLARE(T)                                                       \
  extern template absl::Status RmsNormForwardCudaTyped<T>(const RmsNormForwardParams&, \
                                                          cudaStream_t);               \
  extern template absl::Status RmsNormBackwardCudaTyped<T>(const RmsNormBackwardParams&, \
                                                           cudaStream_t);
#define LYRA_LAYER_NORM_INSTANTIATE(T)                                                     \
  template absl::Status LayerNormForwardCudaTyped<T>(const LayerNormForwardParams&,       \
                                                     cudaStream_t);                        \
  template absl::Status LayerNormBackwardCudaTyped<T>(const LayerNormBackwardParams&,     \
                                                      cudaStream_t);
#define LYRA_LAYER_NORM_DECLARE(T)                                                          \
  extern template absl::Status LayerNormForwardCudaTyped<T>(const LayerNormForwardParams&, \
                                                            cudaStream_t);                 \
  extern template absl::Status LayerNormBackwardCudaTyped<T>(                              \
      const LayerNormBackwardParams&, cudaStream_t);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_NORM_KERNELS_CUH_
