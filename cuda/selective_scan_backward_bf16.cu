// Selective-scan backward kernels instantiated for u of type BFloat16 (see selective_scan_kernels.cuh).
#include "cuda/selective_scan_kernels.cuh"

namespace lyra::cuda {

absl::Status SelectiveScanBackwardFor(BFloat16, const SelectiveScanBackwardParams& p,
                                      cudaStream_t stream) {
  if (p.forward.bc_dtype == DType::kF32) return SelectiveScanBackwardTyped<BFloat16, float>(p, stream);
  return SelectiveScanBackwardTyped<BFloat16, BFloat16>(p, stream);
}

}  // namespace lyra::cuda
