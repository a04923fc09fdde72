// IndexScatterAdd kernels instantiated for f32 and f64 (native atomicAdd; see index_kernels.cuh).
#include "cuda/index_kernels.cuh"

namespace lyra::cuda {
LYRA_INDEX_SCATTER_INSTANTIATE(float, float)
LYRA_INDEX_SCATTER_INSTANTIATE(double, double)
}  // namespace lyra::cuda
