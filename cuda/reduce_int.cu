// Reduction kernels instantiated for: int32_t, int64_t, bool (see reduce_kernels.cuh).
#include "cuda/reduce_kernels.cuh"

namespace lyra::cuda {
LYRA_REDUCE_INSTANTIATE(int32_t)
LYRA_REDUCE_INSTANTIATE(int64_t)
LYRA_REDUCE_INSTANTIATE(bool)
}  // namespace lyra::cuda
