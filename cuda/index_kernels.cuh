// The indexing CUDA kernels (see cuda/index.h for the math), included by the index_*.cu files.
//
//   IndexCheckKernel       over the index tensor's own elements: records the row-major position of
//                          the first index outside [0, bound) with atomicMin (unsigned 64-bit).
//   IndexGatherKernel      one thread per output element: out[c] = src[... + index * stride].
//                          Moves bytes, so it is instantiated per element size, not per dtype.
//   IndexScatterAddKernel  one thread per src element: atomicAdd into out. Float atomics make the
//                          accumulation order, and so the rounding of repeated indices,
//                          nondeterministic. f32 and f64 use the native atomicAdd, f16 and bf16
//                          the native 16-bit atomics (sm_70 / sm_80; every arch built is sm_80+).
//
// Shapes are coalesced first (cuda/strided.h). Offsets are 32-bit when every operand's extent
// fits, else 64-bit; the index term (index * stride) is always 64-bit.
#ifndef LYRA_CUDA_INDEX_KERNELS_CUH_
#define LYRA_CUDA_INDEX_KERNELS_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/dtype.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/elementwise_kernels.cuh"
#include "cuda/index.h"
#include "cuda/strided.h"

namespace lyra::cuda {

// No bad index seen (the check buffer is memset to 0xff).
inline constexpr unsigned long long kNoBadIndex = ~0ull;

// Checks the indices of `index` walked over `shape` (one host synchronization); InvalidArgument
// naming `op` and the first bad value. Defined in index_check.cu.
absl::Status CheckIndicesCuda(absl::string_view op, const IterShape& shape,
                              const StridedOperand& index, int64_t bound, cudaStream_t stream);

template <typename I>
__global__ void IndexCheckKernel(int64_t n, OffsetCalculator<1> calc,
                                 const I* __restrict__ index,  // walked by calc
                                 int64_t bound, unsigned long long* __restrict__ first_bad) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    int64_t offsets[1];
    ComputeOffsets<int64_t, 1>(calc, i, offsets);
    const int64_t k = static_cast<int64_t>(index[offsets[0]]);
    if (k < 0 || k >= bound) atomicMin(first_bad, static_cast<unsigned long long>(i));
  }
}

// Operand order in calc: 0 out, 1 src, 2 index.
template <typename IndexT, typename T, typename I>
__global__ void IndexGatherKernel(int64_t n, OffsetCalculator<3> calc,
                                  T* __restrict__ out,          // iteration shape
                                  const T* __restrict__ src,    // indexed along one dim
                                  const I* __restrict__ index,  // broadcast over the shape
                                  int64_t src_index_stride) {
  const IndexT stride = static_cast<IndexT>(gridDim.x) * blockDim.x;
  for (IndexT i = static_cast<IndexT>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < static_cast<IndexT>(n); i += stride) {
    IndexT offsets[3];
    ComputeOffsets<IndexT, 3>(calc, i, offsets);
    const int64_t k = static_cast<int64_t>(index[offsets[2]]);
    out[offsets[0]] = src[static_cast<int64_t>(offsets[1]) + k * src_index_stride];
  }
}

// *address += value, atomically, in Out's precision.
template <typename Out>
__device__ __forceinline__ void AtomicAddTo(Out* address, ComputeType<Out> value) {
  if constexpr (std::is_same_v<Out, Float16>) {
    atomicAdd(reinterpret_cast<__half*>(address), __float2half_rn(value));
  } else if constexpr (std::is_same_v<Out, BFloat16>) {
    atomicAdd(reinterpret_cast<__nv_bfloat16*>(address), __float2bfloat16_rn(value));
  } else {
    atomicAdd(address, value);
  }
}

template <typename IndexT, typename Out, typename Src, typename I>
__global__ void IndexScatterAddKernel(int64_t n, OffsetCalculator<3> calc,
                                      Out* __restrict__ out,        // indexed along one dim
                                      const Src* __restrict__ src,  // iteration shape
                                      const I* __restrict__ index,  // broadcast over the shape
                                      int64_t out_index_stride, int64_t skip_index) {
  const IndexT stride = static_cast<IndexT>(gridDim.x) * blockDim.x;
  for (IndexT i = static_cast<IndexT>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < static_cast<IndexT>(n); i += stride) {
    IndexT offsets[3];
    ComputeOffsets<IndexT, 3>(calc, i, offsets);
    const int64_t k = static_cast<int64_t>(index[offsets[2]]);
    if (k == skip_index) continue;
    AtomicAddTo<Out>(out + static_cast<int64_t>(offsets[0]) + k * out_index_stride,
                     static_cast<ComputeType<Out>>(DLoad(src[offsets[1]])));
  }
}

// The coalesced launch geometry shared by the gather and scatter launchers.
struct IndexLaunch {
  IterShape shape;
  OffsetCalculator<3> calc;
  bool offsets_fit_32 = true;  // every operand's offsets are non-negative and < 2^31
};

inline IndexLaunch MakeIndexLaunch(const IterShape& shape, const StridedOperand& out,
                                   const StridedOperand& src, const StridedOperand& index) {
  IndexLaunch launch;
  launch.shape = shape;
  StridedOperand operands[3] = {out, src, index};
  CoalesceDims(launch.shape, operands, 3);
  launch.calc.ndim = launch.shape.ndim;
  for (int k = 0; k < 3; ++k) {
    int64_t extent = 0;
    for (int d = 0; d < launch.shape.ndim; ++d) {
      launch.calc.sizes[d] = launch.shape.sizes[d];
      launch.calc.strides[k][d] = operands[k].strides[d];
      if (operands[k].strides[d] < 0) launch.offsets_fit_32 = false;
      extent += (launch.shape.sizes[d] - 1) * operands[k].strides[d];
    }
    if (extent >= (int64_t{1} << 31)) launch.offsets_fit_32 = false;
  }
  if (launch.shape.numel() >= (int64_t{1} << 31)) launch.offsets_fit_32 = false;
  return launch;
}

template <typename Fn>
absl::Status DispatchIndexDType(DType dtype, absl::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::kI32: return fn.template operator()<int32_t>();
    case DType::kI64: return fn.template operator()<int64_t>();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": index must be i32 or i64, got ", DTypeName(dtype)));
  }
}

// T is an unsigned integer of the element size. The indices are already checked.
template <typename T>
absl::Status IndexGatherCudaTyped(const IndexGatherParams& p, cudaStream_t stream) {
  const IndexLaunch launch = MakeIndexLaunch(p.shape, p.out, p.src, p.index);
  const int64_t n = launch.shape.numel();
  if (n == 0) return absl::OkStatus();
  return DispatchIndexDType(p.index.dtype, p.op, [&]<typename I>() -> absl::Status {
    T* out = static_cast<T*>(p.out.data);
    const T* src = static_cast<const T*>(p.src.data);
    const I* index = static_cast<const I*>(p.index.data);
    if (launch.offsets_fit_32) {
      IndexGatherKernel<uint32_t, T, I><<<MapBlocks(n), kMapThreads, 0, stream>>>(
          n, launch.calc, out, src, index, p.src_index_stride);
    } else {
      IndexGatherKernel<int64_t, T, I><<<MapBlocks(n), kMapThreads, 0, stream>>>(
          n, launch.calc, out, src, index, p.src_index_stride);
    }
    LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("IndexGatherKernel");
    return absl::OkStatus();
  });
}

// Out and Src are storage types (Out == Src, or Out = float with a 16-bit Src). The indices are
// already checked.
template <typename Out, typename Src>
absl::Status IndexScatterAddCudaTyped(const IndexScatterAddParams& p, cudaStream_t stream) {
  const IndexLaunch launch = MakeIndexLaunch(p.shape, p.out, p.src, p.index);
  const int64_t n = launch.shape.numel();
  if (n == 0) return absl::OkStatus();
  return DispatchIndexDType(p.index.dtype, p.op, [&]<typename I>() -> absl::Status {
    Out* out = static_cast<Out*>(p.out.data);
    const Src* src = static_cast<const Src*>(p.src.data);
    const I* index = static_cast<const I*>(p.index.data);
    if (launch.offsets_fit_32) {
      IndexScatterAddKernel<uint32_t, Out, Src, I><<<MapBlocks(n), kMapThreads, 0, stream>>>(
          n, launch.calc, out, src, index, p.out_index_stride, p.skip_index);
    } else {
      IndexScatterAddKernel<int64_t, Out, Src, I><<<MapBlocks(n), kMapThreads, 0, stream>>>(
          n, launch.calc, out, src, index, p.out_index_stride, p.skip_index);
    }
    LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("IndexScatterAddKernel");
    return absl::OkStatus();
  });
}

// Declared here, instantiated in index_gather.cu and index_scatter_*.cu.
#define LYRA_INDEX_GATHER_INSTANTIATE(T) \
  template absl::Status IndexGatherCudaTyped<T>(const IndexGatherParams&, cudaStream_t);
#define LYRA_INDEX_GATHER_DECLARE(T) \
  extern template absl::Status IndexGatherCudaTyped<T>(const IndexGatherParams&, cudaStream_t);
#define LYRA_INDEX_SCATTER_INSTANTIATE(Out, Src)                                   \
  template absl::Status IndexScatterAddCudaTyped<Out, Src>(const IndexScatterAddParams&, \
                                                           cudaStream_t);
#define LYRA_INDEX_SCATTER_DECLARE(Out, Src)                                              \
  extern template absl::Status IndexScatterAddCudaTyped<Out, Src>(                        \
      const IndexScatterAddParams&, cudaStream_t);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_INDEX_KERNELS_CUH_
