// Turning CUDA, cuBLAS and cuDNN return codes into absl::Status.
//
//   LYRA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(...));
//   LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(...));
//
// A failure becomes Internal with the library's own message and the file:line of the call;
// cudaErrorMemoryAllocation becomes ResourceExhausted.
#ifndef LYRA_CUDA_CUDA_CHECK_H_
#define LYRA_CUDA_CUDA_CHECK_H_

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/status/status.h"

namespace lyra::cuda {

absl::Status CudaStatus(cudaError_t error, const char* expr, const char* file, int line);
absl::Status CublasStatus(cublasStatus_t status, const char* expr, const char* file, int line);

// After a kernel launch: the launch error, if any (clears it).
absl::Status LastLaunchStatus(const char* kernel, const char* file, int line);

}  // namespace lyra::cuda

#define LYRA_CUDA_RETURN_IF_ERROR(expr)                                                      \
  do {                                                                                       \
    cudaError_t lyra_cuda_error_ = (expr);                                                   \
    if (lyra_cuda_error_ != cudaSuccess)                                                     \
      return ::lyra::cuda::CudaStatus(lyra_cuda_error_, #expr, __FILE__, __LINE__);          \
  } while (0)

#define LYRA_CUBLAS_RETURN_IF_ERROR(expr)                                                    \
  do {                                                                                       \
    cublasStatus_t lyra_cublas_status_ = (expr);                                             \
    if (lyra_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                        \
      return ::lyra::cuda::CublasStatus(lyra_cublas_status_, #expr, __FILE__, __LINE__);     \
  } while (0)

// Use right after a <<<...>>> launch inside a function returning absl::Status.
#define LYRA_CUDA_RETURN_IF_LAUNCH_ERROR(kernel_name)                                        \
  do {                                                                                       \
    ::absl::Status lyra_launch_status_ =                                                     \
        ::lyra::cuda::LastLaunchStatus(kernel_name, __FILE__, __LINE__);                     \
    if (!lyra_launch_status_.ok()) return lyra_launch_status_;                               \
  } while (0)

#endif  // LYRA_CUDA_CUDA_CHECK_H_
