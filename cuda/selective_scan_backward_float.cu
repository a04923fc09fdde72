// Selective-scan backward kernels instantiated for u of type float (see selective_scan_kernels.cuh).
#include "cuda/selective_scan_kernels.cuh"

namespace lyra::cuda {

absl::Status SelectiveScanBackwardFor(float, const SelectiveScanBackwardParams& p,
                                      cudaStream_t stream) {
  return SelectiveScanBackwardTyped<float, float>(p, stream);
}

}  // namespace lyra::cuda
