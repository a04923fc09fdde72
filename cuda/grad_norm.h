// The fused global L2 norm of many tensors and the clip scale of torch.nn.utils.clip_grad_norm_.
//
// GradNorm, over all elements x of all tensors (multi-tensor chunks, cuda/multi_tensor.h):
//   partial[c] = sum over chunk c of x^2       f32 accumulation, one partial per chunk
//   norm       = sqrt(sum_c partial[c])        the partials summed in f64, the root rounded to f32
//   coef       = min(1, (1 / (norm + 1e-6)) * max_norm)   in f32, as torch evaluates
//                max_norm / (total_norm + 1e-6) (reciprocal, then times max_norm), clamped to 1
// except that coef = 1 when norm is NaN or infinite: a non-finite norm leaves the tensors
// unscaled (torch would multiply them by NaN or 0); the loss scaler deals with inf gradients.
// norm and coef are written (=), one f32 each, on the device that ran the kernel.
//
// GradScale: x = x * coef for every element (computed in f32, rounded to x's dtype), where coef
// is read from memory; nothing is done when coef == 1, so an unclipped step costs one tiny
// launch. Together: one reduction launch (the last block to finish reduces the partials) and
// one scale launch, with no host synchronisation in between.
//
// Tensors are flat contiguous ranges of f32, f16 or bf16. Pointers in the params are host
// pointers for the *Reference functions and device pointers for the *Cuda launchers.
#ifndef LYRA_CUDA_GRAD_NORM_H_
#define LYRA_CUDA_GRAD_NORM_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "base/dtype.h"
#include "cuda/multi_tensor.h"

namespace lyra::cuda {

// Added to the norm before dividing, as torch.
inline constexpr float kClipNormEpsilon = 1e-6f;

struct GradNormTensor {
  void* data = nullptr;  // (numel) read by GradNorm, scaled in place by GradScale
  int64_t numel = 0;
  DType dtype = DType::kF32;  // f32, f16 or bf16
};

struct GradNormParams {
  const GradNormTensor* tensors = nullptr;  // (num_tensors)
  int32_t num_tensors = 0;
  const TensorChunk* chunks = nullptr;      // (num_chunks)
  int32_t num_chunks = 0;
  double max_norm = 1.0;
  float* partials = nullptr;   // (num_chunks) workspace
  float* norm = nullptr;       // (1) written
  float* coef = nullptr;       // (1) written
  uint32_t* ticket = nullptr;  // CUDA only: (1) zero on entry, left zero
};

struct GradScaleParams {
  const GradNormTensor* tensors = nullptr;  // (num_tensors)
  int32_t num_tensors = 0;
  const TensorChunk* chunks = nullptr;      // (num_chunks)
  int32_t num_chunks = 0;
  const float* coef = nullptr;              // (1) read
};

// The host-side check of the tables: InvalidArgument for a dtype other than f32 / f16 / bf16, a
// negative numel, a null pointer of a tensor with elements, a chunk outside its tensor, or a
// max_norm that is NaN, infinite or negative; Unimplemented beyond 2^31 - 1 tensors or chunks.
absl::Status GradNormSupported(absl::Span<const GradNormTensor> tensors,
                               absl::Span<const TensorChunk> chunks, double max_norm);

absl::Status GradNormReference(const GradNormParams& params);
absl::Status GradScaleReference(const GradScaleParams& params);
// Launch on `stream` (device current); they check counts and pointers, not table contents.
absl::Status GradNormCuda(const GradNormParams& params, cudaStream_t stream);
absl::Status GradScaleCuda(const GradScaleParams& params, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_GRAD_NORM_H_
