// Gated, grouped RMSNorm CUDA kernels (the math is in cuda/gated_rms_norm.h); included by
// gated_rms_norm_float.cu, gated_rms_norm_half.cu and gated_rms_norm_launch.cu. The building
// blocks (packed loads, the per-pack visitor, the column sum) are the RMSNorm kernels' of
// cuda/norm_kernels.cuh.
//
// Shapes: x, z, y, dy, dx, dz are (rows, H) with a row stride and unit column stride; weight and
// dweight (H); rstd (rows, H / S) contiguous. T is the storage type, C its compute type.
//
// Forward: grid (rows, H / S), one block per (row, group), threads strided along the group's S
// channels, moving 16 bytes of T (kVec elements) per load when every row operand, the weight and
// S allow it.
//   pass 1: h = x * silu(z), per-thread sum of h^2, combined across the block -> rstd.
//   pass 2: re-reads x and z (L1/L2 hits: the group was read a moment ago) and writes
//           y = T(T(h * rstd) * weight).
// Backward: grid (blocks, H / S); block (b, g) strides over rows r = b, b + blocks, ... and
// handles group g of each. Each thread owns the same columns in every row, so the block keeps
// its dweight partial sums for the group's S columns in shared memory without atomics or
// barriers; it writes them to a (blocks, H) scratch buffer and the column-sum kernel of
// norm_kernels.cuh adds that buffer over blocks in a fixed order: dweight is deterministic for a
// given GPU.
//   pass 1: the group sum  sum_j g_j n_j,  g = dy * weight,  n = h * rstd;  dweight += dy T(n)
//   pass 2: dh = rstd (g - n mean(g n)),  dx = T(dh silu(z)),  dz = T(dh x silu'(z)).
// Precision: C for all arithmetic and sums. Outputs are written (=).
#ifndef LYRA_CUDA_GATED_RMS_NORM_KERNELS_CUH_
#define LYRA_CUDA_GATED_RMS_NORM_KERNELS_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/gated_rms_norm.h"
#include "cuda/norm_kernels.cuh"
#include "cuda/reduce_block.cuh"

namespace lyra::cuda {
namespace gated_norm_internal {

using norm_internal::AccumulatePack;
using norm_internal::ForEachPack;
using norm_internal::kNormMaxThreads;
using norm_internal::LoadPack;
using norm_internal::RoundTo;
using norm_internal::RowsVectorizable;
using norm_internal::SqrtC;
using norm_internal::StorePack;
using norm_internal::SumOp;

template <typename T>
struct ForwardArgs {
  using C = ComputeType<T>;
  int64_t hidden;
  int64_t group_size;
  C eps;
  const T* x;  // (rows, H)
  int64_t x_stride;
  const T* z;  // (rows, H) or null
  int64_t z_stride;
  const C* weight;  // (H)
  T* y;             // (rows, H)
  int64_t y_stride;
  C* rstd;  // (rows, H / S)
};

template <typename T>
struct BackwardArgs {
  using C = ComputeType<T>;
  int64_t rows;
  int64_t hidden;
  int64_t group_size;
  const T* dy;  // (rows, H)
  int64_t dy_stride;
  const T* x;  // (rows, H)
  int64_t x_stride;
  const T* z;  // (rows, H) or null
  int64_t z_stride;
  const C* weight;  // (H)
  const C* rstd;    // (rows, H / S)
  T* dx;            // (rows, H)
  int64_t dx_stride;
  T* dz;  // (rows, H), used only with z
  int64_t dz_stride;
  C* weight_partials;  // (gridDim.x, H)
};

__device__ __forceinline__ float ExpC(float v) { return expf(v); }
__device__ __forceinline__ double ExpC(double v) { return exp(v); }

// torch's silu, v / (1 + exp(-v)).
template <typename C>
__device__ __forceinline__ C Silu(C v) {
  return v / (C(1) + ExpC(-v));
}

// h = x * silu(z) (or x) for the N elements at l of one row.
template <int N, typename T, typename C>
__device__ __forceinline__ void LoadGated(const T* x, const T* z, int64_t l, C (&h)[N]) {
  LoadPack<N>(x + l, h);
  if (z != nullptr) {
    C zv[N];
    LoadPack<N>(z + l, zv);
#pragma unroll
    for (int j = 0; j < N; ++j) h[j] *= Silu(zv[j]);
  }
}

// Grid (rows, H / S), block (threads along S).
template <typename T, int kVec>
__global__ void __launch_bounds__(kNormMaxThreads) GatedNormForwardKernel(ForwardArgs<T> a) {
  using C = ComputeType<T>;
  __shared__ C scratch[kWarpSize];
  const int64_t r = blockIdx.x;
  const int64_t g = blockIdx.y;
  const int64_t start = g * a.group_size;  // first channel of the group
  const T* x = a.x + r * a.x_stride + start;
  const T* z = a.z != nullptr ? a.z + r * a.z_stride + start : nullptr;
  const C* w = a.weight + start;
  T* y = a.y + r * a.y_stride + start;

  C sum_sq = 0;
  ForEachPack<kVec>(a.group_size, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    C h[N];
    LoadGated<N>(x, z, l, h);
#pragma unroll
    for (int j = 0; j < N; ++j) sum_sq += h[j] * h[j];
  });
  sum_sq = BlockReduce(SumOp<C>{}, sum_sq, scratch);
  const C rstd = C(1) / SqrtC(sum_sq / static_cast<C>(a.group_size) + a.eps);
  if (threadIdx.x == 0) a.rstd[r * gridDim.y + g] = rstd;

  ForEachPack<kVec>(a.group_size, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    C h[N], wv[N], out[N];
    LoadGated<N>(x, z, l, h);
    LoadPack<N>(w + l, wv);
#pragma unroll
    for (int j = 0; j < N; ++j) out[j] = RoundTo<T>(h[j] * rstd) * wv[j];
    StorePack<N>(y + l, out);
  });
}

// Grid (blocks <= rows, H / S) striding over rows, block (threads along S); dynamic shared
// memory: S compute-type dweight partials.
template <typename T, int kVec>
__global__ void __launch_bounds__(kNormMaxThreads) GatedNormBackwardKernel(BackwardArgs<T> a) {
  using C = ComputeType<T>;
  __shared__ C scratch[kWarpSize];
  extern __shared__ __align__(32) unsigned char gated_norm_shared[];
  C* dweight = reinterpret_cast<C*>(gated_norm_shared);  // (S)
  const int64_t S = a.group_size;
  const int64_t groups = gridDim.y;
  const int64_t g = blockIdx.y;
  const int64_t start = g * S;
  const C* w = a.weight + start;

  ForEachPack<kVec>(S, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
#pragma unroll
    for (int j = 0; j < N; ++j) dweight[l + j] = 0;
  });

  for (int64_t r = blockIdx.x; r < a.rows; r += gridDim.x) {
    const T* dy = a.dy + r * a.dy_stride + start;
    const T* x = a.x + r * a.x_stride + start;
    const T* z = a.z != nullptr ? a.z + r * a.z_stride + start : nullptr;
    T* dx = a.dx + r * a.dx_stride + start;
    T* dz = a.z != nullptr ? a.dz + r * a.dz_stride + start : nullptr;
    const C rstd = a.rstd[r * groups + g];

    C dot = 0;  // sum_j g_j n_j
    ForEachPack<kVec>(S, [&](auto n, int64_t l) {
      constexpr int N = decltype(n)::value;
      C gv[N], h[N], wv[N], dw[N];
      LoadPack<N>(dy + l, gv);
      LoadGated<N>(x, z, l, h);
      LoadPack<N>(w + l, wv);
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const C nj = h[j] * rstd;
        dot += gv[j] * wv[j] * nj;
        dw[j] = gv[j] * RoundTo<T>(nj);
      }
      AccumulatePack<N>(dweight + l, dw);
    });
    dot = BlockReduce(SumOp<C>{}, dot, scratch);
    const C mean_dot = dot / static_cast<C>(S);

    ForEachPack<kVec>(S, [&](auto n, int64_t l) {
      constexpr int N = decltype(n)::value;
      C gv[N], xv[N], wv[N], out_x[N];
      LoadPack<N>(dy + l, gv);
      LoadPack<N>(x + l, xv);
      LoadPack<N>(w + l, wv);
      if (z != nullptr) {
        C zv[N], out_z[N];
        LoadPack<N>(z + l, zv);
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const C s = C(1) / (C(1) + ExpC(-zv[j]));
          const C gate = Silu(zv[j]);
          const C nj = xv[j] * gate * rstd;
          const C dh = rstd * (gv[j] * wv[j] - nj * mean_dot);
          out_x[j] = dh * gate;
          out_z[j] = dh * xv[j] * s * (C(1) + zv[j] * (C(1) - s));
        }
        StorePack<N>(dz + l, out_z);
      } else {
#pragma unroll
        for (int j = 0; j < N; ++j) {
          out_x[j] = rstd * (gv[j] * wv[j] - xv[j] * rstd * mean_dot);
        }
      }
      StorePack<N>(dx + l, out_x);
    });
  }

  __syncthreads();  // the copy below reads columns other threads accumulated
  C* row = a.weight_partials + static_cast<int64_t>(blockIdx.x) * a.hidden + start;
  for (int64_t c = threadIdx.x; c < S; c += blockDim.x) row[c] = dweight[c];
}

}  // namespace gated_norm_internal

template <typename T>
absl::Status GatedRmsNormForwardCudaTyped(const GatedRmsNormForwardParams& p,
                                          cudaStream_t stream) {
  using C = ComputeType<T>;
  using namespace gated_norm_internal;
  if (p.rows == 0) return absl::OkStatus();
  ForwardArgs<T> a{};
  a.hidden = p.hidden;
  a.group_size = p.group_size;
  a.eps = static_cast<C>(p.eps);
  a.x = static_cast<const T*>(p.x);
  a.x_stride = p.x_stride;
  a.z = static_cast<const T*>(p.z);
  a.z_stride = p.z_stride;
  a.weight = static_cast<const C*>(p.weight);
  a.y = static_cast<T*>(p.y);
  a.y_stride = p.y_stride;
  a.rstd = static_cast<C*>(p.rstd);

  constexpr int kVec = 16 / sizeof(T);
  const bool vectorized = p.group_size % kVec == 0 &&
                          RowsVectorizable<kVec>(a.x, a.x_stride, p.rows) &&
                          RowsVectorizable<kVec>(a.z, a.z_stride, p.rows) &&
                          RowsVectorizable<kVec>(a.y, a.y_stride, p.rows) &&
                          RowsVectorizable<kVec>(a.weight, 0, 1);
  const int per_thread = vectorized ? kVec : 1;
  const int threads = WarpMultiple((p.group_size + per_thread - 1) / per_thread, kNormMaxThreads);
  const dim3 grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(p.hidden / p.group_size));
  if (vectorized) {
    GatedNormForwardKernel<T, kVec><<<grid, threads, 0, stream>>>(a);
  } else {
    GatedNormForwardKernel<T, 1><<<grid, threads, 0, stream>>>(a);
  }
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("GatedRmsNormForward");
  return absl::OkStatus();
}

template <typename T>
absl::Status GatedRmsNormBackwardCudaTyped(const GatedRmsNormBackwardParams& p,
                                           cudaStream_t stream) {
  using C = ComputeType<T>;
  using namespace gated_norm_internal;
  const int64_t H = p.hidden, S = p.group_size, groups = H / S;
  C* dweight_out = static_cast<C*>(p.dweight);
  if (p.rows == 0) {
    LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(dweight_out, 0, H * sizeof(C), stream));
    return absl::OkStatus();
  }
  BackwardArgs<T> a{};
  a.rows = p.rows;
  a.hidden = H;
  a.group_size = S;
  a.dy = static_cast<const T*>(p.dy);
  a.dy_stride = p.dy_stride;
  a.x = static_cast<const T*>(p.x);
  a.x_stride = p.x_stride;
  a.z = static_cast<const T*>(p.z);
  a.z_stride = p.z_stride;
  a.weight = static_cast<const C*>(p.weight);
  a.rstd = static_cast<const C*>(p.rstd);
  a.dx = static_cast<T*>(p.dx);
  a.dx_stride = p.dx_stride;
  a.dz = a.z != nullptr ? static_cast<T*>(p.dz) : nullptr;
  a.dz_stride = p.dz_stride;

  constexpr int kVec = 16 / sizeof(T);
  const bool vectorized = S % kVec == 0 && RowsVectorizable<kVec>(a.dy, a.dy_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.x, a.x_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.z, a.z_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.dx, a.dx_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.dz, a.dz_stride, a.rows) &&
                          RowsVectorizable<kVec>(a.weight, 0, 1);
  const int per_thread = vectorized ? kVec : 1;
  const int threads = WarpMultiple((S + per_thread - 1) / per_thread, kNormMaxThreads);
  const size_t shared = static_cast<size_t>(S) * sizeof(C);
  void (*kernel)(BackwardArgs<T>) =
      vectorized ? GatedNormBackwardKernel<T, kVec> : GatedNormBackwardKernel<T, 1>;
  if (shared > norm_internal::kDefaultDynamicSharedBytes) {
    LYRA_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared)));
  }
  int device = 0, sms = 0, per_sm = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, shared));
  // Enough (row-striding) blocks over all groups to fill the GPU once.
  const int64_t resident = static_cast<int64_t>(std::max(sms, 1)) * std::max(per_sm, 1);
  const int64_t blocks = std::clamp<int64_t>(resident / groups, 1, a.rows);

  CachingAllocator& allocator = CachingAllocator::ForDevice(device);
  LYRA_ASSIGN_OR_RETURN(void* scratch,
                        allocator.Allocate(static_cast<size_t>(blocks * H) * sizeof(C)));
  a.weight_partials = static_cast<C*>(scratch);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(groups));
  kernel<<<grid, threads, shared, stream>>>(a);
  absl::Status status = LastLaunchStatus("GatedRmsNormBackward", __FILE__, __LINE__);
  if (status.ok()) {
    using norm_internal::kColumnSumDepth;
    using norm_internal::kColumnSumWidth;
    const unsigned column_blocks =
        static_cast<unsigned>((H + kColumnSumWidth - 1) / kColumnSumWidth);
    norm_internal::ColumnSumKernel<C><<<column_blocks, dim3(kColumnSumWidth, kColumnSumDepth), 0,
                                        stream>>>(a.weight_partials, blocks, H, dweight_out);
    status.Update(LastLaunchStatus("GatedRmsNormBackward", __FILE__, __LINE__));
  }
  // Stream-ordered: work queued after this on `stream` (the only stream that may reuse the
  // block) runs after the kernels above.
  allocator.Free(scratch);
  return status;
}

#define LYRA_GATED_RMS_NORM_INSTANTIATE(T)                                               \
  template absl::Status GatedRmsNormForwardCudaTyped<T>(const GatedRmsNormForwardParams&, \
                                                        cudaStream_t);                   \
  template absl::Status GatedRmsNormBackwardCudaTyped<T>(const GatedRmsNormBackwardParams&, \
                                                         cudaStream_t);
#define LYRA_GATED_RMS_NORM_DECLARE(T)                                                          \
  extern template absl::Status GatedRmsNormForwardCudaTyped<T>(const GatedRmsNormForwardParams&, \
                                                               cudaStream_t);                   \
  extern template absl::Status GatedRmsNormBackwardCudaTyped<T>(                                \
      const GatedRmsNormBackwardParams&, cudaStream_t);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_GATED_RMS_NORM_KERNELS_CUH_
