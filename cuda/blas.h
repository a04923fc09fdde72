// cuBLAS and cuBLASLt handles for Lyra's matmuls, and the TF32 switch.
//
//   LYRA_ASSIGN_OR_RETURN(BlasContext blas, GetBlasContext(device, stream));
//   LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(blas.lt, ..., blas.workspace,
//                                              blas.workspace_bytes, blas.stream));
//
// Everything is created lazily on first use:
//   - one cuBLASLt handle per device (cuBLASLt handles are thread-safe; the stream is an
//     argument of every call);
//   - one cuBLAS handle per (thread, device), because a cuBLAS handle carries its stream and
//     two threads must not race on it; a thread's handles return to a pool when it exits;
//   - one workspace of kBlasWorkspaceBytes per (device, stream), from the caching allocator
//     and kept for the life of the process. Work on one stream runs in order, so every call on
//     that stream (cuBLAS or cuBLASLt, any thread) can share it.
// A workspace is allocated the first time a stream is used: to capture a CUDA graph, run one
// matmul on the capture stream before capturing.
#ifndef LYRA_CUDA_BLAS_H_
#define LYRA_CUDA_BLAS_H_

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>

#include "absl/status/statusor.h"

namespace lyra::cuda {

// 32 MiB: what cuBLAS recommends for Hopper (it needs less on older GPUs).
inline constexpr size_t kBlasWorkspaceBytes = size_t{32} << 20;

// What one BLAS call on a device needs.
struct BlasContext {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t cublas = nullptr;  // the calling thread's; bound to `stream` and `workspace`
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;        // for work on `stream` only
  size_t workspace_bytes = 0;
};

// The handles and workspace for work on `stream` of GPU `device`. FailedPrecondition if the
// device does not exist; Internal (with cuBLAS's message) or ResourceExhausted if creating a
// handle or the workspace fails.
absl::StatusOr<BlasContext> GetBlasContext(int device, cudaStream_t stream);

// Whether f32 matmuls on CUDA may use TF32 tensor cores (inputs rounded to a 10-bit mantissa,
// f32 accumulation). Off by default: f32 matmuls are exact f32. Process-wide; read when a
// matmul is issued.
void SetAllowTf32(bool allow);
bool AllowTf32();

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_BLAS_H_
