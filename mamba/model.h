// The Mamba-1 language model: MambaModel (the "backbone") and MambaForCausalLM, with the
// parameter names of transformers' MambaForCausalLM:
//
//   backbone.embeddings.weight                 [V, M]
//   backbone.layers.{i}.norm.weight            [M]
//   backbone.layers.{i}.mixer.{conv1d.weight, conv1d.bias, in_proj.weight, x_proj.weight,
//                              dt_proj.weight, dt_proj.bias, A_log, D, out_proj.weight}
//   backbone.norm_f.weight                     [M]
//   lm_head.weight                             [V, M]   only when not tied to the embeddings
//
// (mamba_ssm's "backbone.embedding.weight" is mapped by mamba/checkpoint.h.)
//
// Usage (everything a parity check needs):
//
//   Generator gen(0);
//   LYRA_ASSIGN_OR_RETURN(auto model, MambaForCausalLM::Create(config, gen));
//   // or: LYRA_ASSIGN_OR_RETURN(auto model, LoadMamba("/path/to/mamba-130m-hf"));
//   LYRA_RETURN_IF_ERROR(model->To(DType::kF64));          // f64 on the CPU, for parity
//   model->Eval();
//   LYRA_ASSIGN_OR_RETURN(Variable logits, model->Forward(ids));   // ids [B, L] i64
//   // logits.data(): [B, L, V], = HF's MambaForCausalLM(ids).logits
//   LYRA_ASSIGN_OR_RETURN(Variable loss, model->Loss(ids));        // = HF's (labels = ids).loss
//   LYRA_RETURN_IF_ERROR(loss.Backward());                         // gradients in the params
//
// Precision: activations are in the model's dtype, or the autocast region's (nn::AutocastGuard:
// FP32 master weights cast once per region); the residual stream, the norms' statistics, the
// scan states and the loss's log-sum-exp are f32 (f64 in an f64 model). Logits come in the
// compute dtype (HF casts them to f32; compare with that in mind under autocast).
//
// Generation: Prefill(ids, cache) runs the parallel forward and fills a MambaCache with every
// layer's final conv and scan states; Step(token, cache) decodes one token per sequence with the
// single-step conv update and nn / mamba state updates; Generate is greedy decoding on top.
#ifndef LYRA_MAMBA_MODEL_H_
#define LYRA_MAMBA_MODEL_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "mamba/block.h"
#include "mamba/cache.h"
#include "mamba/config.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/rms_norm.h"
#include "tensor/device.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

// The backbone: embeddings, layers.{i} (MambaBlock), norm_f.
class MambaModel : public nn::Module {
 public:
  // Embedding N(0, initializer_range), norms ones, blocks as MambaBlock::Create; all from `gen`.
  static absl::StatusOr<std::unique_ptr<MambaModel>> Create(const MambaConfig& config,
                                                            Generator& gen,
                                                            DType dtype = DType::kF32,
                                                            Device device = Device::Cpu());

  // input_ids [B, L] (i32 / i64) -> last hidden state norm_f(...) [B, L, M] in the compute
  // dtype. seq_idx: undefined, or [B, L] (i32 / i64) document ids, non-decreasing along L for
  // packed documents (each document then starts from a zero state). `states`, when non-null,
  // has one entry per layer: see MambaMixer::Forward (continued from and written to).
  absl::StatusOr<autograd::Variable> Forward(const Tensor& input_ids,
                                             const Tensor& seq_idx = Tensor(),
                                             std::vector<MambaLayerState>* states = nullptr) const;

  // One token per sequence: ids [B] -> norm_f hidden state [B, M] (no autograd).
  absl::StatusOr<Tensor> Step(const Tensor& ids, std::vector<MambaLayerState>& states) const;

  const MambaConfig& config() const { return config_; }
  const nn::Embedding& embeddings() const { return *embeddings_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  const MambaBlock& layer(int i) const { return *layers_[i]; }
  const nn::RMSNorm& norm_f() const { return *norm_f_; }

 private:
  explicit MambaModel(const MambaConfig& config) : Module("MambaModel"), config_(config) {}

  MambaConfig config_;
  nn::Embedding* embeddings_ = nullptr;
  std::vector<MambaBlock*> layers_;
  nn::RMSNorm* norm_f_ = nullptr;
};

class MambaForCausalLM : public nn::Module {
 public:
  // The backbone, then (when !tie_word_embeddings) lm_head [V, M] without bias, N(0,
  // initializer_range). InvalidArgument for an invalid config.
  static absl::StatusOr<std::unique_ptr<MambaForCausalLM>> Create(const MambaConfig& config,
                                                                  Generator& gen,
                                                                  DType dtype = DType::kF32,
                                                                  Device device = Device::Cpu());

  // logits [B, L, V] of input_ids [B, L] (i32 / i64), in the compute dtype. seq_idx as
  // MambaModel::Forward. InvalidArgument for ids of another rank or dtype, or out of [0, V).
  absl::StatusOr<autograd::Variable> Forward(const Tensor& input_ids,
                                             const Tensor& seq_idx = Tensor()) const;

  // HF's causal-LM loss: mean cross-entropy of logits[:, :-1] against labels[:, 1:] over the
  // labels that are not ignore_index (-100, as HF). labels: undefined (= input_ids) or [B, L]
  // integer. A 0-d Variable (f32; f64 in an f64 model). InvalidArgument for L < 2.
  absl::StatusOr<autograd::Variable> Loss(const Tensor& input_ids, const Tensor& labels = Tensor(),
                                          const Tensor& seq_idx = Tensor()) const;

  // The parallel forward (no autograd) over input_ids [B, L] that also fills `cache`: logits
  // [B, L, V]. An empty cache starts from zero states; a filled one is continued (chunked
  // prefill), so Prefill(a) then Prefill(b) equals Prefill(a ++ b).
  absl::StatusOr<Tensor> Prefill(const Tensor& input_ids, MambaCache& cache) const;
  // One token per sequence, tokens [B] (i32 / i64): logits [B, V] of the next position; the
  // cache advances in place. FailedPrecondition for an empty cache or one of another batch.
  absl::StatusOr<Tensor> Step(const Tensor& tokens, MambaCache& cache) const;
  // Greedy decoding: prompt [B, L] -> [B, L + new_tokens] i64 (the prompt, then the argmax
  // token of each step). new_tokens >= 0.
  absl::StatusOr<Tensor> Generate(const Tensor& prompt, int64_t new_tokens) const;

  const MambaConfig& config() const { return config_; }
  const MambaModel& backbone() const { return *backbone_; }
  // The lm_head weight: the embedding table when tied.
  const autograd::Variable& lm_head_weight() const;

 private:
  explicit MambaForCausalLM(const MambaConfig& config)
      : Module("MambaForCausalLM"), config_(config) {}
  absl::StatusOr<autograd::Variable> Head(const autograd::Variable& hidden) const;

  MambaConfig config_;
  MambaModel* backbone_ = nullptr;
  nn::Linear* lm_head_ = nullptr;  // null when tied
};

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_MODEL_H_
