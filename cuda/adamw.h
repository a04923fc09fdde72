// The fused multi-tensor AdamW step (torch.optim.AdamW with amsgrad = False, maximize = False).
//
// For every tensor i (a parameter p with gradient g, first moment m, second moment v, all of
// numel elements) and its group's hyper-parameters (lr, beta1, beta2, eps, wd):
//
//   t    = step[i] + 1                                (step[i] is then set to t)
//   p    = p * (1 - lr * wd)                          decoupled weight decay
//   m    = lerp(m, g, 1 - beta1)                      = beta1 m + (1 - beta1) g
//   v    = v * beta2 + (1 - beta2) * (g * g)
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps
//   p    = p + (-lr / (1 - beta1^t)) * (m / denom)
//
// which is torch's _single_tensor_adam with decoupled weight decay, operation by operation:
// the scalars (1 - lr wd, 1 - beta1, beta2, 1 - beta2, sqrt(1 - beta2^t), eps and the step size
// lr / (1 - beta1^t)) are computed in f64 from the f64 hyper-parameters and rounded to f32 once,
// as torch rounds a Python scalar for an f32 tensor op; every elementwise operation is one f32
// operation rounded to nearest (no fused multiply-add: the kernel file is compiled with
// --fmad=false), so the CPU reference and the CUDA kernel give bit-identical results. lerp is
// torch's: m + w (g - m) when |w| < 0.5, else g - (g - m) (1 - w).
//
// Shapes and layouts: every tensor is a flat, contiguous range of numel elements; p, m, v are f32;
// g is f32, f16 or bf16 (upcast to f32 on load). p, m, v and step are updated in place (=); g is
// read only. Tensors are processed as multi-tensor chunks (cuda/multi_tensor.h): one CUDA block
// per chunk, one launch for all tensors of all groups.
//
// Graph capture: the launch reads everything that changes between steps from device memory
// (the per-tensor step counters, the tables, the hyper-parameters), so a captured launch replays
// a correct step each time; bias corrections follow the device step counters. A host that
// changes lr between replays writes the device hyper-parameter table (AdamWHyperParams[group]).
//
// Pointers in AdamWParams are host pointers for AdamWReference and device pointers for
// AdamWCuda (the data pointers in AdamWTensor are always on the device that runs the step).
#ifndef LYRA_CUDA_ADAMW_H_
#define LYRA_CUDA_ADAMW_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "base/dtype.h"
#include "cuda/multi_tensor.h"

namespace lyra::cuda {

// One parameter group's hyper-parameters (torch's defaults).
struct AdamWHyperParams {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
};

struct AdamWTensor {
  float* param = nullptr;       // (numel) f32 master weights, updated in place
  const void* grad = nullptr;   // (numel) grad_dtype, read
  float* exp_avg = nullptr;     // (numel) m, updated in place
  float* exp_avg_sq = nullptr;  // (numel) v, updated in place
  int64_t* step = nullptr;      // one counter: steps this tensor has taken; incremented
  int64_t numel = 0;
  int32_t group = 0;            // index into the hyper-parameter table
  int32_t num_chunks = 0;       // chunks of this tensor in the chunk table
  DType grad_dtype = DType::kF32;  // f32, f16 or bf16
};

struct AdamWParams {
  const AdamWTensor* tensors = nullptr;      // (num_tensors)
  int32_t num_tensors = 0;
  const TensorChunk* chunks = nullptr;       // (num_chunks), tensor by tensor
  int32_t num_chunks = 0;
  const AdamWHyperParams* hyper = nullptr;   // (num_groups)
  int32_t num_groups = 0;
  int32_t* tickets = nullptr;  // CUDA only: (num_tensors) zeros, left zero by the launch
};

// The host-side check of a step's tables (the "is this supported" predicate; AdamWReference
// calls it, and the optimizer calls it before uploading the tables for AdamWCuda):
// InvalidArgument for a grad dtype other than f32 / f16 / bf16, a negative numel, a group outside
// [0, num_groups), a null pointer of a tensor with elements or a null step counter, chunk counts
// that disagree with the chunk table, a chunk outside its tensor, or a non-finite or negative lr,
// eps, weight decay or beta outside [0, 1). Unimplemented for more than 2^31 - 1 chunks.
absl::Status AdamWSupported(absl::Span<const AdamWTensor> tensors,
                            absl::Span<const TensorChunk> chunks,
                            absl::Span<const AdamWHyperParams> hyper);

// The CPU loop, element by element in the kernel's arithmetic.
absl::Status AdamWReference(const AdamWParams& params);
// One launch on `stream` (the device must be current). Checks counts and pointers only; the
// tables' contents were checked on the host by AdamWSupported.
absl::Status AdamWCuda(const AdamWParams& params, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_ADAMW_H_
