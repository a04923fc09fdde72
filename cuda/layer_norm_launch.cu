// Entry points of the LayerNorm CUDA kernels: validation and the dtype dispatch to the typed
// launchers compiled in layer_norm_float.cu and layer_norm_half.cu.
#include "cuda/norm_kernels.cuh"

namespace lyra::cuda {

LYRA_LAYER_NORM_DECLARE(float)
LYRA_LAYER_NORM_DECLARE(double)
LYRA_LAYER_NORM_DECLARE(Float16)
LYRA_LAYER_NORM_DECLARE(BFloat16)

absl::Status LayerNormForwardCuda(const LayerNormForwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(LayerNormSupported(p));
  return DispatchFloat(p.dtype, "LayerNormForward", [&]<typename T>() -> absl::Status {
    return LayerNormForwardCudaTyped<T>(p, stream);
  });
}

absl::Status LayerNormBackwardCuda(const LayerNormBackwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(LayerNormSupported(p));
  return DispatchFloat(p.dtype, "LayerNormBackward", [&]<typename T>() -> absl::Status {
    return LayerNormBackwardCudaTyped<T>(p, stream);
  });
}

}  // namespace lyra::cuda
