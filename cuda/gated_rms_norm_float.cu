// GatedRmsNorm kernels instantiated for: float, double (see gated_rms_norm_kernels.cuh).
#include "cuda/gated_rms_norm_kernels.cuh"

namespace lyra::cuda {
LYRA_GATED_RMS_NORM_INSTANTIATE(float)
LYRA_GATED_RMS_NORM_INSTANTIATE(double)
}  // namespace lyra::cuda
