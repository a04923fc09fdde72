// Elementwise kernels: unary maps (with casts), binary maps with broadcasting, where, fill.
//
// Every operand is strided (cuda/strided.h): broadcasting is a zero stride, a transposed view is
// permuted strides, so no op needs its inputs contiguous. Arithmetic is done in the compute type
// (f64 for f64 tensors, f32 for f32, f16 and bf16; i32/i64 for integers).
//
// Entry points come in pairs: `*Reference` is the plain CPU loop, `*Cuda` launches on a stream.
// The callers (tensor/) check shapes and dtypes; these functions check what the kernels need and
// return InvalidArgument for a dtype an op does not support.
#ifndef LYRA_CUDA_ELEMENTWISE_H_
#define LYRA_CUDA_ELEMENTWISE_H_

#include <cuda_runtime.h>

#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "cuda/strided.h"

namespace lyra::cuda {

// y = f(x; alpha, beta). Float dtypes unless marked (int: also i32/i64).
enum class UnaryOp {
  kIdentity,    // y = x; x and y may differ in dtype (a cast); every dtype
  kNeg,         // -x (int)
  kAbs,         // |x| (int)
  kExp,
  kLog,
  kSqrt,
  kRsqrt,       // 1 / sqrt(x)
  kTanh,
  kSigmoid,     // 1 / (1 + exp(-x))
  kSilu,        // x * sigmoid(x)
  kSoftplus,    // log(1 + exp(x)), x if x > 20 (PyTorch's threshold)
  kGelu,        // x * Φ(x) with the exact erf
  kGeluTanh,    // tanh approximation
  kRelu,        // max(x, 0)
  kSquare,      // x * x (int)
  kReciprocal,  // 1 / x
  kAddScalar,   // x + alpha (int)
  kMulScalar,   // x * alpha (int)
  kPowScalar,   // x ^ alpha
  kRsubScalar,  // alpha - x (int)
  kClamp,       // min(max(x, alpha), beta) (int)
};

// out = f(a, b). Float dtypes unless marked. Comparisons write bool.
enum class BinaryOp {
  kAdd,         // a + alpha * b (int, alpha = 1 for int)
  kSub,         // a - alpha * b (int)
  kMul,         // (int)
  kDiv,         // float division
  kPow,         // a ^ b
  kMaximum,     // (int)
  kMinimum,     // (int)
  kEq,          // (int, bool) -> bool
  kNe,          // (int, bool) -> bool
  kLt,          // (int) -> bool
  kLe,          // (int) -> bool
  kGt,          // (int) -> bool
  kGe,          // (int) -> bool
  kLogicalAnd,  // bool only
  kLogicalOr,   // bool only
  // Gradients of unary maps: a is the forward input x (or output y), b the output gradient g.
  kSigmoidBackward,   // a = y: g * y * (1 - y)
  kTanhBackward,      // a = y: g * (1 - y^2)
  kSiluBackward,      // a = x: g * s * (1 + x * (1 - s)), s = sigmoid(x)
  kSoftplusBackward,  // a = x: g * sigmoid(x) (g if x > 20)
  kGeluBackward,      // a = x: g * (Φ(x) + x φ(x))
  kGeluTanhBackward,  // a = x
  kReluBackward,      // a = x: g if x > 0 else 0
};

absl::string_view UnaryOpName(UnaryOp op);
absl::string_view BinaryOpName(BinaryOp op);
bool IsComparison(BinaryOp op);

struct UnaryParams {
  UnaryOp op = UnaryOp::kIdentity;
  IterShape shape;
  StridedOperand x;  // input
  StridedOperand y;  // output (dtype == x.dtype except for kIdentity)
  double alpha = 0;
  double beta = 0;
};

struct BinaryParams {
  BinaryOp op = BinaryOp::kAdd;
  IterShape shape;
  StridedOperand a;
  StridedOperand b;    // same dtype as a
  StridedOperand out;  // a's dtype, or bool for comparisons
  double alpha = 1;    // kAdd / kSub only
};

// out = cond ? a : b
struct WhereParams {
  IterShape shape;
  StridedOperand cond;  // bool
  StridedOperand a;
  StridedOperand b;
  StridedOperand out;   // a's dtype
};

// Sets every element of a strided tensor to `value` (converted to its dtype).
struct FillParams {
  IterShape shape;
  StridedOperand out;
  double value = 0;
};

absl::Status UnaryReference(const UnaryParams& params);
absl::Status BinaryReference(const BinaryParams& params);
absl::Status WhereReference(const WhereParams& params);
absl::Status FillReference(const FillParams& params);

absl::Status UnaryCuda(const UnaryParams& params, cudaStream_t stream);
absl::Status BinaryCuda(const BinaryParams& params, cudaStream_t stream);
absl::Status WhereCuda(const WhereParams& params, cudaStream_t stream);
absl::Status FillCuda(const FillParams& params, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_ELEMENTWISE_H_
