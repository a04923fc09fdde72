// CPU reference of the batched matmul (cuda/matmul.h).
//
//   out[b, i, j] = alpha * sum_kk a[b, i, kk] * b[b, kk, j] + beta * out[b, i, j] (+ bias[j])
//
// For each batch entry, a (m x k) and b (k x n) are packed into row-major buffers of the compute
// type (f32 for f16/bf16/f32, f64 for f64), which makes the inner loop contiguous whatever the
// strides and converts each 16-bit element once. The product is then formed in i-k-j order
// over blocks of kRowBlock rows and kColBlock columns: each row of b is loaded once per
// kRowBlock rows of a, and the kRowBlock x kColBlock accumulators stay in L1. A broadcast
// operand (same matrix for consecutive batch entries) is packed once.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "cuda/matmul.h"

namespace lyra::cuda {
namespace {

constexpr int64_t kRowBlock = 4;
constexpr int64_t kColBlock = 512;

// Copies the rows x cols matrix at `src` (strides in elements) into `dst`, row-major.
template <typename T>
void PackMatrix(const T* src, int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride,
                ComputeType<T>* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = src + r * row_stride;
    ComputeType<T>* out = dst + r * cols;
    if (col_stride == 1) {
      for (int64_t c = 0; c < cols; ++c) out[c] = Load(row[c]);
    } else {
      for (int64_t c = 0; c < cols; ++c) out[c] = Load(row[c * col_stride]);
    }
  }
}

// acc[r][0, nb) += sum_kk a[r][kk] * b[kk][0, nb) for kRowBlock rows; a rows are `k` apart,
// b rows `ldb` apart, accumulator rows kColBlock apart.
template <typename C>
void AccumulateRowBlock(const C* a, const C* b, int64_t k, int64_t ldb, int64_t nb, C* acc) {
  C* __restrict c0 = acc;
  C* __restrict c1 = acc + kColBlock;
  C* __restrict c2 = acc + 2 * kColBlock;
  C* __restrict c3 = acc + 3 * kColBlock;
  static_assert(kRowBlock == 4, "AccumulateRowBlock is written for four rows");
  for (int64_t kk = 0; kk < k; ++kk) {
    const C a0 = a[kk], a1 = a[k + kk], a2 = a[2 * k + kk], a3 = a[3 * k + kk];
    const C* __restrict brow = b + kk * ldb;
    for (int64_t j = 0; j < nb; ++j) {
      const C bj = brow[j];
      c0[j] += a0 * bj;
      c1[j] += a1 * bj;
      c2[j] += a2 * bj;
      c3[j] += a3 * bj;
    }
  }
}

// acc[0, nb) += sum_kk a[kk] * b[kk][0, nb): the leftover rows of a block.
template <typename C>
void AccumulateRow(const C* a, const C* b, int64_t k, int64_t ldb, int64_t nb, C* acc) {
  C* __restrict c0 = acc;
  for (int64_t kk = 0; kk < k; ++kk) {
    const C a0 = a[kk];
    const C* __restrict brow = b + kk * ldb;
    for (int64_t j = 0; j < nb; ++j) c0[j] += a0 * brow[j];
  }
}

template <typename T>
void MatmulTyped(const MatmulParams& p) {
  using C = ComputeType<T>;
  const int64_t m = p.m, n = p.n, k = p.k;
  const C alpha = static_cast<C>(p.alpha);
  const C beta = static_cast<C>(p.beta);
  const T* bias = static_cast<const T*>(p.bias);  // (n,) or null
  std::vector<C> a_pack(static_cast<size_t>(m * k));  // (m, k) row-major
  std::vector<C> b_pack(static_cast<size_t>(k * n));  // (k, n) row-major
  std::vector<C> acc(static_cast<size_t>(kRowBlock * kColBlock));
  const T* a_packed_from = nullptr;
  const T* b_packed_from = nullptr;

  const int nb_dims = p.batch.ndim;
  int64_t index[kMaxDims] = {};
  const int64_t batch_count = p.batch.numel();
  for (int64_t batch = 0; batch < batch_count; ++batch) {
    int64_t a_offset = 0, b_offset = 0, out_offset = 0;
    for (int d = 0; d < nb_dims; ++d) {
      a_offset += index[d] * p.a.batch_strides[d];
      b_offset += index[d] * p.b.batch_strides[d];
      out_offset += index[d] * p.out.batch_strides[d];
    }
    const T* a = static_cast<const T*>(p.a.data) + a_offset;
    const T* b = static_cast<const T*>(p.b.data) + b_offset;
    T* out = static_cast<T*>(p.out.data) + out_offset;
    if (a != a_packed_from) {
      PackMatrix(a, m, k, p.a.row_stride, p.a.col_stride, a_pack.data());
      a_packed_from = a;
    }
    if (b != b_packed_from) {
      PackMatrix(b, k, n, p.b.row_stride, p.b.col_stride, b_pack.data());
      b_packed_from = b;
    }

    for (int64_t j0 = 0; j0 < n; j0 += kColBlock) {
      const int64_t nb = std::min(kColBlock, n - j0);
      for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
        const int64_t mb = std::min(kRowBlock, m - i0);
        std::fill(acc.begin(), acc.end(), C(0));
        const C* a_rows = a_pack.data() + i0 * k;
        const C* b_cols = b_pack.data() + j0;
        if (mb == kRowBlock) {
          AccumulateRowBlock(a_rows, b_cols, k, n, nb, acc.data());
        } else {
          for (int64_t r = 0; r < mb; ++r) {
            AccumulateRow(a_rows + r * k, b_cols, k, n, nb, acc.data() + r * kColBlock);
          }
        }
        for (int64_t r = 0; r < mb; ++r) {
          T* out_row = out + (i0 + r) * p.out.row_stride + j0 * p.out.col_stride;
          const C* acc_row = acc.data() + r * kColBlock;
          for (int64_t j = 0; j < nb; ++j) {
            T& o = out_row[j * p.out.col_stride];
            // beta == 0 writes without reading, as BLAS does: NaN in `out` does not propagate.
            const C prior = p.beta == 0 ? C(0) : beta * Load(o);
            const C shift = bias == nullptr ? C(0) : Load(bias[(j0 + j) * p.bias_stride]);
            o = Store<T>(alpha * acc_row[j] + prior + shift);
          }
        }
      }
    }

    for (int d = nb_dims - 1; d >= 0; --d) {  // next batch index, last dimension fastest
      if (++index[d] < p.batch.sizes[d]) break;
      index[d] = 0;
    }
  }
}

}  // namespace

absl::Status MatmulReference(const MatmulParams& params) {
  if (!IsFloating(params.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Matmul: expected a floating-point dtype, got ", DTypeName(params.dtype)));
  }
  return DispatchFloat(params.dtype, "Matmul", [&]<typename T>() -> absl::Status {
    MatmulTyped<T>(params);
    return absl::OkStatus();
  });
}

}  // namespace lyra::cuda
