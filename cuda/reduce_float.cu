// Reduction kernels instantiated for: float (see reduce_kernels.cuh).
#include "cuda/reduce_kernels.cuh"

namespace lyra::cuda {
LYRA_REDUCE_INSTANTIATE(float)
}  // namespace lyra::cuda
