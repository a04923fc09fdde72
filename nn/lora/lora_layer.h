// LoraAdapters: the named LoRA adapters one layer (nn::Linear, nn::Embedding) carries, as PEFT's
// LoraLayer keeps them: several adapters by name, at most one active, a switch that disables all
// of them, and whether the active one is merged into the base weight.
//
// Each adapter's trainable factors (nn/lora/lora_factors.h) are adapter parameters of the owning
// module (nn/module.h: listed by NamedParameters, left out of the base state dict), named as
// PEFT's in-memory parameters:
//   Linear      lora_A.<adapter>.weight [r, in]    lora_B.<adapter>.weight [out, r]
//   Embedding   lora_embedding_A.<adapter> [r, V]  lora_embedding_B.<adapter> [M, r]
// scale = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora (rsLoRA), as PEFT.
//
// The layer's Forward, with an adapter active (not disabled, not merged), is PEFT's:
//   Linear     y = x Wᵀ + b + scale · (dropout(x) Aᵀ) Bᵀ          (dropout only in training)
//   Embedding  y = W[ids] + scale · (Aᵀ[ids]) Bᵀ                  (no dropout, as PEFT)
// computed from the factors (never from a merged weight while the adapter trains) through
// nn::ComputeWeight / ComputeInput, so under an AutocastGuard the factors are cast once per
// region and receive FP32 gradients. Merge adds the update to the base weight in place
// (W += scale · B A, or for an embedding W += scale · (B A)ᵀ) under no-grad; Unmerge subtracts
// the same product, so a round trip returns W up to one rounding of each add.
#ifndef LYRA_NN_LORA_LORA_LAYER_H_
#define LYRA_NN_LORA_LORA_LAYER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "nn/lora/lora_factors.h"
#include "nn/module.h"
#include "tensor/random.h"

namespace lyra::nn {

// What one adapter of a layer is built from (PEFT's LoraConfig fields for one layer).
struct LoraAdapterSpec {
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0;
  bool use_rslora = false;
};

// lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora.
double LoraScale(const LoraAdapterSpec& spec);

class LoraAdapters {
 public:
  struct Adapter {
    std::string name;
    LoraAdapterSpec spec;
    LoraFactors factors;                  // A, B registered on the owner; scale, dropout
    std::unique_ptr<Generator> dropout_gen;  // factors.generator points here
  };

  // Adds adapter `name` holding A and B (already initialised) as adapter parameters
  // `a_name` / `b_name` of `owner`. The first adapter added becomes active (as PEFT's
  // add_adapter on a fresh layer); later ones do not. InvalidArgument for an empty or dotted
  // name, one that exists, r < 1, lora_dropout outside [0, 1).
  absl::Status Add(Module& owner, const std::string& name, const std::string& a_name,
                   const std::string& b_name, Tensor A, Tensor B, const LoraAdapterSpec& spec,
                   uint64_t dropout_seed);
  // Removes an adapter (its parameters leave the owner). FailedPrecondition while it is merged;
  // NotFound for an unknown name. Deleting the active adapter leaves none active.
  absl::Status Delete(Module& owner, const std::string& name, const std::string& a_name,
                      const std::string& b_name);
  // Makes `name` the active adapter ("" for none). NotFound for an unknown name;
  // FailedPrecondition while another adapter is merged.
  absl::Status SetActive(const std::string& name);
  void set_disabled(bool disabled) { disabled_ = disabled; }
  bool disabled() const { return disabled_; }
  const std::string& active_name() const { return active_; }
  const std::string& merged_name() const { return merged_; }
  void set_merged(const std::string& name) { merged_ = name; }

  // The adapter of that name, or null.
  Adapter* Find(const std::string& name) const;
  // The active adapter, or null.
  Adapter* Active() const { return active_.empty() ? nullptr : Find(active_); }
  // The active adapter's factors with `training` set to the owner's mode, or null when there is
  // no active adapter, adapters are disabled, or the active one is merged: what Forward adds.
  const LoraFactors* ForwardFactors(bool training) const;
  std::vector<std::string> Names() const;
  bool empty() const { return adapters_.empty(); }

 private:
  std::vector<std::unique_ptr<Adapter>> adapters_;
  std::string active_;
  std::string merged_;
  bool disabled_ = false;
};

// base + scale · (dropout(x) Aᵀ) Bᵀ for a Linear's input x [..., in] and base output
// [..., out] (x already in the compute dtype; the factors are cast with ComputeWeight).
absl::StatusOr<autograd::Variable> AddLoraLinear(const autograd::Variable& base,
                                                 const autograd::Variable& x,
                                                 const LoraFactors& factors);

}  // namespace lyra::nn

#endif  // LYRA_NN_LORA_LORA_LAYER_H_
