// The math of every elementwise op, written once for the CPU reference and the CUDA kernels.
// C is the compute type: float, double, int32_t, int64_t or bool.
#ifndef LYRA_CUDA_ELEMENTWISE_OPS_H_
#define LYRA_CUDA_ELEMENTWISE_OPS_H_

#include <cmath>
#include <type_traits>

#include "base/half.h"
#include "cuda/elementwise.h"

namespace lyra::cuda::ew {

// Overloads that resolve to the float or double libm/CUDA function on host and device alike.
LYRA_HOST_DEVICE inline float Exp(float x) { return expf(x); }
LYRA_HOST_DEVICE inline double Exp(double x) { return exp(x); }
LYRA_HOST_DEVICE inline float Log(float x) { return logf(x); }
LYRA_HOST_DEVICE inline double Log(double x) { return log(x); }
LYRA_HOST_DEVICE inline float Log1p(float x) { return log1pf(x); }
LYRA_HOST_DEVICE inline double Log1p(double x) { return log1p(x); }
LYRA_HOST_DEVICE inline float Sqrt(float x) { return sqrtf(x); }
LYRA_HOST_DEVICE inline double Sqrt(double x) { return sqrt(x); }
LYRA_HOST_DEVICE inline float Tanh(float x) { return tanhf(x); }
LYRA_HOST_DEVICE inline double Tanh(double x) { return tanh(x); }
LYRA_HOST_DEVICE inline float Erf(float x) { return erff(x); }
LYRA_HOST_DEVICE inline double Erf(double x) { return erf(x); }
LYRA_HOST_DEVICE inline float Pow(float x, float y) { return powf(x, y); }
LYRA_HOST_DEVICE inline double Pow(double x, double y) { return pow(x, y); }
LYRA_HOST_DEVICE inline float Abs(float x) { return fabsf(x); }
LYRA_HOST_DEVICE inline double Abs(double x) { return fabs(x); }
template <typename C>
LYRA_HOST_DEVICE inline C Abs(C x) { return x < 0 ? -x : x; }

template <typename C>
LYRA_HOST_DEVICE inline C Sigmoid(C x) { return C(1) / (C(1) + Exp(-x)); }

// NaN-propagating max / min, as torch.maximum / torch.minimum.
template <typename C>
LYRA_HOST_DEVICE inline C Maximum(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a > b ? a : b;
}
template <typename C>
LYRA_HOST_DEVICE inline C Minimum(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    if (a != a) return a;
    if (b != b) return b;
  }
  return a < b ? a : b;
}

inline constexpr double kSoftplusThreshold = 20.0;
inline constexpr double kSqrtHalf = 0.70710678118654752440;        // 1/sqrt(2)
inline constexpr double kInvSqrt2Pi = 0.39894228040143267794;      // 1/sqrt(2π)
inline constexpr double kSqrt2OverPi = 0.79788456080286535588;     // sqrt(2/π)
inline constexpr double kGeluTanhCoeff = 0.044715;

template <UnaryOp kOp, typename C>
LYRA_HOST_DEVICE inline C ApplyUnary(C x, C alpha, C beta) {
  if constexpr (kOp == UnaryOp::kIdentity) return x;
  if constexpr (kOp == UnaryOp::kNeg) return -x;
  if constexpr (kOp == UnaryOp::kAbs) return Abs(x);
  if constexpr (kOp == UnaryOp::kSquare) return x * x;
  if constexpr (kOp == UnaryOp::kAddScalar) return x + alpha;
  if constexpr (kOp == UnaryOp::kMulScalar) return x * alpha;
  if constexpr (kOp == UnaryOp::kRsubScalar) return alpha - x;
  if constexpr (kOp == UnaryOp::kClamp) return Minimum(Maximum(x, alpha), beta);
  if constexpr (std::is_floating_point_v<C>) {
    if constexpr (kOp == UnaryOp::kExp) return Exp(x);
    if constexpr (kOp == UnaryOp::kLog) return Log(x);
    if constexpr (kOp == UnaryOp::kSqrt) return Sqrt(x);
    if constexpr (kOp == UnaryOp::kRsqrt) return C(1) / Sqrt(x);
    if constexpr (kOp == UnaryOp::kTanh) return Tanh(x);
    if constexpr (kOp == UnaryOp::kSigmoid) return Sigmoid(x);
    if constexpr (kOp == UnaryOp::kSilu) return x * Sigmoid(x);
    if constexpr (kOp == UnaryOp::kSoftplus) {
      return x > C(kSoftplusThreshold) ? x : Log1p(Exp(x));
    }
    if constexpr (kOp == UnaryOp::kGelu) return C(0.5) * x * (C(1) + Erf(x * C(kSqrtHalf)));
    if constexpr (kOp == UnaryOp::kGeluTanh) {
      C inner = C(kSqrt2OverPi) * (x + C(kGeluTanhCoeff) * x * x * x);
      return C(0.5) * x * (C(1) + Tanh(inner));
    }
    if constexpr (kOp == UnaryOp::kRelu) return x > C(0) ? x : C(0);
    if constexpr (kOp == UnaryOp::kReciprocal) return C(1) / x;
    if constexpr (kOp == UnaryOp::kPowScalar) return Pow(x, alpha);
  }
  return x;  // not reached for supported (op, type) pairs; see UnarySupports
}

template <UnaryOp kOp, typename C>
constexpr bool UnarySupports() {
  if constexpr (std::is_same_v<C, bool>) return kOp == UnaryOp::kIdentity;
  if constexpr (std::is_integral_v<C>) {
    return kOp == UnaryOp::kIdentity || kOp == UnaryOp::kNeg || kOp == UnaryOp::kAbs ||
           kOp == UnaryOp::kSquare || kOp == UnaryOp::kAddScalar || kOp == UnaryOp::kMulScalar ||
           kOp == UnaryOp::kRsubScalar || kOp == UnaryOp::kClamp;
  }
  return true;
}

// The result type of a binary op on compute type C.
template <BinaryOp kOp, typename C>
using BinaryResult =
    std::conditional_t<(kOp == BinaryOp::kEq || kOp == BinaryOp::kNe || kOp == BinaryOp::kLt ||
                        kOp == BinaryOp::kLe || kOp == BinaryOp::kGt || kOp == BinaryOp::kGe),
                       bool, C>;

template <BinaryOp kOp, typename C>
LYRA_HOST_DEVICE inline BinaryResult<kOp, C> ApplyBinary(C a, C b, C alpha) {
  if constexpr (kOp == BinaryOp::kEq) return a == b;
  if constexpr (kOp == BinaryOp::kNe) return a != b;
  if constexpr (kOp == BinaryOp::kLt) return a < b;
  if constexpr (kOp == BinaryOp::kLe) return a <= b;
  if constexpr (kOp == BinaryOp::kGt) return a > b;
  if constexpr (kOp == BinaryOp::kGe) return a >= b;
  if constexpr (std::is_same_v<C, bool>) {
    if constexpr (kOp == BinaryOp::kLogicalAnd) return a && b;
    if constexpr (kOp == BinaryOp::kLogicalOr) return a || b;
    return a;
  } else {
    if constexpr (kOp == BinaryOp::kAdd) return a + alpha * b;
    if constexpr (kOp == BinaryOp::kSub) return a - alpha * b;
    if constexpr (kOp == BinaryOp::kMul) return a * b;
    if constexpr (kOp == BinaryOp::kMaximum) return Maximum(a, b);
    if constexpr (kOp == BinaryOp::kMinimum) return Minimum(a, b);
    if constexpr (std::is_floating_point_v<C>) {
      if constexpr (kOp == BinaryOp::kDiv) return a / b;
      if constexpr (kOp == BinaryOp::kPow) return Pow(a, b);
      if constexpr (kOp == BinaryOp::kSigmoidBackward) return b * a * (C(1) - a);
      if constexpr (kOp == BinaryOp::kTanhBackward) return b * (C(1) - a * a);
      if constexpr (kOp == BinaryOp::kSiluBackward) {
        C s = Sigmoid(a);
        return b * s * (C(1) + a * (C(1) - s));
      }
      if constexpr (kOp == BinaryOp::kSoftplusBackward) {
        return a > C(kSoftplusThreshold) ? b : b * Sigmoid(a);
      }
      if constexpr (kOp == BinaryOp::kGeluBackward) {
        C cdf = C(0.5) * (C(1) + Erf(a * C(kSqrtHalf)));
        C pdf = C(kInvSqrt2Pi) * Exp(C(-0.5) * a * a);
        return b * (cdf + a * pdf);
      }
      if constexpr (kOp == BinaryOp::kGeluTanhBackward) {
        C inner = C(kSqrt2OverPi) * (a + C(kGeluTanhCoeff) * a * a * a);
        C t = Tanh(inner);
        C d_inner = C(kSqrt2OverPi) * (C(1) + C(3 * kGeluTanhCoeff) * a * a);
        return b * (C(0.5) * (C(1) + t) + C(0.5) * a * (C(1) - t * t) * d_inner);
      }
      if constexpr (kOp == BinaryOp::kReluBackward) return a > C(0) ? b : C(0);
    }
    return a;  // not reached for supported pairs; see BinarySupports
  }
}

template <BinaryOp kOp, typename C>
constexpr bool BinarySupports() {
  constexpr bool comparison = kOp == BinaryOp::kEq || kOp == BinaryOp::kNe ||
                              kOp == BinaryOp::kLt || kOp == BinaryOp::kLe ||
                              kOp == BinaryOp::kGt || kOp == BinaryOp::kGe;
  if constexpr (std::is_same_v<C, bool>) {
    return kOp == BinaryOp::kEq || kOp == BinaryOp::kNe || kOp == BinaryOp::kLogicalAnd ||
           kOp == BinaryOp::kLogicalOr;
  }
  if constexpr (std::is_integral_v<C>) {
    return comparison || kOp == BinaryOp::kAdd || kOp == BinaryOp::kSub ||
           kOp == BinaryOp::kMul || kOp == BinaryOp::kMaximum || kOp == BinaryOp::kMinimum;
  }
  return kOp != BinaryOp::kLogicalAnd && kOp != BinaryOp::kLogicalOr;
}

}  // namespace lyra::cuda::ew

#endif  // LYRA_CUDA_ELEMENTWISE_OPS_H_
