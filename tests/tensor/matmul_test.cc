// Matmul and MatmulInto: the CPU reference against a textbook f64 triple loop, CUDA (cuBLASLt /
// cuBLAS) against the CPU reference, over dtype x shape x layout (transposed, sliced, broadcast
// operands), accumulation into an existing output, and argument errors.
#include "tensor/matmul.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cuda/allocator.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kF16, DType::kBF16, DType::kF64};

std::vector<Device> TestDevices() {
  std::vector<Device> devices = {Device::Cpu()};
  if (cuda::HasGpu()) devices.push_back(Device::Cuda(0));
  return devices;
}

// The shared one-pass tolerance, widened for a sum of k products: rounding errors of a sum grow
// like sqrt(k) times the size of its terms (inputs are in [-1, 1)). TF32 rounds the inputs to
// a 10-bit mantissa, as f16 does, so it gets f16's tolerance.
Tolerance MatmulTolerance(DType dtype, int64_t k, bool tf32 = false) {
  const Tolerance base = DefaultTolerance(tf32 ? DType::kF16 : dtype);
  return {base.abs * std::sqrt(static_cast<double>(std::max<int64_t>(k, 1))), base.rel};
}

// A random CPU tensor (uniform in [-1, 1), fixed by `seed`) moved to `device`; the same values
// on every device.
absl::StatusOr<Tensor> Rand(const Shape& shape, DType dtype, Device device, uint64_t seed) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, RandomTensor(shape, dtype, seed));
  return t.To(device);
}

struct Expected {
  Shape shape;
  std::vector<double> values;  // row-major
};

// a @ b by the triple loop, in f64, over the inputs' (already rounded) values, with NumPy
// broadcasting of the batch dimensions.
absl::StatusOr<Expected> NaiveMatmul(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  const int nb = std::max(a.dim(), b.dim()) - 2;
  Shape a_batch(nb, 1), b_batch(nb, 1), batch(nb);
  for (int d = 0; d < a.dim() - 2; ++d) a_batch[nb - (a.dim() - 2) + d] = a.size(d);
  for (int d = 0; d < b.dim() - 2; ++d) b_batch[nb - (b.dim() - 2) + d] = b.size(d);
  for (int d = 0; d < nb; ++d) batch[d] = a_batch[d] == 1 ? b_batch[d] : a_batch[d];
  LYRA_ASSIGN_OR_RETURN(std::vector<double> av, a.ToDoubles());
  LYRA_ASSIGN_OR_RETURN(std::vector<double> bv, b.ToDoubles());
  Expected e;
  e.shape = batch;
  e.shape.push_back(m);
  e.shape.push_back(n);
  e.values.assign(NumElements(e.shape), 0.0);
  const int64_t batch_count = NumElements(batch);
  for (int64_t flat = 0; flat < batch_count; ++flat) {
    int64_t rest = flat, a_index = 0, b_index = 0, a_scale = 1, b_scale = 1;
    for (int d = nb - 1; d >= 0; --d) {
      const int64_t i = rest % batch[d];
      rest /= batch[d];
      if (a_batch[d] != 1) a_index += i * a_scale;
      if (b_batch[d] != 1) b_index += i * b_scale;
      a_scale *= a_batch[d];
      b_scale *= b_batch[d];
    }
    const double* am = av.data() + a_index * m * k;
    const double* bm = bv.data() + b_index * k * n;
    double* out = e.values.data() + flat * m * n;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0;
        for (int64_t kk = 0; kk < k; ++kk) sum += am[i * k + kk] * bm[kk * n + j];
        out[i * n + j] = sum;
      }
    }
  }
  return e;
}

::testing::AssertionResult Matches(const Tensor& actual, const Expected& expected,
                                   Tolerance tol) {
  if (actual.shape() != expected.shape) {
    return ::testing::AssertionFailure() << "shape " << actual.Describe() << " vs expected "
                                         << ShapeToString(expected.shape);
  }
  absl::StatusOr<std::vector<double>> values = actual.ToDoubles();
  if (!values.ok()) return ::testing::AssertionFailure() << values.status();
  return AllClose(*values, expected.values, tol);
}

struct Operands {
  Tensor a;
  Tensor b;
};

// A named pair of inputs, built on any device from the same random values.
struct Case {
  std::string name;
  std::function<absl::StatusOr<Operands>(DType, Device)> make;
};

// Plain contiguous [..., m, k] @ [..., k, n].
Case Plain(std::string name, Shape a_shape, Shape b_shape) {
  auto make = [a_shape, b_shape](DType dtype, Device device) -> absl::StatusOr<Operands> {
    LYRA_ASSIGN_OR_RETURN(Tensor a, Rand(a_shape, dtype, device, 1));
    LYRA_ASSIGN_OR_RETURN(Tensor b, Rand(b_shape, dtype, device, 2));
    return Operands{a, b};
  };
  return {std::move(name), std::move(make)};
}

std::vector<Case> Cases() {
  std::vector<Case> cases = {
      Plain("1x1x1", {1, 1}, {1, 1}),
      Plain("odd_37x129x65", {37, 129}, {129, 65}),
      Plain("tall_skinny_1000x3x2", {1000, 3}, {3, 2}),
      Plain("long_inner_5x777x3", {5, 777}, {777, 3}),
      Plain("row_vector_1x64x50", {1, 64}, {64, 50}),
      Plain("outer_product_64x1x63", {64, 1}, {1, 63}),
      Plain("wide_3x40x1100", {3, 40}, {40, 1100}),  // more than one 512-column block
      Plain("batched_3x17x33x9", {3, 17, 33}, {3, 33, 9}),
      Plain("broadcast_batch_2x1_by_3", {2, 1, 7, 11}, {3, 11, 5}),
      Plain("shared_rhs_4x6x8_by_8x10", {4, 6, 8}, {8, 10}),
      Plain("shared_lhs_6x8_by_4x8x10", {6, 8}, {4, 8, 10}),
      Plain("rank4_by_rank2", {2, 3, 4, 5}, {5, 6}),
      Plain("many_batches_66000", {66000, 2, 3}, {66000, 3, 2}),  // > one cuBLAS call's batch
      Plain("empty_m", {0, 5}, {5, 3}),
      Plain("empty_k", {4, 0}, {0, 3}),
      Plain("empty_batch", {0, 4, 5}, {5, 3}),
  };
  // a stored as [k, m] and read through Transpose: a column-major matrix.
  cases.push_back({"transposed_a", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
                     LYRA_ASSIGN_OR_RETURN(Tensor at, Rand({23, 19}, dtype, device, 3));
                     LYRA_ASSIGN_OR_RETURN(Tensor a, at.Transpose(0, 1));
                     LYRA_ASSIGN_OR_RETURN(Tensor b, Rand({23, 14}, dtype, device, 4));
                     return Operands{a, b};
                   }});
  // x @ W^T with W [out, in]: nn::Linear's product.
  cases.push_back({"transposed_b", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
                     LYRA_ASSIGN_OR_RETURN(Tensor a, Rand({19, 23}, dtype, device, 5));
                     LYRA_ASSIGN_OR_RETURN(Tensor w, Rand({14, 23}, dtype, device, 6));
                     LYRA_ASSIGN_OR_RETURN(Tensor b, w.Transpose(0, 1));
                     return Operands{a, b};
                   }});
  cases.push_back({"transposed_both", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
                     LYRA_ASSIGN_OR_RETURN(Tensor at, Rand({31, 17}, dtype, device, 7));
                     LYRA_ASSIGN_OR_RETURN(Tensor bt, Rand({9, 31}, dtype, device, 8));
                     LYRA_ASSIGN_OR_RETURN(Tensor a, at.Transpose(0, 1));
                     LYRA_ASSIGN_OR_RETURN(Tensor b, bt.Transpose(0, 1));
                     return Operands{a, b};
                   }});
  cases.push_back(
      {"batched_transposed_both", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
         LYRA_ASSIGN_OR_RETURN(Tensor at, Rand({3, 13, 10}, dtype, device, 9));
         LYRA_ASSIGN_OR_RETURN(Tensor bt, Rand({3, 7, 13}, dtype, device, 10));
         LYRA_ASSIGN_OR_RETURN(Tensor a, at.Transpose(1, 2));
         LYRA_ASSIGN_OR_RETURN(Tensor b, bt.Transpose(1, 2));
         return Operands{a, b};
       }});
  // Row- and column-narrowed views: leading dimensions larger than the row, and data pointers
  // offset by an odd number of elements (only 2-byte aligned for f16/bf16).
  cases.push_back(
      {"narrowed_odd_offsets", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
         LYRA_ASSIGN_OR_RETURN(Tensor ab, Rand({40, 50}, dtype, device, 11));
         LYRA_ASSIGN_OR_RETURN(Tensor a_rows, ab.Narrow(0, 3, 31));
         LYRA_ASSIGN_OR_RETURN(Tensor a, a_rows.Narrow(1, 1, 45));
         LYRA_ASSIGN_OR_RETURN(Tensor bb, Rand({47, 21}, dtype, device, 12));
         LYRA_ASSIGN_OR_RETURN(Tensor b_rows, bb.Narrow(0, 1, 45));
         LYRA_ASSIGN_OR_RETURN(Tensor b, b_rows.Narrow(1, 1, 20));
         return Operands{a, b};
       }});
  // Every other column of a (neither row- nor column-major: copied on CUDA) and every other
  // row of b (row-major with a doubled leading dimension).
  cases.push_back({"stride2_slices", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
                     LYRA_ASSIGN_OR_RETURN(Tensor ab, Rand({13, 42}, dtype, device, 13));
                     LYRA_ASSIGN_OR_RETURN(Tensor a, ab.Slice(1, 0, 42, 2));
                     LYRA_ASSIGN_OR_RETURN(Tensor bb, Rand({42, 9}, dtype, device, 14));
                     LYRA_ASSIGN_OR_RETURN(Tensor b, bb.Slice(0, 1, 42, 2));
                     return Operands{a, b};
                   }});
  cases.push_back({"every_other_batch", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
                     LYRA_ASSIGN_OR_RETURN(Tensor ab, Rand({6, 5, 7}, dtype, device, 15));
                     LYRA_ASSIGN_OR_RETURN(Tensor a, ab.Slice(0, 0, 6, 2));
                     LYRA_ASSIGN_OR_RETURN(Tensor b, Rand({3, 7, 4}, dtype, device, 16));
                     return Operands{a, b};
                   }});
  // [5, 3, 7] permuted to [3, 5, 7]: batch stride 7, row stride 21.
  cases.push_back({"permuted_batch", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
                     LYRA_ASSIGN_OR_RETURN(Tensor ab, Rand({5, 3, 7}, dtype, device, 17));
                     LYRA_ASSIGN_OR_RETURN(Tensor a, ab.Permute({1, 0, 2}));
                     LYRA_ASSIGN_OR_RETURN(Tensor b, Rand({3, 7, 6}, dtype, device, 18));
                     return Operands{a, b};
                   }});
  // b expanded over a batch (batch stride 0) and within the matrix (row stride 0: copied).
  cases.push_back({"expanded_b", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
                     LYRA_ASSIGN_OR_RETURN(Tensor a, Rand({3, 5, 7}, dtype, device, 19));
                     LYRA_ASSIGN_OR_RETURN(Tensor b1, Rand({7, 4}, dtype, device, 20));
                     LYRA_ASSIGN_OR_RETURN(Tensor b2, b1.Unsqueeze(0));
                     LYRA_ASSIGN_OR_RETURN(Tensor b, b2.Expand({3, 7, 4}));
                     return Operands{a, b};
                   }});
  cases.push_back(
      {"expanded_within_matrix", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
         LYRA_ASSIGN_OR_RETURN(Tensor a, Rand({6, 7}, dtype, device, 21));
         LYRA_ASSIGN_OR_RETURN(Tensor b1, Rand({1, 4}, dtype, device, 22));
         LYRA_ASSIGN_OR_RETURN(Tensor b, b1.Expand({7, 4}));
         return Operands{a, b};
       }});
  // mamba-130m in_proj on 16 tokens: x [1, 16, 768] @ W^T, W [3072, 768].
  cases.push_back(
      {"mamba-130m_in_proj", [](DType dtype, Device device) -> absl::StatusOr<Operands> {
         LYRA_ASSIGN_OR_RETURN(Tensor x, Rand({1, 16, 768}, dtype, device, 23));
         LYRA_ASSIGN_OR_RETURN(Tensor w, Rand({3072, 768}, dtype, device, 24));
         LYRA_ASSIGN_OR_RETURN(Tensor wt, w.Transpose(0, 1));
         return Operands{x, wt};
       }});
  return cases;
}

// Restores the TF32 switch at the end of a scope.
class Tf32Scope {
 public:
  explicit Tf32Scope(bool allow) : previous_(AllowTf32()) { SetAllowTf32(allow); }
  ~Tf32Scope() { SetAllowTf32(previous_); }

 private:
  bool previous_;
};

TEST(MatmulTest, CpuMatchesNaiveF64Loop) {
  for (const Case& c : Cases()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(absl::StrCat(c.name, " ", DTypeName(dtype)));
      ASSERT_OK_AND_ASSIGN(Operands in, c.make(dtype, Device::Cpu()));
      ASSERT_OK_AND_ASSIGN(Tensor out, Matmul(in.a, in.b));
      EXPECT_EQ(out.dtype(), dtype);
      EXPECT_TRUE(out.is_contiguous());
      ASSERT_OK_AND_ASSIGN(Expected expected, NaiveMatmul(in.a, in.b));
      EXPECT_TRUE(Matches(out, expected, MatmulTolerance(dtype, in.a.size(-1))));
    }
  }
}

TEST(MatmulTest, CudaMatchesCpu) {
  LYRA_REQUIRE_GPU();
  for (const Case& c : Cases()) {
    for (DType dtype : kFloatDTypes) {
      for (bool tf32 : {false, true}) {
        if (tf32 && dtype != DType::kF32) continue;
        SCOPED_TRACE(absl::StrCat(c.name, " ", DTypeName(dtype), tf32 ? " tf32" : ""));
        Tf32Scope scope(tf32);
        ASSERT_OK_AND_ASSIGN(Operands cpu, c.make(dtype, Device::Cpu()));
        ASSERT_OK_AND_ASSIGN(Operands gpu, c.make(dtype, Device::Cuda(0)));
        ASSERT_OK_AND_ASSIGN(Tensor expected, Matmul(cpu.a, cpu.b));
        ASSERT_OK_AND_ASSIGN(Tensor actual, Matmul(gpu.a, gpu.b));
        EXPECT_TRUE(actual.device() == Device::Cuda(0));
        EXPECT_TRUE(actual.is_contiguous());
        ASSERT_OK_AND_ASSIGN(Tensor actual_cpu, actual.To(Device::Cpu()));
        EXPECT_TRUE(AllClose(actual_cpu, expected, MatmulTolerance(dtype, cpu.a.size(-1), tf32)));
      }
    }
  }
}

TEST(MatmulTest, MatmulIntoAccumulatesWithAlphaAndBeta) {
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(dtype)));
      ASSERT_OK_AND_ASSIGN(Tensor a, Rand({2, 9, 33}, dtype, device, 31));
      ASSERT_OK_AND_ASSIGN(Tensor b, Rand({33, 12}, dtype, device, 32));
      ASSERT_OK_AND_ASSIGN(Tensor out, Rand({2, 9, 12}, dtype, device, 33));
      ASSERT_OK_AND_ASSIGN(std::vector<double> before, out.ToDoubles());
      ASSERT_OK_AND_ASSIGN(Expected product, NaiveMatmul(a, b));
      Expected expected = product;
      for (size_t i = 0; i < before.size(); ++i) {
        expected.values[i] = 0.5 * product.values[i] + before[i];
      }
      ASSERT_OK(MatmulInto(a, b, out, /*alpha=*/0.5, /*beta=*/1));
      EXPECT_TRUE(Matches(out, expected, MatmulTolerance(dtype, 33)));
      // A second accumulation, as a gradient buffer sees it.
      ASSERT_OK(MatmulInto(a, b, out, 0.5, 1));
      for (size_t i = 0; i < before.size(); ++i) expected.values[i] += 0.5 * product.values[i];
      EXPECT_TRUE(Matches(out, expected, MatmulTolerance(dtype, 33)));
    }
  }
}

TEST(MatmulTest, BetaZeroDoesNotReadOut) {
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(dtype)));
      ASSERT_OK_AND_ASSIGN(Tensor a, Rand({5, 8}, dtype, device, 41));
      ASSERT_OK_AND_ASSIGN(Tensor b, Rand({8, 6}, dtype, device, 42));
      const double nan = std::numeric_limits<double>::quiet_NaN();
      ASSERT_OK_AND_ASSIGN(Tensor out, Tensor::Full({5, 6}, nan, dtype, device));
      ASSERT_OK(MatmulInto(a, b, out, 2, 0));
      ASSERT_OK_AND_ASSIGN(Expected expected, NaiveMatmul(a, b));
      for (double& v : expected.values) v *= 2;
      EXPECT_TRUE(Matches(out, expected, MatmulTolerance(dtype, 8)));
    }
  }
}

TEST(MatmulTest, MatmulIntoStridedOutViews) {
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(dtype)));
      ASSERT_OK_AND_ASSIGN(Tensor a, Rand({11, 17}, dtype, device, 51));
      ASSERT_OK_AND_ASSIGN(Tensor b, Rand({17, 7}, dtype, device, 52));
      ASSERT_OK_AND_ASSIGN(Expected expected, NaiveMatmul(a, b));
      const Tolerance tol = MatmulTolerance(dtype, 17);

      // A transposed (column-major) out: written in place by a swapped product on CUDA.
      ASSERT_OK_AND_ASSIGN(Tensor storage_t, Tensor::Zeros({7, 11}, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor out_t, storage_t.Transpose(0, 1));
      ASSERT_OK(MatmulInto(a, b, out_t));
      EXPECT_TRUE(Matches(out_t, expected, tol));

      // Every other column of a wider buffer, accumulated into (staged through a copy on CUDA);
      // the columns in between must stay untouched.
      ASSERT_OK_AND_ASSIGN(Tensor wide, Tensor::Full({11, 14}, 1.0, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor out_s, wide.Slice(1, 0, 14, 2));
      ASSERT_OK(MatmulInto(a, b, out_s, 1, 1));
      Expected plus_one = expected;
      for (double& v : plus_one.values) v += 1;
      EXPECT_TRUE(Matches(out_s, plus_one, tol));
      ASSERT_OK_AND_ASSIGN(Tensor gaps, wide.Slice(1, 1, 14, 2));
      ASSERT_OK_AND_ASSIGN(std::vector<double> gap_values, gaps.ToDoubles());
      EXPECT_EQ(gap_values, std::vector<double>(11 * 7, 1.0));
    }
  }
}

TEST(MatmulTest, EmptyInnerDimensionScalesOut) {
  for (Device device : TestDevices()) {
    for (DType dtype : kFloatDTypes) {
      SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(dtype)));
      ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::Zeros({2, 3, 0}, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::Zeros({0, 4}, dtype, device));
      ASSERT_OK_AND_ASSIGN(Tensor out, Tensor::Full({2, 3, 4}, 2.0, dtype, device));
      ASSERT_OK(MatmulInto(a, b, out, 1, 0.5));
      ASSERT_OK_AND_ASSIGN(std::vector<double> halved, out.ToDoubles());
      EXPECT_EQ(halved, std::vector<double>(24, 1.0));
      ASSERT_OK(MatmulInto(a, b, out, 1, 0));
      ASSERT_OK_AND_ASSIGN(std::vector<double> zeroed, out.ToDoubles());
      EXPECT_EQ(zeroed, std::vector<double>(24, 0.0));
    }
  }
}

TEST(MatmulTest, BadArgumentsAreErrors) {
  ASSERT_OK_AND_ASSIGN(Tensor a23, Tensor::Zeros({2, 3}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor a45, Tensor::Zeros({4, 5}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor b34, Tensor::Zeros({3, 4}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor v3, Tensor::Zeros({3}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor h34, Tensor::Zeros({3, 4}, DType::kF16));
  ASSERT_OK_AND_ASSIGN(Tensor i23, Tensor::Zeros({2, 3}, DType::kI32));
  ASSERT_OK_AND_ASSIGN(Tensor i34, Tensor::Zeros({3, 4}, DType::kI32));
  ASSERT_OK_AND_ASSIGN(Tensor batch2, Tensor::Zeros({2, 2, 3}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor batch3, Tensor::Zeros({3, 3, 4}, DType::kF32));
  constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

  EXPECT_STATUS_IS(Matmul(a23, a45), kInvalid, "inner dimensions differ: a f32[2, 3] cpu");
  EXPECT_STATUS_IS(Matmul(v3, b34), kInvalid, "rank >= 2, got a f32[3] cpu");
  EXPECT_STATUS_IS(Matmul(a23, v3), kInvalid, "rank >= 2");
  EXPECT_STATUS_IS(Matmul(a23, h34), kInvalid, "dtypes differ (a f32[2, 3] cpu, b f16[3, 4] cpu)");
  EXPECT_STATUS_IS(Matmul(i23, i34), kInvalid, "floating-point dtype, got a i32[2, 3]");
  EXPECT_STATUS_IS(Matmul(batch2, batch3), kInvalid, "batch dimensions of a f32[2, 2, 3] cpu");
  EXPECT_STATUS_IS(Matmul(Tensor(), b34), kInvalid, "undefined");

  ASSERT_OK_AND_ASSIGN(Tensor out_wrong, Tensor::Zeros({2, 5}, DType::kF32));
  EXPECT_STATUS_IS(MatmulInto(a23, b34, out_wrong), kInvalid,
                   "MatmulInto: out f32[2, 5] cpu but a f32[2, 3] cpu @ b f32[3, 4] cpu has shape "
                   "[2, 4]");
  ASSERT_OK_AND_ASSIGN(Tensor out_f64, Tensor::Zeros({2, 4}, DType::kF64));
  EXPECT_STATUS_IS(MatmulInto(a23, b34, out_f64), kInvalid, "does not have the inputs' dtype f32");
  ASSERT_OK_AND_ASSIGN(Tensor row, Tensor::Zeros({1, 4}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor out_expanded, row.Expand({2, 4}));
  EXPECT_STATUS_IS(MatmulInto(a23, b34, out_expanded), kInvalid, "broadcast (stride 0)");
  ASSERT_OK_AND_ASSIGN(Tensor square, Tensor::Zeros({4, 4}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor square_b, Tensor::Zeros({4, 4}, DType::kF32));
  EXPECT_STATUS_IS(MatmulInto(square, square_b, square), kInvalid, "overlaps an input");
  ASSERT_OK_AND_ASSIGN(Tensor square_t, square.Transpose(0, 1));
  EXPECT_STATUS_IS(MatmulInto(square_b, square, square_t), kInvalid, "overlaps an input");
}

TEST(MatmulTest, DevicesDifferIsAnError) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::Zeros({2, 3}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::Zeros({3, 4}, DType::kF32, Device::Cuda(0)));
  EXPECT_STATUS_IS(Matmul(a, b), absl::StatusCode::kInvalidArgument,
                   "tensors on different devices (cpu and cuda:0)");
  ASSERT_OK_AND_ASSIGN(Tensor a_gpu, a.To(Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor out, Tensor::Zeros({2, 4}, DType::kF32));
  EXPECT_STATUS_IS(MatmulInto(a_gpu, b, out), absl::StatusCode::kInvalidArgument,
                   "different devices");
}

TEST(MatmulTest, TransposedInputsAreNotCopiedOnCuda) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(Tensor at, Rand({64, 48}, DType::kBF16, Device::Cuda(0), 61));
  ASSERT_OK_AND_ASSIGN(Tensor bt, Rand({32, 64}, DType::kBF16, Device::Cuda(0), 62));
  ASSERT_OK_AND_ASSIGN(Tensor a, at.Transpose(0, 1));
  ASSERT_OK_AND_ASSIGN(Tensor b, bt.Transpose(0, 1));
  ASSERT_OK(Matmul(a, b).status());  // first use: handles and workspace
  cuda::CachingAllocator& allocator = cuda::CachingAllocator::ForDevice(0);
  const int64_t before = allocator.Stats().num_allocations;
  ASSERT_OK_AND_ASSIGN(Tensor out, Matmul(a, b));
  EXPECT_EQ(allocator.Stats().num_allocations - before, 1) << "only the output is allocated";
}

TEST(MatmulTest, Tf32SwitchIsOffByDefault) {
  EXPECT_FALSE(AllowTf32());
  {
    Tf32Scope scope(true);
    EXPECT_TRUE(AllowTf32());
  }
  EXPECT_FALSE(AllowTf32());
}

}  // namespace
}  // namespace lyra
