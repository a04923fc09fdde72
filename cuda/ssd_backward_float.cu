// SSD backward kernels instantiated for f32 storage (see ssd_backward_kernels.cuh).
#include "cuda/ssd_backward_kernels.cuh"

namespace lyra::cuda {

absl::Status SsdBackwardSequentialFor(float, const SsdBackwardParams& p, cudaStream_t stream) {
  return ssd_bwd::SequentialBackwardTyped<float>(p, stream);
}

absl::Status SsdBackwardChunkedFor(float, const SsdBackwardParams& p, cudaStream_t stream) {
  return ssd_bwd::ChunkedBackwardTyped<float>(p, stream);
}

}  // namespace lyra::cuda
