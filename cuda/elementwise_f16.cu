// Elementwise kernels instantiated for: Float16 (see elementwise_kernels.cuh).
#include "cuda/elementwise_impl.cuh"

namespace lyra::cuda {
LYRA_ELEMENTWISE_INSTANTIATE(Float16)
}  // namespace lyra::cuda
