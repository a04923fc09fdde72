// Entry point of the softmax CUDA kernels: validation and the dtype dispatch to the typed
// launchers compiled in softmax_float.cu and softmax_half.cu.
#include "cuda/softmax_kernels.cuh"

namespace lyra::cuda {

LYRA_SOFTMAX_DECLARE(float)
LYRA_SOFTMAX_DECLARE(double)
LYRA_SOFTMAX_DECLARE(Float16)
LYRA_SOFTMAX_DECLARE(BFloat16)

absl::Status SoftmaxCuda(const SoftmaxParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SoftmaxSupported(p));
  return DispatchFloat(p.dtype, SoftmaxOpName(p.op), [&]<typename T>() -> absl::Status {
    return SoftmaxCudaTyped<T>(p, stream);
  });
}

}  // namespace lyra::cuda
