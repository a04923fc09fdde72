// LayerNorm kernels instantiated for: Float16, BFloat16 (see norm_kernels.cuh).
#include "cuda/norm_kernels.cuh"

namespace lyra::cuda {
LYRA_LAYER_NORM_INSTANTIATE(Float16)
LYRA_LAYER_NORM_INSTANTIATE(BFloat16)
}  // namespace lyra::cuda
