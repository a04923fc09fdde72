// Elementwise kernels instantiated for: double (see elementwise_kernels.cuh).
#include "cuda/elementwise_impl.cuh"

namespace lyra::cuda {
LYRA_ELEMENTWISE_INSTANTIATE(double)
}  // namespace lyra::cuda
