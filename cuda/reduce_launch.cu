// Entry point of the reduction CUDA kernels: validation and the dtype dispatch to the typed
// launchers compiled in the reduce_<dtype>.cu files.
#include "cuda/reduce_kernels.cuh"

namespace lyra::cuda {

LYRA_REDUCE_DECLARE(float)
LYRA_REDUCE_DECLARE(double)
LYRA_REDUCE_DECLARE(Float16)
LYRA_REDUCE_DECLARE(BFloat16)
LYRA_REDUCE_DECLARE(int32_t)
LYRA_REDUCE_DECLARE(int64_t)
LYRA_REDUCE_DECLARE(bool)

absl::Status ReduceCuda(const ReduceParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(ReduceSupported(p));
  return DispatchAll(p.x_dtype, ReduceOpName(p.op), [&]<typename T>() -> absl::Status {
    return ReduceCudaTyped<T>(p, stream);
  });
}

}  // namespace lyra::cuda
