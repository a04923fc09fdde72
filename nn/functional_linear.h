// The differentiable linear map of a Linear layer, as one autograd node (torch's F.linear).
//
//   y = x W^T + b
//
//   x: [..., in]   (any leading dims, any strides; a 1-D x is one row)
//   W: [out, in]   (torch / Hugging Face layout)
//   b: [out]       (optional: an undefined Variable for none)
//   y: [..., out]  (new, contiguous)
//
// Forward: the leading dims of x are flattened to T rows (a view when the strides allow, else
// one copy) and the product is ONE matmul, x2 [T, in] @ W^T, with W^T a transposed view that
// cuBLAS reads in place and the bias added in the same call (MatmulBias: cuBLASLt's bias
// epilogue on CUDA, the reference's output loop on CPU).
//
// Backward (one node named "Linear"; with dY [T, out] the flattened output gradient):
//   dX = dY W          [T, in]   (reshaped to x's shape)
//   dW = dY^T X        [out, in]
//   db = sum_rows dY   [out]
// Each is computed only for an input that requires grad, and only what it needs is saved (W for
// dX, x for dW). Gradients are written (=) into new tensors; the engine accumulates them.
//
// db is a separate column sum (the f32-accumulating reduce kernel, one read of dY) rather than
// cuBLASLt's CUBLASLT_EPILOGUE_BGRADB fused into the dW matmul: BGRADB has layout and dtype
// restrictions (no f64, no cuBLAS fallback), and dY is T x out (16384 x 3072 bf16 = 96 MiB at
// Mamba-130M's in_proj, ~20 us at H200 bandwidth) against a dW matmul of 2 T out in FLOPs
// (77 GFLOP, ~100 us): a fused epilogue would save at most the one read. Not yet measured on a
// GPU; benchmarks/linear_benchmark.cc times the Sum on its own (linear/linear_bias_grad) so the
// trade-off can be checked.
//
// Precision: as Matmul: f16 / bf16 multiply and accumulate in f32 (the bias is added in f32
// before rounding when fused), f64 in f64. x, W and b must share one dtype and device (under
// autocast, nn::Linear casts them first).
#ifndef LYRA_NN_FUNCTIONAL_LINEAR_H_
#define LYRA_NN_FUNCTIONAL_LINEAR_H_

#include "absl/status/statusor.h"
#include "autograd/variable.h"

namespace lyra::nn::functional {

// InvalidArgument for an undefined x or weight, a weight that is not 2-D, x.size(-1) != in, a
// bias that is not [out], or differing dtypes or devices.
absl::StatusOr<autograd::Variable> Linear(const autograd::Variable& x,
                                          const autograd::Variable& weight,
                                          const autograd::Variable& bias = {});

}  // namespace lyra::nn::functional

#endif  // LYRA_NN_FUNCTIONAL_LINEAR_H_
