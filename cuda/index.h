// Indexing kernels: the gather and scatter-add of a tensor along one dimension, driven by an
// integer index tensor. Every indexing op of tensor/index.h is one of the two:
//
//   IndexGather      out[c] = src[src_offset(c) + index[index_offset(c)] * src_index_stride]
//                    (IndexSelect, Gather, Embedding)
//   IndexScatterAdd  out[out_offset(c) + index[index_offset(c)] * out_index_stride] += src[c]
//                    (IndexAdd, ScatterAdd, EmbeddingBackward)
//
// c runs over an iteration shape (the output's shape for a gather, src's for a scatter). Every
// operand is strided over that shape (cuda/strided.h): the indexed operand has stride 0 along the
// indexed dimension (the index supplies that coordinate), and the index operand has stride 0
// along every dimension it is broadcast over. So for index_select on dim 1 of x [A, B, C] with
// index [K]: shape [A, K, C], src strides (xs0, 0, xs2), index strides (0, is0, 0),
// src_index_stride xs1. Non-contiguous views need no copy.
//
// Valid indices are [0, index_bound); the op's name (`op`) is used in errors. Every index is
// checked before anything is written, on CPU and on CUDA: an out-of-range or negative index is
// InvalidArgument "<op>: index 7 is out of range [0, 5)" naming the first bad index in row-major
// order of the index tensor, and the output is left unchanged.
//
// Dtypes: indices i32 or i64. IndexGather moves bytes, so every dtype works (out and src share
// it). IndexScatterAdd is for the float dtypes, src of out's dtype or f16/bf16 src into an f32
// out (how EmbeddingBackward sums half-precision gradients in f32). Each addition is done in out's
// compute type and rounded to out's dtype (as the CUDA atomics do), so f16/bf16 outputs accumulate
// in f16/bf16. On CUDA the additions are atomicAdd in any order: float results are
// nondeterministic in their last bits when indices repeat.
#ifndef LYRA_CUDA_INDEX_H_
#define LYRA_CUDA_INDEX_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "cuda/strided.h"

namespace lyra::cuda {

struct IndexGatherParams {
  absl::string_view op = "IndexGather";  // the tensor op, for error messages
  IterShape shape;           // the output's shape
  StridedOperand out;        // written (=), same dtype as src
  StridedOperand src;        // read; stride 0 along the indexed dimension
  StridedOperand index;      // i32 or i64
  int64_t src_index_stride = 0;  // src's stride along the indexed dimension
  int64_t index_bound = 0;       // src's size along the indexed dimension
};

struct IndexScatterAddParams {
  absl::string_view op = "IndexScatterAdd";
  IterShape shape;           // src's shape (the elements added)
  StridedOperand out;        // accumulated (+=); stride 0 along the indexed dimension
  StridedOperand src;        // read, same dtype as out
  StridedOperand index;      // i32 or i64
  int64_t out_index_stride = 0;  // out's stride along the indexed dimension
  int64_t index_bound = 0;       // out's size along the indexed dimension
  // Elements whose index equals skip_index add nothing (Embedding's padding_idx); < 0: none.
  int64_t skip_index = -1;
};

// OK if the kernels handle `p`; InvalidArgument naming p.op otherwise (index dtype not i32/i64,
// out and src dtypes differ, a non-float dtype for the scatter, a negative bound).
absl::Status IndexGatherSupported(const IndexGatherParams& p);
absl::Status IndexScatterAddSupported(const IndexScatterAddParams& p);

absl::Status IndexGatherReference(const IndexGatherParams& p);
absl::Status IndexScatterAddReference(const IndexScatterAddParams& p);

// Both check the indices first with a small kernel and read the verdict back to the host: one
// host synchronization per call (the price of reporting a bad index as a Status instead of a
// device-side assert; it also makes these calls unusable inside CUDA-graph capture).
absl::Status IndexGatherCuda(const IndexGatherParams& p, cudaStream_t stream);
absl::Status IndexScatterAddCuda(const IndexScatterAddParams& p, cudaStream_t stream);

// The part of `shape` the index operand actually walks: dimensions where it has stride 0
// (broadcast) are dropped, the rest coalesced. Shared by the CPU and CUDA index checks so both
// report the same first bad index.
void IndexWalk(const IterShape& shape, const StridedOperand& index, IterShape& walk_shape,
               StridedOperand& walk_index);

// InvalidArgument "<op>: index <value> is out of range [0, <bound>)".
absl::Status IndexOutOfRange(absl::string_view op, int64_t value, int64_t bound);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_INDEX_H_
