#include "cuda/cuda_check.h"

#include "absl/strings/str_cat.h"

namespace lyra::cuda {

absl::Status CudaStatus(cudaError_t error, const char* expr, const char* file, int line) {
  std::string message = absl::StrCat("CUDA error ", cudaGetErrorName(error), " (",
                                     cudaGetErrorString(error), ") in ", expr, " at ", file, ":",
                                     line);
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(message);
  return absl::InternalError(message);
}

absl::Status CublasStatus(cublasStatus_t status, const char* expr, const char* file, int line) {
  std::string message = absl::StrCat("cuBLAS error ", cublasGetStatusName(status), " (",
                                     cublasGetStatusString(status), ") in ", expr, " at ", file,
                                     ":", line);
  if (status == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return absl::UnimplementedError(message);
  return absl::InternalError(message);
}

absl::Status LastLaunchStatus(const char* kernel, const char* file, int line) {
  cudaError_t error = cudaGetLastError();
  if (error == cudaSuccess) return absl::OkStatus();
  return CudaStatus(error, kernel, file, line);
}

}  // namespace lyra::cuda
