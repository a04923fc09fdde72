// Softmax kernels instantiated for: float, double (see softmax_kernels.cuh).
#include "cuda/softmax_kernels.cuh"

namespace lyra::cuda {
LYRA_SOFTMAX_INSTANTIATE(float)
LYRA_SOFTMAX_INSTANTIATE(double)
}  // namespace lyra::cuda
