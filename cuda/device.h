// GPU discovery. A machine without a GPU (or without a driver: cudaGetDeviceCount then fails with
// "driver version is insufficient") simply has zero GPUs; nothing here crashes for lack of one.
#ifndef LYRA_CUDA_DEVICE_H_
#define LYRA_CUDA_DEVICE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lyra::cuda {

// Number of usable GPUs; 0 when the runtime reports any error. Computed once.
int GpuCount();
inline bool HasGpu() { return GpuCount() > 0; }

// Why there is no GPU, e.g. "cudaGetDeviceCount: CUDA driver version is insufficient for CUDA
// runtime version"; empty when there is one. Tests print it when they skip.
std::string NoGpuReason();

// OK if GPU `index` exists, else FailedPrecondition naming the index and the reason.
absl::Status CheckGpu(int index);

// Makes `index` the calling thread's current device (cudaSetDevice).
absl::Status SetDevice(int index);

// Makes `device` the calling thread's current CUDA device for the scope (no-op if it already is),
// restoring the previous one at the end. Kernel launchers for tensors on cuda:N use it.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  int device_ = 0;
};

struct GpuProperties {
  std::string name;
  int compute_major = 0;
  int compute_minor = 0;
  int multiprocessors = 0;
  int64_t total_memory_bytes = 0;
  int64_t l2_cache_bytes = 0;
  int64_t shared_memory_per_block_optin = 0;
};
absl::StatusOr<GpuProperties> GetGpuProperties(int index);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_DEVICE_H_
