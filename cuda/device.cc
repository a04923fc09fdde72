#include "cuda/device.h"

#include <cuda_runtime.h>

#include <mutex>

#include "absl/strings/str_cat.h"
#include "cuda/cuda_check.h"

namespace lyra::cuda {
namespace {

struct Discovery {
  int count = 0;
  std::string reason;
};

const Discovery& Discover() {
  static const Discovery* discovery = [] {
    auto* d = new Discovery;
    cudaError_t error = cudaGetDeviceCount(&d->count);
    if (error != cudaSuccess) {
      d->count = 0;
      d->reason = absl::StrCat("cudaGetDeviceCount: ", cudaGetErrorString(error));
      cudaGetLastError();  // clear the sticky-free error so later calls start clean
    } else if (d->count == 0) {
      d->reason = "cudaGetDeviceCount found no CUDA device";
    }
    return d;
  }();
  return *discovery;
}

}  // namespace

int GpuCount() { return Discover().count; }

std::string NoGpuReason() { return Discover().reason; }

absl::Status CheckGpu(int index) {
  if (index >= 0 && index < GpuCount()) return absl::OkStatus();
  if (GpuCount() == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no GPU available for cuda:", index, " (", NoGpuReason(), ")"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cuda:", index, " does not exist: this machine has ", GpuCount(), " GPU(s)"));
}

absl::Status SetDevice(int index) {
  if (absl::Status s = CheckGpu(index); !s.ok()) return s;
  LYRA_CUDA_RETURN_IF_ERROR(cudaSetDevice(index));
  return absl::OkStatus();
}

DeviceGuard::DeviceGuard(int device) : device_(device) {
  cudaGetDevice(&previous_);
  if (previous_ != device_) cudaSetDevice(device_);
}

DeviceGuard::~DeviceGuard() {
  if (previous_ != device_) cudaSetDevice(previous_);
}

absl::StatusOr<GpuProperties> GetGpuProperties(int index) {
  if (absl::Status s = CheckGpu(index); !s.ok()) return s;
  cudaDeviceProp prop;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, index));
  GpuProperties p;
  p.name = prop.name;
  p.compute_major = prop.major;
  p.compute_minor = prop.minor;
  p.multiprocessors = prop.multiProcessorCount;
  p.total_memory_bytes = static_cast<int64_t>(prop.totalGlobalMem);
  p.l2_cache_bytes = prop.l2CacheSize;
  p.shared_memory_per_block_optin = static_cast<int64_t>(prop.sharedMemPerBlockOptin);
  return p;
}

}  // namespace lyra::cuda
