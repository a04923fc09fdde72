// Indexing ops, on CPU and CUDA, with PyTorch's semantics: index_select, index_add_, gather,
// scatter_add_, embedding lookup and its gradient, cat, split.
//
// Index tensors are i32 or i64 and may be non-contiguous views, as may every other input. An index
// outside [0, size) (negative included) is InvalidArgument naming the op, the bad value and the
// valid range; it is detected before anything is written, so an in-place op leaves `out`
// unchanged. On CUDA that check costs one host synchronization per call (cuda/index.h).
//
// Gathers (IndexSelect, Gather, Embedding) take every dtype. The accumulating ops (IndexAdd,
// ScatterAdd, EmbeddingBackward) take the float dtypes; on CUDA they use atomicAdd, so the order
// in which repeated indices accumulate, and hence the rounding, is nondeterministic.
#ifndef LYRA_TENSOR_INDEX_H_
#define LYRA_TENSOR_INDEX_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tensor/tensor.h"

namespace lyra {

// x.index_select(dim, index): index is a 0-D or 1-D i32/i64 tensor; the result (contiguous) is x's
// shape with index.numel() at `dim`, result[..., i, ...] = x[..., index[i], ...].
absl::StatusOr<Tensor> IndexSelect(const Tensor& x, int dim, const Tensor& index);

// out.index_add_(dim, index, src): out[..., index[i], ...] += src[..., i, ...], in place; repeated
// indices accumulate. src has out's shape except src.size(dim) == index.numel(); same dtype (a
// float type). `out` may be a view; it must not overlap src or index.
absl::Status IndexAdd(const Tensor& out, int dim, const Tensor& index, const Tensor& src);

// torch.gather(x, dim, index): result[i][j][k] = x[i][index[i][j][k]][k] for dim 1, etc. index
// has x's rank and index.size(d) <= x.size(d) for d != dim; the result has index's shape.
absl::StatusOr<Tensor> Gather(const Tensor& x, int dim, const Tensor& index);

// out.scatter_add_(dim, index, src): out[i][index[i][j][k]][k] += src[i][j][k] for dim 1, etc.,
// in place; repeated indices accumulate. index, src and out have one rank, index.size(d) <=
// src.size(d) for every d and <= out.size(d) for d != dim. Float dtypes; out must not overlap src
// or index.
absl::Status ScatterAdd(const Tensor& out, int dim, const Tensor& index, const Tensor& src);

// Embedding lookup: weight [V, D], ids of any shape (i32/i64) -> [ids..., D].
absl::StatusOr<Tensor> Embedding(const Tensor& weight, const Tensor& ids);

// The gradient of Embedding with respect to weight: dweight [V, D] = zeros, plus each row of grad
// [ids..., D] added at row ids[...]; rows whose id equals padding_idx (when >= 0) get no gradient,
// as torch.nn.Embedding(padding_idx=...). dweight has grad's dtype; for f16/bf16 the sums are
// accumulated in f32 and rounded once.
absl::StatusOr<Tensor> EmbeddingBackward(const Tensor& grad, const Tensor& ids,
                                         int64_t num_embeddings, int64_t padding_idx = -1);

// torch.cat along dim: every input has one dtype, device and rank and equal sizes outside `dim`.
// One strided-copy kernel per non-empty input.
absl::StatusOr<Tensor> Concat(const std::vector<Tensor>& xs, int dim);

// The inverse of Concat, as views of x (no copy): pieces of the given sizes along `dim`, which
// must be non-negative and sum to x.size(dim).
absl::StatusOr<std::vector<Tensor>> Split(const Tensor& x, const std::vector<int64_t>& sizes,
                                          int dim);

// torch.split(x, chunk_size, dim): views of chunk_size along `dim`; the last may be smaller. A
// dimension of size 0 gives one empty view.
absl::StatusOr<std::vector<Tensor>> SplitEvenly(const Tensor& x, int64_t chunk_size, int dim);

}  // namespace lyra

#endif  // LYRA_TENSOR_INDEX_H_
