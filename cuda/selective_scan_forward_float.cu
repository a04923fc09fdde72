// Selective-scan forward kernels instantiated for u of type float (see selective_scan_kernels.cuh).
#include "cuda/selective_scan_kernels.cuh"

namespace lyra::cuda {

absl::Status SelectiveScanForwardFor(float, const SelectiveScanParams& p, cudaStream_t stream) {
  return SelectiveScanForwardTyped<float, float>(p, stream);
}

}  // namespace lyra::cuda
