// Selective-scan forward kernels instantiated for u of type BFloat16 (see selective_scan_kernels.cuh).
#include "cuda/selective_scan_kernels.cuh"

namespace lyra::cuda {

absl::Status SelectiveScanForwardFor(BFloat16, const SelectiveScanParams& p, cudaStream_t stream) {
  if (p.bc_dtype == DType::kF32) return SelectiveScanForwardTyped<BFloat16, float>(p, stream);
  return SelectiveScanForwardTyped<BFloat16, BFloat16>(p, stream);
}

}  // namespace lyra::cuda
