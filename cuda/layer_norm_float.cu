// LayerNorm kernels instantiated for: float, double (see norm_kernels.cuh).
#include "cuda/norm_kernels.cuh"

namespace lyra::cuda {
LYRA_LAYER_NORM_INSTANTIATE(float)
LYRA_LAYER_NORM_INSTANTIATE(double)
}  // namespace lyra::cuda
