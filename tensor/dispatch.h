// Internal helpers of tensor/: turning tensors into kernel operands and running a kernel's CPU
// reference or CUDA launcher on the tensor's device.
#ifndef LYRA_TENSOR_DISPATCH_H_
#define LYRA_TENSOR_DISPATCH_H_

#include <cuda_runtime.h>

#include <initializer_list>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "cuda/strided.h"
#include "tensor/tensor.h"

namespace lyra::internal {

// An operand that walks `t` over `iter_shape`, aligning trailing dimensions (NumPy broadcasting:
// missing leading dims and size-1 dims get stride 0). `t` must broadcast to `iter_shape`.
cuda::StridedOperand Operand(const Tensor& t, const Shape& iter_shape);
cuda::IterShape ToIterShape(const Shape& shape);

// InvalidArgument naming `op` unless every tensor is on the same device; returns that device.
absl::StatusOr<Device> CommonDevice(absl::string_view op, std::initializer_list<const Tensor*> ts);
// InvalidArgument naming `op` unless every tensor is defined.
absl::Status CheckDefined(absl::string_view op, std::initializer_list<const Tensor*> ts);

// CUDA kernels run on the device's current stream with the device made current.
template <typename Params>
absl::Status RunKernel(Device device, const Params& params,
                       absl::Status (*reference)(const Params&),
                       absl::Status (*cuda_launcher)(const Params&, cudaStream_t)) {
  if (device.is_cpu()) return reference(params);
  LYRA_RETURN_IF_ERROR(cuda::CheckGpu(device.index));
  cuda::DeviceGuard guard(device.index);
  return cuda_launcher(params, cuda::CurrentStream(device.index));
}

}  // namespace lyra::internal

#endif  // LYRA_TENSOR_DISPATCH_H_
