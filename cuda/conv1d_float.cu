// Causal conv1d kernels instantiated for x of type float (see conv1d_kernels.cuh).
#include "cuda/conv1d_kernels.cuh"

namespace lyra::cuda {
LYRA_CONV1D_DEFINE_ONE(float, float)
}  // namespace lyra::cuda
