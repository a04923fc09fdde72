// Elementwise tensor ops, on CPU and CUDA. Binary ops broadcast NumPy-style; both operands must
// have the same dtype (cast explicitly with Tensor::To), and comparisons return bool tensors.
// Float ops compute in f32 for f16/bf16/f32 inputs and in f64 for f64. Every op returns a new
// contiguous tensor; the *Into variants write an existing tensor (which may be a view).
#ifndef LYRA_TENSOR_ELEMENTWISE_H_
#define LYRA_TENSOR_ELEMENTWISE_H_

#include "absl/status/statusor.h"
#include "cuda/elementwise.h"
#include "tensor/tensor.h"

namespace lyra {

// The generic forms every named op below calls.
absl::StatusOr<Tensor> Unary(cuda::UnaryOp op, const Tensor& x, double alpha = 0,
                             double beta = 0);
absl::StatusOr<Tensor> Binary(cuda::BinaryOp op, const Tensor& a, const Tensor& b,
                              double alpha = 1);
// out = op(a, b), with a and b broadcast to out's shape. `out` may alias a or b exactly
// (in-place update) but must not partially overlap them.
absl::Status BinaryInto(cuda::BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out,
                        double alpha = 1);
absl::Status UnaryInto(cuda::UnaryOp op, const Tensor& x, const Tensor& out, double alpha = 0,
                       double beta = 0);

inline absl::StatusOr<Tensor> Neg(const Tensor& x) { return Unary(cuda::UnaryOp::kNeg, x); }
inline absl::StatusOr<Tensor> Abs(const Tensor& x) { return Unary(cuda::UnaryOp::kAbs, x); }
inline absl::StatusOr<Tensor> Exp(const Tensor& x) { return Unary(cuda::UnaryOp::kExp, x); }
inline absl::StatusOr<Tensor> Log(const Tensor& x) { return Unary(cuda::UnaryOp::kLog, x); }
inline absl::StatusOr<Tensor> Sqrt(const Tensor& x) { return Unary(cuda::UnaryOp::kSqrt, x); }
inline absl::StatusOr<Tensor> Rsqrt(const Tensor& x) { return Unary(cuda::UnaryOp::kRsqrt, x); }
inline absl::StatusOr<Tensor> Tanh(const Tensor& x) { return Unary(cuda::UnaryOp::kTanh, x); }
inline absl::StatusOr<Tensor> Sigmoid(const Tensor& x) {
  return Unary(cuda::UnaryOp::kSigmoid, x);
}
inline absl::StatusOr<Tensor> Silu(const Tensor& x) { return Unary(cuda::UnaryOp::kSilu, x); }
inline absl::StatusOr<Tensor> Softplus(const Tensor& x) {
  return Unary(cuda::UnaryOp::kSoftplus, x);
}
// Exact (erf) GELU, as torch.nn.functional.gelu; GeluTanh is the tanh approximation.
inline absl::StatusOr<Tensor> Gelu(const Tensor& x) { return Unary(cuda::UnaryOp::kGelu, x); }
inline absl::StatusOr<Tensor> GeluTanh(const Tensor& x) {
  return Unary(cuda::UnaryOp::kGeluTanh, x);
}
inline absl::StatusOr<Tensor> Relu(const Tensor& x) { return Unary(cuda::UnaryOp::kRelu, x); }
inline absl::StatusOr<Tensor> Square(const Tensor& x) { return Unary(cuda::UnaryOp::kSquare, x); }
inline absl::StatusOr<Tensor> Reciprocal(const Tensor& x) {
  return Unary(cuda::UnaryOp::kReciprocal, x);
}
inline absl::StatusOr<Tensor> AddScalar(const Tensor& x, double s) {
  return Unary(cuda::UnaryOp::kAddScalar, x, s);
}
inline absl::StatusOr<Tensor> MulScalar(const Tensor& x, double s) {
  return Unary(cuda::UnaryOp::kMulScalar, x, s);
}
inline absl::StatusOr<Tensor> PowScalar(const Tensor& x, double exponent) {
  return Unary(cuda::UnaryOp::kPowScalar, x, exponent);
}
// s - x
inline absl::StatusOr<Tensor> RsubScalar(const Tensor& x, double s) {
  return Unary(cuda::UnaryOp::kRsubScalar, x, s);
}
inline absl::StatusOr<Tensor> Clamp(const Tensor& x, double lo, double hi) {
  return Unary(cuda::UnaryOp::kClamp, x, lo, hi);
}

// a + alpha * b
inline absl::StatusOr<Tensor> Add(const Tensor& a, const Tensor& b, double alpha = 1) {
  return Binary(cuda::BinaryOp::kAdd, a, b, alpha);
}
// a - alpha * b
inline absl::StatusOr<Tensor> Sub(const Tensor& a, const Tensor& b, double alpha = 1) {
  return Binary(cuda::BinaryOp::kSub, a, b, alpha);
}
inline absl::StatusOr<Tensor> Mul(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kMul, a, b);
}
inline absl::StatusOr<Tensor> Div(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kDiv, a, b);
}
inline absl::StatusOr<Tensor> Pow(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kPow, a, b);
}
// NaN-propagating, as torch.maximum / torch.minimum.
inline absl::StatusOr<Tensor> Maximum(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kMaximum, a, b);
}
inline absl::StatusOr<Tensor> Minimum(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kMinimum, a, b);
}
inline absl::StatusOr<Tensor> Eq(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kEq, a, b);
}
inline absl::StatusOr<Tensor> Ne(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kNe, a, b);
}
inline absl::StatusOr<Tensor> Lt(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kLt, a, b);
}
inline absl::StatusOr<Tensor> Le(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kLe, a, b);
}
inline absl::StatusOr<Tensor> Gt(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kGt, a, b);
}
inline absl::StatusOr<Tensor> Ge(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kGe, a, b);
}
inline absl::StatusOr<Tensor> LogicalAnd(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kLogicalAnd, a, b);
}
inline absl::StatusOr<Tensor> LogicalOr(const Tensor& a, const Tensor& b) {
  return Binary(cuda::BinaryOp::kLogicalOr, a, b);
}

// cond ? a : b, broadcasting all three; cond is bool, a and b share a dtype.
absl::StatusOr<Tensor> Where(const Tensor& cond, const Tensor& a, const Tensor& b);

}  // namespace lyra

#endif  // LYRA_TENSOR_ELEMENTWISE_H_
