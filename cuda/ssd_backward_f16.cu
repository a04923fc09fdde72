// SSD backward kernels instantiated for f16 storage (see ssd_backward_kernels.cuh).
#include "cuda/ssd_backward_kernels.cuh"

namespace lyra::cuda {

absl::Status SsdBackwardSequentialFor(Float16, const SsdBackwardParams& p, cudaStream_t stream) {
  return ssd_bwd::SequentialBackwardTyped<Float16>(p, stream);
}

absl::Status SsdBackwardChunkedFor(Float16, const SsdBackwardParams& p, cudaStream_t stream) {
  return ssd_bwd::ChunkedBackwardTyped<Float16>(p, stream);
}

}  // namespace lyra::cuda
