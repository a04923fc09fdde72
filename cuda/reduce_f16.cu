// Reduction kernels instantiated for: Float16 (see reduce_kernels.cuh).
#include "cuda/reduce_kernels.cuh"

namespace lyra::cuda {
LYRA_REDUCE_INSTANTIATE(Float16)
}  // namespace lyra::cuda
