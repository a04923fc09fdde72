// Causal conv1d kernels instantiated for x of type Float16 (see conv1d_kernels.cuh).
#include "cuda/conv1d_kernels.cuh"

namespace lyra::cuda {
LYRA_CONV1D_DEFINE_ONE(Float16, float)
LYRA_CONV1D_DEFINE_ONE(Float16, Float16)
}  // namespace lyra::cuda
