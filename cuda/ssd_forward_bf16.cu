// SSD forward kernels instantiated for x of type BFloat16 (see ssd_forward_kernels.cuh).
#include "cuda/ssd_forward_kernels.cuh"

namespace lyra::cuda {

absl::Status SsdForwardFor(BFloat16, const SsdParams& p, cudaStream_t stream) {
  return SsdForwardTyped<BFloat16>(p, stream);
}

}  // namespace lyra::cuda
