// Selective-scan forward kernels instantiated for u of type Float16 (see selective_scan_kernels.cuh).
#include "cuda/selective_scan_kernels.cuh"

namespace lyra::cuda {

absl::Status SelectiveScanForwardFor(Float16, const SelectiveScanParams& p, cudaStream_t stream) {
  if (p.bc_dtype == DType::kF32) return SelectiveScanForwardTyped<Float16, float>(p, stream);
  return SelectiveScanForwardTyped<Float16, Float16>(p, stream);
}

}  // namespace lyra::cuda
