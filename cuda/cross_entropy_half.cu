// Cross-entropy row kernels instantiated for: Float16, BFloat16 (see cross_entropy_kernels.cuh).
#include "cuda/cross_entropy_kernels.cuh"

namespace lyra::cuda {
LYRA_CROSS_ENTROPY_INSTANTIATE(Float16)
LYRA_CROSS_ENTROPY_INSTANTIATE(BFloat16)
}  // namespace lyra::cuda
