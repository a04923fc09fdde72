// GatedRmsNorm kernels instantiated for: Float16, BFloat16 (see gated_rms_norm_kernels.cuh).
#include "cuda/gated_rms_norm_kernels.cuh"

namespace lyra::cuda {
LYRA_GATED_RMS_NORM_INSTANTIATE(Float16)
LYRA_GATED_RMS_NORM_INSTANTIATE(BFloat16)
}  // namespace lyra::cuda
