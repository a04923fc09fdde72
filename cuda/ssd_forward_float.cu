// SSD forward kernels instantiated for x of type float (see ssd_forward_kernels.cuh).
#include "cuda/ssd_forward_kernels.cuh"

namespace lyra::cuda {

absl::Status SsdForwardFor(float, const SsdParams& p, cudaStream_t stream) {
  return SsdForwardTyped<float>(p, stream);
}

}  // namespace lyra::cuda
