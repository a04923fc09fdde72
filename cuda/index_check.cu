// Host side of the indexing kernels: the "is this supported" predicates, the index-range check
// shared by CPU and CUDA, and the CUDA entry points that check the indices and then dispatch to
// the typed launchers of index_gather.cu and index_scatter_*.cu.
//
// The CUDA range check: IndexCheckKernel records the smallest row-major position (over the index
// tensor's own elements) holding an index outside [0, bound) in a device word preset to
// kNoBadIndex; the launcher copies that word back and synchronizes the stream (one host sync per
// indexing call), and only on failure copies the offending index value back too. Checking before
// the gather or scatter runs keeps in-place outputs unchanged on error and reports the same index
// as the CPU reference.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/index.h"
#include "cuda/index_kernels.cuh"

namespace lyra::cuda {

LYRA_INDEX_GATHER_DECLARE(uint8_t)
LYRA_INDEX_GATHER_DECLARE(uint16_t)
LYRA_INDEX_GATHER_DECLARE(uint32_t)
LYRA_INDEX_GATHER_DECLARE(uint64_t)
LYRA_INDEX_SCATTER_DECLARE(float, float)
LYRA_INDEX_SCATTER_DECLARE(double, double)
LYRA_INDEX_SCATTER_DECLARE(Float16, Float16)
LYRA_INDEX_SCATTER_DECLARE(BFloat16, BFloat16)
LYRA_INDEX_SCATTER_DECLARE(float, Float16)
LYRA_INDEX_SCATTER_DECLARE(float, BFloat16)

namespace {

absl::Status CheckIndexDType(absl::string_view op, DType dtype) {
  if (dtype == DType::kI32 || dtype == DType::kI64) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": index must be i32 or i64, got ", DTypeName(dtype)));
}

absl::Status CheckBound(absl::string_view op, int64_t bound) {
  if (bound >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": negative index bound ", bound));
}

// The element offset of row-major position `position` of `shape` in `operand`.
int64_t OffsetOf(const IterShape& shape, const StridedOperand& operand, int64_t position) {
  int64_t offset = 0;
  for (int d = shape.ndim - 1; d >= 0; --d) {
    offset += (position % shape.sizes[d]) * operand.strides[d];
    position /= shape.sizes[d];
  }
  return offset;
}

// Frees a CachingAllocator block at scope exit.
class DeviceBlock {
 public:
  DeviceBlock(int device, void* ptr) : device_(device), ptr_(ptr) {}
  ~DeviceBlock() { CachingAllocator::ForDevice(device_).Free(ptr_); }
  DeviceBlock(const DeviceBlock&) = delete;
  DeviceBlock& operator=(const DeviceBlock&) = delete;

 private:
  int device_;
  void* ptr_;
};

}  // namespace

absl::Status IndexOutOfRange(absl::string_view op, int64_t value, int64_t bound) {
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": index ", value, " is out of range [0, ", bound, ")"));
}

void IndexWalk(const IterShape& shape, const StridedOperand& index, IterShape& walk_shape,
               StridedOperand& walk_index) {
  walk_shape = IterShape{};
  walk_index = index;
  for (int d = 0; d < shape.ndim; ++d) {
    if (index.strides[d] == 0) continue;
    walk_shape.sizes[walk_shape.ndim] = shape.sizes[d];
    walk_index.strides[walk_shape.ndim] = index.strides[d];
    ++walk_shape.ndim;
  }
  CoalesceDims(walk_shape, &walk_index, 1);
}

absl::Status IndexGatherSupported(const IndexGatherParams& p) {
  LYRA_RETURN_IF_ERROR(CheckIndexDType(p.op, p.index.dtype));
  LYRA_RETURN_IF_ERROR(CheckBound(p.op, p.index_bound));
  if (p.out.dtype != p.src.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(p.op, ": output dtype ", DTypeName(p.out.dtype),
                                                   " differs from input dtype ",
                                                   DTypeName(p.src.dtype)));
  }
  return absl::OkStatus();
}

absl::Status IndexScatterAddSupported(const IndexScatterAddParams& p) {
  LYRA_RETURN_IF_ERROR(CheckIndexDType(p.op, p.index.dtype));
  LYRA_RETURN_IF_ERROR(CheckBound(p.op, p.index_bound));
  if (!IsFloating(p.out.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        p.op, ": expected a floating-point dtype, got ", DTypeName(p.out.dtype)));
  }
  const bool same = p.src.dtype == p.out.dtype;
  const bool half_into_f32 = p.out.dtype == DType::kF32 && IsHalf(p.src.dtype);
  if (!same && !half_into_f32) {
    return absl::InvalidArgumentError(absl::StrCat(p.op, ": cannot add ", DTypeName(p.src.dtype),
                                                   " values into ", DTypeName(p.out.dtype)));
  }
  return absl::OkStatus();
}

absl::Status CheckIndicesCuda(absl::string_view op, const IterShape& shape,
                              const StridedOperand& index, int64_t bound, cudaStream_t stream) {
  IterShape walk;
  StridedOperand walk_index;
  IndexWalk(shape, index, walk, walk_index);
  const int64_t n = walk.numel();
  if (n == 0) return absl::OkStatus();
  OffsetCalculator<1> calc;
  calc.ndim = walk.ndim;
  for (int d = 0; d < walk.ndim; ++d) {
    calc.sizes[d] = walk.sizes[d];
    calc.strides[0][d] = walk_index.strides[d];
  }
  int device = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_ASSIGN_OR_RETURN(void* word,
                        CachingAllocator::ForDevice(device).Allocate(sizeof(unsigned long long)));
  DeviceBlock block(device, word);
  auto* first_bad = static_cast<unsigned long long*>(word);
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(first_bad, 0xff, sizeof(*first_bad), stream));
  static_assert(kNoBadIndex == ~0ull, "the memset above writes all ones");
  LYRA_RETURN_IF_ERROR(DispatchIndexDType(index.dtype, op, [&]<typename I>() -> absl::Status {
    IndexCheckKernel<I><<<MapBlocks(n), kMapThreads, 0, stream>>>(
        n, calc, static_cast<const I*>(walk_index.data), bound, first_bad);
    LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("IndexCheckKernel");
    return absl::OkStatus();
  }));
  unsigned long long position = kNoBadIndex;
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(&position, first_bad, sizeof(position), cudaMemcpyDeviceToHost, stream));
  LYRA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  if (position == kNoBadIndex) return absl::OkStatus();
  // Error path only: fetch the offending value.
  const int64_t offset = OffsetOf(walk, walk_index, static_cast<int64_t>(position));
  return DispatchIndexDType(index.dtype, op, [&]<typename I>() -> absl::Status {
    I value = 0;
    const I* bad = static_cast<const I*>(walk_index.data) + offset;
    LYRA_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(&value, bad, sizeof(I), cudaMemcpyDeviceToHost, stream));
    LYRA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return IndexOutOfRange(op, static_cast<int64_t>(value), bound);
  });
}

absl::Status IndexGatherCuda(const IndexGatherParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(IndexGatherSupported(p));
  LYRA_RETURN_IF_ERROR(CheckIndicesCuda(p.op, p.shape, p.index, p.index_bound, stream));
  switch (DTypeSize(p.out.dtype)) {
    case 1: return IndexGatherCudaTyped<uint8_t>(p, stream);
    case 2: return IndexGatherCudaTyped<uint16_t>(p, stream);
    case 4: return IndexGatherCudaTyped<uint32_t>(p, stream);
    case 8: return IndexGatherCudaTyped<uint64_t>(p, stream);
  }
  return absl::InvalidArgumentError(absl::StrCat(p.op, ": unsupported element size"));
}

absl::Status IndexScatterAddCuda(const IndexScatterAddParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(IndexScatterAddSupported(p));
  LYRA_RETURN_IF_ERROR(CheckIndicesCuda(p.op, p.shape, p.index, p.index_bound, stream));
  if (p.out.dtype == DType::kF32 && p.src.dtype == DType::kF16) {
    return IndexScatterAddCudaTyped<float, Float16>(p, stream);
  }
  if (p.out.dtype == DType::kF32 && p.src.dtype == DType::kBF16) {
    return IndexScatterAddCudaTyped<float, BFloat16>(p, stream);
  }
  return DispatchFloat(p.out.dtype, p.op, [&]<typename T>() -> absl::Status {
    return IndexScatterAddCudaTyped<T, T>(p, stream);
  });
}

}  // namespace lyra::cuda
