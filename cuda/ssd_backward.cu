// Host entry points of the SSD backward (kernels in ssd_backward_kernels.cuh).
#include "cuda/ssd_backward_kernels.cuh"

namespace lyra::cuda {
namespace {

bool Empty(const SsdParams& f) {
  return f.batch == 0 || f.length == 0 || f.heads == 0 || f.head_dim == 0 || f.dstate == 0;
}

}  // namespace

absl::Status SsdBackwardSequentialCuda(const SsdBackwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SsdBackwardSupported(p, /*cuda=*/true));
  if (Empty(p.forward)) return absl::OkStatus();
  return DispatchSsdBackwardDType(p.forward.dtype, "SsdBackwardSequentialCuda", [&]<typename T>() {
    return SsdBackwardSequentialFor(T(), p, stream);
  });
}

absl::Status SsdBackwardCuda(const SsdBackwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SsdBackwardSupported(p, /*cuda=*/true));
  if (Empty(p.forward)) return absl::OkStatus();
  return DispatchSsdBackwardDType(p.forward.dtype, "SsdBackwardCuda", [&]<typename T>() {
    return SsdBackwardChunkedFor(T(), p, stream);
  });
}

}  // namespace lyra::cuda
