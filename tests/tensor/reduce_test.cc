// Reductions (Sum, Mean, Max, MaxAlong, Argmax, SumToShape), Softmax / LogSoftmax and their
// backward, and Cumsum: every op against a naive f64 loop written here, on the CPU and (when
// present) the GPU, over dtypes, dims, keepdim, odd sizes and non-contiguous views; the softmax
// gradients against central differences in f64; and the error cases.
#include "tensor/reduce.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "cuda/cumsum.h"
#include "cuda/reduce.h"
#include "cuda/softmax.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kF64, DType::kF16, DType::kBF16};

std::vector<Device> TestDevices() {
  std::vector<Device> devices = {Device::Cpu()};
  if (cuda::HasGpu()) devices.push_back(Device::Cuda(0));
  return devices;
}

// The one tolerance table of this file: results that sum `n` terms in the accumulator (f32 for
// f16/bf16/f32, f64 for f64) and are then rounded to the output dtype. Integer results are exact.
Tolerance SumTolerance(DType dtype, int64_t n) {
  Tolerance t = DefaultTolerance(dtype);
  if (dtype == DType::kF64) {
    t.abs += 1e-15 * static_cast<double>(n);
  } else if (IsFloating(dtype)) {
    t.abs += 2e-7 * static_cast<double>(n);
  }
  return t;
}
constexpr Tolerance kExact = {0, 0};

// Test data: floats uniform in [lo, hi), integers uniform in [-50, 50), bool 0/1 at random.
absl::StatusOr<Tensor> TestInput(const Shape& shape, DType dtype, uint64_t seed, double lo = -1,
                                 double hi = 1) {
  if (dtype == DType::kBool) {
    LYRA_ASSIGN_OR_RETURN(Tensor t, RandomTensor(shape, DType::kI32, seed, 0, 2));
    return t.To(DType::kBool);
  }
  if (IsInteger(dtype)) return RandomTensor(shape, dtype, seed, -50, 50);
  return RandomTensor(shape, dtype, seed, lo, hi);
}

enum class ViewKind { kContiguous, kTransposed, kSliced, kBroadcast, kPermuted };
constexpr ViewKind kAllViews[] = {ViewKind::kContiguous, ViewKind::kTransposed, ViewKind::kSliced,
                                  ViewKind::kBroadcast, ViewKind::kPermuted};

std::string ViewName(ViewKind v) {
  switch (v) {
    case ViewKind::kContiguous: return "contiguous";
    case ViewKind::kTransposed: return "transposed";
    case ViewKind::kSliced: return "sliced";
    case ViewKind::kBroadcast: return "broadcast";
    case ViewKind::kPermuted: return "permuted";
  }
  return "?";
}

// A tensor of `shape` on `device` whose memory layout is `kind`:
//   transposed: the first and last dims of a contiguous tensor swapped;
//   sliced:     every other element of a wider last dim, starting at 1 (an unaligned start);
//   broadcast:  dim 0 expanded from size 1 (stride 0);
//   permuted:   a contiguous [s_{n-1}, s_0, ..., s_{n-2}] viewed as [s_0, ..., s_{n-1}].
absl::StatusOr<Tensor> MakeInput(ViewKind kind, const Shape& shape, DType dtype, uint64_t seed,
                                 Device device, double lo = -1, double hi = 1) {
  const int rank = static_cast<int>(shape.size());
  if (rank == 0) kind = ViewKind::kContiguous;
  if (rank < 2 && (kind == ViewKind::kTransposed || kind == ViewKind::kPermuted)) {
    kind = ViewKind::kSliced;
  }
  Shape base = shape;
  switch (kind) {
    case ViewKind::kContiguous: {
      LYRA_ASSIGN_OR_RETURN(Tensor t, TestInput(shape, dtype, seed, lo, hi));
      return t.To(device);
    }
    case ViewKind::kTransposed: {
      std::swap(base.front(), base.back());
      LYRA_ASSIGN_OR_RETURN(Tensor t, TestInput(base, dtype, seed, lo, hi));
      LYRA_ASSIGN_OR_RETURN(t, t.To(device));
      return t.Transpose(0, rank - 1);
    }
    case ViewKind::kSliced: {
      base.back() = 2 * shape.back() + 1;
      LYRA_ASSIGN_OR_RETURN(Tensor t, TestInput(base, dtype, seed, lo, hi));
      LYRA_ASSIGN_OR_RETURN(t, t.To(device));
      return t.Slice(rank - 1, 1, base.back(), 2);
    }
    case ViewKind::kBroadcast: {
      base.front() = 1;
      LYRA_ASSIGN_OR_RETURN(Tensor t, TestInput(base, dtype, seed, lo, hi));
      LYRA_ASSIGN_OR_RETURN(t, t.To(device));
      return t.Expand(shape);
    }
    case ViewKind::kPermuted: {
      base.insert(base.begin(), base.back());
      base.pop_back();
      LYRA_ASSIGN_OR_RETURN(Tensor t, TestInput(base, dtype, seed, lo, hi));
      LYRA_ASSIGN_OR_RETURN(t, t.To(device));
      std::vector<int> perm;
      for (int d = 1; d < rank; ++d) perm.push_back(d);
      perm.push_back(0);
      return t.Permute(perm);
    }
  }
  return absl::InternalError("unknown view kind");
}

// --- Naive f64 loops ---------------------------------------------------------------------

enum class Kind { kSum, kMean, kMax, kArgmax };

struct NaiveResult {
  Shape shape;
  std::vector<double> values;
  std::vector<double> indices;  // kArgmax
};

// The reduced dims of a rank-`rank` tensor (all for empty `dims`), negative dims wrapped.
std::vector<bool> MaskOf(int rank, const std::vector<int>& dims) {
  std::vector<bool> mask(rank, dims.empty());
  for (int d : dims) {
    if (rank > 0) mask[d < 0 ? d + rank : d] = true;
  }
  return mask;
}

// Reduces `x` (row-major values of `shape`) over the dims in `mask`, visiting elements in
// row-major order so that the first maximum is the one kept.
NaiveResult NaiveReduce(const std::vector<double>& x, const Shape& shape,
                        const std::vector<bool>& mask, bool keepdim, Kind kind) {
  const int rank = static_cast<int>(shape.size());
  NaiveResult out;
  int64_t num_out = 1;
  for (int d = 0; d < rank; ++d) {
    if (!mask[d]) {
      out.shape.push_back(shape[d]);
      num_out *= shape[d];
    } else if (keepdim) {
      out.shape.push_back(1);
    }
  }
  std::vector<double> acc(num_out, kind == Kind::kSum || kind == Kind::kMean ? 0.0 : -kInf);
  std::vector<double> best(num_out, -1);
  std::vector<int64_t> count(num_out, 0);
  for (int64_t flat = 0; flat < static_cast<int64_t>(x.size()); ++flat) {
    int64_t rest = flat, out_index = 0, out_stride = 1, r = 0;
    for (int d = rank - 1; d >= 0; --d) {
      const int64_t idx = rest % shape[d];
      rest /= shape[d];
      if (mask[d]) {
        r = idx;
      } else {
        out_index += idx * out_stride;
        out_stride *= shape[d];
      }
    }
    const double v = x[flat];
    double& a = acc[out_index];
    if (kind == Kind::kSum || kind == Kind::kMean) {
      a += v;
    } else if (count[out_index] == 0 || (std::isnan(v) && !std::isnan(a)) || v > a) {
      a = v;
      best[out_index] = static_cast<double>(r);
    }
    ++count[out_index];
  }
  if (kind == Kind::kMean) {
    for (int64_t i = 0; i < num_out; ++i) acc[i] /= static_cast<double>(count[i]);
  }
  out.values = acc;
  out.indices = best;
  return out;
}

// Softmax (or log-softmax) of every row along `dim`, in f64.
std::vector<double> NaiveSoftmax(const std::vector<double>& x, const Shape& shape, int dim,
                                 bool log) {
  const int rank = static_cast<int>(shape.size());
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= shape[d];
  for (int d = dim + 1; d < rank; ++d) inner *= shape[d];
  const int64_t length = rank == 0 ? 1 : shape[dim];
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t l) { return (o * length + l) * inner + i; };
      double m = -kInf;
      for (int64_t l = 0; l < length; ++l) m = std::max(m, x[at(l)]);
      double s = 0;
      for (int64_t l = 0; l < length; ++l) s += std::exp(x[at(l)] - m);
      for (int64_t l = 0; l < length; ++l) {
        y[at(l)] = log ? x[at(l)] - m - std::log(s) : std::exp(x[at(l)] - m) / s;
      }
    }
  }
  return y;
}

// dx of softmax (from y, g) or log-softmax, in f64.
std::vector<double> NaiveSoftmaxBackward(const std::vector<double>& y,
                                         const std::vector<double>& g, const Shape& shape,
                                         int dim, bool log) {
  const int rank = static_cast<int>(shape.size());
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= shape[d];
  for (int d = dim + 1; d < rank; ++d) inner *= shape[d];
  const int64_t length = shape[dim];
  std::vector<double> dx(y.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t l) { return (o * length + l) * inner + i; };
      double d = 0;
      for (int64_t l = 0; l < length; ++l) d += log ? g[at(l)] : g[at(l)] * y[at(l)];
      for (int64_t l = 0; l < length; ++l) {
        dx[at(l)] = log ? g[at(l)] - std::exp(y[at(l)]) * d : y[at(l)] * (g[at(l)] - d);
      }
    }
  }
  return dx;
}

std::vector<double> NaiveCumsum(const std::vector<double>& x, const Shape& shape, int dim,
                                bool reverse) {
  const int rank = static_cast<int>(shape.size());
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < dim; ++d) outer *= shape[d];
  for (int d = dim + 1; d < rank; ++d) inner *= shape[d];
  const int64_t length = rank == 0 ? 1 : shape[dim];
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i = 0; i < inner; ++i) {
      double s = 0;
      for (int64_t step = 0; step < length; ++step) {
        const int64_t l = reverse ? length - 1 - step : step;
        s += x[(o * length + l) * inner + i];
        y[(o * length + l) * inner + i] = s;
      }
    }
  }
  return y;
}

std::string Trace(Device device, DType dtype, const Shape& shape, const std::vector<int>& dims,
                  ViewKind view, bool flag) {
  return absl::StrCat(device.ToString(), " ", DTypeName(dtype), ShapeToString(shape), " dims [",
                      absl::StrJoin(dims, ", "), "] ", ViewName(view), " flag=", flag);
}

// --- Sum, Mean, Max ----------------------------------------------------------------------

struct ReduceCase {
  Shape shape;
  std::vector<int> dims;
};

const std::vector<ReduceCase>& ReduceCases() {
  static const auto* cases = new std::vector<ReduceCase>{
      {{7, 33, 5}, {2}},        // inner (last) dim
      {{7, 33, 5}, {0}},        // outer dim
      {{7, 33, 5}, {1}},        // middle dim
      {{7, 33, 5}, {0, 2}},     // non-adjacent dims
      {{7, 33, 5}, {}},         // every dim
      {{7, 33, 5}, {-1}},       // negative
      {{7, 33, 5}, {-2, -1}},   // two trailing dims
      {{7, 33, 5}, {1, 0}},     // two leading dims, unordered
      {{1000}, {0}},
      {{1}, {0}},
      {{33, 1000}, {1}},
      {{33, 1000}, {0}},
      {{2, 3, 4, 5}, {1, 3}},
      {{4, 1, 6}, {1}},         // a size-1 reduced dim
      {{9, 40}, {0}},           // inner >= 8: the column kernel on the GPU
  };
  return *cases;
}

void CheckReduce(Kind kind, DType dtype) {
  for (Device device : TestDevices()) {
    for (const ReduceCase& c : ReduceCases()) {
      for (ViewKind view : kAllViews) {
        for (bool keepdim : {false, true}) {
          SCOPED_TRACE(Trace(device, dtype, c.shape, c.dims, view, keepdim));
          ASSERT_OK_AND_ASSIGN(Tensor x, MakeInput(view, c.shape, dtype, 17, device));
          ASSERT_EQ(x.shape(), c.shape);
          ASSERT_OK_AND_ASSIGN(std::vector<double> xv, x.ToDoubles());
          const NaiveResult want =
              NaiveReduce(xv, c.shape, MaskOf(x.dim(), c.dims), keepdim, kind);
          absl::StatusOr<Tensor> got;
          switch (kind) {
            case Kind::kSum: got = Sum(x, c.dims, keepdim); break;
            case Kind::kMean: got = Mean(x, c.dims, keepdim); break;
            default: got = Max(x, c.dims, keepdim); break;
          }
          ASSERT_OK(got.status());
          EXPECT_EQ(got->shape(), want.shape);
          EXPECT_EQ(got->device(), device);
          const DType want_dtype =
              kind == Kind::kSum && !IsFloating(dtype) ? DType::kI64 : dtype;
          EXPECT_EQ(got->dtype(), want_dtype);
          ASSERT_OK_AND_ASSIGN(std::vector<double> gv, got->ToDoubles());
          const int64_t n = x.numel() / std::max<int64_t>(1, got->numel());
          const Tolerance tol = kind == Kind::kMax ? kExact : SumTolerance(dtype, n);
          EXPECT_TRUE(AllClose(gv, want.values, tol));
        }
      }
    }
  }
}

TEST(SumTest, MatchesNaiveLoop) {
  for (DType dtype : kAllDTypes) {
    CheckReduce(Kind::kSum, dtype);
  }
}

TEST(MeanTest, MatchesNaiveLoop) {
  for (DType dtype : kFloatDTypes) {
    CheckReduce(Kind::kMean, dtype);
  }
}

TEST(MaxTest, MatchesNaiveLoop) {
  for (DType dtype : kAllDTypes) {
    CheckReduce(Kind::kMax, dtype);
  }
}

// Large reductions: vocabulary-sized rows, a full sum of 2^20 elements and tall columns, which
// the GPU splits over several blocks (row and column kernels) and combines in a second pass.
TEST(SumTest, LargeReductions) {
  const std::vector<ReduceCase> cases = {
      {{3, 50280}, {1}}, {{1 << 20}, {}}, {{20000, 40}, {0}}, {{100000, 3}, {0}},
      {{3, 70001}, {1}}};
  for (Device device : TestDevices()) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF64, DType::kI32}) {
      for (const ReduceCase& c : cases) {
        SCOPED_TRACE(Trace(device, dtype, c.shape, c.dims, ViewKind::kContiguous, false));
        ASSERT_OK_AND_ASSIGN(Tensor x, MakeInput(ViewKind::kContiguous, c.shape, dtype, 5, device));
        ASSERT_OK_AND_ASSIGN(std::vector<double> xv, x.ToDoubles());
        for (Kind kind : {Kind::kSum, Kind::kMean, Kind::kMax, Kind::kArgmax}) {
          if (kind == Kind::kMean && !IsFloating(dtype)) continue;
          const NaiveResult want = NaiveReduce(xv, c.shape, MaskOf(x.dim(), c.dims), false, kind);
          if (kind == Kind::kArgmax) {
            if (c.dims.size() != 1) continue;
            ASSERT_OK_AND_ASSIGN(MaxResult got, MaxAlong(x, c.dims[0]));
            ASSERT_OK_AND_ASSIGN(std::vector<double> iv, got.indices.ToDoubles());
            EXPECT_TRUE(AllClose(iv, want.indices, kExact));
            continue;
          }
          ASSERT_OK_AND_ASSIGN(Tensor got, kind == Kind::kSum    ? Sum(x, c.dims)
                                           : kind == Kind::kMean ? Mean(x, c.dims)
                                                                 : Max(x, c.dims));
          ASSERT_OK_AND_ASSIGN(std::vector<double> gv, got.ToDoubles());
          const int64_t n = x.numel() / got.numel();
          EXPECT_TRUE(AllClose(gv, want.values,
                               kind == Kind::kMax ? kExact : SumTolerance(dtype, n)));
        }
      }
    }
  }
}

TEST(SumTest, ScalarsAndEmptyTensors) {
  for (Device device : TestDevices()) {
    SCOPED_TRACE(device.ToString());
    ASSERT_OK_AND_ASSIGN(Tensor s, Tensor::Scalar(2.5, DType::kF32, device));
    for (const std::vector<int>& dims : {std::vector<int>{}, {0}, {-1}}) {
      ASSERT_OK_AND_ASSIGN(Tensor sum, Sum(s, dims));
      EXPECT_EQ(sum.dim(), 0);
      ASSERT_OK_AND_ASSIGN(double v, sum.Item());
      EXPECT_EQ(v, 2.5);
    }
    ASSERT_OK_AND_ASSIGN(Tensor arg, Argmax(s, 0));
    ASSERT_OK_AND_ASSIGN(double a, arg.Item());
    EXPECT_EQ(a, 0);

    ASSERT_OK_AND_ASSIGN(Tensor empty, Tensor::Zeros({0, 3}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor sum0, Sum(empty, {0}));
    EXPECT_EQ(sum0.shape(), (Shape{3}));
    ASSERT_OK_AND_ASSIGN(std::vector<double> sv, sum0.ToDoubles());
    EXPECT_EQ(sv, std::vector<double>(3, 0.0));
    ASSERT_OK_AND_ASSIGN(Tensor mean0, Mean(empty, {0}, /*keepdim=*/true));
    EXPECT_EQ(mean0.shape(), (Shape{1, 3}));
    ASSERT_OK_AND_ASSIGN(std::vector<double> mv, mean0.ToDoubles());
    for (double m : mv) EXPECT_TRUE(std::isnan(m));
    ASSERT_OK_AND_ASSIGN(Tensor max1, Max(empty, {1}));  // nothing to reduce into
    EXPECT_EQ(max1.shape(), (Shape{0}));
    ASSERT_OK_AND_ASSIGN(Tensor sum_all, Sum(empty));
    ASSERT_OK_AND_ASSIGN(double total, sum_all.Item());
    EXPECT_EQ(total, 0);
  }
}

// --- Max NaN handling, MaxAlong, Argmax --------------------------------------------------

TEST(MaxTest, NaNPropagates) {
  // Rows: NaN in the middle, NaN first, no NaN, two NaNs, infinities.
  const std::vector<double> values = {1, kNaN, 3,   kNaN, 5,    -1,   2,     -7,   0.5,
                                      4, kNaN,  kNaN, -kInf, kInf, -kInf};
  const std::vector<double> want_max = {kNaN, kNaN, 2, kNaN, kInf};
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(dtype)));
      ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromDoubles(values, {5, 3}, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor m, Max(x, {1}));
      EXPECT_TRUE(AllClose(m, *Tensor::FromDoubles(want_max, {5}, DType::kF64), kExact));
      ASSERT_OK_AND_ASSIGN(MaxResult r, MaxAlong(x, -1));
      EXPECT_TRUE(AllClose(r.values, *Tensor::FromDoubles(want_max, {5}, DType::kF64), kExact));
      ASSERT_OK_AND_ASSIGN(std::vector<int64_t> idx, r.indices.ToVector<int64_t>());
      EXPECT_EQ(idx, (std::vector<int64_t>{1, 0, 0, 1, 1}));
      ASSERT_OK_AND_ASSIGN(Tensor all, Max(x));
      ASSERT_OK_AND_ASSIGN(double all_v, all.Item());
      EXPECT_TRUE(std::isnan(all_v));
      ASSERT_OK_AND_ASSIGN(Tensor col, Max(x, {0}));  // each column holds a NaN
      ASSERT_OK_AND_ASSIGN(std::vector<double> cv, col.ToDoubles());
      for (double v : cv) EXPECT_TRUE(std::isnan(v));
    }
  }
}

TEST(ArgmaxTest, MatchesNaiveLoopWithTies) {
  const std::vector<ReduceCase> cases = {
      {{7, 33, 5}, {2}}, {{7, 33, 5}, {0}}, {{7, 33, 5}, {1}}, {{7, 33, 5}, {-1}},
      {{1000}, {0}},     {{1}, {0}},        {{4, 1, 6}, {1}},  {{9, 40}, {0}},
      {{5, 50280}, {-1}}, {{50000, 33}, {0}}};
  for (Device device : TestDevices()) {
    for (DType dtype : kAllDTypes) {
      for (const ReduceCase& c : cases) {
        for (ViewKind view : kAllViews) {
          for (bool keepdim : {false, true}) {
            SCOPED_TRACE(Trace(device, dtype, c.shape, c.dims, view, keepdim));
            // Values in {-2, -1, 0, 1} (floats floored below): ties in nearly every row.
            ASSERT_OK_AND_ASSIGN(Tensor raw, MakeInput(view, c.shape, dtype, 3, device, -2, 2));
            Tensor x = raw;
            if (IsFloating(dtype)) {
              ASSERT_OK_AND_ASSIGN(std::vector<double> rv, raw.ToDoubles());
              for (double& v : rv) v = std::floor(v);
              ASSERT_OK_AND_ASSIGN(x, Tensor::FromDoubles(rv, c.shape, dtype, device));
            }
            ASSERT_OK_AND_ASSIGN(std::vector<double> xv, x.ToDoubles());
            const NaiveResult want =
                NaiveReduce(xv, c.shape, MaskOf(x.dim(), c.dims), keepdim, Kind::kArgmax);
            ASSERT_OK_AND_ASSIGN(MaxResult got, MaxAlong(x, c.dims[0], keepdim));
            EXPECT_EQ(got.values.shape(), want.shape);
            EXPECT_EQ(got.indices.shape(), want.shape);
            EXPECT_EQ(got.values.dtype(), dtype);
            EXPECT_EQ(got.indices.dtype(), DType::kI64);
            ASSERT_OK_AND_ASSIGN(std::vector<double> vv, got.values.ToDoubles());
            ASSERT_OK_AND_ASSIGN(std::vector<double> iv, got.indices.ToDoubles());
            EXPECT_TRUE(AllClose(vv, want.values, kExact));
            EXPECT_TRUE(AllClose(iv, want.indices, kExact));
            ASSERT_OK_AND_ASSIGN(Tensor arg, Argmax(x, c.dims[0], keepdim));
            ASSERT_OK_AND_ASSIGN(std::vector<double> av, arg.ToDoubles());
            EXPECT_TRUE(AllClose(av, want.indices, kExact));
          }
        }
      }
    }
  }
}

// --- SumToShape ----------------------------------------------------------------------------

TEST(SumToShapeTest, InvertsBroadcasting) {
  const Shape x_shape = {2, 3, 4};
  const std::vector<Shape> targets = {{3, 4}, {1, 4}, {2, 1, 4}, {4}, {1}, {},
                                      {3, 1}, {1, 1, 1}, {2, 3, 1}, {2, 1, 1}};
  for (Device device : TestDevices()) {
    for (DType dtype : {DType::kF32, DType::kF64, DType::kBF16}) {
      for (ViewKind view : kAllViews) {
        ASSERT_OK_AND_ASSIGN(Tensor x, MakeInput(view, x_shape, dtype, 11, device));
        ASSERT_OK_AND_ASSIGN(std::vector<double> xv, x.ToDoubles());
        for (const Shape& target : targets) {
          SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(dtype), " ",
                                    ViewName(view), " to ", ShapeToString(target)));
          // Reduced: the leading dims target lacks, and its size-1 dims where x is larger.
          std::vector<bool> mask(3, false);
          const int lead = 3 - static_cast<int>(target.size());
          for (int d = 0; d < 3; ++d) {
            mask[d] = d < lead || (target[d - lead] == 1 && x_shape[d] != 1);
          }
          const NaiveResult want = NaiveReduce(xv, x_shape, mask, /*keepdim=*/true, Kind::kSum);
          ASSERT_OK_AND_ASSIGN(Tensor got, SumToShape(x, target));
          EXPECT_EQ(got.shape(), target);
          EXPECT_EQ(got.dtype(), dtype);
          ASSERT_OK_AND_ASSIGN(std::vector<double> gv, got.ToDoubles());
          EXPECT_TRUE(AllClose(gv, want.values, SumTolerance(dtype, 24)));
        }
        ASSERT_OK_AND_ASSIGN(Tensor same, SumToShape(x, x_shape));
        EXPECT_EQ(same.data(), x.data());  // already the right shape: x itself
      }
    }
  }
}

TEST(SumToShapeTest, RejectsShapesThatDoNotBroadcast) {
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Zeros({2, 3, 4}, DType::kF32));
  EXPECT_STATUS_IS(SumToShape(x, {5, 4}), absl::StatusCode::kInvalidArgument,
                   "[5, 4] does not broadcast to f32[2, 3, 4]");
  EXPECT_STATUS_IS(SumToShape(x, {1, 2, 3, 4}), absl::StatusCode::kInvalidArgument,
                   "does not broadcast");
  EXPECT_STATUS_IS(SumToShape(x, {3, 8}), absl::StatusCode::kInvalidArgument,
                   "does not broadcast");
  EXPECT_STATUS_IS(SumToShape(x, {2, 3}), absl::StatusCode::kInvalidArgument,
                   "does not broadcast");
}

// --- Softmax, LogSoftmax ---------------------------------------------------------------------

struct DimCase {
  Shape shape;
  int dim;
};

const std::vector<DimCase>& DimCases() {
  static const auto* cases = new std::vector<DimCase>{
      {{7, 33}, -1},      {{7, 33}, 0},       {{4, 7, 33}, 1},  {{4, 7, 33}, 2},
      {{4, 7, 33}, 0},    {{1}, 0},           {{5, 1000}, -1},  {{2, 3, 4, 5}, 2},
      {{6, 1}, 1},        {{3, 50280}, -1},
  };
  return *cases;
}

TEST(SoftmaxTest, MatchesNaiveLoop) {
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      for (const DimCase& c : DimCases()) {
        for (ViewKind view : kAllViews) {
          // Large 3-row vocabulary case: the contiguous and sliced layouts are enough.
          if (c.shape.back() == 50280 && view != ViewKind::kContiguous &&
              view != ViewKind::kSliced) {
            continue;
          }
          for (bool log : {false, true}) {
            SCOPED_TRACE(Trace(device, dtype, c.shape, {c.dim}, view, log));
            ASSERT_OK_AND_ASSIGN(Tensor x, MakeInput(view, c.shape, dtype, 23, device, -6, 6));
            ASSERT_OK_AND_ASSIGN(std::vector<double> xv, x.ToDoubles());
            const int dim = c.dim < 0 ? c.dim + x.dim() : c.dim;
            const std::vector<double> want = NaiveSoftmax(xv, c.shape, dim, log);
            ASSERT_OK_AND_ASSIGN(Tensor y, log ? LogSoftmax(x, c.dim) : Softmax(x, c.dim));
            EXPECT_EQ(y.shape(), c.shape);
            EXPECT_EQ(y.dtype(), dtype);
            ASSERT_OK_AND_ASSIGN(std::vector<double> yv, y.ToDoubles());
            EXPECT_TRUE(AllClose(yv, want, SumTolerance(dtype, 0)));
          }
        }
      }
    }
  }
}

TEST(SoftmaxTest, StableForLargeLogitsAndInfinities) {
  for (Device device : TestDevices()) {
    for (DType dtype : {DType::kF32, DType::kF64, DType::kBF16}) {
      SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(dtype)));
      // exp(1000) overflows every dtype; only the max-subtracted form survives.
      ASSERT_OK_AND_ASSIGN(Tensor big, Tensor::FromDoubles({1000, 1001, 1002, -1000, 0, 1000},
                                                           {2, 3}, dtype, device));
      ASSERT_OK_AND_ASSIGN(std::vector<double> bv, big.ToDoubles());
      for (bool log : {false, true}) {
        ASSERT_OK_AND_ASSIGN(Tensor y, log ? LogSoftmax(big, 1) : Softmax(big, 1));
        EXPECT_TRUE(AllClose(y, *Tensor::FromDoubles(NaiveSoftmax(bv, {2, 3}, 1, log), {2, 3},
                                                    DType::kF64),
                             SumTolerance(dtype, 0)));
      }
      // -inf entries get probability 0; a row of -inf is NaN (as torch); NaN and +inf spread
      // NaN to their row.
      ASSERT_OK_AND_ASSIGN(Tensor inf, Tensor::FromDoubles({0, -kInf, 1, -kInf, -kInf, -kInf,
                                                            2, kNaN, 0, 2, kInf, 0},
                                                           {4, 3}, dtype, device));
      for (bool log : {false, true}) {
        ASSERT_OK_AND_ASSIGN(Tensor y, log ? LogSoftmax(inf, -1) : Softmax(inf, -1));
        ASSERT_OK_AND_ASSIGN(std::vector<double> yv, y.ToDoubles());
        const double e = std::exp(1.0);
        const std::vector<double> first =
            log ? std::vector<double>{-std::log1p(e), -kInf, 1 - std::log1p(e)}
                : std::vector<double>{1 / (1 + e), 0, e / (1 + e)};
        EXPECT_TRUE(AllClose(std::vector<double>(yv.begin(), yv.begin() + 3), first,
                             SumTolerance(dtype, 0)));
        for (int k = 3; k < 12; ++k) EXPECT_TRUE(std::isnan(yv[k])) << k << " log=" << log;
      }
    }
  }
}

// dx from SoftmaxBackward / LogSoftmaxBackward against central differences of
// L(x) = sum(g * softmax(x)) in f64.
TEST(SoftmaxTest, BackwardMatchesFiniteDifferences) {
  const std::vector<DimCase> cases = {{{3, 5, 4}, 1}, {{3, 5, 4}, -1}, {{6}, 0}, {{4, 7}, 0}};
  constexpr double kStep = 1e-6;
  for (const DimCase& c : cases) {
    for (bool log : {false, true}) {
      SCOPED_TRACE(absl::StrCat(ShapeToString(c.shape), " dim ", c.dim, " log=", log));
      ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor(c.shape, DType::kF64, 31, -2, 2));
      ASSERT_OK_AND_ASSIGN(Tensor g, RandomTensor(c.shape, DType::kF64, 37, -1, 1));
      ASSERT_OK_AND_ASSIGN(std::vector<double> gv, g.ToDoubles());
      auto loss = [&](const std::vector<double>& xs) -> double {
        Tensor xt = *Tensor::FromDoubles(xs, c.shape, DType::kF64);
        Tensor yt = *(log ? LogSoftmax(xt, c.dim) : Softmax(xt, c.dim));
        std::vector<double> yv = *yt.ToDoubles();
        double l = 0;
        for (size_t k = 0; k < yv.size(); ++k) l += gv[k] * yv[k];
        return l;
      };
      ASSERT_OK_AND_ASSIGN(std::vector<double> xv, x.ToDoubles());
      std::vector<double> numeric(xv.size());
      for (size_t k = 0; k < xv.size(); ++k) {
        std::vector<double> plus = xv, minus = xv;
        plus[k] += kStep;
        minus[k] -= kStep;
        numeric[k] = (loss(plus) - loss(minus)) / (2 * kStep);
      }
      ASSERT_OK_AND_ASSIGN(Tensor y, log ? LogSoftmax(x, c.dim) : Softmax(x, c.dim));
      ASSERT_OK_AND_ASSIGN(Tensor dx,
                           log ? LogSoftmaxBackward(y, g, c.dim) : SoftmaxBackward(y, g, c.dim));
      ASSERT_OK_AND_ASSIGN(std::vector<double> dxv, dx.ToDoubles());
      EXPECT_TRUE(AllClose(dxv, numeric, Tolerance{1e-8, 1e-6}));
    }
  }
}

TEST(SoftmaxTest, BackwardMatchesNaiveLoop) {
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      for (const DimCase& c : DimCases()) {
        for (ViewKind view : {ViewKind::kContiguous, ViewKind::kTransposed, ViewKind::kSliced}) {
          for (bool log : {false, true}) {
            SCOPED_TRACE(Trace(device, dtype, c.shape, {c.dim}, view, log));
            ASSERT_OK_AND_ASSIGN(Tensor x, MakeInput(view, c.shape, dtype, 41, device, -3, 3));
            ASSERT_OK_AND_ASSIGN(Tensor y, log ? LogSoftmax(x, c.dim) : Softmax(x, c.dim));
            ASSERT_OK_AND_ASSIGN(Tensor g, MakeInput(view, c.shape, dtype, 43, device));
            ASSERT_OK_AND_ASSIGN(std::vector<double> yv, y.ToDoubles());
            ASSERT_OK_AND_ASSIGN(std::vector<double> gv, g.ToDoubles());
            const int dim = c.dim < 0 ? c.dim + y.dim() : c.dim;
            const std::vector<double> want = NaiveSoftmaxBackward(yv, gv, c.shape, dim, log);
            ASSERT_OK_AND_ASSIGN(Tensor dx, log ? LogSoftmaxBackward(y, g, c.dim)
                                                : SoftmaxBackward(y, g, c.dim));
            EXPECT_EQ(dx.shape(), c.shape);
            EXPECT_EQ(dx.dtype(), dtype);
            ASSERT_OK_AND_ASSIGN(std::vector<double> dxv, dx.ToDoubles());
            EXPECT_TRUE(AllClose(dxv, want, SumTolerance(dtype, c.shape[dim])));
          }
        }
      }
    }
  }
}

// --- Cumsum ----------------------------------------------------------------------------------

TEST(CumsumTest, MatchesNaiveLoop) {
  std::vector<DimCase> cases = DimCases();
  cases.push_back({{7, 33, 5}, 1});
  cases.push_back({{7, 33, 5}, 2});
  cases.push_back({{1000}, 0});
  for (Device device : TestDevices()) {
    for (DType dtype : kAllDTypes) {
      for (const DimCase& c : cases) {
        for (ViewKind view : kAllViews) {
          if (c.shape.back() == 50280 && view != ViewKind::kContiguous) continue;
          for (bool reverse : {false, true}) {
            SCOPED_TRACE(Trace(device, dtype, c.shape, {c.dim}, view, reverse));
            ASSERT_OK_AND_ASSIGN(Tensor x, MakeInput(view, c.shape, dtype, 29, device));
            ASSERT_OK_AND_ASSIGN(std::vector<double> xv, x.ToDoubles());
            const int dim = c.dim < 0 ? c.dim + x.dim() : c.dim;
            const std::vector<double> want = NaiveCumsum(xv, c.shape, dim, reverse);
            ASSERT_OK_AND_ASSIGN(Tensor y, Cumsum(x, c.dim, reverse));
            EXPECT_EQ(y.shape(), c.shape);
            EXPECT_EQ(y.dtype(), IsFloating(dtype) ? dtype : DType::kI64);
            ASSERT_OK_AND_ASSIGN(std::vector<double> yv, y.ToDoubles());
            EXPECT_TRUE(AllClose(yv, want, SumTolerance(dtype, c.shape[dim])));
          }
        }
      }
    }
  }
}

// --- Errors ----------------------------------------------------------------------------------

TEST(ReduceErrorsTest, BadArgumentsAreErrors) {
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Zeros({2, 3, 4}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor xi, Tensor::Zeros({2, 3}, DType::kI32));
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_STATUS_IS(Sum(x, {3}), kInvalid, "Sum: dimension 3 is out of range for f32[2, 3, 4]");
  EXPECT_STATUS_IS(Sum(x, {-4}), kInvalid, "out of range");
  EXPECT_STATUS_IS(Sum(x, {1, -2}), kInvalid, "Sum: dimension -2 repeated in [1, -2]");
  EXPECT_STATUS_IS(Max(x, {0, 0}), kInvalid, "repeated");
  EXPECT_STATUS_IS(Mean(xi), kInvalid, "Mean: needs a floating-point tensor, got i32[2, 3]");
  EXPECT_STATUS_IS(Mean(x, {5}), kInvalid, "out of range");
  EXPECT_STATUS_IS(Argmax(x, 3), kInvalid, "Argmax: dimension 3 is out of range");
  EXPECT_STATUS_IS(MaxAlong(x, -4), kInvalid, "MaxAlong: dimension -4");
  ASSERT_OK_AND_ASSIGN(Tensor empty, Tensor::Zeros({0, 3}, DType::kF32));
  EXPECT_STATUS_IS(Max(empty, {0}), kInvalid, "Max: cannot reduce over zero elements");
  EXPECT_STATUS_IS(Argmax(empty, 0), kInvalid, "zero elements of f32[0, 3]");
  EXPECT_STATUS_IS(Softmax(xi, 0), kInvalid, "Softmax: needs a floating-point tensor");
  EXPECT_STATUS_IS(LogSoftmax(x, 3), kInvalid, "LogSoftmax: dimension 3 is out of range");
  ASSERT_OK_AND_ASSIGN(Tensor g, Tensor::Zeros({2, 3}, DType::kF32));
  EXPECT_STATUS_IS(SoftmaxBackward(x, g, 0), kInvalid,
                   "SoftmaxBackward: gradient f32[2, 3] cpu does not match output f32[2, 3, 4]");
  ASSERT_OK_AND_ASSIGN(Tensor g64, Tensor::Zeros({2, 3, 4}, DType::kF64));
  EXPECT_STATUS_IS(LogSoftmaxBackward(x, g64, 0), kInvalid, "does not match");
  EXPECT_STATUS_IS(Cumsum(x, 3), kInvalid, "Cumsum: dimension 3 is out of range");
  EXPECT_STATUS_IS(Sum(Tensor()), kInvalid, "undefined");
}

// The kernels' own predicates, for what the tensor layer never passes them.
TEST(ReduceErrorsTest, KernelPredicatesRejectUnsupportedParams) {
  float x = 0, y = 0;
  int64_t index = 0;
  constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;
  constexpr auto kUnimplemented = absl::StatusCode::kUnimplemented;

  cuda::ReduceParams r;
  r.x = &x;
  r.y = &y;
  EXPECT_OK(cuda::ReduceSupported(r));
  r.op = cuda::ReduceOp::kMean;
  r.x_dtype = DType::kI32;
  EXPECT_STATUS_IS(cuda::ReduceSupported(r), kInvalid, "Mean: needs a floating-point input");
  r.op = cuda::ReduceOp::kSum;
  EXPECT_STATUS_IS(cuda::ReduceSupported(r), kInvalid, "output dtype f32 for input i32");
  r.x_dtype = DType::kF32;
  r.op = cuda::ReduceOp::kArgmax;
  EXPECT_STATUS_IS(cuda::ReduceSupported(r), kInvalid, "missing");
  r.indices = &index;
  r.reduced = 0;
  EXPECT_STATUS_IS(cuda::ReduceSupported(r), kInvalid, "zero elements");
  r.reduced = 1;
  r.outer = int64_t{1} << 31;
  EXPECT_STATUS_IS(cuda::ReduceSupported(r), kUnimplemented, "2^31");
  EXPECT_STATUS_IS(cuda::ReduceReference(r), kUnimplemented, "2^31");
  r.outer = -1;
  EXPECT_STATUS_IS(cuda::ReduceSupported(r), kInvalid, "negative size");

  cuda::SoftmaxParams s;
  s.in = &x;
  s.out = &y;
  EXPECT_OK(cuda::SoftmaxSupported(s));
  s.dtype = DType::kI64;
  EXPECT_STATUS_IS(cuda::SoftmaxSupported(s), kInvalid, "floating-point");
  s.dtype = DType::kF32;
  s.op = cuda::SoftmaxOp::kSoftmaxBackward;
  EXPECT_STATUS_IS(cuda::SoftmaxSupported(s), kInvalid, "missing");
  s.grad = &x;
  s.inner = int64_t{1} << 31;
  EXPECT_STATUS_IS(cuda::SoftmaxSupported(s), kUnimplemented, "2^31");

  cuda::CumsumParams c;
  c.x = &x;
  c.y = &y;
  EXPECT_OK(cuda::CumsumSupported(c));
  c.x_dtype = DType::kBool;
  EXPECT_STATUS_IS(cuda::CumsumSupported(c), kInvalid, "expected i64");
  c.y_dtype = DType::kI64;
  c.outer = int64_t{1} << 31;
  EXPECT_STATUS_IS(cuda::CumsumSupported(c), kUnimplemented, "2^31");
}

}  // namespace
}  // namespace lyra
