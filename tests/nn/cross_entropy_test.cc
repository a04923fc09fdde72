// Fused CrossEntropy and LinearCrossEntropy (nn/cross_entropy.h): against a naive f64 loop
// written here and against the autograd compositions (autograd::CrossEntropy, Matmul +
// CrossEntropy); f64 finite-difference gradient checks; ignore_index, every row ignored (NaN for
// a mean, 0 for a sum), mean vs sum; f16/bf16 logits against f64 on the same rounded values;
// non-contiguous logits; chunk sizes that do not divide N; gradients only for inputs that require
// grad; every error case. With a GPU: CUDA against CPU over dtype x V {7, 1000, 50280} x N {1, 33,
// 512}, unaligned and strided rows, and the allocator's peak statistics showing that no [N, V]
// f32 buffer (CrossEntropy) and no [N, V] logits at all (LinearCrossEntropy) are ever made.
#include "nn/cross_entropy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cross_entropy.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "tensor/elementwise.h"
#include "tests/testing/testing.h"

namespace lyra::nn {
namespace {

using ::lyra::autograd::GradCheck;
using ::lyra::autograd::GradCheckOptions;
using ::lyra::autograd::GradCheckResult;
using ::lyra::autograd::NoGradGuard;
using ::lyra::autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

constexpr int64_t kIgnore = kDefaultIgnoreIndex;
constexpr Device kGpu = Device::Cuda(0);

// --- The one tolerance table of this file ------------------------------------------------
// Results in `dtype` computed with f32 statistics (f64 for f64) from the same input values as
// the reference: the loss (a sum of N row losses, rounded once to dtype) and lse use the
// project's default; a gradient element is ~1/(N V) in size, so its absolute tolerance is set
// far below that and its relative one at the dtype's rounding (f16 gradients may be
// subnormal: their spacing is 6e-8).
Tolerance LossTolerance(DType dtype) { return DefaultTolerance(dtype); }
Tolerance StatsTolerance(DType dtype) {
  return dtype == DType::kF64 ? Tolerance{1e-12, 1e-12} : Tolerance{1e-5, 2e-6};
}
Tolerance GradTolerance(DType dtype) {
  switch (dtype) {
    case DType::kF64: return {1e-14, 1e-10};
    case DType::kF32: return {1e-9, 2e-5};
    case DType::kF16: return {1e-7, 2e-3};
    case DType::kBF16: return {1e-9, 1e-2};
    default: return {0, 0};
  }
}
// LinearCrossEntropy: the matmuls sum over H (logits, dhidden) or N (dW) and the chunked order
// differs from one whole matmul's.
Tolerance LinearTolerance(DType dtype) {
  switch (dtype) {
    case DType::kF64: return {1e-12, 1e-10};
    case DType::kF32: return {1e-6, 1e-4};
    default: return {2e-3, 3e-2};  // bf16 / f16 products rounded per chunk
  }
}

// --- Test data ---------------------------------------------------------------------------

// Targets uniform in [0, vocab), every `ignore_every`-th row (0: none) set to ignore_index.
Tensor Targets(int64_t n, int64_t vocab, uint64_t seed, DType dtype = DType::kI64,
               int ignore_every = 0, int64_t ignore_index = kIgnore) {
  std::mt19937_64 rng(seed);
  std::vector<double> t(n);
  for (int64_t i = 0; i < n; ++i) {
    t[i] = static_cast<double>(rng() % static_cast<uint64_t>(vocab));
    if (ignore_every > 0 && i % ignore_every == ignore_every - 1) {
      t[i] = static_cast<double>(ignore_index);
    }
  }
  return Tensor::FromDoubles(t, {n}, dtype).value();
}

Tensor Ids(const std::vector<int64_t>& v) {
  return Tensor::FromVector<int64_t>(v, {static_cast<int64_t>(v.size())}).value();
}

std::vector<double> Doubles(const Tensor& t) { return t.ToDoubles().value(); }
std::vector<int64_t> Int64s(const Tensor& t) {
  std::vector<int64_t> out;
  for (double d : Doubles(t)) out.push_back(static_cast<int64_t>(d));
  return out;
}

// The naive f64 loss and d loss / d logits (for upstream gradient g).
struct Naive {
  double loss = 0;
  std::vector<double> lse;
  std::vector<double> dlogits;
};

Naive NaiveCrossEntropy(const std::vector<double>& x, int64_t n, int64_t v,
                        const std::vector<int64_t>& targets, int64_t ignore_index,
                        Reduction reduction, double g = 1) {
  Naive r;
  r.lse.assign(n, 0);
  r.dlogits.assign(n * v, 0);
  int64_t kept = 0;
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == ignore_index) continue;
    ++kept;
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < v; ++j) m = std::max(m, x[i * v + j]);
    double s = 0;
    for (int64_t j = 0; j < v; ++j) s += std::exp(x[i * v + j] - m);
    r.lse[i] = m + std::log(s);
    total += r.lse[i] - x[i * v + targets[i]];
  }
  const double scale = reduction == Reduction::kSum ? 1.0
                       : kept > 0                  ? 1.0 / static_cast<double>(kept)
                                                   : std::nan("");
  r.loss = total * scale;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] == ignore_index) continue;
    for (int64_t j = 0; j < v; ++j) {
      r.dlogits[i * v + j] =
          g * scale * (std::exp(x[i * v + j] - r.lse[i]) - (j == targets[i] ? 1.0 : 0.0));
    }
  }
  return r;
}

const char* ReductionName(Reduction r) { return r == Reduction::kMean ? "mean" : "sum"; }

// Loss and logits gradient (upstream 1) of nn::CrossEntropy.
struct LossAndGrad {
  double loss = 0;
  std::vector<double> grad;
};

absl::StatusOr<LossAndGrad> FusedLossAndGrad(const Tensor& logits, const Tensor& targets,
                                             int64_t ignore_index, Reduction reduction) {
  Variable x(logits, true);
  LYRA_ASSIGN_OR_RETURN(Variable loss, nn::CrossEntropy(x, targets, ignore_index, reduction));
  LYRA_RETURN_IF_ERROR(loss.Backward());
  LossAndGrad r;
  LYRA_ASSIGN_OR_RETURN(r.loss, loss.data().Item());
  LYRA_ASSIGN_OR_RETURN(r.grad, x.grad().ToDoubles());
  return r;
}

void ExpectGradCheck(const std::string& what, const autograd::GradCheckFn& fn,
                     const std::vector<Tensor>& inputs) {
  GradCheckOptions options;
  options.atol = 1e-8;
  options.rtol = 1e-6;
  const GradCheckResult r = GradCheck(fn, inputs, options);
  EXPECT_TRUE(r.ok) << what << ": " << r.message << " (max abs error " << r.max_abs_error << ")";
}

// --- CrossEntropy on the CPU ---------------------------------------------------------------

TEST(CrossEntropyTest, MatchesNaiveLoopOnCpu) {
  struct Shape2 {
    int64_t n, v;
  };
  for (DType dtype : {DType::kF64, DType::kF32}) {
    for (Shape2 s : {Shape2{1, 1}, Shape2{3, 7}, Shape2{33, 100}, Shape2{5, 1000}}) {
      for (Reduction reduction : {Reduction::kMean, Reduction::kSum}) {
        for (DType target_dtype : {DType::kI64, DType::kI32}) {
          SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " [", s.n, ", ", s.v, "] ",
                                    ReductionName(reduction), " ", DTypeName(target_dtype)));
          ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({s.n, s.v}, dtype, 1, -4, 4));
          const Tensor targets = Targets(s.n, s.v, 2, target_dtype, /*ignore_every=*/3);
          const Naive want = NaiveCrossEntropy(Doubles(logits), s.n, s.v, Int64s(targets),
                                               kIgnore, reduction);
          ASSERT_OK_AND_ASSIGN(LossAndGrad got,
                               FusedLossAndGrad(logits, targets, kIgnore, reduction));
          EXPECT_TRUE(AllClose({got.loss}, {want.loss}, LossTolerance(dtype)));
          EXPECT_TRUE(AllClose(got.grad, want.dlogits, GradTolerance(dtype)));
          ASSERT_OK_AND_ASSIGN(CrossEntropyForwardResult fwd,
                               CrossEntropyForward(logits, targets, kIgnore, reduction));
          EXPECT_EQ(fwd.lse.dtype(), dtype == DType::kF64 ? DType::kF64 : DType::kF32);
          EXPECT_TRUE(AllClose(Doubles(fwd.lse), want.lse, StatsTolerance(dtype)));
          EXPECT_EQ(fwd.loss.dtype(), dtype);
          EXPECT_EQ(fwd.loss.dim(), 0);
        }
      }
    }
  }
}

TEST(CrossEntropyTest, MatchesAutogradComposition) {
  for (DType dtype : {DType::kF64, DType::kF32}) {
    SCOPED_TRACE(DTypeName(dtype));
    ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({19, 23}, dtype, 3, -3, 3));
    const Tensor targets = Targets(19, 23, 4, DType::kI64, /*ignore_every=*/4);
    ASSERT_OK_AND_ASSIGN(LossAndGrad fused,
                         FusedLossAndGrad(logits, targets, kIgnore, Reduction::kMean));
    Variable x(logits, true);
    ASSERT_OK_AND_ASSIGN(Variable loss, autograd::CrossEntropy(x, targets, kIgnore));
    ASSERT_OK(loss.Backward());
    EXPECT_TRUE(AllClose({fused.loss}, {loss.data().Item().value()}, LossTolerance(dtype)));
    EXPECT_TRUE(AllClose(fused.grad, Doubles(x.grad()), GradTolerance(dtype)));
  }
}

TEST(CrossEntropyTest, GradCheckF64) {
  ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({6, 5}, DType::kF64, 5, -2, 2));
  const Tensor targets = Ids({4, kIgnore, 0, 2, 2, 1});
  for (Reduction reduction : {Reduction::kMean, Reduction::kSum}) {
    ExpectGradCheck(absl::StrCat("CrossEntropy ", ReductionName(reduction)),
                    [&](const std::vector<Variable>& v) {
                      return nn::CrossEntropy(v[0], targets, kIgnore, reduction);
                    },
                    {logits});
  }
  // A class index as ignore_index: rows with target 2 are left out.
  const Tensor targets_with_2 = Ids({4, 2, 0, 2, 3, 1});
  ExpectGradCheck("CrossEntropy ignore_index=2",
                  [&](const std::vector<Variable>& v) {
                    return nn::CrossEntropy(v[0], targets_with_2, /*ignore_index=*/2,
                                            Reduction::kMean);
                  },
                  {logits});
}

TEST(CrossEntropyTest, IgnoreIndexLeavesRowsOut) {
  ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({4, 6}, DType::kF64, 6, -2, 2));
  const Tensor targets = Ids({1, 3, 3, 5});
  ASSERT_OK_AND_ASSIGN(LossAndGrad got,
                       FusedLossAndGrad(logits, targets, /*ignore_index=*/3, Reduction::kMean));
  const Naive want =
      NaiveCrossEntropy(Doubles(logits), 4, 6, {1, 3, 3, 5}, 3, Reduction::kMean);
  EXPECT_TRUE(AllClose({got.loss}, {want.loss}, LossTolerance(DType::kF64)));
  EXPECT_TRUE(AllClose(got.grad, want.dlogits, GradTolerance(DType::kF64)));
  for (int64_t j = 6; j < 18; ++j) EXPECT_EQ(got.grad[j], 0) << j;  // rows 1 and 2
  // The mean divides by the 2 kept rows, the sum does not.
  ASSERT_OK_AND_ASSIGN(LossAndGrad sum,
                       FusedLossAndGrad(logits, targets, /*ignore_index=*/3, Reduction::kSum));
  EXPECT_NEAR(sum.loss, 2 * got.loss, 1e-12);
  for (size_t j = 0; j < sum.grad.size(); ++j) EXPECT_NEAR(sum.grad[j], 2 * got.grad[j], 1e-14);
}

TEST(CrossEntropyTest, AllIgnoredGivesNanMeanAndZeroSum) {
  for (DType dtype : {DType::kF64, DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({3, 4}, dtype, 7));
    const Tensor targets = Ids({kIgnore, kIgnore, kIgnore});
    ASSERT_OK_AND_ASSIGN(LossAndGrad mean,
                         FusedLossAndGrad(logits, targets, kIgnore, Reduction::kMean));
    EXPECT_TRUE(std::isnan(mean.loss));
    EXPECT_EQ(mean.grad, std::vector<double>(12, 0.0));
    ASSERT_OK_AND_ASSIGN(LossAndGrad sum,
                         FusedLossAndGrad(logits, targets, kIgnore, Reduction::kSum));
    EXPECT_EQ(sum.loss, 0);
    EXPECT_EQ(sum.grad, std::vector<double>(12, 0.0));
  }
  // No rows at all: the same.
  ASSERT_OK_AND_ASSIGN(Tensor empty, Tensor::Zeros({0, 5}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor no_targets, Tensor::Zeros({0}, DType::kI64));
  ASSERT_OK_AND_ASSIGN(Variable mean, nn::CrossEntropy(Variable(empty), no_targets));
  EXPECT_TRUE(std::isnan(mean.data().Item().value()));
  ASSERT_OK_AND_ASSIGN(Variable sum,
                       nn::CrossEntropy(Variable(empty), no_targets, kIgnore, Reduction::kSum));
  EXPECT_EQ(sum.data().Item().value(), 0);
}

TEST(CrossEntropyTest, SixteenBitLogitsAgainstF64) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    for (Reduction reduction : {Reduction::kMean, Reduction::kSum}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ", ReductionName(reduction)));
      const int64_t n = 17, v = 1000;
      ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({n, v}, dtype, 8, -6, 6));
      const Tensor targets = Targets(n, v, 9, DType::kI32, /*ignore_every=*/5);
      // The reference sees exactly the rounded 16-bit values, in f64.
      const Naive want =
          NaiveCrossEntropy(Doubles(logits), n, v, Int64s(targets), kIgnore, reduction);
      ASSERT_OK_AND_ASSIGN(LossAndGrad got, FusedLossAndGrad(logits, targets, kIgnore, reduction));
      EXPECT_TRUE(AllClose({got.loss}, {want.loss}, LossTolerance(dtype)));
      EXPECT_TRUE(AllClose(got.grad, want.dlogits, GradTolerance(dtype)));
      ASSERT_OK_AND_ASSIGN(CrossEntropyForwardResult fwd,
                           CrossEntropyForward(logits, targets, kIgnore, reduction));
      EXPECT_EQ(fwd.lse.dtype(), DType::kF32);
      EXPECT_TRUE(AllClose(Doubles(fwd.lse), want.lse, StatsTolerance(dtype)));
    }
  }
}

// Views the row kernels do not read directly (column stride != 1) and ones they do (row stride
// != V, zero row stride).
std::vector<std::pair<std::string, Tensor>> LogitViews(int64_t n, int64_t v, DType dtype,
                                                        Device device, uint64_t seed) {
  std::vector<std::pair<std::string, Tensor>> views;
  Tensor base = RandomTensor({v, n}, dtype, seed, -3, 3).value().To(device).value();
  views.emplace_back("transposed", base.Transpose(0, 1).value());
  Tensor wide = RandomTensor({n, v + 3}, dtype, seed + 1, -3, 3).value().To(device).value();
  views.emplace_back("column slice (unaligned rows)", wide.Narrow(1, 1, v).value());
  Tensor row = RandomTensor({1, v}, dtype, seed + 2, -3, 3).value().To(device).value();
  views.emplace_back("broadcast row", row.Expand({n, v}).value());
  return views;
}

TEST(CrossEntropyTest, NonContiguousLogitsOnCpu) {
  const int64_t n = 9, v = 13;
  for (DType dtype : {DType::kF64, DType::kF32}) {
    for (auto& [name, logits] : LogitViews(n, v, dtype, Device::Cpu(), 10)) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ", name));
      const Tensor targets = Targets(n, v, 11, DType::kI64, 4);
      const Naive want =
          NaiveCrossEntropy(Doubles(logits), n, v, Int64s(targets), kIgnore, Reduction::kMean);
      ASSERT_OK_AND_ASSIGN(LossAndGrad got,
                           FusedLossAndGrad(logits, targets, kIgnore, Reduction::kMean));
      EXPECT_TRUE(AllClose({got.loss}, {want.loss}, LossTolerance(dtype)));
      EXPECT_TRUE(AllClose(got.grad, want.dlogits, GradTolerance(dtype)));
    }
  }
}

TEST(CrossEntropyTest, NonFiniteLogits) {
  const double inf = std::numeric_limits<double>::infinity();
  // Row 0 holds NaN, row 1 +inf: both NaN losses. Row 2 is finite with a -inf entry.
  ASSERT_OK_AND_ASSIGN(Tensor logits,
                       Tensor::FromDoubles({0, std::nan(""), 1, 0, inf, 1, 0, -inf, 1}, {3, 3},
                                           DType::kF32));
  ASSERT_OK_AND_ASSIGN(CrossEntropyForwardResult all,
                       CrossEntropyForward(logits, Ids({0, 0, 0}), kIgnore, Reduction::kSum));
  EXPECT_TRUE(std::isnan(all.loss.Item().value()));
  ASSERT_OK_AND_ASSIGN(CrossEntropyForwardResult finite,
                       CrossEntropyForward(logits, Ids({kIgnore, kIgnore, 2}), kIgnore,
                                           Reduction::kSum));
  EXPECT_NEAR(finite.loss.Item().value(), std::log(1 + std::exp(1.0)) - 1, 1e-6);
}

TEST(CrossEntropyTest, Errors) {
  ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({3, 7}, DType::kF32, 12));
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(logits), Ids({0, 7, 1})),
                   absl::StatusCode::kInvalidArgument, "target 7 at row 1");
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(logits), Ids({0, 1, -1})),
                   absl::StatusCode::kInvalidArgument, "target -1 at row 2");
  // The first bad row is named.
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(logits), Ids({9, 1, -5})),
                   absl::StatusCode::kInvalidArgument, "target 9 at row 0 is out of range [0, 7)");
  // -100 is fine by default but not when another ignore_index is set.
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(logits), Ids({0, kIgnore, 1}), /*ignore_index=*/-1),
                   absl::StatusCode::kInvalidArgument, "target -100 at row 1");
  ASSERT_OK_AND_ASSIGN(Tensor flat, logits.Reshape({21}));
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(flat), Ids({0, 1, 2})),
                   absl::StatusCode::kInvalidArgument, "logits [N, V]");
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(logits), Ids({0, 1})),
                   absl::StatusCode::kInvalidArgument, "integer targets [3]");
  ASSERT_OK_AND_ASSIGN(Tensor float_targets, Tensor::Zeros({3}, DType::kF32));
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(logits), float_targets),
                   absl::StatusCode::kInvalidArgument, "integer targets");
  ASSERT_OK_AND_ASSIGN(Tensor int_logits, Tensor::Zeros({3, 7}, DType::kI32));
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(int_logits), Ids({0, 1, 2})),
                   absl::StatusCode::kInvalidArgument, "floating-point");
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(logits), Tensor()), absl::StatusCode::kInvalidArgument,
                   "undefined");
  // The backward pass checks what it is handed.
  ASSERT_OK_AND_ASSIGN(CrossEntropyForwardResult fwd, CrossEntropyForward(logits, Ids({0, 1, 2})));
  ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::Scalar(1, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor short_lse, fwd.lse.Narrow(0, 0, 2));
  EXPECT_STATUS_IS(CrossEntropyBackward(logits, Ids({0, 1, 2}), short_lse, g, fwd.grad_scale),
                   absl::StatusCode::kInvalidArgument, "lse");
  ASSERT_OK_AND_ASSIGN(Tensor g2, Tensor::Zeros({2}, DType::kF32));
  EXPECT_STATUS_IS(CrossEntropyBackward(logits, Ids({0, 1, 2}), fwd.lse, g2, fwd.grad_scale),
                   absl::StatusCode::kInvalidArgument, "one-element");
}

// The kernels' own predicates (what the tensor layer never passes them).
TEST(CrossEntropyTest, KernelSupportPredicates) {
  float logits[6] = {}, loss[2] = {}, lse[2] = {};
  int64_t targets[2] = {0, 1};
  cuda::CrossEntropyParams p;
  p.rows = 2;
  p.vocab = 3;
  p.logits = logits;
  p.logits_row_stride = 3;
  p.targets = targets;
  p.loss = loss;
  p.lse = lse;
  EXPECT_OK(cuda::CrossEntropySupported(p));
  cuda::CrossEntropyParams q = p;
  q.dtype = DType::kI32;
  EXPECT_STATUS_IS(cuda::CrossEntropySupported(q), absl::StatusCode::kInvalidArgument,
                   "floating-point logits");
  q = p;
  q.target_dtype = DType::kF32;
  EXPECT_STATUS_IS(cuda::CrossEntropySupported(q), absl::StatusCode::kInvalidArgument,
                   "targets must be i32 or i64");
  q = p;
  q.vocab = -1;
  EXPECT_STATUS_IS(cuda::CrossEntropySupported(q), absl::StatusCode::kInvalidArgument,
                   "negative size");
  q = p;
  q.op = cuda::CrossEntropyOp::kBackward;
  EXPECT_STATUS_IS(cuda::CrossEntropySupported(q), absl::StatusCode::kInvalidArgument,
                   "missing input or output pointer");
  q = p;
  q.rows = int64_t{1} << 31;
  EXPECT_STATUS_IS(cuda::CrossEntropySupported(q), absl::StatusCode::kUnimplemented,
                   "at most 2^31 - 1");
  int64_t kept = -1;
  cuda::CrossEntropyTargetsParams t;
  t.rows = 2;
  t.targets = targets;
  t.vocab = 3;
  t.kept = &kept;
  EXPECT_OK(cuda::CrossEntropyCheckTargetsReference(t));
  EXPECT_EQ(kept, 2);
  t.kept = nullptr;
  EXPECT_STATUS_IS(cuda::CrossEntropyTargetsSupported(t), absl::StatusCode::kInvalidArgument,
                   "missing targets or count pointer");
}

// --- LinearCrossEntropy on the CPU ---------------------------------------------------------

struct LinearGrads {
  double loss = 0;
  std::vector<double> dhidden;
  std::vector<double> dweight;
};

absl::StatusOr<LinearGrads> FusedLinear(const Tensor& h, const Tensor& w, const Tensor& targets,
                                        Reduction reduction, int64_t chunk) {
  Variable hv(h, true), wv(w, true);
  LYRA_ASSIGN_OR_RETURN(Variable loss,
                        LinearCrossEntropy(hv, wv, targets, kIgnore, reduction, chunk));
  LYRA_RETURN_IF_ERROR(loss.Backward());
  LinearGrads r;
  LYRA_ASSIGN_OR_RETURN(r.loss, loss.data().Item());
  LYRA_ASSIGN_OR_RETURN(r.dhidden, hv.grad().ToDoubles());
  LYRA_ASSIGN_OR_RETURN(r.dweight, wv.grad().ToDoubles());
  return r;
}

// Matmul(h, wᵀ) + a cross-entropy: the autograd composition, or the fused CrossEntropy.
absl::StatusOr<LinearGrads> ComposedLinear(const Tensor& h, const Tensor& w,
                                           const Tensor& targets, Reduction reduction,
                                           bool composed_loss) {
  Variable hv(h, true), wv(w, true);
  LYRA_ASSIGN_OR_RETURN(Variable w_t, autograd::Transpose(wv, 0, 1));
  LYRA_ASSIGN_OR_RETURN(Variable logits, autograd::Matmul(hv, w_t));
  Variable loss;
  if (composed_loss) {
    LYRA_ASSIGN_OR_RETURN(loss, autograd::CrossEntropy(logits, targets, kIgnore));
  } else {
    LYRA_ASSIGN_OR_RETURN(loss, nn::CrossEntropy(logits, targets, kIgnore, reduction));
  }
  LYRA_RETURN_IF_ERROR(loss.Backward());
  LinearGrads r;
  LYRA_ASSIGN_OR_RETURN(r.loss, loss.data().Item());
  LYRA_ASSIGN_OR_RETURN(r.dhidden, hv.grad().ToDoubles());
  LYRA_ASSIGN_OR_RETURN(r.dweight, wv.grad().ToDoubles());
  return r;
}

void ExpectLinearClose(const LinearGrads& got, const LinearGrads& want, Tolerance tol) {
  EXPECT_TRUE(AllClose({got.loss}, {want.loss}, tol)) << "loss";
  EXPECT_TRUE(AllClose(got.dhidden, want.dhidden, tol)) << "dhidden";
  EXPECT_TRUE(AllClose(got.dweight, want.dweight, tol)) << "dweight";
}

TEST(LinearCrossEntropyTest, MatchesMatmulPlusCrossEntropy) {
  const int64_t n = 13, h_dim = 6, v = 11;
  for (DType dtype : {DType::kF64, DType::kF32}) {
    ASSERT_OK_AND_ASSIGN(Tensor h, RandomTensor({n, h_dim}, dtype, 13));
    ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor({v, h_dim}, dtype, 14));
    const Tensor targets = Targets(n, v, 15, DType::kI64, /*ignore_every=*/4);
    ASSERT_OK_AND_ASSIGN(LinearGrads composed,
                         ComposedLinear(h, w, targets, Reduction::kMean, /*composed_loss=*/true));
    for (Reduction reduction : {Reduction::kMean, Reduction::kSum}) {
      ASSERT_OK_AND_ASSIGN(LinearGrads want,
                           ComposedLinear(h, w, targets, reduction, /*composed_loss=*/false));
      if (reduction == Reduction::kMean) {
        ExpectLinearClose(want, composed, LinearTolerance(dtype));
      }
      for (int64_t chunk : {1, 4, 5, 13, 100}) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ", ReductionName(reduction), " chunk ",
                                  chunk));
        ASSERT_OK_AND_ASSIGN(LinearGrads got, FusedLinear(h, w, targets, reduction, chunk));
        ExpectLinearClose(got, want, LinearTolerance(dtype));
      }
    }
  }
}

TEST(LinearCrossEntropyTest, GradCheckF64) {
  ASSERT_OK_AND_ASSIGN(Tensor h, RandomTensor({7, 4}, DType::kF64, 16));
  ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor({5, 4}, DType::kF64, 17));
  const Tensor targets = Ids({0, 4, kIgnore, 2, 2, 1, 3});
  for (Reduction reduction : {Reduction::kMean, Reduction::kSum}) {
    ExpectGradCheck(absl::StrCat("LinearCrossEntropy ", ReductionName(reduction)),
                    [&](const std::vector<Variable>& v) {
                      return LinearCrossEntropy(v[0], v[1], targets, kIgnore, reduction,
                                                /*chunk_tokens=*/3);
                    },
                    {h, w});
  }
}

TEST(LinearCrossEntropyTest, GradientsOnlyForInputsThatRequireGrad) {
  ASSERT_OK_AND_ASSIGN(Tensor h, RandomTensor({9, 4}, DType::kF64, 18));
  ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor({6, 4}, DType::kF64, 19));
  const Tensor targets = Targets(9, 6, 20, DType::kI32, 3);
  ASSERT_OK_AND_ASSIGN(LinearGrads both, FusedLinear(h, w, targets, Reduction::kMean, 4));
  double norm_h = 0, norm_w = 0;
  for (double g : both.dhidden) norm_h += g * g;
  for (double g : both.dweight) norm_w += g * g;
  EXPECT_GT(norm_h, 0);
  EXPECT_GT(norm_w, 0);
  {
    Variable hv(h, true), wv(w, false);
    ASSERT_OK_AND_ASSIGN(Variable loss,
                         LinearCrossEntropy(hv, wv, targets, kIgnore, Reduction::kMean, 4));
    ASSERT_OK(loss.Backward());
    EXPECT_TRUE(AllClose(Doubles(hv.grad()), both.dhidden, LinearTolerance(DType::kF64)));
    EXPECT_FALSE(wv.grad().defined());
  }
  {
    Variable hv(h, false), wv(w, true);
    ASSERT_OK_AND_ASSIGN(Variable loss,
                         LinearCrossEntropy(hv, wv, targets, kIgnore, Reduction::kMean, 4));
    ASSERT_OK(loss.Backward());
    EXPECT_TRUE(AllClose(Doubles(wv.grad()), both.dweight, LinearTolerance(DType::kF64)));
    EXPECT_FALSE(hv.grad().defined());
  }
  {
    NoGradGuard no_grad;
    Variable hv(h, true), wv(w, true);
    ASSERT_OK_AND_ASSIGN(Variable loss,
                         LinearCrossEntropy(hv, wv, targets, kIgnore, Reduction::kMean, 4));
    EXPECT_FALSE(loss.requires_grad());
    EXPECT_NEAR(loss.data().Item().value(), both.loss, 1e-12);
  }
  // The upstream gradient scales both gradients (the loss is one element).
  {
    Variable hv(h, true), wv(w, true);
    ASSERT_OK_AND_ASSIGN(Variable loss,
                         LinearCrossEntropy(hv, wv, targets, kIgnore, Reduction::kMean, 4));
    ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::Scalar(-2.5, DType::kF64));
    ASSERT_OK(loss.Backward(g));
    std::vector<double> want_h = both.dhidden, want_w = both.dweight;
    for (double& x : want_h) x *= -2.5;
    for (double& x : want_w) x *= -2.5;
    EXPECT_TRUE(AllClose(Doubles(hv.grad()), want_h, LinearTolerance(DType::kF64)));
    EXPECT_TRUE(AllClose(Doubles(wv.grad()), want_w, LinearTolerance(DType::kF64)));
  }
}

TEST(LinearCrossEntropyTest, SixteenBitHiddenWithF32OrSameDTypeWeight) {
  const int64_t n = 21, h_dim = 16, v = 37;
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (DType weight_dtype : {DType::kF32, dtype}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " hidden, ", DTypeName(weight_dtype),
                                " weight"));
      ASSERT_OK_AND_ASSIGN(Tensor h, RandomTensor({n, h_dim}, dtype, 21));
      ASSERT_OK_AND_ASSIGN(Tensor w16, RandomTensor({v, h_dim}, dtype, 22));
      ASSERT_OK_AND_ASSIGN(Tensor w, w16.To(weight_dtype));  // same values in either dtype
      const Tensor targets = Targets(n, v, 23, DType::kI64, 5);
      // The f64 reference on the same (16-bit) values.
      ASSERT_OK_AND_ASSIGN(LinearGrads want,
                           ComposedLinear(h.To(DType::kF64).value(), w.To(DType::kF64).value(),
                                          targets, Reduction::kMean, false));
      for (int64_t chunk : {4, 8, 100}) {
        SCOPED_TRACE(absl::StrCat("chunk ", chunk));
        Variable hv(h, true), wv(w, true);
        ASSERT_OK_AND_ASSIGN(Variable loss, LinearCrossEntropy(hv, wv, targets, kIgnore,
                                                               Reduction::kMean, chunk));
        EXPECT_EQ(loss.dtype(), dtype);
        ASSERT_OK(loss.Backward());
        EXPECT_EQ(hv.grad().dtype(), dtype);
        EXPECT_EQ(wv.grad().dtype(), weight_dtype);
        LinearGrads got{loss.data().Item().value(), Doubles(hv.grad()), Doubles(wv.grad())};
        ExpectLinearClose(got, want, LinearTolerance(dtype));
      }
    }
  }
}

TEST(LinearCrossEntropyTest, AllIgnored) {
  ASSERT_OK_AND_ASSIGN(Tensor h, RandomTensor({3, 4}, DType::kF32, 24));
  ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor({5, 4}, DType::kF32, 25));
  const Tensor targets = Ids({kIgnore, kIgnore, kIgnore});
  ASSERT_OK_AND_ASSIGN(LinearGrads mean, FusedLinear(h, w, targets, Reduction::kMean, 2));
  EXPECT_TRUE(std::isnan(mean.loss));
  EXPECT_EQ(mean.dhidden, std::vector<double>(12, 0.0));
  EXPECT_EQ(mean.dweight, std::vector<double>(20, 0.0));
  ASSERT_OK_AND_ASSIGN(LinearGrads sum, FusedLinear(h, w, targets, Reduction::kSum, 2));
  EXPECT_EQ(sum.loss, 0);
  EXPECT_EQ(sum.dweight, std::vector<double>(20, 0.0));
}

TEST(LinearCrossEntropyTest, Errors) {
  ASSERT_OK_AND_ASSIGN(Tensor h, RandomTensor({3, 4}, DType::kF32, 26));
  ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor({5, 4}, DType::kF32, 27));
  const Variable hv(h, true), wv(w, true);
  EXPECT_STATUS_IS(LinearCrossEntropy(hv, wv, Ids({0, 5, 1})),
                   absl::StatusCode::kInvalidArgument, "LinearCrossEntropy: target 5 at row 1");
  ASSERT_OK_AND_ASSIGN(Tensor w_bad, RandomTensor({5, 3}, DType::kF32, 28));
  EXPECT_STATUS_IS(LinearCrossEntropy(hv, Variable(w_bad), Ids({0, 1, 2})),
                   absl::StatusCode::kInvalidArgument, "weight [V, H]");
  ASSERT_OK_AND_ASSIGN(Tensor w64, w.To(DType::kF64));
  EXPECT_STATUS_IS(LinearCrossEntropy(hv, Variable(w64), Ids({0, 1, 2})),
                   absl::StatusCode::kInvalidArgument, "must have the dtype of hidden");
  EXPECT_STATUS_IS(LinearCrossEntropy(hv, wv, Ids({0, 1})), absl::StatusCode::kInvalidArgument,
                   "integer targets [3]");
  EXPECT_STATUS_IS(LinearCrossEntropy(hv, wv, Ids({0, 1, 2}), kIgnore, Reduction::kMean, 0),
                   absl::StatusCode::kInvalidArgument, "chunk_tokens must be positive");
  EXPECT_STATUS_IS(LinearCrossEntropy(Variable(), wv, Ids({0, 1, 2})),
                   absl::StatusCode::kInvalidArgument, "undefined");
}

// --- CUDA against the CPU ------------------------------------------------------------------

constexpr DType kAllFloat[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64};

// Forward (loss, lse) and backward (dlogits for upstream g) through the tensor-level passes.
struct Passes {
  std::vector<double> loss, lse, dlogits;
};

absl::StatusOr<Passes> RunPasses(const Tensor& logits, const Tensor& targets,
                                 Reduction reduction, double g) {
  LYRA_ASSIGN_OR_RETURN(CrossEntropyForwardResult fwd,
                        CrossEntropyForward(logits, targets, kIgnore, reduction));
  LYRA_ASSIGN_OR_RETURN(Tensor g_t, Tensor::Scalar(g, logits.dtype(), logits.device()));
  LYRA_ASSIGN_OR_RETURN(Tensor dlogits, CrossEntropyBackward(fwd.logits, targets, fwd.lse, g_t,
                                                             fwd.grad_scale, kIgnore));
  Passes p;
  LYRA_ASSIGN_OR_RETURN(p.loss, fwd.loss.ToDoubles());
  LYRA_ASSIGN_OR_RETURN(p.lse, fwd.lse.ToDoubles());
  LYRA_ASSIGN_OR_RETURN(p.dlogits, dlogits.ToDoubles());
  return p;
}

// Unit roundoff of each dtype.
double Epsilon(DType dtype) {
  switch (dtype) {
    case DType::kF64: return 0x1p-52;
    case DType::kF32: return 0x1p-23;
    case DType::kF16: return 0x1p-10;
    default: return 0x1p-7;
  }
}

void ExpectPassesClose(const Passes& gpu, const Passes& cpu, DType dtype) {
  EXPECT_TRUE(AllClose(gpu.loss, cpu.loss, LossTolerance(dtype))) << "loss";
  EXPECT_TRUE(AllClose(gpu.lse, cpu.lse, StatsTolerance(dtype))) << "lse";
  // At a target, dlogits = scale * (p - 1): with p near 1 the subtraction cancels, so its error
  // is a few roundoffs of `scale` (the largest |dlogits| of the problem), not of the value.
  double max_grad = 0;
  for (double d : cpu.dlogits) max_grad = std::max(max_grad, std::fabs(d));
  Tolerance grad = GradTolerance(dtype);
  grad.abs = std::max(grad.abs, 8 * Epsilon(dtype) * max_grad);
  EXPECT_TRUE(AllClose(gpu.dlogits, cpu.dlogits, grad)) << "dlogits";
}

TEST(CrossEntropyCudaTest, MatchesCpu) {
  LYRA_REQUIRE_GPU();
  int seed = 100;
  for (DType dtype : kAllFloat) {
    for (int64_t v : {7, 1000, 50280}) {
      for (int64_t n : {1, 33, 512}) {
        const Reduction reduction = n == 33 ? Reduction::kSum : Reduction::kMean;
        const DType target_dtype = v == 1000 ? DType::kI32 : DType::kI64;
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " [", n, ", ", v, "] ",
                                  ReductionName(reduction), " ", DTypeName(target_dtype)));
        ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({n, v}, dtype, ++seed, -8, 8));
        const Tensor targets = Targets(n, v, ++seed, target_dtype, /*ignore_every=*/7);
        ASSERT_OK_AND_ASSIGN(Passes cpu, RunPasses(logits, targets, reduction, 1.5));
        ASSERT_OK_AND_ASSIGN(Passes gpu, RunPasses(logits.To(kGpu).value(),
                                                   targets.To(kGpu).value(), reduction, 1.5));
        ExpectPassesClose(gpu, cpu, dtype);
      }
    }
  }
}

TEST(CrossEntropyCudaTest, StridedAndUnalignedRows) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : kAllFloat) {
    for (int64_t v : {7, 1000}) {
      const int64_t n = 33;
      const auto cpu_views = LogitViews(n, v, dtype, Device::Cpu(), 200 + v);
      const auto gpu_views = LogitViews(n, v, dtype, kGpu, 200 + v);
      const Tensor targets = Targets(n, v, 300, DType::kI64, 5);
      for (size_t k = 0; k < cpu_views.size(); ++k) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " V=", v, " ", cpu_views[k].first));
        ASSERT_OK_AND_ASSIGN(Passes cpu,
                             RunPasses(cpu_views[k].second, targets, Reduction::kMean, 1));
        ASSERT_OK_AND_ASSIGN(Passes gpu, RunPasses(gpu_views[k].second, targets.To(kGpu).value(),
                                                   Reduction::kMean, 1));
        ExpectPassesClose(gpu, cpu, dtype);
      }
    }
  }
}

TEST(CrossEntropyCudaTest, AutogradMatchesCpu) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({40, 3000}, dtype, 400, -5, 5));
    const Tensor targets = Targets(40, 3000, 401, DType::kI64, 6);
    ASSERT_OK_AND_ASSIGN(LossAndGrad cpu,
                         FusedLossAndGrad(logits, targets, kIgnore, Reduction::kMean));
    ASSERT_OK_AND_ASSIGN(LossAndGrad gpu,
                         FusedLossAndGrad(logits.To(kGpu).value(), targets.To(kGpu).value(),
                                          kIgnore, Reduction::kMean));
    EXPECT_TRUE(AllClose({gpu.loss}, {cpu.loss}, LossTolerance(dtype)));
    EXPECT_TRUE(AllClose(gpu.grad, cpu.grad, GradTolerance(dtype)));
  }
}

TEST(CrossEntropyCudaTest, AllIgnoredAndBadTargets) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(Tensor logits, RandomTensor({3, 1000}, DType::kBF16, 500));
  const Tensor gpu_logits = logits.To(kGpu).value();
  const Tensor ignored = Ids({kIgnore, kIgnore, kIgnore}).To(kGpu).value();
  ASSERT_OK_AND_ASSIGN(LossAndGrad mean,
                       FusedLossAndGrad(gpu_logits, ignored, kIgnore, Reduction::kMean));
  EXPECT_TRUE(std::isnan(mean.loss));
  EXPECT_EQ(mean.grad, std::vector<double>(3000, 0.0));
  ASSERT_OK_AND_ASSIGN(LossAndGrad sum,
                       FusedLossAndGrad(gpu_logits, ignored, kIgnore, Reduction::kSum));
  EXPECT_EQ(sum.loss, 0);
  // The same error as on the CPU: the first bad row and its value.
  const Variable hidden(RandomTensor({3, 8}, DType::kBF16, 501).value().To(kGpu).value());
  const Variable head(RandomTensor({1000, 8}, DType::kBF16, 502).value().To(kGpu).value());
  for (DType target_dtype : {DType::kI64, DType::kI32}) {
    const Tensor bad =
        Tensor::FromDoubles({3, 1000, -7}, {3}, target_dtype).value().To(kGpu).value();
    EXPECT_STATUS_IS(nn::CrossEntropy(Variable(gpu_logits), bad),
                     absl::StatusCode::kInvalidArgument,
                     "target 1000 at row 1 is out of range [0, 1000)");
    EXPECT_STATUS_IS(LinearCrossEntropy(hidden, head, bad), absl::StatusCode::kInvalidArgument,
                     "target 1000 at row 1");
  }
  EXPECT_STATUS_IS(nn::CrossEntropy(Variable(gpu_logits), Ids({0, 1, 2})),
                   absl::StatusCode::kInvalidArgument, "different devices");
}

// Peak device memory above what is live before a call.
class PeakMeter {
 public:
  PeakMeter() : allocator_(cuda::CachingAllocator::ForDevice(0)) {
    LYRA_CHECK_OK(cuda::Synchronize(0));
    base_ = allocator_.Stats().allocated_bytes;
    allocator_.ResetPeakStats();
  }
  int64_t PeakAbove() const { return allocator_.Stats().peak_allocated_bytes - base_; }

 private:
  cuda::CachingAllocator& allocator_;
  int64_t base_ = 0;
};

TEST(CrossEntropyCudaTest, NoF32BufferOfTheLogits) {
  LYRA_REQUIRE_GPU();
  const int64_t n = 2048, v = 50280;
  const int64_t logits_bf16 = static_cast<int64_t>(cuda::CachingAllocator::RoundSize(n * v * 2));
  constexpr int64_t kSmall = int64_t{1} << 20;  // lse, per-row losses, the loss, the check word
  ASSERT_OK_AND_ASSIGN(Tensor logits, Tensor::Full({n, v}, 0.5, DType::kBF16, kGpu));
  const Tensor targets = Targets(n, v, 600).To(kGpu).value();

  CrossEntropyForwardResult fwd;
  {
    PeakMeter meter;
    ASSERT_OK_AND_ASSIGN(fwd, CrossEntropyForward(logits, targets));
    EXPECT_LE(meter.PeakAbove(), kSmall) << "forward";
  }
  {
    PeakMeter meter;
    ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::Scalar(1, DType::kBF16, kGpu));
    ASSERT_OK_AND_ASSIGN(Tensor dlogits, CrossEntropyBackward(fwd.logits, targets, fwd.lse, g,
                                                              fwd.grad_scale));
    EXPECT_LE(meter.PeakAbove(), logits_bf16 + kSmall) << "backward: only dlogits is [N, V]";
  }
  {
    PeakMeter meter;
    Variable x(logits, true);
    ASSERT_OK_AND_ASSIGN(Variable loss, nn::CrossEntropy(x, targets));
    ASSERT_OK(loss.Backward());
    EXPECT_LT(meter.PeakAbove(), n * v * 4) << "forward + backward through autograd";
  }
}

// --- LinearCrossEntropy on CUDA ------------------------------------------------------------

TEST(LinearCrossEntropyCudaTest, MatchesCpu) {
  LYRA_REQUIRE_GPU();
  const int64_t n = 37, h_dim = 24, v = 1000;
  struct DTypes {
    DType hidden, weight;
  };
  for (auto [dtype, weight_dtype] : {DTypes{DType::kF32, DType::kF32},
                                     DTypes{DType::kBF16, DType::kBF16},
                                     DTypes{DType::kBF16, DType::kF32},
                                     DTypes{DType::kF64, DType::kF64}}) {
    SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " hidden, ", DTypeName(weight_dtype),
                              " weight"));
    ASSERT_OK_AND_ASSIGN(Tensor h, RandomTensor({n, h_dim}, dtype, 700));
    ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor({v, h_dim}, weight_dtype, 701));
    const Tensor targets = Targets(n, v, 702, DType::kI32, 6);
    ASSERT_OK_AND_ASSIGN(LinearGrads cpu, FusedLinear(h, w, targets, Reduction::kMean, 16));
    ASSERT_OK_AND_ASSIGN(LinearGrads gpu,
                         FusedLinear(h.To(kGpu).value(), w.To(kGpu).value(),
                                     targets.To(kGpu).value(), Reduction::kMean, 16));
    ExpectLinearClose(gpu, cpu, LinearTolerance(dtype));
  }
}

TEST(LinearCrossEntropyCudaTest, PeakMemoryIsPerChunk) {
  LYRA_REQUIRE_GPU();
  const int64_t n = 4096, h_dim = 256, v = 50280, chunk = 512;
  ASSERT_OK_AND_ASSIGN(Tensor h, RandomTensor({n, h_dim}, DType::kBF16, 800));
  ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor({v, h_dim}, DType::kBF16, 801));
  const Tensor targets = Targets(n, v, 802).To(kGpu).value();
  Variable hv(h.To(kGpu).value(), true), wv(w.To(kGpu).value(), true);
  PeakMeter meter;
  ASSERT_OK_AND_ASSIGN(Variable loss,
                       LinearCrossEntropy(hv, wv, targets, kIgnore, Reduction::kMean, chunk));
  ASSERT_OK(loss.Backward());
  // chunk x V logits, dhidden, the f32 dW sum with its partial and staging copies: well below
  // the [N, V] bf16 logits that Matmul + CrossEntropy would hold.
  EXPECT_LT(meter.PeakAbove(), n * v * 2);
  EXPECT_TRUE(std::isfinite(loss.data().Item().value()));
}

}  // namespace
}  // namespace lyra::nn
