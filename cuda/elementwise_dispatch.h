// Compile-time dispatch of elementwise op enums (host code: the CPU reference and the launchers).
//
//   return DispatchUnaryOp(op, [&]<UnaryOp kOp>() -> absl::Status { ... });
#ifndef LYRA_CUDA_ELEMENTWISE_DISPATCH_H_
#define LYRA_CUDA_ELEMENTWISE_DISPATCH_H_

#include <array>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "cuda/elementwise.h"

namespace lyra::cuda {

template <typename Fn>
absl::Status DispatchUnaryOp(UnaryOp op, Fn&& fn) {
  switch (op) {
#define LYRA_UNARY_CASE(name) \
  case UnaryOp::name: return fn.template operator()<UnaryOp::name>();
    LYRA_UNARY_CASE(kIdentity)
    LYRA_UNARY_CASE(kNeg)
    LYRA_UNARY_CASE(kAbs)
    LYRA_UNARY_CASE(kExp)
    LYRA_UNARY_CASE(kLog)
    LYRA_UNARY_CASE(kSqrt)
    LYRA_UNARY_CASE(kRsqrt)
    LYRA_UNARY_CASE(kTanh)
    LYRA_UNARY_CASE(kSigmoid)
    LYRA_UNARY_CASE(kSilu)
    LYRA_UNARY_CASE(kSoftplus)
    LYRA_UNARY_CASE(kGelu)
    LYRA_UNARY_CASE(kGeluTanh)
    LYRA_UNARY_CASE(kRelu)
    LYRA_UNARY_CASE(kSquare)
    LYRA_UNARY_CASE(kReciprocal)
    LYRA_UNARY_CASE(kAddScalar)
    LYRA_UNARY_CASE(kMulScalar)
    LYRA_UNARY_CASE(kPowScalar)
    LYRA_UNARY_CASE(kRsubScalar)
    LYRA_UNARY_CASE(kClamp)
#undef LYRA_UNARY_CASE
  }
  return absl::InvalidArgumentError("unknown unary op");
}

template <typename Fn>
absl::Status DispatchBinaryOp(BinaryOp op, Fn&& fn) {
  switch (op) {
#define LYRA_BINARY_CASE(name) \
  case BinaryOp::name: return fn.template operator()<BinaryOp::name>();
    LYRA_BINARY_CASE(kAdd)
    LYRA_BINARY_CASE(kSub)
    LYRA_BINARY_CASE(kMul)
    LYRA_BINARY_CASE(kDiv)
    LYRA_BINARY_CASE(kPow)
    LYRA_BINARY_CASE(kMaximum)
    LYRA_BINARY_CASE(kMinimum)
    LYRA_BINARY_CASE(kEq)
    LYRA_BINARY_CASE(kNe)
    LYRA_BINARY_CASE(kLt)
    LYRA_BINARY_CASE(kLe)
    LYRA_BINARY_CASE(kGt)
    LYRA_BINARY_CASE(kGe)
    LYRA_BINARY_CASE(kLogicalAnd)
    LYRA_BINARY_CASE(kLogicalOr)
    LYRA_BINARY_CASE(kSigmoidBackward)
    LYRA_BINARY_CASE(kTanhBackward)
    LYRA_BINARY_CASE(kSiluBackward)
    LYRA_BINARY_CASE(kSoftplusBackward)
    LYRA_BINARY_CASE(kGeluBackward)
    LYRA_BINARY_CASE(kGeluTanhBackward)
    LYRA_BINARY_CASE(kReluBackward)
#undef LYRA_BINARY_CASE
  }
  return absl::InvalidArgumentError("unknown binary op");
}

// Calls f(offsets) for every element of `shape`, where offsets[k] is the element offset of
// operand k; walks an N-d counter (no division per element).
template <int N, typename F>
void ForEachStrided(const IterShape& shape, const StridedOperand* operands, F&& f) {
  std::array<int64_t, N> offset{};
  if (shape.numel() == 0) return;
  if (shape.ndim == 0) {
    f(offset);
    return;
  }
  const int last = shape.ndim - 1;
  const int64_t inner = shape.sizes[last];
  int64_t index[kMaxDims] = {};
  while (true) {
    std::array<int64_t, N> o = offset;
    for (int64_t i = 0; i < inner; ++i) {
      f(o);
      for (int k = 0; k < N; ++k) o[k] += operands[k].strides[last];
    }
    int d = last - 1;
    for (; d >= 0; --d) {
      if (++index[d] < shape.sizes[d]) {
        for (int k = 0; k < N; ++k) offset[k] += operands[k].strides[d];
        break;
      }
      for (int k = 0; k < N; ++k) offset[k] -= operands[k].strides[d] * (shape.sizes[d] - 1);
      index[d] = 0;
    }
    if (d < 0) return;
  }
}

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_ELEMENTWISE_DISPATCH_H_
