// Elementwise kernels instantiated for: int32_t int64_t bool (see elementwise_kernels.cuh).
#include "cuda/elementwise_impl.cuh"

namespace lyra::cuda {
LYRA_ELEMENTWISE_INSTANTIATE(int32_t)
LYRA_ELEMENTWISE_INSTANTIATE(int64_t)
LYRA_ELEMENTWISE_INSTANTIATE(bool)
}  // namespace lyra::cuda
