// SSD backward kernels instantiated for bf16 storage (see ssd_backward_kernels.cuh).
#include "cuda/ssd_backward_kernels.cuh"

namespace lyra::cuda {

absl::Status SsdBackwardSequentialFor(BFloat16, const SsdBackwardParams& p, cudaStream_t stream) {
  return ssd_bwd::SequentialBackwardTyped<BFloat16>(p, stream);
}

absl::Status SsdBackwardChunkedFor(BFloat16, const SsdBackwardParams& p, cudaStream_t stream) {
  return ssd_bwd::ChunkedBackwardTyped<BFloat16>(p, stream);
}

}  // namespace lyra::cuda
