// Entry points of the RmsNorm CUDA kernels: validation and the dtype dispatch to the typed
// launchers compiled in rms_norm_float.cu and rms_norm_half.cu.
#include "cuda/norm_kernels.cuh"

namespace lyra::cuda {

LYRA_RMS_NORM_DECLARE(float)
LYRA_RMS_NORM_DECLARE(double)
LYRA_RMS_NORM_DECLARE(Float16)
LYRA_RMS_NORM_DECLARE(BFloat16)

absl::Status RmsNormForwardCuda(const RmsNormForwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(RmsNormSupported(p));
  return DispatchFloat(p.dtype, "RmsNormForward", [&]<typename T>() -> absl::Status {
    return RmsNormForwardCudaTyped<T>(p, stream);
  });
}

absl::Status RmsNormBackwardCuda(const RmsNormBackwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(RmsNormSupported(p));
  return DispatchFloat(p.dtype, "RmsNormBackward", [&]<typename T>() -> absl::Status {
    return RmsNormBackwardCudaTyped<T>(p, stream);
  });
}

}  // namespace lyra::cuda
