// Indexing ops (tensor/index.h) against naive loops written here, on CPU and (when present) CUDA:
// every dtype, i32 and i64 indices, dims 0 / middle / last / negative, contiguous, strided and
// transposed inputs, repeated indices, padding_idx, and every error.
#include "tensor/index.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::testing::AllClose;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kF64, DType::kF16, DType::kBF16};
constexpr DType kIndexDTypes[] = {DType::kI32, DType::kI64};
constexpr Tolerance kExact = {0, 0};
constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

// --- Test data ------------------------------------------------------------------------------

// Floats in [-1, 1), integers in [-50, 50), bools about half true; deterministic in `seed`.
//
// `eighths` rounds floats to multiples of 1/8. The accumulating ops are tested with such values:
// every partial sum below 32 in magnitude is then exact in every float dtype (bf16 holds k/8 for
// |k| <= 256), and no test adds more than ~20 values into one element, so the result is exact
// whatever order the CUDA atomics add in.
absl::StatusOr<Tensor> Data(const Shape& shape, DType dtype, uint64_t seed, Device device,
                            bool eighths = false) {
  LYRA_ASSIGN_OR_RETURN(Tensor r, RandomTensor(shape, DType::kF64, seed));
  LYRA_ASSIGN_OR_RETURN(std::vector<double> v, r.ToDoubles());
  for (double& x : v) {
    if (dtype == DType::kBool) x = x > 0 ? 1 : 0;
    if (IsInteger(dtype)) x = std::floor(x * 50);
    if (eighths) x = std::floor(x * 8) / 8;
  }
  return Tensor::FromDoubles(v, shape, dtype, device);
}

enum class Layout { kContiguous, kStrided, kTransposed };
constexpr Layout kLayouts[] = {Layout::kContiguous, Layout::kStrided, Layout::kTransposed};

std::string LayoutName(Layout layout) {
  switch (layout) {
    case Layout::kContiguous: return "contiguous";
    case Layout::kStrided: return "strided";
    case Layout::kTransposed: return "transposed";
  }
  return "?";
}

// A view with t's values and `layout`: kStrided takes every other element of a buffer twice as
// long in the last dim; kTransposed stores dims 0 and last swapped (rank >= 2, else strided).
absl::StatusOr<Tensor> WithLayout(const Tensor& t, Layout layout) {
  if (layout == Layout::kContiguous || t.dim() == 0) return t.Contiguous();
  if (layout == Layout::kTransposed && t.dim() >= 2) {
    const int last = t.dim() - 1;
    LYRA_ASSIGN_OR_RETURN(Tensor swapped, t.Transpose(0, last));
    LYRA_ASSIGN_OR_RETURN(Tensor stored, swapped.Contiguous());
    return stored.Transpose(0, last);
  }
  Shape big = t.shape();
  big.back() = 2 * big.back() + 1;
  LYRA_ASSIGN_OR_RETURN(Tensor buffer, Tensor::Zeros(big, t.dtype(), t.device()));
  LYRA_ASSIGN_OR_RETURN(Tensor view, buffer.Slice(-1, 1, 2 * t.size(-1) + 1, 2));
  LYRA_RETURN_IF_ERROR(view.CopyFrom(t));
  return view;
}

// `n` indices in [0, bound) with repeats (the first value appears twice when n >= 3).
std::vector<int64_t> RandomIndices(int64_t n, int64_t bound, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> v(n);
  for (int64_t& x : v) x = static_cast<int64_t>(rng() % static_cast<uint64_t>(bound));
  if (n >= 3) v[n - 1] = v[0];
  return v;
}

absl::StatusOr<Tensor> IndexTensor(const std::vector<int64_t>& values, const Shape& shape,
                                   DType dtype, Device device) {
  std::vector<double> d(values.begin(), values.end());
  return Tensor::FromDoubles(d, shape, dtype, device);
}

std::vector<double> Values(const Tensor& t) { return t.ToDoubles().value(); }

// --- Naive index arithmetic -----------------------------------------------------------------

std::vector<int64_t> Unravel(int64_t i, const Shape& shape) {
  std::vector<int64_t> c(shape.size());
  for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
    c[d] = i % shape[d];
    i /= shape[d];
  }
  return c;
}

int64_t Ravel(const std::vector<int64_t>& c, const Shape& shape) {
  int64_t i = 0;
  for (size_t d = 0; d < shape.size(); ++d) i = i * shape[d] + c[d];
  return i;
}

int Normalize(int dim, int rank) { return dim < 0 ? dim + rank : dim; }

// The CPU, and GPU 0 when there is one.
std::vector<Device> Devices() {
  std::vector<Device> devices = {Device::Cpu()};
  if (cuda::HasGpu()) devices.push_back(Device::Cuda(0));
  return devices;
}

// --- IndexSelect ----------------------------------------------------------------------------

void CheckIndexSelect(Device device, const Shape& shape, int64_t num_indices) {
  for (DType dtype : kAllDTypes) {
    for (DType index_dtype : kIndexDTypes) {
      for (int dim_arg : {0, 1, 2, -1, -2}) {
        for (Layout layout : kLayouts) {
          SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " index ", DTypeName(index_dtype),
                                    " dim ", dim_arg, " ", LayoutName(layout)));
          const int dim = Normalize(dim_arg, static_cast<int>(shape.size()));
          ASSERT_OK_AND_ASSIGN(Tensor base, Data(shape, dtype, 1, device));
          ASSERT_OK_AND_ASSIGN(Tensor x, WithLayout(base, layout));
          const std::vector<int64_t> idx = RandomIndices(num_indices, shape[dim], 2 + dim);
          ASSERT_OK_AND_ASSIGN(Tensor index_c,
                               IndexTensor(idx, {num_indices}, index_dtype, device));
          // The index is strided whenever x is not contiguous.
          ASSERT_OK_AND_ASSIGN(Tensor index, WithLayout(index_c, layout));
          ASSERT_OK_AND_ASSIGN(Tensor out, IndexSelect(x, dim_arg, index));

          Shape out_shape = shape;
          out_shape[dim] = num_indices;
          const std::vector<double> xv = Values(base);
          std::vector<double> expected(NumElements(out_shape));
          for (int64_t i = 0; i < static_cast<int64_t>(expected.size()); ++i) {
            std::vector<int64_t> c = Unravel(i, out_shape);
            c[dim] = idx[c[dim]];
            expected[i] = xv[Ravel(c, shape)];
          }
          EXPECT_EQ(out.shape(), out_shape);
          EXPECT_EQ(out.dtype(), dtype);
          EXPECT_TRUE(AllClose(Values(out), expected, kExact));
        }
      }
    }
  }
}

TEST(IndexSelectTest, MatchesNaiveLoopCpu) { CheckIndexSelect(Device::Cpu(), {4, 5, 6}, 7); }

TEST(IndexSelectTest, MatchesNaiveLoopCuda) {
  LYRA_REQUIRE_GPU();
  CheckIndexSelect(Device::Cuda(0), {4, 5, 6}, 7);
  CheckIndexSelect(Device::Cuda(0), {3, 67, 129}, 37);  // odd sizes
}

TEST(IndexSelectTest, ZeroDimIndexAndEmptyIndex) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::FromDoubles({1, 2, 3, 4, 5, 6}, {2, 3}, DType::kF32,
                                                       device));
    ASSERT_OK_AND_ASSIGN(Tensor scalar, Tensor::Scalar(2, DType::kI64, device));
    ASSERT_OK_AND_ASSIGN(Tensor picked, IndexSelect(x, 1, scalar));
    EXPECT_EQ(picked.shape(), (Shape{2, 1}));
    EXPECT_EQ(Values(picked), (std::vector<double>{3, 6}));
    ASSERT_OK_AND_ASSIGN(Tensor none, Tensor::Empty({0}, DType::kI32, device));
    ASSERT_OK_AND_ASSIGN(Tensor empty, IndexSelect(x, 0, none));
    EXPECT_EQ(empty.shape(), (Shape{0, 3}));
  }
}

// --- IndexAdd -------------------------------------------------------------------------------

void CheckIndexAdd(Device device, const Shape& shape, int64_t num_indices) {
  for (DType dtype : kFloatDTypes) {
    for (DType index_dtype : kIndexDTypes) {
      for (int dim_arg : {0, 1, 2, -1, -3}) {
        for (Layout layout : kLayouts) {
          SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " index ", DTypeName(index_dtype),
                                    " dim ", dim_arg, " ", LayoutName(layout)));
          const int dim = Normalize(dim_arg, static_cast<int>(shape.size()));
          Shape src_shape = shape;
          src_shape[dim] = num_indices;
          ASSERT_OK_AND_ASSIGN(Tensor out_base, Data(shape, dtype, 3, device, /*eighths=*/true));
          ASSERT_OK_AND_ASSIGN(Tensor src_base,
                               Data(src_shape, dtype, 4, device, /*eighths=*/true));
          // Many repeats: num_indices > shape[dim] for most dims.
          const std::vector<int64_t> idx = RandomIndices(num_indices, shape[dim], 5 + dim);
          ASSERT_OK_AND_ASSIGN(Tensor index_c,
                               IndexTensor(idx, {num_indices}, index_dtype, device));
          ASSERT_OK_AND_ASSIGN(Tensor index, WithLayout(index_c, layout));
          ASSERT_OK_AND_ASSIGN(Tensor out, WithLayout(out_base, layout));  // `out` is a view
          ASSERT_OK_AND_ASSIGN(Tensor src, WithLayout(src_base, layout));

          std::vector<double> expected = Values(out_base);
          const std::vector<double> sv = Values(src_base);
          for (int64_t i = 0; i < static_cast<int64_t>(sv.size()); ++i) {
            std::vector<int64_t> c = Unravel(i, src_shape);
            c[dim] = idx[c[dim]];
            expected[Ravel(c, shape)] += sv[i];
          }
          ASSERT_OK(IndexAdd(out, dim_arg, index, src));
          EXPECT_TRUE(AllClose(Values(out), expected, kExact));
        }
      }
    }
  }
}

TEST(IndexAddTest, RepeatedIndicesAccumulateCpu) { CheckIndexAdd(Device::Cpu(), {3, 4, 5}, 9); }

TEST(IndexAddTest, RepeatedIndicesAccumulateCuda) {
  LYRA_REQUIRE_GPU();
  CheckIndexAdd(Device::Cuda(0), {3, 4, 5}, 9);
  CheckIndexAdd(Device::Cuda(0), {17, 33, 65}, 129);
}

TEST(IndexAddTest, ExactSmallCase) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(Tensor out, Tensor::Zeros({3, 2}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor index, IndexTensor({2, 0, 2, 2}, {4}, DType::kI32, device));
    ASSERT_OK_AND_ASSIGN(Tensor src, Tensor::FromDoubles({1, 2, 3, 4, 5, 6, 7, 8}, {4, 2},
                                                         DType::kF32, device));
    ASSERT_OK(IndexAdd(out, 0, index, src));
    EXPECT_EQ(Values(out), (std::vector<double>{3, 4, 0, 0, 1 + 5 + 7, 2 + 6 + 8}));
  }
}

// --- Gather ---------------------------------------------------------------------------------

void CheckGather(Device device, const Shape& shape, const Shape& index_shape_base) {
  for (DType dtype : kAllDTypes) {
    for (DType index_dtype : kIndexDTypes) {
      for (int dim_arg : {0, 1, 2, -1}) {
        for (Layout layout : kLayouts) {
          SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " index ", DTypeName(index_dtype),
                                    " dim ", dim_arg, " ", LayoutName(layout)));
          const int dim = Normalize(dim_arg, static_cast<int>(shape.size()));
          // index.size(d) <= x.size(d) off `dim`; any size along `dim`.
          Shape index_shape = index_shape_base;
          index_shape[dim] = shape[dim] + 2;
          ASSERT_OK_AND_ASSIGN(Tensor base, Data(shape, dtype, 6, device));
          ASSERT_OK_AND_ASSIGN(Tensor x, WithLayout(base, layout));
          const std::vector<int64_t> idx =
              RandomIndices(NumElements(index_shape), shape[dim], 7 + dim);
          ASSERT_OK_AND_ASSIGN(Tensor index_c, IndexTensor(idx, index_shape, index_dtype, device));
          ASSERT_OK_AND_ASSIGN(Tensor index, WithLayout(index_c, layout));
          ASSERT_OK_AND_ASSIGN(Tensor out, Gather(x, dim_arg, index));

          const std::vector<double> xv = Values(base);
          std::vector<double> expected(idx.size());
          for (int64_t i = 0; i < static_cast<int64_t>(idx.size()); ++i) {
            std::vector<int64_t> c = Unravel(i, index_shape);
            c[dim] = idx[i];
            expected[i] = xv[Ravel(c, shape)];
          }
          EXPECT_EQ(out.shape(), index_shape);
          EXPECT_TRUE(AllClose(Values(out), expected, kExact));
        }
      }
    }
  }
}

TEST(GatherTest, MatchesNaiveLoopCpu) { CheckGather(Device::Cpu(), {4, 5, 6}, {3, 4, 5}); }

TEST(GatherTest, MatchesNaiveLoopCuda) {
  LYRA_REQUIRE_GPU();
  CheckGather(Device::Cuda(0), {4, 5, 6}, {3, 4, 5});
  CheckGather(Device::Cuda(0), {9, 31, 133}, {9, 30, 131});
}

// --- ScatterAdd -----------------------------------------------------------------------------

void CheckScatterAdd(Device device, const Shape& shape, const Shape& src_shape,
                     const Shape& index_shape_base) {
  for (DType dtype : kFloatDTypes) {
    for (DType index_dtype : kIndexDTypes) {
      for (int dim_arg : {0, 1, 2, -2}) {
        for (Layout layout : kLayouts) {
          SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " index ", DTypeName(index_dtype),
                                    " dim ", dim_arg, " ", LayoutName(layout)));
          const int dim = Normalize(dim_arg, static_cast<int>(shape.size()));
          // index <= src everywhere, <= out off `dim`.
          Shape index_shape = index_shape_base;
          index_shape[dim] = src_shape[dim];
          ASSERT_OK_AND_ASSIGN(Tensor out_base, Data(shape, dtype, 8, device, /*eighths=*/true));
          ASSERT_OK_AND_ASSIGN(Tensor src_base,
                               Data(src_shape, dtype, 9, device, /*eighths=*/true));
          const std::vector<int64_t> idx =
              RandomIndices(NumElements(index_shape), shape[dim], 10 + dim);
          ASSERT_OK_AND_ASSIGN(Tensor index_c, IndexTensor(idx, index_shape, index_dtype, device));
          ASSERT_OK_AND_ASSIGN(Tensor index, WithLayout(index_c, layout));
          ASSERT_OK_AND_ASSIGN(Tensor out, WithLayout(out_base, layout));
          ASSERT_OK_AND_ASSIGN(Tensor src, WithLayout(src_base, layout));

          std::vector<double> expected = Values(out_base);
          const std::vector<double> sv = Values(src_base);
          for (int64_t i = 0; i < static_cast<int64_t>(idx.size()); ++i) {
            std::vector<int64_t> c = Unravel(i, index_shape);
            const double v = sv[Ravel(c, src_shape)];
            c[dim] = idx[i];
            expected[Ravel(c, shape)] += v;
          }
          ASSERT_OK(ScatterAdd(out, dim_arg, index, src));
          EXPECT_TRUE(AllClose(Values(out), expected, kExact));
        }
      }
    }
  }
}

TEST(ScatterAddTest, RepeatedIndicesAccumulateCpu) {
  CheckScatterAdd(Device::Cpu(), {4, 5, 6}, {5, 7, 6}, {3, 4, 5});
}

TEST(ScatterAddTest, RepeatedIndicesAccumulateCuda) {
  LYRA_REQUIRE_GPU();
  CheckScatterAdd(Device::Cuda(0), {4, 5, 6}, {5, 7, 6}, {3, 4, 5});
  CheckScatterAdd(Device::Cuda(0), {13, 27, 70}, {13, 41, 71}, {11, 25, 69});
}

// --- Embedding ------------------------------------------------------------------------------

void CheckEmbedding(Device device, int64_t vocab, int64_t d_model, const Shape& ids_shape,
                    absl::Span<const DType> dtypes) {
  for (DType dtype : dtypes) {
    for (DType index_dtype : kIndexDTypes) {
      for (Layout layout : kLayouts) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ids ", DTypeName(index_dtype), " ",
                                  LayoutName(layout)));
        ASSERT_OK_AND_ASSIGN(Tensor weight_base, Data({vocab, d_model}, dtype, 11, device));
        ASSERT_OK_AND_ASSIGN(Tensor weight, WithLayout(weight_base, layout));
        const std::vector<int64_t> idv = RandomIndices(NumElements(ids_shape), vocab, 12);
        ASSERT_OK_AND_ASSIGN(Tensor ids_c, IndexTensor(idv, ids_shape, index_dtype, device));
        ASSERT_OK_AND_ASSIGN(Tensor ids, WithLayout(ids_c, layout));
        ASSERT_OK_AND_ASSIGN(Tensor out, Embedding(weight, ids));

        Shape out_shape = ids_shape;
        out_shape.push_back(d_model);
        const std::vector<double> wv = Values(weight_base);
        std::vector<double> expected;
        for (int64_t id : idv) {
          for (int64_t d = 0; d < d_model; ++d) expected.push_back(wv[id * d_model + d]);
        }
        EXPECT_EQ(out.shape(), out_shape);
        EXPECT_TRUE(AllClose(Values(out), expected, kExact));
      }
    }
  }
}

TEST(EmbeddingTest, MatchesNaiveLoopCpu) {
  CheckEmbedding(Device::Cpu(), 11, 7, {3, 4}, kAllDTypes);
  CheckEmbedding(Device::Cpu(), 5, 3, {2, 3, 2}, kAllDTypes);
}

TEST(EmbeddingTest, MatchesNaiveLoopCuda) {
  LYRA_REQUIRE_GPU();
  CheckEmbedding(Device::Cuda(0), 11, 7, {3, 4}, kAllDTypes);
  CheckEmbedding(Device::Cuda(0), 1001, 771, {5, 37}, kFloatDTypes);
}

TEST(EmbeddingTest, ZeroDimIds) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(Tensor weight, Tensor::FromDoubles({1, 2, 3, 4, 5, 6}, {3, 2},
                                                            DType::kBF16, device));
    ASSERT_OK_AND_ASSIGN(Tensor id, Tensor::Scalar(1, DType::kI32, device));
    ASSERT_OK_AND_ASSIGN(Tensor row, Embedding(weight, id));
    EXPECT_EQ(row.shape(), (Shape{2}));
    EXPECT_EQ(Values(row), (std::vector<double>{3, 4}));
  }
}

// --- EmbeddingBackward ----------------------------------------------------------------------

void CheckEmbeddingBackward(Device device, int64_t vocab, int64_t d_model, const Shape& ids_shape) {
  for (DType dtype : kFloatDTypes) {
    for (DType index_dtype : kIndexDTypes) {
      for (Layout layout : kLayouts) {
        const std::vector<int64_t> idv = RandomIndices(NumElements(ids_shape), vocab, 13);
        for (int64_t padding_idx : {int64_t{-1}, idv[0], vocab - 1}) {
          SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ids ", DTypeName(index_dtype), " ",
                                    LayoutName(layout), " padding_idx ", padding_idx));
          Shape grad_shape = ids_shape;
          grad_shape.push_back(d_model);
          ASSERT_OK_AND_ASSIGN(Tensor grad_base,
                               Data(grad_shape, dtype, 14, device, /*eighths=*/true));
          ASSERT_OK_AND_ASSIGN(Tensor grad, WithLayout(grad_base, layout));
          ASSERT_OK_AND_ASSIGN(Tensor ids_c, IndexTensor(idv, ids_shape, index_dtype, device));
          ASSERT_OK_AND_ASSIGN(Tensor ids, WithLayout(ids_c, layout));
          ASSERT_OK_AND_ASSIGN(Tensor dweight, EmbeddingBackward(grad, ids, vocab, padding_idx));

          const std::vector<double> gv = Values(grad_base);
          std::vector<double> expected(vocab * d_model, 0.0);
          for (size_t i = 0; i < idv.size(); ++i) {
            if (idv[i] == padding_idx) continue;
            for (int64_t d = 0; d < d_model; ++d) {
              expected[idv[i] * d_model + d] += gv[i * d_model + d];
            }
          }
          EXPECT_EQ(dweight.shape(), (Shape{vocab, d_model}));
          EXPECT_EQ(dweight.dtype(), dtype);
          EXPECT_TRUE(AllClose(Values(dweight), expected, kExact));
          if (padding_idx >= 0) {
            const std::vector<double> dv = Values(dweight);
            for (int64_t d = 0; d < d_model; ++d) EXPECT_EQ(dv[padding_idx * d_model + d], 0.0);
          }
        }
      }
    }
  }
}

TEST(EmbeddingBackwardTest, RepeatedIdsAccumulateAndPaddingGetsNoneCpu) {
  CheckEmbeddingBackward(Device::Cpu(), 6, 5, {4, 5});
}

TEST(EmbeddingBackwardTest, RepeatedIdsAccumulateAndPaddingGetsNoneCuda) {
  LYRA_REQUIRE_GPU();
  CheckEmbeddingBackward(Device::Cuda(0), 6, 5, {4, 5});
  CheckEmbeddingBackward(Device::Cuda(0), 997, 129, {3, 211});
}

// "mamba-130m": vocab 50280, d_model 768, a batch of 2 x 512 tokens; GPU vs the CPU path.
TEST(EmbeddingBackwardTest, Mamba130mGpuMatchesCpu) {
  LYRA_REQUIRE_GPU();
  constexpr int64_t kVocab = 50280, kDModel = 768;
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    ASSERT_OK_AND_ASSIGN(Tensor weight, Data({kVocab, kDModel}, dtype, 15, Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(Tensor ids,
                         IndexTensor(RandomIndices(2 * 512, 1000, 16), {2, 512}, DType::kI64,
                                     Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(Tensor grad,
                         Data({2, 512, kDModel}, dtype, 17, Device::Cpu(), /*eighths=*/true));
    ASSERT_OK_AND_ASSIGN(Tensor weight_gpu, weight.To(Device::Cuda(0)));
    ASSERT_OK_AND_ASSIGN(Tensor ids_gpu, ids.To(Device::Cuda(0)));
    ASSERT_OK_AND_ASSIGN(Tensor grad_gpu, grad.To(Device::Cuda(0)));

    ASSERT_OK_AND_ASSIGN(Tensor out_cpu, Embedding(weight, ids));
    ASSERT_OK_AND_ASSIGN(Tensor out_gpu, Embedding(weight_gpu, ids_gpu));
    EXPECT_TRUE(AllClose(out_gpu, out_cpu, kExact));

    ASSERT_OK_AND_ASSIGN(Tensor dw_cpu, EmbeddingBackward(grad, ids, kVocab, 0));
    ASSERT_OK_AND_ASSIGN(Tensor dw_gpu, EmbeddingBackward(grad_gpu, ids_gpu, kVocab, 0));
    EXPECT_TRUE(AllClose(dw_gpu, dw_cpu, kExact));
  }
}

// --- Concat, Split --------------------------------------------------------------------------

void CheckConcat(Device device) {
  for (DType dtype : kAllDTypes) {
    for (int dim_arg : {0, 1, 2, -1}) {
      for (Layout layout : kLayouts) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " dim ", dim_arg, " ", LayoutName(layout)));
        const Shape shape = {3, 4, 5};
        const int dim = Normalize(dim_arg, 3);
        const std::vector<int64_t> lengths = {2, 0, 3, 1};  // one empty input
        std::vector<Tensor> xs;
        std::vector<std::vector<double>> values;
        std::vector<Shape> shapes;
        for (size_t k = 0; k < lengths.size(); ++k) {
          Shape s = shape;
          s[dim] = lengths[k];
          ASSERT_OK_AND_ASSIGN(Tensor base, Data(s, dtype, 20 + k, device));
          // Only every other input takes the layout: mixed layouts in one call.
          ASSERT_OK_AND_ASSIGN(Tensor x,
                               WithLayout(base, k % 2 == 0 ? layout : Layout::kContiguous));
          xs.push_back(x);
          values.push_back(Values(base));
          shapes.push_back(s);
        }
        ASSERT_OK_AND_ASSIGN(Tensor out, Concat(xs, dim_arg));
        Shape out_shape = shape;
        out_shape[dim] = 6;
        ASSERT_EQ(out.shape(), out_shape);
        std::vector<double> expected(NumElements(out_shape));
        for (int64_t i = 0; i < static_cast<int64_t>(expected.size()); ++i) {
          std::vector<int64_t> c = Unravel(i, out_shape);
          size_t k = 0;
          while (c[dim] >= lengths[k]) c[dim] -= lengths[k++];
          expected[i] = values[k][Ravel(c, shapes[k])];
        }
        EXPECT_TRUE(AllClose(Values(out), expected, kExact));

        // Split inverts it, as views of `out`.
        ASSERT_OK_AND_ASSIGN(std::vector<Tensor> pieces, Split(out, lengths, dim_arg));
        ASSERT_EQ(pieces.size(), lengths.size());
        for (size_t k = 0; k < pieces.size(); ++k) {
          EXPECT_EQ(pieces[k].shape(), shapes[k]);
          EXPECT_EQ(pieces[k].storage(), out.storage());
          EXPECT_TRUE(AllClose(Values(pieces[k]), values[k], kExact));
        }
      }
    }
  }
}

TEST(ConcatTest, MatchesNaiveLoopAndSplitInvertsItCpu) { CheckConcat(Device::Cpu()); }

TEST(ConcatTest, MatchesNaiveLoopAndSplitInvertsItCuda) {
  LYRA_REQUIRE_GPU();
  CheckConcat(Device::Cuda(0));
}

TEST(SplitTest, SplitEvenlyLastChunkSmallerAndViewsShareStorage) {
  for (Device device : Devices()) {
    ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Arange(0, 14, 1, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor x2, x.View({2, 7}));
    ASSERT_OK_AND_ASSIGN(std::vector<Tensor> chunks, SplitEvenly(x2, 3, -1));
    ASSERT_EQ(chunks.size(), 3u);
    EXPECT_EQ(chunks[0].shape(), (Shape{2, 3}));
    EXPECT_EQ(chunks[2].shape(), (Shape{2, 1}));
    EXPECT_EQ(Values(chunks[1]), (std::vector<double>{3, 4, 5, 10, 11, 12}));
    EXPECT_EQ(Values(chunks[2]), (std::vector<double>{6, 13}));
    ASSERT_OK(chunks[2].Fill(-1));  // a view: writes reach x
    ASSERT_OK_AND_ASSIGN(double last, x.Narrow(0, 13, 1).value().Item());
    EXPECT_EQ(last, -1);

    ASSERT_OK_AND_ASSIGN(std::vector<Tensor> rows, SplitEvenly(x2, 1, 0));
    ASSERT_EQ(rows.size(), 2u);
    ASSERT_OK_AND_ASSIGN(std::vector<Tensor> whole, SplitEvenly(x2, 10, 1));
    ASSERT_EQ(whole.size(), 1u);
    EXPECT_EQ(whole[0].shape(), (Shape{2, 7}));

    ASSERT_OK_AND_ASSIGN(Tensor empty, Tensor::Empty({0, 3}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(std::vector<Tensor> one, SplitEvenly(empty, 2, 0));
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].shape(), (Shape{0, 3}));
  }
}

// --- Errors ---------------------------------------------------------------------------------

void CheckErrors(Device device) {
  ASSERT_OK_AND_ASSIGN(Tensor x, Data({3, 5}, DType::kF32, 30, device));
  ASSERT_OK_AND_ASSIGN(Tensor bad, IndexTensor({0, 7, 2, 9}, {4}, DType::kI64, device));
  ASSERT_OK_AND_ASSIGN(Tensor negative, IndexTensor({1, -1}, {2}, DType::kI32, device));
  ASSERT_OK_AND_ASSIGN(Tensor good, IndexTensor({0, 2}, {2}, DType::kI32, device));
  ASSERT_OK_AND_ASSIGN(Tensor float_index, Tensor::Zeros({2}, DType::kF32, device));
  ASSERT_OK_AND_ASSIGN(Tensor matrix_index, Tensor::Zeros({2, 2}, DType::kI64, device));

  // IndexSelect: the first bad index, its value and the valid range.
  EXPECT_STATUS_IS(IndexSelect(x, 1, bad), kInvalid, "IndexSelect: index 7 is out of range [0, 5)");
  EXPECT_STATUS_IS(IndexSelect(x, 1, bad), kInvalid, "f32[3, 5]");
  EXPECT_STATUS_IS(IndexSelect(x, 0, negative), kInvalid, "index -1 is out of range [0, 3)");
  EXPECT_STATUS_IS(IndexSelect(x, 0, float_index), kInvalid, "i32 or i64");
  EXPECT_STATUS_IS(IndexSelect(x, 0, matrix_index), kInvalid, "0-D or 1-D");
  EXPECT_STATUS_IS(IndexSelect(x, 2, good), kInvalid, "IndexSelect: dimension 2");
  ASSERT_OK_AND_ASSIGN(Tensor scalar, Tensor::Scalar(1, DType::kF32, device));
  EXPECT_STATUS_IS(IndexSelect(scalar, 0, good), kInvalid, "rank >= 1");
  EXPECT_STATUS_IS(Concat({scalar, scalar}, 0), kInvalid, "rank >= 1");

  // IndexAdd: errors leave `out` unchanged.
  {
    ASSERT_OK_AND_ASSIGN(Tensor out, Tensor::Zeros({3, 5}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor src, Tensor::Ones({3, 4}, DType::kF32, device));
    EXPECT_STATUS_IS(IndexAdd(out, 1, bad, src), kInvalid,
                     "IndexAdd: index 7 is out of range [0, 5)");
    EXPECT_EQ(Values(out), std::vector<double>(15, 0.0));
    ASSERT_OK_AND_ASSIGN(Tensor src2, Tensor::Ones({2, 5}, DType::kF32, device));
    EXPECT_STATUS_IS(IndexAdd(out, 0, negative, src2), kInvalid, "index -1");
    EXPECT_EQ(Values(out), std::vector<double>(15, 0.0));
    EXPECT_STATUS_IS(IndexAdd(out, 0, good, src), kInvalid, "must have shape [2, 5]");
    EXPECT_STATUS_IS(IndexAdd(out, 0, float_index, src2), kInvalid, "i32 or i64");
    EXPECT_STATUS_IS(IndexAdd(out, 0, matrix_index, src2), kInvalid, "0-D or 1-D");
    ASSERT_OK_AND_ASSIGN(Tensor src_f64, Tensor::Ones({2, 5}, DType::kF64, device));
    EXPECT_STATUS_IS(IndexAdd(out, 0, good, src_f64), kInvalid, "differ in dtype");
    ASSERT_OK_AND_ASSIGN(Tensor out_int, Tensor::Zeros({3, 5}, DType::kI32, device));
    ASSERT_OK_AND_ASSIGN(Tensor src_int, Tensor::Zeros({2, 5}, DType::kI32, device));
    EXPECT_STATUS_IS(IndexAdd(out_int, 0, good, src_int), kInvalid, "floating-point");
  }

  // Gather.
  {
    ASSERT_OK_AND_ASSIGN(Tensor idx, IndexTensor({0, 1, 4, 5, 2, 3}, {3, 2}, DType::kI64, device));
    EXPECT_STATUS_IS(Gather(x, 1, idx), kInvalid, "Gather: index 5 is out of range [0, 5)");
    ASSERT_OK_AND_ASSIGN(Tensor neg, IndexTensor({0, -3, 1, 1}, {2, 2}, DType::kI32, device));
    EXPECT_STATUS_IS(Gather(x, 0, neg), kInvalid, "index -3 is out of range [0, 3)");
    EXPECT_STATUS_IS(Gather(x, 0, good), kInvalid, "must have the rank");
    ASSERT_OK_AND_ASSIGN(Tensor wide, Tensor::Zeros({2, 6}, DType::kI64, device));
    EXPECT_STATUS_IS(Gather(x, 0, wide), kInvalid, "larger than x");
    ASSERT_OK_AND_ASSIGN(Tensor float_idx, Tensor::Zeros({2, 2}, DType::kF32, device));
    EXPECT_STATUS_IS(Gather(x, 0, float_idx), kInvalid, "i32 or i64");
  }

  // ScatterAdd.
  {
    ASSERT_OK_AND_ASSIGN(Tensor out, Tensor::Zeros({3, 5}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor src, Tensor::Ones({3, 5}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor idx, IndexTensor({0, 3, 1, 2}, {2, 2}, DType::kI64, device));
    EXPECT_STATUS_IS(ScatterAdd(out, 0, idx, src), kInvalid,
                     "ScatterAdd: index 3 is out of range [0, 3)");
    EXPECT_EQ(Values(out), std::vector<double>(15, 0.0));
    ASSERT_OK_AND_ASSIGN(Tensor neg, IndexTensor({0, -2}, {1, 2}, DType::kI32, device));
    EXPECT_STATUS_IS(ScatterAdd(out, 1, neg, src), kInvalid, "index -2");
    EXPECT_STATUS_IS(ScatterAdd(out, 0, good, src), kInvalid, "one rank");
    ASSERT_OK_AND_ASSIGN(Tensor big, Tensor::Zeros({4, 5}, DType::kI64, device));
    EXPECT_STATUS_IS(ScatterAdd(out, 1, big, src), kInvalid, "larger than src");
    ASSERT_OK_AND_ASSIGN(Tensor float_idx, Tensor::Zeros({2, 2}, DType::kF32, device));
    EXPECT_STATUS_IS(ScatterAdd(out, 0, float_idx, src), kInvalid, "i32 or i64");
    ASSERT_OK_AND_ASSIGN(Tensor out_bool, Tensor::Zeros({3, 5}, DType::kBool, device));
    ASSERT_OK_AND_ASSIGN(Tensor src_bool, Tensor::Zeros({3, 5}, DType::kBool, device));
    EXPECT_STATUS_IS(ScatterAdd(out_bool, 0, idx, src_bool), kInvalid, "floating-point");
  }

  // Embedding and its backward.
  {
    ASSERT_OK_AND_ASSIGN(Tensor ids, IndexTensor({1, 2, 3, 0}, {2, 2}, DType::kI32, device));
    EXPECT_STATUS_IS(Embedding(x, ids), kInvalid, "Embedding: index 3 is out of range [0, 3)");
    ASSERT_OK_AND_ASSIGN(Tensor neg_ids, IndexTensor({-1}, {1}, DType::kI64, device));
    EXPECT_STATUS_IS(Embedding(x, neg_ids), kInvalid, "index -1 is out of range [0, 3)");
    EXPECT_STATUS_IS(Embedding(x, float_index), kInvalid, "i32 or i64");
    ASSERT_OK_AND_ASSIGN(Tensor w3, Tensor::Zeros({2, 2, 2}, DType::kF32, device));
    EXPECT_STATUS_IS(Embedding(w3, good), kInvalid, "[V, D]");

    ASSERT_OK_AND_ASSIGN(Tensor grad, Tensor::Ones({2, 2, 4}, DType::kF32, device));
    EXPECT_STATUS_IS(EmbeddingBackward(grad, ids, 3), kInvalid,
                     "EmbeddingBackward: index 3 is out of range [0, 3)");
    EXPECT_STATUS_IS(EmbeddingBackward(grad, ids, 4, 4), kInvalid, "padding_idx 4");
    EXPECT_STATUS_IS(EmbeddingBackward(grad, good, 4), kInvalid, "[ids..., D]");
    EXPECT_STATUS_IS(EmbeddingBackward(grad, float_index, 4), kInvalid, "i32 or i64");
    ASSERT_OK_AND_ASSIGN(Tensor grad_int, Tensor::Ones({2, 2, 4}, DType::kI32, device));
    EXPECT_STATUS_IS(EmbeddingBackward(grad_int, ids, 4), kInvalid, "floating-point");
  }

  // Concat and Split.
  {
    ASSERT_OK_AND_ASSIGN(Tensor a, Tensor::Zeros({2, 3}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor b, Tensor::Zeros({2, 4}, DType::kF32, device));
    ASSERT_OK_AND_ASSIGN(Tensor c, Tensor::Zeros({2, 3}, DType::kF64, device));
    ASSERT_OK_AND_ASSIGN(Tensor d, Tensor::Zeros({2, 3, 1}, DType::kF32, device));
    EXPECT_STATUS_IS(Concat({a, b}, 0), kInvalid, "input 1 f32[2, 4]");
    EXPECT_OK(Concat({a, b}, 1).status());
    EXPECT_STATUS_IS(Concat({a, c}, 0), kInvalid, "input 1 f64[2, 3]");
    EXPECT_STATUS_IS(Concat({a, d}, 0), kInvalid, "does not match input 0");
    EXPECT_STATUS_IS(Concat({}, 0), kInvalid, "no tensors");
    EXPECT_STATUS_IS(Concat({a, Tensor()}, 0), kInvalid, "input 1 is undefined");
    EXPECT_STATUS_IS(Concat({a}, 2), kInvalid, "Concat");
    EXPECT_STATUS_IS(Split(b, {1, 2}, 1), kInvalid, "sizes sum to 3, but dim 1");
    EXPECT_STATUS_IS(Split(b, {5, -1}, 1), kInvalid, "negative size -1");
    EXPECT_STATUS_IS(SplitEvenly(b, 0, 1), kInvalid, "chunk_size must be positive");
    EXPECT_STATUS_IS(SplitEvenly(b, 2, 3), kInvalid, "SplitEvenly");
  }
}

TEST(IndexErrorsTest, EveryErrorIsInvalidArgumentCpu) { CheckErrors(Device::Cpu()); }

TEST(IndexErrorsTest, EveryErrorIsInvalidArgumentCuda) {
  LYRA_REQUIRE_GPU();
  CheckErrors(Device::Cuda(0));
}

TEST(IndexErrorsTest, DevicesMustMatch) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(Tensor x, Tensor::Zeros({3, 5}, DType::kF32, Device::Cpu()));
  ASSERT_OK_AND_ASSIGN(Tensor index, IndexTensor({0}, {1}, DType::kI64, Device::Cuda(0)));
  EXPECT_STATUS_IS(IndexSelect(x, 0, index), kInvalid, "different devices");
  ASSERT_OK_AND_ASSIGN(Tensor y, Tensor::Zeros({3, 5}, DType::kF32, Device::Cuda(0)));
  EXPECT_STATUS_IS(Concat({x, y}, 0), kInvalid, "does not match input 0");
}

}  // namespace
}  // namespace lyra
