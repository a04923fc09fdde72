// Elementwise kernels instantiated for: float (see elementwise_kernels.cuh).
#include "cuda/elementwise_impl.cuh"

namespace lyra::cuda {
LYRA_ELEMENTWISE_INSTANTIATE(float)
}  // namespace lyra::cuda
