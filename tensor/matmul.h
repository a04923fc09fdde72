// Matrix products of tensors, on CPU and CUDA (cuBLASLt / cuBLAS).
//
//   LYRA_ASSIGN_OR_RETURN(Tensor y, Matmul(x, w_t));             // [B, L, D] @ [D, E]
//   LYRA_RETURN_IF_ERROR(MatmulInto(dy_t, x, dw, 1.0, 1.0));     // dw += dy^T @ x
//
// Shapes follow torch.matmul for inputs of rank >= 2: [..., m, k] @ [..., k, n] -> [..., m, n],
// with the batch dimensions (all but the last two) broadcast NumPy-style, so [2, 1, m, k] @
// [3, k, n] gives [2, 3, m, n] and a 2-D operand is shared by every batch entry.
//
// Both inputs must have the same float dtype (f32, f16, bf16, f64) and device. f16 and bf16
// multiply and accumulate in f32, f64 in f64, f32 in f32 (or TF32 on CUDA, see SetAllowTf32).
// No input is copied on CPU. On CUDA a matrix that is row-major or column-major (a contiguous
// tensor, its Transpose(-1, -2), a Narrow of either) is read in place through cuBLAS's
// transpose flags and leading dimensions; other layouts (e.g. a stride-2 Slice of columns, an
// Expand within the matrix) are made contiguous first.
#ifndef LYRA_TENSOR_MATMUL_H_
#define LYRA_TENSOR_MATMUL_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tensor/tensor.h"

namespace lyra {

// a @ b as a new contiguous tensor of the broadcast shape [..., m, n]. InvalidArgument if a
// rank is below 2, the inner dimensions differ, the batch dimensions do not broadcast, or the
// dtypes or devices differ.
absl::StatusOr<Tensor> Matmul(const Tensor& a, const Tensor& b);

// out = alpha * (a @ b) + beta * out. `out` has exactly the result shape, the same dtype and
// device, may be any non-broadcast view (e.g. a gradient buffer, or a transposed view), and must
// not overlap a or b. With beta == 0, out's old values are not read (NaN in it is harmless).
absl::Status MatmulInto(const Tensor& a, const Tensor& b, const Tensor& out, double alpha = 1,
                        double beta = 0);

// a @ b + bias, with bias [n] (the inputs' dtype and device) added to every row of the product:
// the linear layer x W^T + b as MatmulBias(x, w.Transpose(0, 1), b). On CUDA the bias is
// fused into the cuBLASLt call (its bias epilogue: no extra pass over the output) whenever
// cuBLASLt can (cuda/matmul.h); the bias is added before the result is rounded to f16 / bf16.
// InvalidArgument as Matmul, or for a bias that is not 1-D of size n or differs in dtype or
// device.
absl::StatusOr<Tensor> MatmulBias(const Tensor& a, const Tensor& b, const Tensor& bias);

// out = alpha * (a @ b) + beta * out + bias, with out as in MatmulInto and bias as in
// MatmulBias (bias must not overlap out).
absl::Status MatmulBiasInto(const Tensor& a, const Tensor& b, const Tensor& bias,
                            const Tensor& out, double alpha = 1, double beta = 0);

// TF32 tensor-core math for f32 matmuls on CUDA: off by default (exact f32). Process-wide; the
// CPU path is unaffected.
void SetAllowTf32(bool allow);
bool AllowTf32();

}  // namespace lyra

#endif  // LYRA_TENSOR_MATMUL_H_
