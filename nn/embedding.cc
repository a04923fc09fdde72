#include "nn/embedding.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "nn/autocast.h"
#include "nn/init.h"

namespace lyra::nn {

absl::StatusOr<std::unique_ptr<Embedding>> Embedding::Create(int64_t num_embeddings,
                                                             int64_t embedding_dim,
                                                             Generator& gen,
                                                             std::optional<int64_t> padding_idx,
                                                             DType dtype, Device device) {
  if (num_embeddings < 1 || embedding_dim < 1) {
    return absl::InvalidArgumentError(absl::StrCat("Embedding: num_embeddings = ",
                                                   num_embeddings, " and embedding_dim = ",
                                                   embedding_dim, " must be >= 1"));
  }
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Embedding: dtype ", DTypeName(dtype), " is not floating-point"));
  }
  if (padding_idx.has_value()) {
    if (*padding_idx < -num_embeddings || *padding_idx >= num_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat("Embedding: padding_idx = ", *padding_idx,
                                                     " outside [", -num_embeddings, ", ",
                                                     num_embeddings, ")"));
    }
    if (*padding_idx < 0) *padding_idx += num_embeddings;
  }
  LYRA_ASSIGN_OR_RETURN(Tensor w, Tensor::Empty({num_embeddings, embedding_dim}, dtype, device));
  LYRA_RETURN_IF_ERROR(init::Normal(w, gen, 0, 1));
  if (padding_idx.has_value()) {
    LYRA_ASSIGN_OR_RETURN(Tensor row, w.Narrow(0, *padding_idx, 1));
    LYRA_RETURN_IF_ERROR(init::Zeros(row));
  }
  return std::unique_ptr<Embedding>(
      new Embedding(num_embeddings, embedding_dim, padding_idx, std::move(w)));
}

Embedding::Embedding(int64_t num_embeddings, int64_t embedding_dim,
                     std::optional<int64_t> padding_idx, Tensor weight)
    : Module("Embedding"),
      num_embeddings_(num_embeddings),
      embedding_dim_(embedding_dim),
      padding_idx_(padding_idx) {
  weight_ = RegisterParameter("weight", std::move(weight));
}

absl::StatusOr<Variable> Embedding::Forward(const Tensor& ids) const {
  LYRA_ASSIGN_OR_RETURN(Variable rows,
                        autograd::Embedding(weight_, ids, padding_idx_.value_or(-1)));
  return ComputeInput(rows);
}

}  // namespace lyra::nn
