// Entry points of the cross-entropy CUDA kernels: the dtype dispatch to the typed row launchers
// of cross_entropy_float.cu / cross_entropy_half.cu, and the target check (count of kept rows,
// first bad row) with its one host synchronization.
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cuda/allocator.h"
#include "cuda/cross_entropy_kernels.cuh"

namespace lyra::cuda {

LYRA_CROSS_ENTROPY_DECLARE(float)
LYRA_CROSS_ENTROPY_DECLARE(double)
LYRA_CROSS_ENTROPY_DECLARE(Float16)
LYRA_CROSS_ENTROPY_DECLARE(BFloat16)

absl::Status CrossEntropyCuda(const CrossEntropyParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CrossEntropySupported(p));
  return DispatchFloat(p.dtype, CrossEntropyOpName(p.op), [&]<typename T>() -> absl::Status {
    return CrossEntropyCudaTyped<T>(p, stream);
  });
}

namespace {

// A CachingAllocator block, returned to the cache at scope exit.
class ScopedDeviceBlock {
 public:
  ScopedDeviceBlock(int device, void* ptr) : device_(device), ptr_(ptr) {}
  ~ScopedDeviceBlock() { CachingAllocator::ForDevice(device_).Free(ptr_); }
  ScopedDeviceBlock(const ScopedDeviceBlock&) = delete;
  ScopedDeviceBlock& operator=(const ScopedDeviceBlock&) = delete;

 private:
  int device_;
  void* ptr_;
};

}  // namespace

absl::Status CrossEntropyCheckTargetsCuda(const CrossEntropyTargetsParams& p,
                                          cudaStream_t stream) {
  using namespace cross_entropy_internal;
  LYRA_RETURN_IF_ERROR(CrossEntropyTargetsSupported(p));
  if (p.rows == 0) {
    *p.kept = 0;
    return absl::OkStatus();
  }
  int device = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  constexpr size_t kResultBytes = 2 * sizeof(unsigned long long);
  LYRA_ASSIGN_OR_RETURN(void* block, CachingAllocator::ForDevice(device).Allocate(kResultBytes));
  ScopedDeviceBlock scoped(device, block);
  auto* result = static_cast<unsigned long long*>(block);  // [first bad row, kept rows]
  static_assert(kNoBadRow == ~0ull, "the first memset writes all ones");
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(result, 0xff, sizeof(*result), stream));
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(result + 1, 0, sizeof(*result), stream));
  const int64_t wanted = (p.rows + kCheckThreads - 1) / kCheckThreads;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(wanted, kCheckMaxBlocks));
  if (p.target_dtype == DType::kI64) {
    CheckTargetsKernel<int64_t><<<blocks, kCheckThreads, 0, stream>>>(
        p.rows, static_cast<const int64_t*>(p.targets), p.targets_stride, p.vocab,
        p.ignore_index, result);
  } else {
    CheckTargetsKernel<int32_t><<<blocks, kCheckThreads, 0, stream>>>(
        p.rows, static_cast<const int32_t*>(p.targets), p.targets_stride, p.vocab,
        p.ignore_index, result);
  }
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("CheckTargetsKernel");
  unsigned long long host[2] = {kNoBadRow, 0};
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(host, result, kResultBytes, cudaMemcpyDeviceToHost, stream));
  LYRA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  if (host[0] == kNoBadRow) {
    *p.kept = static_cast<int64_t>(host[1]);
    return absl::OkStatus();
  }
  // Error path only: fetch the offending value.
  const int64_t row = static_cast<int64_t>(host[0]);
  const size_t size = DTypeSize(p.target_dtype);
  int64_t value64 = 0;
  int32_t value32 = 0;
  void* value = p.target_dtype == DType::kI64 ? static_cast<void*>(&value64) : &value32;
  const char* source = static_cast<const char*>(p.targets) + row * p.targets_stride * size;
  LYRA_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(value, source, size, cudaMemcpyDeviceToHost, stream));
  LYRA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return CrossEntropyBadTarget(p.op, row,
                               p.target_dtype == DType::kI64 ? value64 : int64_t{value32},
                               p.vocab, p.ignore_index);
}

}  // namespace lyra::cuda
