// IndexScatterAdd kernels instantiated for f16 and bf16 outputs (the native 16-bit atomics, each
// addition rounded to the output's dtype) and for f16 / bf16 values added into f32 (how
// EmbeddingBackward accumulates half-precision gradients); see index_kernels.cuh.
#include "cuda/index_kernels.cuh"

namespace lyra::cuda {
LYRA_INDEX_SCATTER_INSTANTIATE(Float16, Float16)
LYRA_INDEX_SCATTER_INSTANTIATE(BFloat16, BFloat16)
LYRA_INDEX_SCATTER_INSTANTIATE(float, Float16)
LYRA_INDEX_SCATTER_INSTANTIATE(float, BFloat16)
}  // namespace lyra::cuda
