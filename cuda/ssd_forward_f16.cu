// SSD forward kernels instantiated for x of type Float16 (see ssd_forward_kernels.cuh).
#include "cuda/ssd_forward_kernels.cuh"

namespace lyra::cuda {

absl::Status SsdForwardFor(Float16, const SsdParams& p, cudaStream_t stream) {
  return SsdForwardTyped<Float16>(p, stream);
}

}  // namespace lyra::cuda
