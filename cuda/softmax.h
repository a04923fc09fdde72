// Softmax and log-softmax along one axis, forward and backward.
//
// The tensor layer folds the problem into (outer, length, inner) with the softmax axis in the
// middle; every operand has its own strides (elements) over those three axes.
//
//   kSoftmax:             out = exp(in - m) / s,        m = max_l in, s = sum_l exp(in - m)
//   kLogSoftmax:          out = in - m - log(s)
//   kSoftmaxBackward:     in = y (the forward output), grad = g:  out = y * (g - sum_l(g * y))
//   kLogSoftmaxBackward:  in = y (the forward output), grad = g:  out = g - exp(y) * sum_l(g)
//
// Precision: f32 math for f16/bf16/f32, f64 for f64; the row statistics (m, s, the sums) are
// accumulated in that type. Outputs are written (=). Float dtypes only; all operands share one.
#ifndef LYRA_CUDA_SOFTMAX_H_
#define LYRA_CUDA_SOFTMAX_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/dtype.h"

namespace lyra::cuda {

enum class SoftmaxOp { kSoftmax, kLogSoftmax, kSoftmaxBackward, kLogSoftmaxBackward };

absl::string_view SoftmaxOpName(SoftmaxOp op);
constexpr bool IsSoftmaxBackward(SoftmaxOp op) {
  return op == SoftmaxOp::kSoftmaxBackward || op == SoftmaxOp::kLogSoftmaxBackward;
}

// Strides of one operand over (outer, length, inner), in elements.
struct SoftmaxOperandStrides {
  int64_t outer = 0;
  int64_t length = 0;
  int64_t inner = 0;
};

struct SoftmaxParams {
  SoftmaxOp op = SoftmaxOp::kSoftmax;
  DType dtype = DType::kF32;
  int64_t outer = 1;
  int64_t length = 1;
  int64_t inner = 1;

  const void* in = nullptr;  // (outer, length, inner): x forward, y backward
  SoftmaxOperandStrides in_strides;
  const void* grad = nullptr;  // (outer, length, inner): g; backward only
  SoftmaxOperandStrides grad_strides;
  void* out = nullptr;  // (outer, length, inner): y forward, dx backward
  SoftmaxOperandStrides out_strides;
};

// OK if the kernels handle `p`: InvalidArgument for a non-float dtype, a missing pointer or a
// negative size; Unimplemented for outer * inner >= 2^31 (one block per row).
absl::Status SoftmaxSupported(const SoftmaxParams& p);

absl::Status SoftmaxReference(const SoftmaxParams& p);
absl::Status SoftmaxCuda(const SoftmaxParams& p, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_SOFTMAX_H_
