// Indexing ops and their gradients: what a forward gathers, the backward scatter-adds (repeated
// indices accumulate). Index tensors get no gradient.
#include "autograd/ops.h"
#include "autograd/ops_internal.h"
#include "base/status_macros.h"
#include "tensor/index.h"

namespace lyra::autograd {

using internal::RecordUnary;

absl::StatusOr<Variable> IndexSelect(const Variable& x, int dim, const Tensor& index) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("IndexSelect", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::IndexSelect(x.data(), dim, index));
  const Shape in = x.shape();
  return RecordUnary("IndexSelect", x, y, [=](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor dx, Tensor::Zeros(in, g.dtype(), g.device()));
    LYRA_RETURN_IF_ERROR(lyra::IndexAdd(dx, dim, index, g));
    return dx;
  });
}

absl::StatusOr<Variable> Gather(const Variable& x, int dim, const Tensor& index) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Gather", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Gather(x.data(), dim, index));
  const Shape in = x.shape();
  return RecordUnary("Gather", x, y, [=](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor dx, Tensor::Zeros(in, g.dtype(), g.device()));
    LYRA_RETURN_IF_ERROR(lyra::ScatterAdd(dx, dim, index, g));
    return dx;
  });
}

absl::StatusOr<Variable> Embedding(const Variable& weight, const Tensor& ids,
                                   int64_t padding_idx) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Embedding", {&weight}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Embedding(weight.data(), ids));
  const int64_t num_embeddings = weight.size(0);
  return RecordUnary("Embedding", weight, y, [=](const Tensor& g) {
    return lyra::EmbeddingBackward(g, ids, num_embeddings, padding_idx);
  });
}

}  // namespace lyra::autograd
