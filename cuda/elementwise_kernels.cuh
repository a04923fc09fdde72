// The elementwise CUDA kernels, templated over a functor; included by the elementwise_*.cu files
// (one per dtype family, so nvcc compiles them in parallel).
//
// Two kernels per map:
//   ContiguousMapKernel: every operand contiguous and 16-byte aligned. Each thread moves whole
//     16-byte vectors (8 bf16, 4 f32) in a grid-stride loop: the bandwidth path.
//   StridedMapKernel: anything else (broadcast = zero stride, transposed views). Each element
//     recomputes its offsets from its linear index; IndexT is uint32_t when every offset fits.
//
// A functor F has `using Out = ...;` and `__device__ Out operator()(In0 x0, In1 x1, ...)` over
// storage types (it does its own loads and stores through DLoad / DStore).
#ifndef LYRA_CUDA_ELEMENTWISE_KERNELS_CUH_
#define LYRA_CUDA_ELEMENTWISE_KERNELS_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/elementwise_ops.h"
#include "cuda/strided.h"

namespace lyra::cuda {

inline constexpr int kMapThreads = 256;
inline constexpr int64_t kMapMaxBlocks = 1 << 16;  // grid-stride beyond this

template <int N>
struct OffsetCalculator {
  int ndim;
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];
};

template <typename IndexT, int N>
__device__ __forceinline__ void ComputeOffsets(const OffsetCalculator<N>& calc, IndexT linear,
                                               IndexT (&offsets)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) offsets[k] = 0;
  for (int d = calc.ndim - 1; d >= 0; --d) {
    IndexT size = static_cast<IndexT>(calc.sizes[d]);
    IndexT i = linear % size;
    linear /= size;
#pragma unroll
    for (int k = 0; k < N; ++k) offsets[k] += i * static_cast<IndexT>(calc.strides[k][d]);
  }
}

template <int kVec, typename T>
__device__ __forceinline__ Vec<T, kVec> LoadVec(const T* p, int64_t v) {
  return reinterpret_cast<const Vec<T, kVec>*>(p)[v];
}

template <int kVec, typename F, typename Out, typename... In>
__device__ __forceinline__ void MapVec(const F& f, Vec<Out, kVec>& out,
                                       const Vec<In, kVec>&... in) {
#pragma unroll
  for (int j = 0; j < kVec; ++j) out.v[j] = f(in.v[j]...);
}

// out[i] = f(in[i]...) over contiguous operands, kVec elements per vector.
template <int kVec, typename F, typename Out, typename... In>
__global__ void ContiguousMapKernel(int64_t n, F f, Out* __restrict__ out,
                                    const In* __restrict__... in) {
  const int64_t num_vec = n / kVec;
  const int64_t thread = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = thread; v < num_vec; v += stride) {
    Vec<Out, kVec> result;
    MapVec<kVec>(f, result, LoadVec<kVec>(in, v)...);
    reinterpret_cast<Vec<Out, kVec>*>(out)[v] = result;
  }
  // The last n % kVec elements, one per thread of the first threads.
  const int64_t tail = num_vec * kVec + thread;
  if (thread < kVec && tail < n) out[tail] = f(in[tail]...);
}

template <typename IndexT, typename F, typename Out, typename... In, size_t... I>
__device__ __forceinline__ void StridedApply(std::index_sequence<I...>, const F& f,
                                             const IndexT* offsets, Out* out, const In*... in) {
  out[offsets[0]] = f(in[offsets[I + 1]]...);
}

// out[off0] = f(in[off1]...) with offsets from an OffsetCalculator over 1 + #inputs operands.
template <typename IndexT, typename F, typename Out, typename... In>
__global__ void StridedMapKernel(int64_t n, OffsetCalculator<1 + sizeof...(In)> calc, F f,
                                 Out* out, const In*... in) {
  constexpr int N = 1 + sizeof...(In);
  const IndexT stride = static_cast<IndexT>(gridDim.x) * blockDim.x;
  for (IndexT i = static_cast<IndexT>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < static_cast<IndexT>(n); i += stride) {
    IndexT offsets[N];
    ComputeOffsets<IndexT, N>(calc, i, offsets);
    StridedApply(std::index_sequence_for<In...>{}, f, offsets, out, in...);
  }
}

inline int MapBlocks(int64_t work_items) {
  int64_t blocks = (work_items + kMapThreads - 1) / kMapThreads;
  return static_cast<int>(std::clamp<int64_t>(blocks, 1, kMapMaxBlocks));
}

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename F, typename Out, typename... In, size_t... I>
absl::Status LaunchMapImpl(std::index_sequence<I...>, const char* name, IterShape shape,
                           StridedOperand* operands, const F& f, cudaStream_t stream) {
  constexpr int N = 1 + sizeof...(In);
  CoalesceDims(shape, operands, N);
  const int64_t n = shape.numel();
  if (n == 0) return absl::OkStatus();
  Out* out = static_cast<Out*>(operands[0].data);
  bool contiguous = true;
  bool non_negative = true;
  int64_t max_offset = n;
  for (int k = 0; k < N; ++k) {
    contiguous = contiguous && IsContiguous(shape, operands[k]) && Aligned16(operands[k].data);
    int64_t extent = 0;
    for (int d = 0; d < shape.ndim; ++d) {
      non_negative = non_negative && operands[k].strides[d] >= 0;
      extent += (shape.sizes[d] - 1) * operands[k].strides[d];
    }
    max_offset = std::max(max_offset, extent + 1);
  }
  if (contiguous) {
    constexpr int kVec = 16 / std::max({sizeof(Out), sizeof(In)...});
    ContiguousMapKernel<kVec><<<MapBlocks(n / kVec + 1), kMapThreads, 0, stream>>>(
        n, f, out, static_cast<const In*>(operands[I + 1].data)...);
  } else {
    OffsetCalculator<N> calc;
    calc.ndim = shape.ndim;
    for (int d = 0; d < shape.ndim; ++d) {
      calc.sizes[d] = shape.sizes[d];
      for (int k = 0; k < N; ++k) calc.strides[k][d] = operands[k].strides[d];
    }
    if (non_negative && max_offset < (int64_t{1} << 31)) {
      StridedMapKernel<uint32_t><<<MapBlocks(n), kMapThreads, 0, stream>>>(
          n, calc, f, out, static_cast<const In*>(operands[I + 1].data)...);
    } else {
      StridedMapKernel<int64_t><<<MapBlocks(n), kMapThreads, 0, stream>>>(
          n, calc, f, out, static_cast<const In*>(operands[I + 1].data)...);
    }
  }
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR(name);
  return absl::OkStatus();
}

// Launches f over operands[0] = output (type Out) and operands[1..] = inputs (types In...).
template <typename Out, typename... In, typename F>
absl::Status LaunchMap(const char* name, const IterShape& shape, StridedOperand* operands,
                       const F& f, cudaStream_t stream) {
  return LaunchMapImpl<F, Out, In...>(std::index_sequence_for<In...>{}, name, shape, operands, f,
                                      stream);
}

// Functors over storage types.
template <UnaryOp kOp, typename T>
struct UnaryFunctor {
  ComputeType<T> alpha, beta;
  __device__ __forceinline__ T operator()(T x) const {
    return DStore<T>(ew::ApplyUnary<kOp, ComputeType<T>>(DLoad(x), alpha, beta));
  }
};

template <typename Out, typename In>
struct CastFunctor {
  __device__ __forceinline__ Out operator()(In x) const { return DConvert<Out>(x); }
};

template <BinaryOp kOp, typename T>
struct BinaryFunctor {
  using C = ComputeType<T>;
  using R = ew::BinaryResult<kOp, C>;
  using Out = std::conditional_t<std::is_same_v<R, bool>, bool, T>;
  C alpha;
  __device__ __forceinline__ Out operator()(T a, T b) const {
    R r = ew::ApplyBinary<kOp, C>(DLoad(a), DLoad(b), alpha);
    if constexpr (std::is_same_v<Out, bool>) {
      return r;
    } else {
      return DStore<T>(r);
    }
  }
};

template <typename T>
struct WhereFunctor {
  __device__ __forceinline__ T operator()(bool c, T a, T b) const { return c ? a : b; }
};

template <typename T>
struct FillFunctor {
  T value;
  __device__ __forceinline__ T operator()() const { return value; }
};

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_ELEMENTWISE_KERNELS_CUH_
