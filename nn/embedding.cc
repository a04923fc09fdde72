#include "nn/embedding.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "nn/autocast.h"
#include "nn/functional_linear.h"
#include "nn/init.h"
#include "tensor/elementwise.h"
#include "tensor/matmul.h"

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
  LYRA_ASSIGN_OR_RETURN(Variable base, ComputeInput(rows));
  const LoraFactors* lora = active_lora();
  if (lora == nullptr) return base;
  // PEFT: after_A = F.embedding(x, A.T, padding_idx); base + (after_A @ B.T) * scaling.
  LYRA_ASSIGN_OR_RETURN(Variable a_t, autograd::Transpose(lora->A, 0, 1));  // [V, r]
  LYRA_ASSIGN_OR_RETURN(Variable after_a,
                        autograd::Embedding(a_t, ids, padding_idx_.value_or(-1)));
  LYRA_ASSIGN_OR_RETURN(Variable after_a_c, ComputeInput(after_a));
  LYRA_ASSIGN_OR_RETURN(Variable b, ComputeWeight(lora->B));                // [M, r]
  LYRA_ASSIGN_OR_RETURN(Variable u, functional::Linear(after_a_c, b));      // [ids..., M]
  return autograd::Add(base, u, lora->scale);
}

namespace {

std::string LoraAName(const std::string& adapter) { return "lora_embedding_A." + adapter; }
std::string LoraBName(const std::string& adapter) { return "lora_embedding_B." + adapter; }

// (B A)ᵀ [V, M] of an embedding adapter (no autograd).
absl::StatusOr<Tensor> EmbeddingDelta(const LoraFactors& f) {
  LYRA_ASSIGN_OR_RETURN(Tensor ba, Matmul(f.B.data(), f.A.data()));  // [M, V]
  return ba.Transpose(0, 1);
}

}  // namespace

absl::Status Embedding::AddLoraAdapter(const std::string& name, const LoraAdapterSpec& spec,
                                       Generator& gen) {
  if (spec.r < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Embedding LoRA: r = ", spec.r, " must be >= 1"));
  }
  const Tensor& w = weight_.data();
  LYRA_ASSIGN_OR_RETURN(Tensor a, Tensor::Zeros({spec.r, num_embeddings_}, w.dtype(), w.device()));
  LYRA_ASSIGN_OR_RETURN(Tensor b, Tensor::Empty({embedding_dim_, spec.r}, w.dtype(), w.device()));
  LYRA_RETURN_IF_ERROR(init::Normal(b, gen, 0, 1));
  LYRA_RETURN_IF_ERROR(lora_.Add(*this, name, LoraAName(name), LoraBName(name), std::move(a),
                                 std::move(b), spec, /*dropout_seed=*/0));
  lora_.Find(name)->factors.dropout = 0;  // PEFT's lora.Embedding applies no dropout
  return absl::OkStatus();
}

absl::Status Embedding::DeleteAdapter(const std::string& name) {
  return lora_.Delete(*this, name, LoraAName(name), LoraBName(name));
}

absl::Status Embedding::SetActiveAdapter(const std::string& name) {
  return lora_.SetActive(name);
}

absl::Status Embedding::DisableAdapters(bool disabled) {
  if (disabled && !lora_.merged_name().empty()) LYRA_RETURN_IF_ERROR(Unmerge());
  lora_.set_disabled(disabled);
  return absl::OkStatus();
}

absl::Status Embedding::Merge() {
  LoraAdapters::Adapter* a = lora_.Active();
  if (a == nullptr || !lora_.merged_name().empty()) {
    return absl::FailedPreconditionError(
        "Embedding LoRA Merge: needs an active adapter that is not merged yet");
  }
  LYRA_ASSIGN_OR_RETURN(Tensor delta, EmbeddingDelta(a->factors));
  LYRA_ASSIGN_OR_RETURN(Tensor merged, Add(weight_.data(), delta, a->factors.scale));
  LYRA_RETURN_IF_ERROR(weight_.set_data(merged));
  lora_.set_merged(a->name);
  return absl::OkStatus();
}

absl::Status Embedding::Unmerge() {
  LoraAdapters::Adapter* a = lora_.Find(lora_.merged_name());
  if (a == nullptr) {
    return absl::FailedPreconditionError("Embedding LoRA Unmerge: nothing is merged");
  }
  LYRA_ASSIGN_OR_RETURN(Tensor delta, EmbeddingDelta(a->factors));
  LYRA_ASSIGN_OR_RETURN(Tensor restored, Sub(weight_.data(), delta, a->factors.scale));
  LYRA_RETURN_IF_ERROR(weight_.set_data(restored));
  lora_.set_merged("");
  return absl::OkStatus();
}

}  // namespace lyra::nn
