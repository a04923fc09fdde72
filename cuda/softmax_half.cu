// Softmax kernels instantiated for: Float16, BFloat16 (see softmax_kernels.cuh).
#include "cuda/softmax_kernels.cuh"

namespace lyra::cuda {
LYRA_SOFTMAX_INSTANTIATE(Float16)
LYRA_SOFTMAX_INSTANTIATE(BFloat16)
}  // namespace lyra::cuda
