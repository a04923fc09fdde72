// Linear: y = x W^T + b, the layer of torch.nn.Linear with Hugging Face parameter names.
//
//   Generator gen(/*seed=*/0);
//   LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> proj,
//                         nn::Linear::Create(768, 3072, /*bias=*/false, gen));
//   LYRA_ASSIGN_OR_RETURN(Variable y, proj->Forward(x));   // x [..., 768] -> y [..., 3072]
//
// Parameters: "weight" [out_features, in_features] and, if enabled, "bias" [out_features],
// created in `dtype` on `device` and initialised as torch.nn.Linear.reset_parameters:
// weight ~ KaimingUniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), then bias ~ the same
// U(-1/sqrt(in), 1/sqrt(in)), drawn from `gen` in that order.
//
// Forward is nn::functional::Linear (one autograd node; on CUDA one cuBLASLt call with the bias
// in its epilogue) on nn::ComputeInput(x), nn::ComputeWeight(weight) and ComputeWeight(bias):
// under an AutocastGuard(kBF16) FP32 masters are cast to bf16 once per region, the matmul runs
// in bf16 with f32 accumulation and the masters receive FP32 gradients.
//
// LoRA: a Linear can carry named LoRA adapters (nn/lora/lora_layer.h has the math; nn/lora/lora.h
// injects them into a model by PEFT's target rules). With one active (and adapters enabled, not
// merged) Forward returns x Wᵀ + b + scale · (dropout(x) Aᵀ) Bᵀ. The adapters' parameters
// ("lora_A.<adapter>.weight" [r, in], "lora_B.<adapter>.weight" [out, r]) are adapter
// parameters of this module (nn/module.h): trained and listed, but not in the base state dict.
// Layers that fuse the map (the Mamba inner paths) read weight() and active_lora() separately.
#ifndef LYRA_NN_LINEAR_H_
#define LYRA_NN_LINEAR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "nn/lora/lora_factors.h"
#include "nn/lora/lora_layer.h"
#include "nn/module.h"
#include "tensor/device.h"
#include "tensor/random.h"

namespace lyra::nn {

class Linear : public Module {
 public:
  // InvalidArgument unless in_features >= 1, out_features >= 1 and dtype is floating; errors of
  // allocation on `device` (e.g. no GPU) are returned as they come.
  static absl::StatusOr<std::unique_ptr<Linear>> Create(int64_t in_features,
                                                        int64_t out_features, bool bias,
                                                        Generator& gen,
                                                        DType dtype = DType::kF32,
                                                        Device device = Device::Cpu());

  // x [..., in_features] -> [..., out_features], in the compute dtype (x's, or autocast's).
  absl::StatusOr<Variable> Forward(const Variable& x) const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const Variable& weight() const { return weight_; }
  // Undefined when the layer has no bias.
  const Variable& bias() const { return bias_; }

  // --- LoRA adapters ------------------------------------------------------------------------
  // The active adapter's factors (training set from this module's mode), or null when no
  // adapter is active, adapters are disabled, or the active one is merged into weight(): a
  // consumer computing the map itself adds scale · (dropout(x) Aᵀ) Bᵀ to x Wᵀ + b exactly when
  // this is non-null.
  const LoraFactors* active_lora() const { return lora_.ForwardFactors(is_training()); }
  // Adds adapter `name`, initialised as PEFT's init_lora_weights=True: A [r, in] ~
  // KaimingUniform(a = sqrt 5) (U(+-1/sqrt(in))), B [out, r] = 0, in the weight's dtype and
  // device, A drawn from `gen` (then one more block of `gen` seeds the adapter's dropout
  // stream). The first adapter becomes active. Errors as LoraAdapters::Add.
  absl::Status AddLoraAdapter(const std::string& name, const LoraAdapterSpec& spec,
                              Generator& gen);
  // Removes adapter `name` (NotFound; FailedPrecondition while merged).
  absl::Status DeleteAdapter(const std::string& name);
  // Makes `name` active ("" for none): NotFound for an unknown name, FailedPrecondition while
  // another adapter is merged.
  absl::Status SetActiveAdapter(const std::string& name);
  // Disables (or re-enables) every adapter: Forward is the base map while disabled. PEFT's
  // disable_adapter unmerges a merged adapter first; so does this.
  absl::Status DisableAdapters(bool disabled = true);
  // Adds the active adapter's scale · B A into weight() (no-grad, in place); FailedPrecondition
  // without an active adapter or when one is already merged. Unmerge subtracts it again.
  absl::Status Merge();
  absl::Status Unmerge();
  const LoraAdapters& lora_adapters() const { return lora_; }

 private:
  Linear(int64_t in_features, int64_t out_features, Tensor weight, Tensor bias);

  int64_t in_features_;
  int64_t out_features_;
  Variable weight_;
  Variable bias_;
  LoraAdapters lora_;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_LINEAR_H_
