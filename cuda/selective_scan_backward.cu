// Host entry point of the selective-scan backward (kernels in selective_scan_kernels.cuh).
#include "cuda/selective_scan_kernels.cuh"

namespace lyra::cuda {

absl::Status SelectiveScanBackwardCuda(const SelectiveScanBackwardParams& p,
                                       cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SelectiveScanBackwardSupported(p, /*cuda=*/true));
  const SelectiveScanParams& f = p.forward;
  if (f.batch == 0 || f.dim == 0 || f.length == 0) return absl::OkStatus();
  return DispatchScanDType(f.dtype, "SelectiveScanBackwardCuda", [&]<typename T>() {
    return SelectiveScanBackwardFor(T(), p, stream);
  });
}

}  // namespace lyra::cuda
