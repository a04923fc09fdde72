// Elementwise kernels instantiated for: BFloat16 (see elementwise_kernels.cuh).
#include "cuda/elementwise_impl.cuh"

namespace lyra::cuda {
LYRA_ELEMENTWISE_INSTANTIATE(BFloat16)
}  // namespace lyra::cuda
