// Entry points of the GatedRmsNorm CUDA kernels: validation and the dtype dispatch to the typed
// launchers compiled in gated_rms_norm_float.cu and gated_rms_norm_half.cu.
#include "cuda/gated_rms_norm_kernels.cuh"

namespace lyra::cuda {

LYRA_GATED_RMS_NORM_DECLARE(float)
LYRA_GATED_RMS_NORM_DECLARE(double)
LYRA_GATED_RMS_NORM_DECLARE(Float16)
LYRA_GATED_RMS_NORM_DECLARE(BFloat16)

absl::Status GatedRmsNormForwardCuda(const GatedRmsNormForwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(GatedRmsNormSupported(p));
  return DispatchFloat(p.dtype, "GatedRmsNormForward", [&]<typename T>() -> absl::Status {
    return GatedRmsNormForwardCudaTyped<T>(p, stream);
  });
}

absl::Status GatedRmsNormBackwardCuda(const GatedRmsNormBackwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(GatedRmsNormSupported(p));
  return DispatchFloat(p.dtype, "GatedRmsNormBackward", [&]<typename T>() -> absl::Status {
    return GatedRmsNormBackwardCudaTyped<T>(p, stream);
  });
}

}  // namespace lyra::cuda
