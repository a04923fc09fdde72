// Embedding: a lookup table of num_embeddings rows of embedding_dim, as torch.nn.Embedding.
//
//   LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Embedding> embed,
//                         nn::Embedding::Create(50280, 768, gen));
//   LYRA_ASSIGN_OR_RETURN(Variable h, embed->Forward(ids));   // ids [B, L] -> h [B, L, 768]
//
// Parameter "weight" [num_embeddings, embedding_dim], initialised N(0, 1) from `gen` as torch.
// padding_idx (optional; negative values count from the end, as torch) names a row that is
// zero-initialised and never receives a gradient (lookups of it still return its current value).
//
// Forward(ids): ids of i32 or i64 and any shape -> [ids..., embedding_dim], through
// autograd::Embedding (out-of-range ids are InvalidArgument). Under an AutocastGuard the looked-up
// rows are cast to the compute dtype (the table itself stays an FP32 master and gets an FP32
// gradient; only the gathered rows are converted, never the whole table).
//
// LoRA: an Embedding can carry named LoRA adapters as PEFT's lora.Embedding
// (nn/lora/lora_layer.h): "lora_embedding_A.<adapter>" [r, num_embeddings] and
// "lora_embedding_B.<adapter>" [embedding_dim, r], adapter parameters of this module (trained,
// listed, not in the base state dict). With one active Forward returns
// W[ids] + scale · Aᵀ[ids] Bᵀ (Aᵀ looked up with the same padding_idx; no dropout, as PEFT).
#ifndef LYRA_NN_EMBEDDING_H_
#define LYRA_NN_EMBEDDING_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "nn/lora/lora_factors.h"
#include "nn/lora/lora_layer.h"
#include "nn/module.h"
#include "tensor/device.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra::nn {

class Embedding : public Module {
 public:
  // InvalidArgument unless num_embeddings >= 1, embedding_dim >= 1, dtype is floating and
  // padding_idx (if any) is in [-num_embeddings, num_embeddings).
  static absl::StatusOr<std::unique_ptr<Embedding>> Create(
      int64_t num_embeddings, int64_t embedding_dim, Generator& gen,
      std::optional<int64_t> padding_idx = std::nullopt, DType dtype = DType::kF32,
      Device device = Device::Cpu());

  absl::StatusOr<Variable> Forward(const Tensor& ids) const;

  int64_t num_embeddings() const { return num_embeddings_; }
  int64_t embedding_dim() const { return embedding_dim_; }
  // In [0, num_embeddings) when set.
  std::optional<int64_t> padding_idx() const { return padding_idx_; }
  const Variable& weight() const { return weight_; }

  // --- LoRA adapters (as nn::Linear's; see there) ---------------------------------------------
  // The active adapter's factors (A [r, V], B [M, r]), or null (none active, disabled, merged).
  const LoraFactors* active_lora() const { return lora_.ForwardFactors(is_training()); }
  // Adds adapter `name` initialised as PEFT's init_lora_weights=True for embeddings:
  // A = 0, B ~ N(0, 1) drawn from `gen`, in the table's dtype and device. lora_dropout is
  // ignored as PEFT ignores it for embeddings (kept in the spec; the factors say 0).
  absl::Status AddLoraAdapter(const std::string& name, const LoraAdapterSpec& spec,
                              Generator& gen);
  absl::Status DeleteAdapter(const std::string& name);
  absl::Status SetActiveAdapter(const std::string& name);
  absl::Status DisableAdapters(bool disabled = true);
  // weight += scale · (B A)ᵀ [V, M] (no-grad, in place) / the inverse.
  absl::Status Merge();
  absl::Status Unmerge();
  const LoraAdapters& lora_adapters() const { return lora_; }

 private:
  Embedding(int64_t num_embeddings, int64_t embedding_dim, std::optional<int64_t> padding_idx,
            Tensor weight);

  int64_t num_embeddings_;
  int64_t embedding_dim_;
  std::optional<int64_t> padding_idx_;
  Variable weight_;
  LoraAdapters lora_;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_EMBEDDING_H_
