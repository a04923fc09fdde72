// Cross-entropy row kernels instantiated for: float, double (see cross_entropy_kernels.cuh).
#include "cuda/cross_entropy_kernels.cuh"

namespace lyra::cuda {
LYRA_CROSS_ENTROPY_INSTANTIATE(float)
LYRA_CROSS_ENTROPY_INSTANTIATE(double)
}  // namespace lyra::cuda
