// Elementwise ops (tensor/elementwise.h over cuda/elementwise.h) and casts (Tensor::To).
//
// Every op is checked on every device present (the CPU always, cuda:0 when there is a GPU)
// against values the test computes itself in double from <cmath>, starting from the inputs as
// stored in the tensor's dtype; f16/bf16/f32 results must agree within DefaultTolerance(dtype)
// (they are computed in f32 and rounded once), integer and bool results exactly. The backward
// ops are also checked against central finite differences of their forward op in f64. The
// CudaVsCpu tests compare the GPU to the CPU reference over sizes that are not multiples of the
// 16-byte vector width, misaligned and strided operands, and the grid-stride loop of big tensors.
#include "tensor/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::cuda::BinaryOp;
using ::lyra::cuda::UnaryOp;
using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kF64, DType::kF16, DType::kBF16};
constexpr DType kIntDTypes[] = {DType::kI32, DType::kI64};
constexpr Tolerance kExact = {0, 0};
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<Device> TestDevices() {
  std::vector<Device> devices = {Device::Cpu()};
  if (cuda::HasGpu()) devices.push_back(Device::Cuda(0));
  return devices;
}

std::string Trace(Device device, DType dtype, absl::string_view op) {
  return absl::StrCat(device.ToString(), " ", DTypeName(dtype), " ", op);
}

// --- The math, in double --------------------------------------------------------------------

double SigmoidD(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double NormalCdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }
double NormalPdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi); }
constexpr double kGeluTanhK = 0.7978845608028654;  // sqrt(2/pi)
constexpr double kGeluTanhC = 0.044715;
double GeluTanhD(double x) {
  return 0.5 * x * (1.0 + std::tanh(kGeluTanhK * (x + kGeluTanhC * x * x * x)));
}
double GeluTanhGradD(double x) {
  const double t = std::tanh(kGeluTanhK * (x + kGeluTanhC * x * x * x));
  const double du = kGeluTanhK * (1.0 + 3.0 * kGeluTanhC * x * x);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
}
constexpr double kSoftplusThreshold = 20.0;  // torch.nn.functional.softplus's default

double UnaryExpected(UnaryOp op, double x, double alpha, double beta) {
  switch (op) {
    case UnaryOp::kIdentity: return x;
    case UnaryOp::kNeg: return -x;
    case UnaryOp::kAbs: return std::fabs(x);
    case UnaryOp::kExp: return std::exp(x);
    case UnaryOp::kLog: return std::log(x);
    case UnaryOp::kSqrt: return std::sqrt(x);
    case UnaryOp::kRsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::kTanh: return std::tanh(x);
    case UnaryOp::kSigmoid: return SigmoidD(x);
    case UnaryOp::kSilu: return x * SigmoidD(x);
    case UnaryOp::kSoftplus: return x > kSoftplusThreshold ? x : std::log1p(std::exp(x));
    case UnaryOp::kGelu: return x * NormalCdf(x);
    case UnaryOp::kGeluTanh: return GeluTanhD(x);
    case UnaryOp::kRelu: return x > 0 ? x : 0.0;
    case UnaryOp::kSquare: return x * x;
    case UnaryOp::kReciprocal: return 1.0 / x;
    case UnaryOp::kAddScalar: return x + alpha;
    case UnaryOp::kMulScalar: return x * alpha;
    case UnaryOp::kPowScalar: return std::pow(x, alpha);
    case UnaryOp::kRsubScalar: return alpha - x;
    case UnaryOp::kClamp: return std::isnan(x) ? x : std::min(std::max(x, alpha), beta);
  }
  return kNaN;
}

// a and b as in cuda/elementwise.h: for the *Backward ops a is the forward input (or output)
// and b the incoming gradient.
double BinaryExpected(BinaryOp op, double a, double b, double alpha) {
  switch (op) {
    case BinaryOp::kAdd: return a + alpha * b;
    case BinaryOp::kSub: return a - alpha * b;
    case BinaryOp::kMul: return a * b;
    case BinaryOp::kDiv: return a / b;
    case BinaryOp::kPow: return std::pow(a, b);
    case BinaryOp::kMaximum: return std::isnan(a) || std::isnan(b) ? kNaN : std::max(a, b);
    case BinaryOp::kMinimum: return std::isnan(a) || std::isnan(b) ? kNaN : std::min(a, b);
    case BinaryOp::kEq: return a == b;
    case BinaryOp::kNe: return a != b;
    case BinaryOp::kLt: return a < b;
    case BinaryOp::kLe: return a <= b;
    case BinaryOp::kGt: return a > b;
    case BinaryOp::kGe: return a >= b;
    case BinaryOp::kLogicalAnd: return a != 0 && b != 0;
    case BinaryOp::kLogicalOr: return a != 0 || b != 0;
    case BinaryOp::kSigmoidBackward: return b * a * (1.0 - a);  // a = sigmoid(x)
    case BinaryOp::kTanhBackward: return b * (1.0 - a * a);     // a = tanh(x)
    case BinaryOp::kSiluBackward: {
      const double s = SigmoidD(a);
      return b * (s + a * s * (1.0 - s));
    }
    case BinaryOp::kSoftplusBackward: return a > kSoftplusThreshold ? b : b * SigmoidD(a);
    case BinaryOp::kGeluBackward: return b * (NormalCdf(a) + a * NormalPdf(a));
    case BinaryOp::kGeluTanhBackward: return b * GeluTanhGradD(a);
    case BinaryOp::kReluBackward: return a > 0 ? b : 0.0;
  }
  return kNaN;
}

// --- Helpers --------------------------------------------------------------------------------

// Row-major `values` of a tensor of `shape`, broadcast (NumPy rules) to `out_shape`.
std::vector<double> BroadcastValues(const std::vector<double>& values, const Shape& shape,
                                    const Shape& out_shape) {
  const int64_t n = NumElements(out_shape);
  const int nd = static_cast<int>(out_shape.size());
  const int lead = nd - static_cast<int>(shape.size());
  const Shape strides = ContiguousStrides(shape);
  std::vector<double> out(n);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rest = i, src = 0;
    for (int d = nd - 1; d >= 0; --d) {
      const int64_t index = rest % out_shape[d];
      rest /= out_shape[d];
      if (d >= lead && shape[d - lead] != 1) src += index * strides[d - lead];
    }
    out[i] = values[src];
  }
  return out;
}

// `result` against UnaryExpected applied to x's values (x broadcast to result's shape).
::testing::AssertionResult MatchesUnary(UnaryOp op, const Tensor& x, const Tensor& result,
                                        double alpha, double beta, Tolerance tol) {
  absl::StatusOr<std::vector<double>> xs = x.ToDoubles();
  absl::StatusOr<std::vector<double>> ys = result.ToDoubles();
  if (!xs.ok()) return ::testing::AssertionFailure() << xs.status();
  if (!ys.ok()) return ::testing::AssertionFailure() << ys.status();
  std::vector<double> expected = BroadcastValues(*xs, x.shape(), result.shape());
  for (double& v : expected) v = UnaryExpected(op, v, alpha, beta);
  return AllClose(*ys, expected, tol);
}

// `result` against BinaryExpected applied to a's and b's values broadcast to result's shape.
::testing::AssertionResult MatchesBinary(BinaryOp op, const Tensor& a, const Tensor& b,
                                         const Tensor& result, double alpha, Tolerance tol) {
  absl::StatusOr<std::vector<double>> as = a.ToDoubles();
  absl::StatusOr<std::vector<double>> bs = b.ToDoubles();
  absl::StatusOr<std::vector<double>> rs = result.ToDoubles();
  if (!as.ok()) return ::testing::AssertionFailure() << as.status();
  if (!bs.ok()) return ::testing::AssertionFailure() << bs.status();
  if (!rs.ok()) return ::testing::AssertionFailure() << rs.status();
  const std::vector<double> av = BroadcastValues(*as, a.shape(), result.shape());
  const std::vector<double> bv = BroadcastValues(*bs, b.shape(), result.shape());
  std::vector<double> expected(av.size());
  for (size_t i = 0; i < av.size(); ++i) expected[i] = BinaryExpected(op, av[i], bv[i], alpha);
  return AllClose(*rs, expected, tol);
}

Tolerance ToleranceFor(DType dtype) { return IsFloating(dtype) ? DefaultTolerance(dtype) : kExact; }

// As RandomTensor (uniform in [lo, hi), integers floored), but a bool tensor is a random mix of
// true and false rather than "value != 0".
absl::StatusOr<Tensor> RandomCpu(const Shape& shape, DType dtype, uint64_t seed, double lo,
                                 double hi) {
  if (dtype != DType::kBool) return RandomTensor(shape, dtype, seed, lo, hi);
  LYRA_ASSIGN_OR_RETURN(Tensor u, RandomTensor(shape, DType::kF64, seed, -1, 1));
  LYRA_ASSIGN_OR_RETURN(Tensor zero, Tensor::Zeros({}, DType::kF64));
  return Gt(u, zero);
}

// RandomCpu's values on `device`.
absl::StatusOr<Tensor> Random(const Shape& shape, DType dtype, Device device, uint64_t seed,
                              double lo, double hi) {
  LYRA_ASSIGN_OR_RETURN(Tensor cpu, RandomCpu(shape, dtype, seed, lo, hi));
  return cpu.To(device);
}

// A random pair for a binary op; where both ranges agree every fourth element of b equals a's,
// so that comparisons and maximum / minimum see ties.
absl::StatusOr<std::pair<Tensor, Tensor>> RandomPair(const Shape& shape, DType dtype,
                                                     Device device, uint64_t seed, double a_lo,
                                                     double a_hi, double b_lo, double b_hi) {
  LYRA_ASSIGN_OR_RETURN(Tensor a64, RandomTensor(shape, DType::kF64, seed, a_lo, a_hi));
  LYRA_ASSIGN_OR_RETURN(Tensor b64, RandomTensor(shape, DType::kF64, seed + 1000, b_lo, b_hi));
  LYRA_ASSIGN_OR_RETURN(std::vector<double> av, a64.ToDoubles());
  LYRA_ASSIGN_OR_RETURN(std::vector<double> bv, b64.ToDoubles());
  if (IsInteger(dtype)) {
    for (double& v : av) v = std::floor(v);
    for (double& v : bv) v = std::floor(v);
  }
  if (a_lo == b_lo && a_hi == b_hi) {
    for (size_t i = 0; i < av.size(); i += 4) bv[i] = av[i];
  }
  LYRA_ASSIGN_OR_RETURN(Tensor a, Tensor::FromDoubles(av, shape, dtype, device));
  LYRA_ASSIGN_OR_RETURN(Tensor b, Tensor::FromDoubles(bv, shape, dtype, device));
  return std::make_pair(a, b);
}

// --- Op tables ------------------------------------------------------------------------------

struct UnaryCase {
  UnaryOp op;
  double lo, hi;  // input range
  double alpha = 0, beta = 0;
};

// Every UnaryOp on the float dtypes, over inputs in its domain. Softplus spans its threshold.
const UnaryCase kFloatUnaryCases[] = {
    {UnaryOp::kIdentity, -3, 3},
    {UnaryOp::kNeg, -3, 3},
    {UnaryOp::kAbs, -3, 3},
    {UnaryOp::kExp, -5, 5},
    {UnaryOp::kLog, 0.01, 10},
    {UnaryOp::kSqrt, 0, 10},
    {UnaryOp::kRsqrt, 0.05, 10},
    {UnaryOp::kTanh, -4, 4},
    {UnaryOp::kSigmoid, -8, 8},
    {UnaryOp::kSilu, -8, 8},
    {UnaryOp::kSoftplus, -30, 30},
    {UnaryOp::kGelu, -5, 5},
    {UnaryOp::kGeluTanh, -5, 5},
    {UnaryOp::kRelu, -3, 3},
    {UnaryOp::kSquare, -3, 3},
    {UnaryOp::kReciprocal, 0.1, 4},
    {UnaryOp::kAddScalar, -3, 3, 1.5},
    {UnaryOp::kMulScalar, -3, 3, -2.5},
    {UnaryOp::kPowScalar, 0.1, 3, 2.5},
    {UnaryOp::kPowScalar, 0.1, 3, -0.5},
    {UnaryOp::kRsubScalar, -3, 3, 0.75},
    {UnaryOp::kClamp, -3, 3, -0.5, 0.25},
};

// The UnaryOps defined for i32 / i64 (integer alpha and beta).
const UnaryCase kIntUnaryCases[] = {
    {UnaryOp::kIdentity, -100, 100},        {UnaryOp::kNeg, -100, 100},
    {UnaryOp::kAbs, -100, 100},             {UnaryOp::kSquare, -100, 100},
    {UnaryOp::kAddScalar, -100, 100, 7},    {UnaryOp::kMulScalar, -100, 100, -3},
    {UnaryOp::kRsubScalar, -100, 100, 5},   {UnaryOp::kClamp, -100, 100, -10, 20},
};

struct BinaryCase {
  BinaryOp op;
  double a_lo, a_hi, b_lo, b_hi;
  double alpha = 1;
};

const BinaryCase kFloatBinaryCases[] = {
    {BinaryOp::kAdd, -3, 3, -3, 3},
    {BinaryOp::kAdd, -3, 3, -3, 3, 2.5},
    {BinaryOp::kSub, -3, 3, -3, 3},
    {BinaryOp::kSub, -3, 3, -3, 3, -0.5},
    {BinaryOp::kMul, -3, 3, -3, 3},
    {BinaryOp::kDiv, -3, 3, 0.5, 3},
    {BinaryOp::kPow, 0.1, 3, -2, 2},
    {BinaryOp::kMaximum, -3, 3, -3, 3},
    {BinaryOp::kMinimum, -3, 3, -3, 3},
    {BinaryOp::kEq, -3, 3, -3, 3},
    {BinaryOp::kNe, -3, 3, -3, 3},
    {BinaryOp::kLt, -3, 3, -3, 3},
    {BinaryOp::kLe, -3, 3, -3, 3},
    {BinaryOp::kGt, -3, 3, -3, 3},
    {BinaryOp::kGe, -3, 3, -3, 3},
    {BinaryOp::kSigmoidBackward, 0.01, 0.99, -2, 2},
    {BinaryOp::kTanhBackward, -0.99, 0.99, -2, 2},
    {BinaryOp::kSiluBackward, -8, 8, -2, 2},
    {BinaryOp::kSoftplusBackward, -30, 30, -2, 2},
    {BinaryOp::kGeluBackward, -5, 5, -2, 2},
    {BinaryOp::kGeluTanhBackward, -5, 5, -2, 2},
    {BinaryOp::kReluBackward, -3, 3, -2, 2},
};

const BinaryCase kIntBinaryCases[] = {
    {BinaryOp::kAdd, -100, 100, -100, 100},
    {BinaryOp::kAdd, -100, 100, -100, 100, 3},
    {BinaryOp::kSub, -100, 100, -100, 100},
    {BinaryOp::kSub, -100, 100, -100, 100, 2},
    {BinaryOp::kMul, -100, 100, -100, 100},
    {BinaryOp::kMaximum, -100, 100, -100, 100},
    {BinaryOp::kMinimum, -100, 100, -100, 100},
    {BinaryOp::kEq, -100, 100, -100, 100},
    {BinaryOp::kNe, -100, 100, -100, 100},
    {BinaryOp::kLt, -100, 100, -100, 100},
    {BinaryOp::kLe, -100, 100, -100, 100},
    {BinaryOp::kGt, -100, 100, -100, 100},
    {BinaryOp::kGe, -100, 100, -100, 100},
};

constexpr BinaryOp kBoolBinaryOps[] = {BinaryOp::kEq, BinaryOp::kNe, BinaryOp::kLogicalAnd,
                                       BinaryOp::kLogicalOr};

// Every enumerator of UnaryOp / BinaryOp, found through the name functions.
std::vector<UnaryOp> AllUnaryOps() {
  std::vector<UnaryOp> ops;
  for (int i = 0; i < 256; ++i) {
    const auto op = static_cast<UnaryOp>(i);
    if (cuda::UnaryOpName(op) != "UnknownUnary") ops.push_back(op);
  }
  return ops;
}
std::vector<BinaryOp> AllBinaryOps() {
  std::vector<BinaryOp> ops;
  for (int i = 0; i < 256; ++i) {
    const auto op = static_cast<BinaryOp>(i);
    if (cuda::BinaryOpName(op) != "UnknownBinary") ops.push_back(op);
  }
  return ops;
}

TEST(ElementwiseTest, TablesCoverEveryOp) {
  std::set<UnaryOp> unary;
  for (const UnaryCase& c : kFloatUnaryCases) unary.insert(c.op);
  for (UnaryOp op : AllUnaryOps()) EXPECT_TRUE(unary.count(op)) << cuda::UnaryOpName(op);
  EXPECT_EQ(AllUnaryOps().size(), 21u);
  std::set<BinaryOp> binary;
  for (const BinaryCase& c : kFloatBinaryCases) binary.insert(c.op);
  for (BinaryOp op : kBoolBinaryOps) binary.insert(op);
  for (BinaryOp op : AllBinaryOps()) EXPECT_TRUE(binary.count(op)) << cuda::BinaryOpName(op);
  EXPECT_EQ(AllBinaryOps().size(), 22u);
}

// --- Unary ----------------------------------------------------------------------------------

TEST(ElementwiseTest, FloatUnaryOpsMatchDoubleMath) {
  uint64_t seed = 1;
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      for (const UnaryCase& c : kFloatUnaryCases) {
        SCOPED_TRACE(Trace(device, dtype, cuda::UnaryOpName(c.op)));
        ASSERT_OK_AND_ASSIGN(Tensor x, Random({7, 13}, dtype, device, ++seed, c.lo, c.hi));
        ASSERT_OK_AND_ASSIGN(Tensor y, Unary(c.op, x, c.alpha, c.beta));
        EXPECT_EQ(y.dtype(), dtype);
        EXPECT_EQ(y.shape(), x.shape());
        EXPECT_EQ(y.device(), device);
        EXPECT_TRUE(y.is_contiguous());
        EXPECT_TRUE(MatchesUnary(c.op, x, y, c.alpha, c.beta, DefaultTolerance(dtype)));
      }
    }
  }
}

TEST(ElementwiseTest, SoftplusSwitchesToIdentityAboveTwenty) {
  // All values exact in every float dtype; 19.75 and 20 take log1p(exp(x)), 20.25 and up take x.
  const std::vector<double> xs = {-30, -20.5, -1, 0, 1, 19.75, 20, 20.25, 25, 30};
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(Trace(device, dtype, "Softplus"));
      ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromDoubles(xs, {10}, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor y, Softplus(x));
      EXPECT_TRUE(MatchesUnary(UnaryOp::kSoftplus, x, y, 0, 0, DefaultTolerance(dtype)));
      ASSERT_OK_AND_ASSIGN(std::vector<double> yv, y.ToDoubles());
      EXPECT_EQ(yv[7], 20.25);  // exactly x above the threshold
      EXPECT_EQ(yv[9], 30.0);
    }
  }
}

TEST(ElementwiseTest, GeluExactAndTanhDiffer) {
  // The two GELUs agree to ~1e-3 but are different functions: a test of each against its own
  // formula above would not notice them swapped, this one does.
  for (Device device : TestDevices()) {
    ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromDoubles({-2, -1, 1, 2}, {4}, DType::kF64, device));
    ASSERT_OK_AND_ASSIGN(Tensor exact, Gelu(x));
    ASSERT_OK_AND_ASSIGN(Tensor approx, GeluTanh(x));
    ASSERT_OK_AND_ASSIGN(std::vector<double> e, exact.ToDoubles());
    ASSERT_OK_AND_ASSIGN(std::vector<double> a, approx.ToDoubles());
    EXPECT_NEAR(e[3], 2.0 * NormalCdf(2.0), 1e-13);      // 1.9544997361036416
    EXPECT_NEAR(e[0], -2.0 * NormalCdf(-2.0), 1e-13);    // -0.0455002638963584
    EXPECT_NEAR(a[3], 1.954597694087775, 1e-13);
    EXPECT_GT(std::fabs(e[3] - a[3]), 5e-5);
  }
}

TEST(ElementwiseTest, IntUnaryOpsAreExact) {
  uint64_t seed = 100;
  for (Device device : TestDevices()) {
    for (DType dtype : kIntDTypes) {
      for (const UnaryCase& c : kIntUnaryCases) {
        SCOPED_TRACE(Trace(device, dtype, cuda::UnaryOpName(c.op)));
        ASSERT_OK_AND_ASSIGN(Tensor x, Random({5, 11}, dtype, device, ++seed, c.lo, c.hi));
        ASSERT_OK_AND_ASSIGN(Tensor y, Unary(c.op, x, c.alpha, c.beta));
        EXPECT_EQ(y.dtype(), dtype);
        EXPECT_TRUE(MatchesUnary(c.op, x, y, c.alpha, c.beta, kExact));
      }
    }
    // i64 beyond the i32 range (and within double's exact integers).
    for (const UnaryCase& c : kIntUnaryCases) {
      if (c.op == UnaryOp::kSquare) continue;
      SCOPED_TRACE(Trace(device, DType::kI64, cuda::UnaryOpName(c.op)));
      const double scale = c.op == UnaryOp::kClamp ? 1e8 : 1;  // clamp to [-1e9, 2e9]
      ASSERT_OK_AND_ASSIGN(Tensor x, Random({37}, DType::kI64, device, ++seed, -5e9, 5e9));
      ASSERT_OK_AND_ASSIGN(Tensor y, Unary(c.op, x, c.alpha * scale, c.beta * scale));
      EXPECT_TRUE(MatchesUnary(c.op, x, y, c.alpha * scale, c.beta * scale, kExact));
    }
  }
}

TEST(ElementwiseTest, UnsupportedUnaryDTypesAreInvalidArgument) {
  std::set<UnaryOp> int_ops;
  for (const UnaryCase& c : kIntUnaryCases) int_ops.insert(c.op);
  for (Device device : TestDevices()) {
    for (DType dtype : {DType::kI32, DType::kI64, DType::kBool}) {
      ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Ones({3}, dtype, device));
      for (UnaryOp op : AllUnaryOps()) {
        SCOPED_TRACE(Trace(device, dtype, cuda::UnaryOpName(op)));
        const bool supported =
            op == UnaryOp::kIdentity || (dtype != DType::kBool && int_ops.count(op) > 0);
        if (supported) {
          EXPECT_OK(Unary(op, x, 1, 2).status());
        } else {
          EXPECT_STATUS_IS(Unary(op, x), absl::StatusCode::kInvalidArgument,
                           absl::StrCat(cuda::UnaryOpName(op), " does not support dtype ",
                                        DTypeName(dtype)));
        }
      }
    }
  }
}

// --- Binary ---------------------------------------------------------------------------------

TEST(ElementwiseTest, FloatBinaryOpsMatchDoubleMath) {
  uint64_t seed = 1000;
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      for (const BinaryCase& c : kFloatBinaryCases) {
        SCOPED_TRACE(Trace(device, dtype, cuda::BinaryOpName(c.op)));
        ASSERT_OK_AND_ASSIGN(auto ab, RandomPair({9, 7}, dtype, device, seed += 2, c.a_lo,
                                                 c.a_hi, c.b_lo, c.b_hi));
        const auto& [a, b] = ab;
        ASSERT_OK_AND_ASSIGN(Tensor out, Binary(c.op, a, b, c.alpha));
        const bool comparison = cuda::IsComparison(c.op);
        EXPECT_EQ(out.dtype(), comparison ? DType::kBool : dtype);
        EXPECT_EQ(out.shape(), (Shape{9, 7}));
        EXPECT_EQ(out.device(), device);
        EXPECT_TRUE(
            MatchesBinary(c.op, a, b, out, c.alpha, comparison ? kExact : DefaultTolerance(dtype)));
      }
    }
  }
}

TEST(ElementwiseTest, IntBinaryOpsAreExact) {
  uint64_t seed = 2000;
  for (Device device : TestDevices()) {
    for (DType dtype : kIntDTypes) {
      for (const BinaryCase& c : kIntBinaryCases) {
        SCOPED_TRACE(Trace(device, dtype, cuda::BinaryOpName(c.op)));
        ASSERT_OK_AND_ASSIGN(auto ab, RandomPair({6, 9}, dtype, device, seed += 2, c.a_lo,
                                                 c.a_hi, c.b_lo, c.b_hi));
        ASSERT_OK_AND_ASSIGN(Tensor out, Binary(c.op, ab.first, ab.second, c.alpha));
        EXPECT_EQ(out.dtype(), cuda::IsComparison(c.op) ? DType::kBool : dtype);
        EXPECT_TRUE(MatchesBinary(c.op, ab.first, ab.second, out, c.alpha, kExact));
      }
    }
    // i64 values beyond the i32 range (sums stay exact in double).
    for (const BinaryCase& c : kIntBinaryCases) {
      if (c.op == BinaryOp::kMul) continue;
      SCOPED_TRACE(Trace(device, DType::kI64, cuda::BinaryOpName(c.op)));
      ASSERT_OK_AND_ASSIGN(
          auto ab, RandomPair({41}, DType::kI64, device, seed += 2, -4e9, 4e9, -4e9, 4e9));
      ASSERT_OK_AND_ASSIGN(Tensor out, Binary(c.op, ab.first, ab.second, c.alpha));
      EXPECT_TRUE(MatchesBinary(c.op, ab.first, ab.second, out, c.alpha, kExact));
    }
  }
}

TEST(ElementwiseTest, BoolBinaryOpsAreTruthTables) {
  for (Device device : TestDevices()) {
    ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::FromVector<bool>({false, false, true, true}, {4}, device));
    ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::FromVector<bool>({false, true, false, true}, {4}, device));
    const std::vector<std::pair<BinaryOp, std::vector<bool>>> tables = {
        {BinaryOp::kEq, {true, false, false, true}},
        {BinaryOp::kNe, {false, true, true, false}},
        {BinaryOp::kLogicalAnd, {false, false, false, true}},
        {BinaryOp::kLogicalOr, {false, true, true, true}},
    };
    for (const auto& [op, expected] : tables) {
      SCOPED_TRACE(Trace(device, DType::kBool, cuda::BinaryOpName(op)));
      ASSERT_OK_AND_ASSIGN(Tensor out, Binary(op, a, b));
      EXPECT_EQ(out.dtype(), DType::kBool);
      ASSERT_OK_AND_ASSIGN(std::vector<bool> values, out.ToVector<bool>());
      EXPECT_EQ(values, expected);
    }
  }
}

TEST(ElementwiseTest, UnsupportedBinaryDTypesAreInvalidArgument) {
  std::set<BinaryOp> int_ops;
  for (const BinaryCase& c : kIntBinaryCases) int_ops.insert(c.op);
  const std::set<BinaryOp> bool_ops(std::begin(kBoolBinaryOps), std::end(kBoolBinaryOps));
  for (Device device : TestDevices()) {
    for (DType dtype : kAllDTypes) {
      ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Ones({2, 3}, dtype, device));
      for (BinaryOp op : AllBinaryOps()) {
        SCOPED_TRACE(Trace(device, dtype, cuda::BinaryOpName(op)));
        bool supported;
        if (dtype == DType::kBool) {
          supported = bool_ops.count(op) > 0;
        } else if (IsInteger(dtype)) {
          supported = int_ops.count(op) > 0;
        } else {
          supported = op != BinaryOp::kLogicalAnd && op != BinaryOp::kLogicalOr;
        }
        if (supported) {
          EXPECT_OK(Binary(op, x, x).status());
        } else {
          EXPECT_STATUS_IS(Binary(op, x, x), absl::StatusCode::kInvalidArgument,
                           absl::StrCat(cuda::BinaryOpName(op), " does not support dtype ",
                                        DTypeName(dtype)));
        }
      }
    }
  }
}

TEST(ElementwiseTest, BadArgumentsAreErrors) {
  for (Device device : TestDevices()) {
    SCOPED_TRACE(device.ToString());
    ASSERT_OK_AND_ASSIGN(Tensor f32, Tensor::Ones({3}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor f64, Tensor::Ones({3}, DType::kF64, device));
    ASSERT_OK_AND_ASSIGN(Tensor four, Tensor::Ones({4}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor two_by_three, Tensor::Zeros({2, 3}, DType::kF32, device));
    EXPECT_STATUS_IS(Add(f32, f64), absl::StatusCode::kInvalidArgument, "dtypes differ");
    EXPECT_STATUS_IS(Add(f32, f64), absl::StatusCode::kInvalidArgument, "f64[3]");
    EXPECT_STATUS_IS(Mul(f32, four), absl::StatusCode::kInvalidArgument,
                     "Mul: shapes [3] and [4] do not broadcast");
    // The result [2, 3] does not fit a [3] output; an input larger than the output neither.
    EXPECT_STATUS_IS(BinaryInto(BinaryOp::kAdd, two_by_three, f32, f32),
                     absl::StatusCode::kInvalidArgument, "does not fit output f32[3]");
    EXPECT_STATUS_IS(UnaryInto(UnaryOp::kExp, two_by_three, f32),
                     absl::StatusCode::kInvalidArgument, "does not broadcast to output");
    // Comparisons write bool; other ops write the input dtype.
    EXPECT_STATUS_IS(BinaryInto(BinaryOp::kLt, f32, f32, f32), absl::StatusCode::kInvalidArgument,
                     "Lt: output dtype f32, expected bool");
    EXPECT_STATUS_IS(UnaryInto(UnaryOp::kExp, f32, f64), absl::StatusCode::kInvalidArgument,
                     "Exp: input f32 but output f64");
    EXPECT_STATUS_IS(Exp(Tensor()), absl::StatusCode::kInvalidArgument, "argument 0 is undefined");
    EXPECT_STATUS_IS(Add(f32, Tensor()), absl::StatusCode::kInvalidArgument,
                     "argument 1 is undefined");
    ASSERT_OK_AND_ASSIGN(Tensor cond_f32, Tensor::Ones({3}, DType::kF32, device));
    EXPECT_STATUS_IS(Where(cond_f32, f32, f32), absl::StatusCode::kInvalidArgument,
                     "condition must be bool");
    ASSERT_OK_AND_ASSIGN(Tensor cond, Tensor::Ones({3}, DType::kBool, device));
    EXPECT_STATUS_IS(Where(cond, f32, f64), absl::StatusCode::kInvalidArgument, "dtypes differ");
    EXPECT_STATUS_IS(Where(cond, four, four), absl::StatusCode::kInvalidArgument,
                     "do not broadcast");
  }
  if (cuda::HasGpu()) {
    ASSERT_OK_AND_ASSIGN(Tensor cpu, Tensor::Ones({3}, DType::kF32));
    ASSERT_OK_AND_ASSIGN(Tensor gpu, Tensor::Ones({3}, DType::kF32, Device::Cuda(0)));
    EXPECT_STATUS_IS(Add(cpu, gpu), absl::StatusCode::kInvalidArgument, "different devices");
    EXPECT_STATUS_IS(UnaryInto(UnaryOp::kNeg, cpu, gpu), absl::StatusCode::kInvalidArgument,
                     "different devices");
  }
}

TEST(ElementwiseTest, NamedFunctionsCallTheirOps) {
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({11}, DType::kF32, 7, 0.1, 2.0));
  ASSERT_OK_AND_ASSIGN(Tensor y, RandomTensor({11}, DType::kF32, 8, 0.1, 2.0));
  ASSERT_OK_AND_ASSIGN(Tensor p, x.To(DType::kBool));
  struct Pair {
    std::string name;
    absl::StatusOr<Tensor> named, generic;
  };
  const std::vector<Pair> pairs = {
      {"Neg", Neg(x), Unary(UnaryOp::kNeg, x)},
      {"Abs", Abs(x), Unary(UnaryOp::kAbs, x)},
      {"Exp", Exp(x), Unary(UnaryOp::kExp, x)},
      {"Log", Log(x), Unary(UnaryOp::kLog, x)},
      {"Sqrt", Sqrt(x), Unary(UnaryOp::kSqrt, x)},
      {"Rsqrt", Rsqrt(x), Unary(UnaryOp::kRsqrt, x)},
      {"Tanh", Tanh(x), Unary(UnaryOp::kTanh, x)},
      {"Sigmoid", Sigmoid(x), Unary(UnaryOp::kSigmoid, x)},
      {"Silu", Silu(x), Unary(UnaryOp::kSilu, x)},
      {"Softplus", Softplus(x), Unary(UnaryOp::kSoftplus, x)},
      {"Gelu", Gelu(x), Unary(UnaryOp::kGelu, x)},
      {"GeluTanh", GeluTanh(x), Unary(UnaryOp::kGeluTanh, x)},
      {"Relu", Relu(x), Unary(UnaryOp::kRelu, x)},
      {"Square", Square(x), Unary(UnaryOp::kSquare, x)},
      {"Reciprocal", Reciprocal(x), Unary(UnaryOp::kReciprocal, x)},
      {"AddScalar", AddScalar(x, 0.5), Unary(UnaryOp::kAddScalar, x, 0.5)},
      {"MulScalar", MulScalar(x, 3), Unary(UnaryOp::kMulScalar, x, 3)},
      {"PowScalar", PowScalar(x, 1.5), Unary(UnaryOp::kPowScalar, x, 1.5)},
      {"RsubScalar", RsubScalar(x, 2), Unary(UnaryOp::kRsubScalar, x, 2)},
      {"Clamp", Clamp(x, 0.5, 1.5), Unary(UnaryOp::kClamp, x, 0.5, 1.5)},
      {"Add", Add(x, y), Binary(BinaryOp::kAdd, x, y)},
      {"Add alpha", Add(x, y, -2), Binary(BinaryOp::kAdd, x, y, -2)},
      {"Sub", Sub(x, y), Binary(BinaryOp::kSub, x, y)},
      {"Sub alpha", Sub(x, y, 0.5), Binary(BinaryOp::kSub, x, y, 0.5)},
      {"Mul", Mul(x, y), Binary(BinaryOp::kMul, x, y)},
      {"Div", Div(x, y), Binary(BinaryOp::kDiv, x, y)},
      {"Pow", Pow(x, y), Binary(BinaryOp::kPow, x, y)},
      {"Maximum", Maximum(x, y), Binary(BinaryOp::kMaximum, x, y)},
      {"Minimum", Minimum(x, y), Binary(BinaryOp::kMinimum, x, y)},
      {"Eq", Eq(x, y), Binary(BinaryOp::kEq, x, y)},
      {"Ne", Ne(x, y), Binary(BinaryOp::kNe, x, y)},
      {"Lt", Lt(x, y), Binary(BinaryOp::kLt, x, y)},
      {"Le", Le(x, y), Binary(BinaryOp::kLe, x, y)},
      {"Gt", Gt(x, y), Binary(BinaryOp::kGt, x, y)},
      {"Ge", Ge(x, y), Binary(BinaryOp::kGe, x, y)},
      {"LogicalAnd", LogicalAnd(p, p), Binary(BinaryOp::kLogicalAnd, p, p)},
      {"LogicalOr", LogicalOr(p, p), Binary(BinaryOp::kLogicalOr, p, p)},
  };
  for (const Pair& pair : pairs) {
    SCOPED_TRACE(pair.name);
    ASSERT_TRUE(pair.named.ok()) << pair.named.status();
    ASSERT_TRUE(pair.generic.ok()) << pair.generic.status();
    EXPECT_EQ(pair.named->dtype(), pair.generic->dtype());
    EXPECT_TRUE(AllClose(*pair.named, *pair.generic, kExact));
  }
}

// --- Broadcasting, views, aliasing ----------------------------------------------------------

TEST(ElementwiseTest, Broadcasting) {
  struct Case {
    Shape a, b, out;
  };
  const std::vector<Case> cases = {
      {{3, 1, 5}, {4, 1}, {3, 4, 5}},
      {{4, 1}, {3, 1, 5}, {3, 4, 5}},
      {{}, {2, 3}, {2, 3}},        // 0-dim + tensor
      {{2, 3}, {}, {2, 3}},        // tensor + 0-dim
      {{}, {}, {}},                // 0-dim + 0-dim
      {{1}, {}, {1}},
      {{2, 3}, {3}, {2, 3}},       // a row
      {{2, 1}, {1, 3}, {2, 3}},    // outer product shape
      {{0, 3}, {3}, {0, 3}},       // empty
      {{2, 1, 1, 3}, {1, 4, 1}, {2, 1, 4, 3}},
  };
  uint64_t seed = 3000;
  for (Device device : TestDevices()) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kI64}) {
      for (const Case& c : cases) {
        SCOPED_TRACE(Trace(device, dtype, absl::StrCat(ShapeToString(c.a), " + ",
                                                       ShapeToString(c.b))));
        ASSERT_OK_AND_ASSIGN(Tensor a, Random(c.a, dtype, device, ++seed, -10, 10));
        ASSERT_OK_AND_ASSIGN(Tensor b, Random(c.b, dtype, device, ++seed, -10, 10));
        for (BinaryOp op : {BinaryOp::kAdd, BinaryOp::kMul, BinaryOp::kGt}) {
          ASSERT_OK_AND_ASSIGN(Tensor out, Binary(op, a, b));
          EXPECT_EQ(out.shape(), c.out);
          EXPECT_TRUE(MatchesBinary(op, a, b, out, 1, ToleranceFor(out.dtype())));
        }
      }
      // A scalar tensor made with Tensor::Scalar, and broadcasting through UnaryInto.
      SCOPED_TRACE(Trace(device, dtype, "Scalar / UnaryInto"));
      ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(2, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor m, Random({3, 4}, dtype, device, ++seed, -10, 10));
      ASSERT_OK_AND_ASSIGN(Tensor sm, Sub(s, m));
      EXPECT_TRUE(MatchesBinary(BinaryOp::kSub, s, m, sm, 1, ToleranceFor(dtype)));
      ASSERT_OK_AND_ASSIGN(Tensor row, Random({4}, dtype, device, ++seed, -10, 10));
      ASSERT_OK_AND_ASSIGN(Tensor out, Tensor::Zeros({3, 4}, dtype, device));
      ASSERT_OK(UnaryInto(UnaryOp::kNeg, row, out));
      EXPECT_TRUE(MatchesUnary(UnaryOp::kNeg, row, out, 0, 0, kExact));
    }
  }
}

TEST(ElementwiseTest, NonContiguousInputs) {
  uint64_t seed = 4000;
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(Trace(device, dtype, "views"));
      const Tolerance tol = DefaultTolerance(dtype);
      ASSERT_OK_AND_ASSIGN(Tensor base_a, Random({5, 7}, dtype, device, ++seed, -2, 2));
      ASSERT_OK_AND_ASSIGN(Tensor base_b, Random({7, 11}, dtype, device, ++seed, -2, 2));
      ASSERT_OK_AND_ASSIGN(Tensor base_c, Random({1, 5}, dtype, device, ++seed, -2, 2));
      ASSERT_OK_AND_ASSIGN(Tensor transposed, base_a.Transpose(0, 1));     // [7, 5]
      ASSERT_OK_AND_ASSIGN(Tensor stepped, base_b.Slice(1, 1, 11, 2));     // [7, 5], offset 1
      ASSERT_OK_AND_ASSIGN(Tensor expanded, base_c.Expand({7, 5}));        // stride 0 rows
      ASSERT_FALSE(transposed.is_contiguous());
      ASSERT_FALSE(stepped.is_contiguous());
      ASSERT_EQ(expanded.stride(0), 0);
      for (BinaryOp op : {BinaryOp::kAdd, BinaryOp::kMul, BinaryOp::kMaximum}) {
        SCOPED_TRACE(cuda::BinaryOpName(op));
        ASSERT_OK_AND_ASSIGN(Tensor r1, Binary(op, transposed, stepped));
        EXPECT_TRUE(MatchesBinary(op, transposed, stepped, r1, 1, tol));
        ASSERT_OK_AND_ASSIGN(Tensor r2, Binary(op, stepped, expanded));
        EXPECT_TRUE(MatchesBinary(op, stepped, expanded, r2, 1, tol));
        ASSERT_OK_AND_ASSIGN(Tensor r3, Binary(op, expanded, transposed));
        EXPECT_TRUE(MatchesBinary(op, expanded, transposed, r3, 1, tol));
      }
      // Unary over a transposed 3-d view and over a narrowed (offset) row.
      ASSERT_OK_AND_ASSIGN(Tensor cube, Random({3, 4, 5}, dtype, device, ++seed, -2, 2));
      ASSERT_OK_AND_ASSIGN(Tensor permuted, cube.Permute({2, 0, 1}));
      ASSERT_OK_AND_ASSIGN(Tensor e, Exp(permuted));
      EXPECT_TRUE(MatchesUnary(UnaryOp::kExp, permuted, e, 0, 0, tol));
      ASSERT_OK_AND_ASSIGN(Tensor narrowed, base_b.Narrow(1, 3, 5));
      ASSERT_OK_AND_ASSIGN(Tensor t, Tanh(narrowed));
      EXPECT_TRUE(MatchesUnary(UnaryOp::kTanh, narrowed, t, 0, 0, tol));
      ASSERT_OK_AND_ASSIGN(Tensor selected, base_b.Select(1, 4));  // [7] with stride 11
      ASSERT_OK_AND_ASSIGN(Tensor sq, Square(selected));
      EXPECT_TRUE(MatchesUnary(UnaryOp::kSquare, selected, sq, 0, 0, tol));
    }
  }
}

TEST(ElementwiseTest, NonContiguousOutputs) {
  uint64_t seed = 5000;
  constexpr double kSentinel = -99;
  for (Device device : TestDevices()) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kI32}) {
      SCOPED_TRACE(Trace(device, dtype, "output views"));
      const Tolerance tol = ToleranceFor(dtype);
      ASSERT_OK_AND_ASSIGN(Tensor a, Random({7, 5}, dtype, device, ++seed, -8, 8));
      ASSERT_OK_AND_ASSIGN(Tensor b, Random({5}, dtype, device, ++seed, -8, 8));

      // Into a transposed view: every element of the storage is written.
      ASSERT_OK_AND_ASSIGN(Tensor storage_t, Tensor::Full({5, 7}, kSentinel, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor out_t, storage_t.Transpose(0, 1));  // [7, 5]
      ASSERT_OK(BinaryInto(BinaryOp::kSub, a, b, out_t));
      EXPECT_TRUE(MatchesBinary(BinaryOp::kSub, a, b, out_t, 1, tol));

      // Into every other column of a wider tensor: the columns in between keep the sentinel.
      ASSERT_OK_AND_ASSIGN(Tensor storage_s, Tensor::Full({7, 10}, kSentinel, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor out_s, storage_s.Slice(1, 1, 10, 2));  // [7, 5]
      ASSERT_OK(BinaryInto(BinaryOp::kMul, a, b, out_s));
      EXPECT_TRUE(MatchesBinary(BinaryOp::kMul, a, b, out_s, 1, tol));
      ASSERT_OK_AND_ASSIGN(Tensor untouched, storage_s.Slice(1, 0, 10, 2));
      ASSERT_OK_AND_ASSIGN(std::vector<double> kept, untouched.ToDoubles());
      EXPECT_EQ(kept, std::vector<double>(35, kSentinel));

      // Unary into a view, and a cast into a view of another dtype.
      ASSERT_OK(UnaryInto(UnaryOp::kNeg, a, out_s));
      EXPECT_TRUE(MatchesUnary(UnaryOp::kNeg, a, out_s, 0, 0, kExact));
      ASSERT_OK_AND_ASSIGN(Tensor f64_storage, Tensor::Full({5, 7}, kSentinel, DType::kF64, device));
      ASSERT_OK_AND_ASSIGN(Tensor f64_t, f64_storage.Transpose(0, 1));
      ASSERT_OK(UnaryInto(UnaryOp::kIdentity, a, f64_t));
      EXPECT_TRUE(AllClose(f64_t, a, kExact));

      // A comparison into a bool view.
      ASSERT_OK_AND_ASSIGN(Tensor bool_storage, Tensor::Zeros({7, 10}, DType::kBool, device));
      ASSERT_OK_AND_ASSIGN(Tensor bool_view, bool_storage.Slice(1, 0, 10, 2));
      ASSERT_OK(BinaryInto(BinaryOp::kGe, a, b, bool_view));
      EXPECT_TRUE(MatchesBinary(BinaryOp::kGe, a, b, bool_view, 1, kExact));
    }
  }
}

TEST(ElementwiseTest, InPlaceAliasing) {
  uint64_t seed = 6000;
  for (Device device : TestDevices()) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF64, DType::kI64}) {
      SCOPED_TRACE(Trace(device, dtype, "in place"));
      const Tolerance tol = ToleranceFor(dtype);
      ASSERT_OK_AND_ASSIGN(Tensor a, Random({33}, dtype, device, ++seed, -4, 4));
      ASSERT_OK_AND_ASSIGN(Tensor b, Random({33}, dtype, device, ++seed, -4, 4));
      ASSERT_OK_AND_ASSIGN(Tensor a0, a.Clone());
      ASSERT_OK_AND_ASSIGN(Tensor b0, b.Clone());
      ASSERT_OK(BinaryInto(BinaryOp::kAdd, a, b, a, 2));  // a += 2 b
      EXPECT_TRUE(MatchesBinary(BinaryOp::kAdd, a0, b0, a, 2, tol));
      ASSERT_OK_AND_ASSIGN(Tensor a1, a.Clone());
      ASSERT_OK(BinaryInto(BinaryOp::kMul, a, b, b));  // b = a * b
      EXPECT_TRUE(MatchesBinary(BinaryOp::kMul, a1, b0, b, 1, tol));
      ASSERT_OK_AND_ASSIGN(Tensor b1, b.Clone());
      ASSERT_OK(BinaryInto(BinaryOp::kSub, b, b, b));  // a == b == out
      EXPECT_TRUE(MatchesBinary(BinaryOp::kSub, b1, b1, b, 1, tol));
      ASSERT_OK(UnaryInto(UnaryOp::kNeg, a, a));
      EXPECT_TRUE(MatchesUnary(UnaryOp::kNeg, a1, a, 0, 0, tol));
      // In place through the same transposed view.
      ASSERT_OK_AND_ASSIGN(Tensor m, Random({6, 5}, dtype, device, ++seed, -4, 4));
      ASSERT_OK_AND_ASSIGN(Tensor mt, m.Transpose(0, 1));
      ASSERT_OK_AND_ASSIGN(Tensor mt0, mt.Clone());
      ASSERT_OK(UnaryInto(UnaryOp::kMulScalar, mt, mt, 3));
      EXPECT_TRUE(MatchesUnary(UnaryOp::kMulScalar, mt0, mt, 3, 0, tol));
    }
  }
}

TEST(ElementwiseTest, MaximumMinimumPropagateNaN) {
  const std::vector<double> a = {kNaN, 1, 2, kNaN, -kInf, 0};
  const std::vector<double> b = {1, kNaN, 3, kNaN, 5, kInf};
  const std::vector<double> max = {kNaN, kNaN, 3, kNaN, 5, kInf};
  const std::vector<double> min = {kNaN, kNaN, 2, kNaN, -kInf, 0};
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(Trace(device, dtype, "NaN"));
      ASSERT_OK_AND_ASSIGN(Tensor ta, Tensor::FromDoubles(a, {6}, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor tb, Tensor::FromDoubles(b, {6}, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor tmax, Maximum(ta, tb));
      ASSERT_OK_AND_ASSIGN(Tensor tmin, Minimum(ta, tb));
      ASSERT_OK_AND_ASSIGN(std::vector<double> vmax, tmax.ToDoubles());
      ASSERT_OK_AND_ASSIGN(std::vector<double> vmin, tmin.ToDoubles());
      EXPECT_TRUE(AllClose(vmax, max, kExact));
      EXPECT_TRUE(AllClose(vmin, min, kExact));
      // Clamp propagates NaN as well; comparisons with NaN are false (Ne true).
      ASSERT_OK_AND_ASSIGN(Tensor clamped, Clamp(ta, -0.5, 1.5));
      ASSERT_OK_AND_ASSIGN(std::vector<double> vc, clamped.ToDoubles());
      EXPECT_TRUE(AllClose(vc, {kNaN, 1, 1.5, kNaN, -0.5, 0}, kExact));
      ASSERT_OK_AND_ASSIGN(Tensor eq, Eq(ta, ta));
      ASSERT_OK_AND_ASSIGN(std::vector<bool> veq, eq.ToVector<bool>());
      EXPECT_EQ(veq, (std::vector<bool>{false, true, true, false, true, true}));
      ASSERT_OK_AND_ASSIGN(Tensor ne, Ne(ta, ta));
      ASSERT_OK_AND_ASSIGN(std::vector<bool> vne, ne.ToVector<bool>());
      EXPECT_EQ(vne, (std::vector<bool>{true, false, false, true, false, false}));
    }
  }
}

TEST(ElementwiseTest, WhereSelectsAndBroadcasts) {
  uint64_t seed = 7000;
  for (Device device : TestDevices()) {
    for (DType dtype : kAllDTypes) {
      SCOPED_TRACE(Trace(device, dtype, "Where"));
      ASSERT_OK_AND_ASSIGN(Tensor cond,
                           Tensor::FromVector<bool>({true, false, true}, {3, 1}, device));
      ASSERT_OK_AND_ASSIGN(Tensor a, Random({3, 4}, dtype, device, ++seed, -5, 5));
      ASSERT_OK_AND_ASSIGN(Tensor b, Random({4}, dtype, device, ++seed, -5, 5));
      ASSERT_OK_AND_ASSIGN(Tensor out, Where(cond, a, b));
      EXPECT_EQ(out.shape(), (Shape{3, 4}));
      EXPECT_EQ(out.dtype(), dtype);
      ASSERT_OK_AND_ASSIGN(std::vector<double> av, a.ToDoubles());
      ASSERT_OK_AND_ASSIGN(std::vector<double> bv, b.ToDoubles());
      ASSERT_OK_AND_ASSIGN(std::vector<double> ov, out.ToDoubles());
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 4; ++j) {
          EXPECT_EQ(ov[i * 4 + j], i != 1 ? av[i * 4 + j] : bv[j]) << i << ", " << j;
        }
      }
      // An elementwise condition over a transposed a and a 0-dim b.
      ASSERT_OK_AND_ASSIGN(Tensor a_t, a.Transpose(0, 1));  // [4, 3]
      ASSERT_OK_AND_ASSIGN(Tensor gt, Random({4, 3}, DType::kBool, device, ++seed, -1, 1));
      ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(1, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor out2, Where(gt, a_t, s));
      ASSERT_OK_AND_ASSIGN(std::vector<bool> gv, gt.ToVector<bool>());
      ASSERT_OK_AND_ASSIGN(std::vector<double> atv, a_t.ToDoubles());
      ASSERT_OK_AND_ASSIGN(std::vector<double> o2, out2.ToDoubles());
      for (size_t i = 0; i < o2.size(); ++i) EXPECT_EQ(o2[i], gv[i] ? atv[i] : 1.0) << i;
    }
  }
}

// --- Backward ops against finite differences ------------------------------------------------

struct GradCase {
  BinaryOp backward;
  UnaryOp forward;
  bool takes_output;  // a = forward(x) rather than x
  double lo, hi;
};

TEST(ElementwiseTest, BackwardOpsMatchFiniteDifferencesInF64) {
  const GradCase cases[] = {
      {BinaryOp::kSigmoidBackward, UnaryOp::kSigmoid, true, -6, 6},
      {BinaryOp::kTanhBackward, UnaryOp::kTanh, true, -3, 3},
      {BinaryOp::kSiluBackward, UnaryOp::kSilu, false, -8, 8},
      {BinaryOp::kSoftplusBackward, UnaryOp::kSoftplus, false, -30, 30},
      {BinaryOp::kGeluBackward, UnaryOp::kGelu, false, -5, 5},
      {BinaryOp::kGeluTanhBackward, UnaryOp::kGeluTanh, false, -5, 5},
      {BinaryOp::kReluBackward, UnaryOp::kRelu, false, -3, 3},
  };
  constexpr double kH = 1e-5;
  constexpr Tolerance kFdTolerance = {1e-8, 1e-7};  // h^2 truncation and eps/h rounding
  uint64_t seed = 8000;
  for (Device device : TestDevices()) {
    for (const GradCase& c : cases) {
      SCOPED_TRACE(Trace(device, DType::kF64, cuda::BinaryOpName(c.backward)));
      ASSERT_OK_AND_ASSIGN(Tensor x64, RandomTensor({64}, DType::kF64, ++seed, c.lo, c.hi));
      ASSERT_OK_AND_ASSIGN(std::vector<double> xs, x64.ToDoubles());
      // Keep away from the kinks (relu at 0, the softplus threshold) by more than h.
      for (double& v : xs) {
        if (std::fabs(v) < 1e-3) v += 2e-3;
        if (std::fabs(v - kSoftplusThreshold) < 1e-3) v += 2e-3;
      }
      xs.push_back(25);  // softplus above the threshold: gradient = g
      xs.push_back(-25);
      const Shape shape = {static_cast<int64_t>(xs.size())};
      std::vector<double> plus = xs, minus = xs;
      for (double& v : plus) v += kH;
      for (double& v : minus) v -= kH;
      ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromDoubles(xs, shape, DType::kF64, device));
      ASSERT_OK_AND_ASSIGN(Tensor xp, Tensor::FromDoubles(plus, shape, DType::kF64, device));
      ASSERT_OK_AND_ASSIGN(Tensor xm, Tensor::FromDoubles(minus, shape, DType::kF64, device));
      ASSERT_OK_AND_ASSIGN(Tensor g, Random(shape, DType::kF64, device, ++seed, -2, 2));
      ASSERT_OK_AND_ASSIGN(Tensor fp, Unary(c.forward, xp));
      ASSERT_OK_AND_ASSIGN(Tensor fm, Unary(c.forward, xm));
      ASSERT_OK_AND_ASSIGN(std::vector<double> fpv, fp.ToDoubles());
      ASSERT_OK_AND_ASSIGN(std::vector<double> fmv, fm.ToDoubles());
      ASSERT_OK_AND_ASSIGN(std::vector<double> gv, g.ToDoubles());
      std::vector<double> fd(xs.size());
      for (size_t i = 0; i < xs.size(); ++i) {
        fd[i] = gv[i] * (fpv[i] - fmv[i]) / ((xs[i] + kH) - (xs[i] - kH));
      }
      Tensor a = x;
      if (c.takes_output) {
        ASSERT_OK_AND_ASSIGN(a, Unary(c.forward, x));
      }
      ASSERT_OK_AND_ASSIGN(Tensor grad, Binary(c.backward, a, g));
      ASSERT_OK_AND_ASSIGN(std::vector<double> grad_v, grad.ToDoubles());
      EXPECT_TRUE(AllClose(grad_v, fd, kFdTolerance));
    }
  }
}

// --- Casts ----------------------------------------------------------------------------------

// What a value exact in every float dtype becomes in `dtype`: truncated toward zero for ints,
// != 0 for bool.
double CastExact(double v, DType dtype) {
  if (dtype == DType::kBool) return v != 0 ? 1 : 0;
  if (IsInteger(dtype)) return std::trunc(v);
  return v;
}

TEST(ElementwiseTest, CastsBetweenEveryPairOfDTypes) {
  // Exact in f16 and bf16; the fractions exercise truncation toward zero.
  const std::vector<double> values = {-2.75, -1.5, -0.5, 0, 0.25, 1, 2.5, 96, -7};
  for (Device device : TestDevices()) {
    for (DType src : kAllDTypes) {
      std::vector<double> src_values;
      for (double v : values) src_values.push_back(CastExact(v, src));
      ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromDoubles(src_values, {3, 3}, src, device));
      ASSERT_OK_AND_ASSIGN(Tensor xt, x.Transpose(0, 1));
      for (DType dst : kAllDTypes) {
        SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(src), " -> ", DTypeName(dst)));
        for (const Tensor& input : {x, xt}) {
          ASSERT_OK_AND_ASSIGN(Tensor y, input.To(dst));
          EXPECT_EQ(y.dtype(), dst);
          EXPECT_EQ(y.shape(), input.shape());
          ASSERT_OK_AND_ASSIGN(std::vector<double> in, input.ToDoubles());
          std::vector<double> expected;
          for (double v : in) expected.push_back(CastExact(v, dst));
          ASSERT_OK_AND_ASSIGN(std::vector<double> got, y.ToDoubles());
          EXPECT_TRUE(AllClose(got, expected, kExact));
        }
      }
    }
  }
}

// Casts `values` (given as f32) to `dst` and compares with `expected` exactly (NaN == NaN).
void ExpectCastFromF32(Device device, const std::vector<float>& values, DType dst,
                       const std::vector<double>& expected) {
  SCOPED_TRACE(absl::StrCat(device.ToString(), " f32 -> ", DTypeName(dst)));
  ASSERT_OK_AND_ASSIGN(Tensor x,
                       Tensor::FromVector<float>(values, {static_cast<int64_t>(values.size())},
                                                 device));
  ASSERT_OK_AND_ASSIGN(Tensor y, x.To(dst));
  ASSERT_OK_AND_ASSIGN(std::vector<double> got, y.ToDoubles());
  EXPECT_TRUE(AllClose(got, expected, kExact));
}

TEST(ElementwiseTest, F32ToF16RoundsToNearestEvenAndOverflowsToInf) {
  const double u = std::ldexp(1.0, -10);  // f16 spacing at 1
  const double tiny = std::ldexp(1.0, -24);  // smallest f16 subnormal
  const float fnan = std::numeric_limits<float>::quiet_NaN();
  const float finf = std::numeric_limits<float>::infinity();
  for (Device device : TestDevices()) {
    ExpectCastFromF32(device,
                      {1.0f + 0.5f * static_cast<float>(u),            // tie -> even (1)
                       1.0f + 1.5f * static_cast<float>(u),            // tie -> even (1 + 2u)
                       1.0f + 0.5f * static_cast<float>(u) + 1e-6f,    // above the tie
                       -(1.0f + 0.5f * static_cast<float>(u)),
                       65504.0f, 65519.0f,                             // max and below the tie
                       65520.0f, 1e6f, -1e6f,                          // overflow
                       static_cast<float>(tiny), static_cast<float>(tiny / 2),  // tie -> 0
                       static_cast<float>(1.5 * tiny),                 // tie -> 2 tiny
                       static_cast<float>(std::ldexp(1.0, -14)),       // smallest normal
                       static_cast<float>(std::ldexp(1.0, -14) - tiny / 2),  // tie -> normal
                       finf, -finf, fnan, 0.1f},
                      DType::kF16,
                      {1.0, 1.0 + 2 * u, 1.0 + u, -1.0, 65504, 65504, kInf, kInf, -kInf, tiny,
                       0.0, 2 * tiny, std::ldexp(1.0, -14), std::ldexp(1.0, -14), kInf, -kInf,
                       kNaN, 0.0999755859375});
    // The sign of zero survives.
    ASSERT_OK_AND_ASSIGN(Tensor z, Tensor::FromVector<float>({-0.0f, 0.0f}, {2}, device));
    ASSERT_OK_AND_ASSIGN(Tensor zh, z.To(DType::kF16));
    ASSERT_OK_AND_ASSIGN(std::vector<double> zv, zh.ToDoubles());
    EXPECT_TRUE(std::signbit(zv[0]));
    EXPECT_FALSE(std::signbit(zv[1]));
    // f64 overflow and NaN reach f16 as inf and NaN.
    ASSERT_OK_AND_ASSIGN(Tensor big, Tensor::FromDoubles({1e300, -1e300, kNaN}, {3}, DType::kF64,
                                                         device));
    ASSERT_OK_AND_ASSIGN(Tensor big_h, big.To(DType::kF16));
    ASSERT_OK_AND_ASSIGN(std::vector<double> bv, big_h.ToDoubles());
    EXPECT_TRUE(AllClose(bv, {kInf, -kInf, kNaN}, kExact));
  }
}

TEST(ElementwiseTest, ToBF16RoundsToNearestEvenAndKeepsNaN) {
  const double u = std::ldexp(1.0, -7);  // bf16 spacing at 1
  const float fnan = std::numeric_limits<float>::quiet_NaN();
  const float fmax = std::numeric_limits<float>::max();
  const double bf16_max = 3.3895313892515355e38;  // 0x7f7f
  for (Device device : TestDevices()) {
    ExpectCastFromF32(device,
                      {1.0f + 0.5f * static_cast<float>(u), 1.0f + 1.5f * static_cast<float>(u),
                       1.0f + 0.5f * static_cast<float>(u) + 1e-6f, fnan, -fnan,
                       std::numeric_limits<float>::infinity(), fmax,
                       static_cast<float>(bf16_max), 1e-40f, -3.0f},
                      DType::kBF16,
                      {1.0, 1.0 + 2 * u, 1.0 + u, kNaN, kNaN, kInf, kInf, bf16_max,
                       std::ldexp(1.0, -133), -3.0});
    // NaN stays NaN from every float dtype.
    for (DType src : {DType::kF64, DType::kF16}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(src), " NaN -> bf16"));
      ASSERT_OK_AND_ASSIGN(Tensor n, Tensor::FromDoubles({kNaN, 1, -kNaN}, {3}, src, device));
      ASSERT_OK_AND_ASSIGN(Tensor nb, n.To(DType::kBF16));
      ASSERT_OK_AND_ASSIGN(std::vector<double> nv, nb.ToDoubles());
      EXPECT_TRUE(AllClose(nv, {kNaN, 1, kNaN}, kExact));
    }
  }
}

TEST(ElementwiseTest, FloatToIntTruncatesTowardZero) {
  for (Device device : TestDevices()) {
    const std::vector<double> values = {-2.7, -2.5, -0.5, -0.0, 0.5, 2.5, 2.7, 1e9, -1e9};
    const std::vector<double> truncated = {-2, -2, 0, 0, 0, 2, 2, 1e9, -1e9};
    for (DType src : {DType::kF32, DType::kF64}) {
      ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromDoubles(values, {9}, src, device));
      for (DType dst : kIntDTypes) {
        SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(src), " -> ", DTypeName(dst)));
        ASSERT_OK_AND_ASSIGN(Tensor y, x.To(dst));
        ASSERT_OK_AND_ASSIGN(std::vector<double> got, y.ToDoubles());
        EXPECT_TRUE(AllClose(got, truncated, kExact));
      }
    }
    for (DType src : {DType::kF16, DType::kBF16}) {
      ASSERT_OK_AND_ASSIGN(Tensor x,
                           Tensor::FromDoubles({-2.75, -0.75, 0.75, 2.75, 200}, {5}, src, device));
      for (DType dst : kIntDTypes) {
        SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(src), " -> ", DTypeName(dst)));
        ASSERT_OK_AND_ASSIGN(Tensor y, x.To(dst));
        ASSERT_OK_AND_ASSIGN(std::vector<double> got, y.ToDoubles());
        EXPECT_TRUE(AllClose(got, {-2, 0, 0, 2, 200}, kExact));
      }
    }
    ASSERT_OK_AND_ASSIGN(Tensor big, Tensor::FromDoubles({1e12, -3e15}, {2}, DType::kF64, device));
    ASSERT_OK_AND_ASSIGN(Tensor big_i, big.To(DType::kI64));
    ASSERT_OK_AND_ASSIGN(std::vector<int64_t> bv, big_i.ToVector<int64_t>());
    EXPECT_EQ(bv, (std::vector<int64_t>{1000000000000, -3000000000000000}));
  }
}

TEST(ElementwiseTest, IntToFloatRoundsToNearestEven) {
  for (Device device : TestDevices()) {
    SCOPED_TRACE(device.ToString());
    ASSERT_OK_AND_ASSIGN(Tensor i32, Tensor::FromVector<int32_t>(
                                         {16777217, 2049, 2051, 257, 259, -2049, 0}, {7}, device));
    ASSERT_OK_AND_ASSIGN(Tensor f32, i32.To(DType::kF32));
    ASSERT_OK_AND_ASSIGN(std::vector<float> f32v, f32.ToVector<float>());
    EXPECT_EQ(f32v[0], 16777216.0f);
    ASSERT_OK_AND_ASSIGN(Tensor f16, i32.Narrow(0, 1, 6).value().To(DType::kF16));
    ASSERT_OK_AND_ASSIGN(std::vector<double> f16v, f16.ToDoubles());
    EXPECT_EQ(f16v, (std::vector<double>{2048, 2052, 257, 259, -2048, 0}));
    ASSERT_OK_AND_ASSIGN(Tensor bf16, i32.Narrow(0, 3, 2).value().To(DType::kBF16));
    ASSERT_OK_AND_ASSIGN(std::vector<double> bf16v, bf16.ToDoubles());
    EXPECT_EQ(bf16v, (std::vector<double>{256, 260}));
    const int64_t two53 = int64_t{1} << 53;
    ASSERT_OK_AND_ASSIGN(Tensor i64,
                         Tensor::FromVector<int64_t>({two53 + 1, two53 + 3, -(two53 + 1)}, {3}, device));
    ASSERT_OK_AND_ASSIGN(Tensor f64, i64.To(DType::kF64));
    ASSERT_OK_AND_ASSIGN(std::vector<double> f64v, f64.ToVector<double>());
    EXPECT_EQ(f64v, (std::vector<double>{9007199254740992.0, 9007199254740996.0,
                                         -9007199254740992.0}));
    // i64 -> i32 keeps the low 32 bits (modular, as static_cast in C++20).
    ASSERT_OK_AND_ASSIGN(Tensor wide,
                         Tensor::FromVector<int64_t>({(int64_t{1} << 32) + 5, -1, -(int64_t{1} << 31)},
                                                     {3}, device));
    ASSERT_OK_AND_ASSIGN(Tensor narrow, wide.To(DType::kI32));
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> nv, narrow.ToVector<int32_t>());
    EXPECT_EQ(nv, (std::vector<int32_t>{5, -1, std::numeric_limits<int32_t>::min()}));
  }
}

TEST(ElementwiseTest, CastsToAndFromBool) {
  for (Device device : TestDevices()) {
    SCOPED_TRACE(device.ToString());
    for (DType src : kFloatDTypes) {
      ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromDoubles({0, -0.0, 0.125, -3, kNaN, kInf}, {6},
                                                         src, device));
      ASSERT_OK_AND_ASSIGN(Tensor b, x.To(DType::kBool));
      ASSERT_OK_AND_ASSIGN(std::vector<bool> bv, b.ToVector<bool>());
      EXPECT_EQ(bv, (std::vector<bool>{false, false, true, true, true, true})) << DTypeName(src);
    }
    ASSERT_OK_AND_ASSIGN(Tensor ints, Tensor::FromVector<int64_t>({0, 5, -1}, {3}, device));
    ASSERT_OK_AND_ASSIGN(std::vector<bool> iv, ints.To(DType::kBool).value().ToVector<bool>());
    EXPECT_EQ(iv, (std::vector<bool>{false, true, true}));
    ASSERT_OK_AND_ASSIGN(Tensor bools, Tensor::FromVector<bool>({true, false}, {2}, device));
    for (DType dst : kAllDTypes) {
      ASSERT_OK_AND_ASSIGN(Tensor y, bools.To(dst));
      ASSERT_OK_AND_ASSIGN(std::vector<double> yv, y.ToDoubles());
      EXPECT_EQ(yv, (std::vector<double>{1, 0})) << DTypeName(dst);
    }
  }
}

TEST(ElementwiseTest, FillWritesOnlyTheView) {
  for (Device device : TestDevices()) {
    for (DType dtype : kAllDTypes) {
      SCOPED_TRACE(Trace(device, dtype, "Fill"));
      ASSERT_OK_AND_ASSIGN(Tensor t, Tensor::Zeros({4, 6}, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor view, t.Slice(1, 1, 6, 2));  // columns 1, 3, 5
      ASSERT_OK(view.Fill(1));
      ASSERT_OK_AND_ASSIGN(std::vector<double> v, t.ToDoubles());
      for (int i = 0; i < 24; ++i) EXPECT_EQ(v[i], (i % 6) % 2 == 1 ? 1.0 : 0.0) << i;
    }
  }
}

// --- CUDA against the CPU reference ---------------------------------------------------------

// Sizes around the vector widths (16 bytes: 2 f64, 4 f32, 8 f16/bf16, 16 bool), odd sizes and a
// few thousand elements (several blocks).
constexpr int64_t kGpuSizes[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 255, 257, 4097, 100003};

// The same op on the CPU and on the GPU, for a contiguous input and a misaligned one (offset by
// one element: not 16-byte aligned, so it takes the strided kernel).
TEST(ElementwiseCudaVsCpuTest, UnaryOpsOverSizesAndAlignments) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  uint64_t seed = 10000;
  for (DType dtype : kFloatDTypes) {
    for (const UnaryCase& c : kFloatUnaryCases) {
      for (int64_t n : kGpuSizes) {
        SCOPED_TRACE(absl::StrCat(Trace(gpu, dtype, cuda::UnaryOpName(c.op)), " n=", n));
        ASSERT_OK_AND_ASSIGN(Tensor x_cpu, RandomCpu({n + 1}, dtype, ++seed, c.lo, c.hi));
        ASSERT_OK_AND_ASSIGN(Tensor x_gpu, x_cpu.To(gpu));
        for (int64_t start : {0, 1}) {
          ASSERT_OK_AND_ASSIGN(Tensor xc, x_cpu.Narrow(0, start, n));
          ASSERT_OK_AND_ASSIGN(Tensor xg, x_gpu.Narrow(0, start, n));
          ASSERT_OK_AND_ASSIGN(Tensor yc, Unary(c.op, xc, c.alpha, c.beta));
          ASSERT_OK_AND_ASSIGN(Tensor yg, Unary(c.op, xg, c.alpha, c.beta));
          EXPECT_TRUE(AllClose(yg, yc, DefaultTolerance(dtype))) << "start " << start;
        }
      }
    }
  }
  for (DType dtype : kIntDTypes) {
    for (const UnaryCase& c : kIntUnaryCases) {
      for (int64_t n : kGpuSizes) {
        SCOPED_TRACE(absl::StrCat(Trace(gpu, dtype, cuda::UnaryOpName(c.op)), " n=", n));
        ASSERT_OK_AND_ASSIGN(Tensor x_cpu, RandomCpu({n + 1}, dtype, ++seed, c.lo, c.hi));
        ASSERT_OK_AND_ASSIGN(Tensor x_gpu, x_cpu.To(gpu));
        for (int64_t start : {0, 1}) {
          ASSERT_OK_AND_ASSIGN(Tensor yc, Unary(c.op, x_cpu.Narrow(0, start, n).value(), c.alpha,
                                                c.beta));
          ASSERT_OK_AND_ASSIGN(Tensor yg, Unary(c.op, x_gpu.Narrow(0, start, n).value(), c.alpha,
                                                c.beta));
          EXPECT_TRUE(AllClose(yg, yc, kExact)) << "start " << start;
        }
      }
    }
  }
}

// Binary ops with a contiguous pair, a misaligned pair, a row broadcast [m, n] + [n], a column
// broadcast [m, 1] + [n] and a transposed operand.
TEST(ElementwiseCudaVsCpuTest, BinaryOpsOverLayouts) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  uint64_t seed = 20000;
  auto check = [&](BinaryOp op, DType dtype, double lo, double hi, double blo, double bhi,
                   double alpha) {
    const Tolerance tol = cuda::IsComparison(op) ? kExact : ToleranceFor(dtype);
    for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{9}, int64_t{17}, int64_t{4097}}) {
      const int64_t m = 3;
      SCOPED_TRACE(absl::StrCat(Trace(gpu, dtype, cuda::BinaryOpName(op)), " n=", n));
      ASSERT_OK_AND_ASSIGN(Tensor a, RandomCpu({m, n + 1}, dtype, ++seed, lo, hi));
      ASSERT_OK_AND_ASSIGN(Tensor b, RandomCpu({m, n + 1}, dtype, ++seed, blo, bhi));
      ASSERT_OK_AND_ASSIGN(Tensor bt_base, RandomCpu({n, m}, dtype, ++seed, blo, bhi));
      ASSERT_OK_AND_ASSIGN(Tensor ga, a.To(gpu));
      ASSERT_OK_AND_ASSIGN(Tensor gb, b.To(gpu));
      ASSERT_OK_AND_ASSIGN(Tensor gbt_base, bt_base.To(gpu));
      // (a operand, b operand) pairs as functions of (a, b, bt_base) on one device.
      const std::vector<std::function<std::pair<Tensor, Tensor>(const Tensor&, const Tensor&,
                                                                const Tensor&)>>
          layouts = {
              [&](const Tensor& x, const Tensor& y, const Tensor&) {
                return std::make_pair(x.Narrow(1, 0, n).value().Contiguous().value(),
                                      y.Narrow(1, 0, n).value().Contiguous().value());
              },
              [&](const Tensor& x, const Tensor& y, const Tensor&) {  // offset by one
                return std::make_pair(x.Narrow(1, 1, n).value(), y.Narrow(1, 1, n).value());
              },
              [&](const Tensor& x, const Tensor& y, const Tensor&) {  // [m, n] + [n]
                return std::make_pair(x.Narrow(1, 0, n).value(), y.Select(0, 1).value().Narrow(0, 0, n).value());
              },
              [&](const Tensor& x, const Tensor& y, const Tensor&) {  // [m, 1] + [n]
                return std::make_pair(x.Narrow(1, 0, 1).value(),
                                      y.Select(0, 2).value().Narrow(0, 1, n).value());
              },
              [&](const Tensor& x, const Tensor&, const Tensor& t) {  // [m, n] + [n, m]^T
                return std::make_pair(x.Narrow(1, 0, n).value(), t.Transpose(0, 1).value());
              },
          };
      for (size_t k = 0; k < layouts.size(); ++k) {
        auto [ca, cb] = layouts[k](a, b, bt_base);
        auto [ga2, gb2] = layouts[k](ga, gb, gbt_base);
        ASSERT_OK_AND_ASSIGN(Tensor rc, Binary(op, ca, cb, alpha));
        ASSERT_OK_AND_ASSIGN(Tensor rg, Binary(op, ga2, gb2, alpha));
        EXPECT_TRUE(AllClose(rg, rc, tol)) << "layout " << k;
      }
    }
  };
  for (DType dtype : kFloatDTypes) {
    for (const BinaryCase& c : kFloatBinaryCases) {
      check(c.op, dtype, c.a_lo, c.a_hi, c.b_lo, c.b_hi, c.alpha);
    }
  }
  for (DType dtype : kIntDTypes) {
    for (const BinaryCase& c : kIntBinaryCases) {
      check(c.op, dtype, c.a_lo, c.a_hi, c.b_lo, c.b_hi, c.alpha);
    }
  }
  for (BinaryOp op : kBoolBinaryOps) check(op, DType::kBool, -1, 1, -1, 1, 1);
}

TEST(ElementwiseCudaVsCpuTest, CastsWhereAndFillOverSizes) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  uint64_t seed = 30000;
  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{17}, int64_t{33}, int64_t{4099}}) {
    for (DType src : kAllDTypes) {
      ASSERT_OK_AND_ASSIGN(Tensor x, RandomCpu({3, n}, src, ++seed, -100, 100));
      ASSERT_OK_AND_ASSIGN(Tensor gx, x.To(gpu));
      for (DType dst : kAllDTypes) {
        SCOPED_TRACE(absl::StrCat("n=", n, " ", DTypeName(src), " -> ", DTypeName(dst)));
        EXPECT_TRUE(AllClose(gx.To(dst).value(), x.To(dst).value(), kExact));
        // Strided source (transposed) and misaligned source.
        EXPECT_TRUE(AllClose(gx.Transpose(0, 1).value().To(dst).value(),
                             x.Transpose(0, 1).value().To(dst).value(), kExact));
        EXPECT_TRUE(AllClose(gx.Narrow(1, 1, n - 1).value().To(dst).value(),
                             x.Narrow(1, 1, n - 1).value().To(dst).value(), kExact));
      }
      SCOPED_TRACE(absl::StrCat("n=", n, " Where/Fill ", DTypeName(src)));
      ASSERT_OK_AND_ASSIGN(Tensor y, RandomCpu({3, n}, src, ++seed, -100, 100));
      ASSERT_OK_AND_ASSIGN(Tensor cond, RandomCpu({3, n}, DType::kBool, ++seed, -1, 1));
      ASSERT_OK_AND_ASSIGN(Tensor gy, y.To(gpu));
      ASSERT_OK_AND_ASSIGN(Tensor gcond, cond.To(gpu));
      EXPECT_TRUE(AllClose(Where(gcond, gx, gy).value(), Where(cond, x, y).value(), kExact));
      EXPECT_TRUE(AllClose(Where(gcond.Narrow(1, 0, 1).value(), gx, gy.Select(0, 1).value()).value(),
                           Where(cond.Narrow(1, 0, 1).value(), x, y.Select(0, 1).value()).value(),
                           kExact));
      ASSERT_OK_AND_ASSIGN(Tensor gf, Tensor::Full({3, n}, 3.5, src, gpu));
      EXPECT_TRUE(AllClose(gf, Tensor::Full({3, n}, 3.5, src).value(), kExact));
    }
  }
}

// Past kMapMaxBlocks * kMapThreads work items the kernels loop (grid stride): a contiguous f32
// add of 2^26 + 7 elements (2^24 vectors of 4 and a tail) and a transposed bf16 add of
// 4099 x 4097 > 2^24 elements (the strided kernel, one element per work item). Integer-valued
// inputs make every result exact, so the check is a plain loop on the host.
TEST(ElementwiseCudaVsCpuTest, GridStrideLoopCoversLargeTensors) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  {
    const int64_t n = (int64_t{1} << 26) + 7;
    std::vector<float> a(n), b(n);
    for (int64_t i = 0; i < n; ++i) {
      a[i] = static_cast<float>(i % 1021);
      b[i] = static_cast<float>((i * 7) % 1009);
    }
    ASSERT_OK_AND_ASSIGN(Tensor ga, Tensor::FromVector<float>(a, {n}, gpu));
    ASSERT_OK_AND_ASSIGN(Tensor gb, Tensor::FromVector<float>(b, {n}, gpu));
    ASSERT_OK_AND_ASSIGN(Tensor gs, Add(ga, gb, 2));
    ASSERT_OK_AND_ASSIGN(std::vector<float> s, gs.ToVector<float>());
    int64_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad += s[i] != a[i] + 2 * b[i];
    EXPECT_EQ(bad, 0);
  }
  {
    const int64_t rows = 4099, cols = 4097;
    std::vector<double> a(rows * cols);
    for (int64_t i = 0; i < rows * cols; ++i) a[i] = static_cast<double>(i % 61);
    ASSERT_OK_AND_ASSIGN(Tensor ga, Tensor::FromDoubles(a, {rows, cols}, DType::kBF16, gpu));
    ASSERT_OK_AND_ASSIGN(Tensor gat, ga.Transpose(0, 1));  // [cols, rows]
    ASSERT_OK_AND_ASSIGN(Tensor ones, Tensor::Ones({cols, rows}, DType::kBF16, gpu));
    ASSERT_OK_AND_ASSIGN(Tensor gs, Add(gat, ones));
    ASSERT_OK_AND_ASSIGN(std::vector<double> s, gs.ToDoubles());
    int64_t bad = 0;
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t i = 0; i < rows; ++i) bad += s[j * rows + i] != a[i * cols + j] + 1;
    }
    EXPECT_EQ(bad, 0);
  }
}

}  // namespace
}  // namespace lyra
