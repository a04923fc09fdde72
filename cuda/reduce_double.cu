// Reduction kernels instantiated for: double (see reduce_kernels.cuh).
#include "cuda/reduce_kernels.cuh"

namespace lyra::cuda {
LYRA_REDUCE_INSTANTIATE(double)
}  // namespace lyra::cuda
