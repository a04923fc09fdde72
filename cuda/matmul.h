// Batched matrix multiplication: out = alpha * (a @ b) + beta * out (+ bias).
//
//   a:    (batch..., m, k)
//   b:    (batch..., k, n)
//   out:  (batch..., m, n)
//   bias: (n,), optional: added to every row of every matrix, after alpha and beta
//         (out[..., i, j] = alpha * sum_kk a[..., i, kk] b[..., kk, j] + beta * out + bias[j]);
//         this is the bias of a linear layer, y = x W^T + b.
//
// Every operand is a pointer plus 64-bit element strides: one per batch dimension (0 where the
// operand is broadcast over that dimension) and a row and a column stride for its matrix, so a
// transposed view is just swapped row/column strides.
//
// Precision: f16, bf16 and f32 multiply and accumulate in f32 (alpha and beta are applied in
// f32); f64 in f64. With allow_tf32 an f32 matmul on CUDA may round its inputs to TF32 (10-bit
// mantissa) for the tensor cores; the CPU reference is always exact f32.
//
// The bias is added in the compute type before the result is rounded to the output dtype
// (CPU, and the fused CUDA epilogue); the separate CUDA bias kernel adds it to the rounded
// product, one more rounding step in f16 / bf16.
//
// Output: written (=) when beta == 0, in which case `out` is not read (NaN or garbage in it does
// not propagate); accumulated (out = beta * out + ...) otherwise. `out` must not overlap a or b.
//
// Backends:
//   MatmulReference: CPU loops; any strides. Each matrix is packed into a contiguous buffer of
//     the compute type, then multiplied in i-k-j order four rows at a time.
//   MatmulCuda: cuBLASLt (f32, f16, bf16) with a cached descriptor and heuristic per problem;
//     cuBLAS cublasGemmStridedBatchedEx for f64 and wherever cuBLASLt has no algorithm (e.g.
//     for a pointer alignment it does not handle). Each matrix must be row- or column-major
//     (BlasMatrixLayout below); the caller copies other layouts. A bias is fused into the
//     cuBLASLt call (CUBLASLT_EPILOGUE_BIAS) when the output is row-major, the bias contiguous
//     and kBiasEpilogueAlignment-aligned, and cuBLASLt has an algorithm for it; otherwise
//     (f64, a column-major out, ...) it is added by one broadcast elementwise kernel after the
//     product.
#ifndef LYRA_CUDA_MATMUL_H_
#define LYRA_CUDA_MATMUL_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "cuda/strided.h"

namespace lyra::cuda {

struct MatmulOperand {
  void* data = nullptr;
  int64_t batch_strides[kMaxDims] = {};  // per batch dimension of MatmulParams::batch
  int64_t row_stride = 0;                // between consecutive rows of the matrix
  int64_t col_stride = 0;                // between consecutive columns
};

struct MatmulParams {
  DType dtype = DType::kF32;  // of a, b and out alike
  IterShape batch;            // the broadcast batch shape; ndim 0 for a single matrix
  int64_t m = 0;
  int64_t n = 0;
  int64_t k = 0;
  MatmulOperand a;    // (batch..., m, k)
  MatmulOperand b;    // (batch..., k, n)
  MatmulOperand out;  // (batch..., m, n)
  double alpha = 1;
  double beta = 0;
  bool allow_tf32 = false;  // f32 on CUDA only
  // Optional (null: none): (n,) of `dtype`, elements bias_stride apart; must not overlap out.
  const void* bias = nullptr;
  int64_t bias_stride = 1;
};

// cuBLASLt reads the bias vector of its epilogue in 16-byte units; a less aligned bias is
// added by the separate kernel instead.
inline constexpr int64_t kBiasEpilogueAlignment = 16;

// How a BLAS library can read a rows x cols matrix with the given element strides in place:
// row-major (column stride 1, rows `ld` apart) or column-major (row stride 1, columns `ld`
// apart), with ld >= the row (column) length and ld < 2^31. kNone when neither holds (e.g. a
// stride-2 slice of columns, or a broadcast zero stride): the caller must copy. Size-1
// dimensions accept any stride; row-major is preferred when both fit; an empty matrix is
// row-major.
enum class BlasOrder { kRowMajor, kColumnMajor, kNone };
struct BlasLayout {
  BlasOrder order = BlasOrder::kNone;
  int64_t ld = 0;
};
BlasLayout BlasMatrixLayout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride);

// OK if MatmulCuda can run `params`: a float dtype; at most kMaxDims - 2 batch dimensions;
// m, n, k < 2^31; a, b and out each with a
// BLAS layout; out not broadcast (no zero batch stride over a dimension of size > 1); a bias,
// if any, with any stride.
// InvalidArgument for a non-float dtype or a broadcast out, Unimplemented otherwise.
absl::Status MatmulCudaSupported(const MatmulParams& params);

// InvalidArgument for a non-float dtype; any strides work.
absl::Status MatmulReference(const MatmulParams& params);
// Runs on `stream` of the current device (made current by the caller).
absl::Status MatmulCuda(const MatmulParams& params, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_MATMUL_H_
