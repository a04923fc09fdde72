// Reduction kernels instantiated for: BFloat16 (see reduce_kernels.cuh).
#include "cuda/reduce_kernels.cuh"

namespace lyra::cuda {
LYRA_REDUCE_INSTANTIATE(BFloat16)
}  // namespace lyra::cuda
