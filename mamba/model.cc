#include "mamba/model.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "nn/autocast.h"
#include "nn/cross_entropy.h"
#include "nn/functional_linear.h"
#include "nn/init.h"
#include "tensor/index.h"
#include "tensor/reduce.h"

namespace lyra::mamba {

using autograd::Variable;

namespace {

// The "layers" container: children named "0", "1", ... (torch's nn.ModuleList).
class ModuleList : public nn::Module {
 public:
  ModuleList() : Module("ModuleList") {}
  template <typename M>
  M* Append(std::unique_ptr<M> module) {
    return RegisterModule(std::to_string(size_++), std::move(module));
  }

 private:
  int size_ = 0;
};


absl::Status CheckIds(const char* op, const Tensor& ids, int rank) {
  if (!ids.defined() || ids.dim() != rank || !IsInteger(ids.dtype()) ||
      (ids.defined() && ids.numel() == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": token ids must be a non-empty i32 / i64 tensor of shape ",
        rank == 2 ? "[B, L]" : "[B]", ", got ", ids.defined() ? ids.Describe() : "undefined"));
  }
  return absl::OkStatus();
}

// seq_idx as the i32 [B, L] the conv and scan read, or undefined.
absl::StatusOr<Tensor> SeqIdx(const Tensor& seq_idx, const Tensor& ids) {
  if (!seq_idx.defined()) return Tensor();
  if (!IsInteger(seq_idx.dtype()) || seq_idx.shape() != ids.shape()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MambaModel: seq_idx must be an i32 / i64 tensor of the ids' shape ",
                     ids.Describe(), ", got ", seq_idx.Describe()));
  }
  if (seq_idx.dtype() == DType::kI32 && seq_idx.device() == ids.device()) return seq_idx;
  LYRA_ASSIGN_OR_RETURN(Tensor s, seq_idx.To(DType::kI32));
  return s.To(ids.device());
}

}  // namespace

// --- MambaModel ------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<MambaModel>> MambaModel::Create(const MambaConfig& config,
                                                               Generator& gen, DType dtype,
                                                               Device device) {
  LYRA_RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<MambaModel> model(new MambaModel(config));
  LYRA_ASSIGN_OR_RETURN(
      std::unique_ptr<nn::Embedding> embeddings,
      nn::Embedding::Create(config.vocab_size, config.hidden_size, gen, std::nullopt, dtype,
                            device));
  LYRA_RETURN_IF_ERROR(
      nn::init::Normal(embeddings->weight().data(), gen, 0, config.initializer_range));
  model->embeddings_ = model->RegisterModule("embeddings", std::move(embeddings));
  ModuleList* layers = model->RegisterModule("layers", std::make_unique<ModuleList>());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    LYRA_ASSIGN_OR_RETURN(std::unique_ptr<MambaBlock> block,
                          MambaBlock::Create(config, gen, dtype, device));
    model->layers_.push_back(layers->Append(std::move(block)));
  }
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::RMSNorm> norm_f,
                        nn::RMSNorm::Create(config.hidden_size, config.layer_norm_epsilon));
  model->norm_f_ = model->RegisterModule("norm_f", std::move(norm_f));
  if (dtype != DType::kF32) LYRA_RETURN_IF_ERROR(model->norm_f_->To(dtype));
  if (!device.is_cpu()) LYRA_RETURN_IF_ERROR(model->norm_f_->To(device));
  return model;
}

absl::StatusOr<Variable> MambaModel::Forward(const Tensor& input_ids, const Tensor& seq_idx,
                                             std::vector<MambaLayerState>* states) const {
  LYRA_RETURN_IF_ERROR(CheckIds("MambaModel::Forward", input_ids, 2));
  LYRA_ASSIGN_OR_RETURN(Tensor seq, SeqIdx(seq_idx, input_ids));
  if (states != nullptr && static_cast<int>(states->size()) != num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("MambaModel::Forward: ", states->size(),
                                                   " layer states for ", num_layers(),
                                                   " layers"));
  }
  LYRA_ASSIGN_OR_RETURN(Variable hidden, embeddings_->Forward(input_ids));
  Variable residual;
  for (int i = 0; i < num_layers(); ++i) {
    LYRA_ASSIGN_OR_RETURN(
        MambaBlockOutput out,
        layers_[i]->Forward(hidden, residual, seq, states ? &(*states)[i] : nullptr));
    hidden = out.hidden;
    residual = out.residual;
  }
  LYRA_ASSIGN_OR_RETURN(nn::functional::ResidualNormResult r,
                        AddRmsNorm(*norm_f_, hidden, residual, config_.residual_in_fp32));
  return r.y;
}

absl::StatusOr<Tensor> MambaModel::Step(const Tensor& ids,
                                        std::vector<MambaLayerState>& states) const {
  LYRA_RETURN_IF_ERROR(CheckIds("MambaModel::Step", ids, 1));
  if (static_cast<int>(states.size()) != num_layers()) {
    return absl::InvalidArgumentError(absl::StrCat("MambaModel::Step: ", states.size(),
                                                   " layer states for ", num_layers(),
                                                   " layers"));
  }
  autograd::NoGradGuard no_grad;
  LYRA_ASSIGN_OR_RETURN(Variable emb, embeddings_->Forward(ids));  // [B, M]
  Tensor hidden = emb.data();
  Tensor residual;
  for (int i = 0; i < num_layers(); ++i) {
    LYRA_ASSIGN_OR_RETURN(MambaBlockOutput out, layers_[i]->Step(hidden, residual, states[i]));
    hidden = out.hidden.data();
    residual = out.residual.data();
  }
  LYRA_ASSIGN_OR_RETURN(
      nn::functional::ResidualNormResult r,
      AddRmsNorm(*norm_f_, Variable(hidden), residual.defined() ? Variable(residual) : Variable(),
                 config_.residual_in_fp32));
  return r.y.data();
}

// --- MambaForCausalLM -----------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<MambaForCausalLM>> MambaForCausalLM::Create(
    const MambaConfig& config, Generator& gen, DType dtype, Device device) {
  LYRA_RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<MambaForCausalLM> lm(new MambaForCausalLM(config));
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<MambaModel> backbone,
                        MambaModel::Create(config, gen, dtype, device));
  lm->backbone_ = lm->RegisterModule("backbone", std::move(backbone));
  if (!config.tie_word_embeddings) {
    LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> head,
                          nn::Linear::Create(config.hidden_size, config.vocab_size,
                                             /*bias=*/false, gen, dtype, device));
    LYRA_RETURN_IF_ERROR(nn::init::Normal(head->weight().data(), gen, 0, config.initializer_range));
    lm->lm_head_ = lm->RegisterModule("lm_head", std::move(head));
  }
  return lm;
}

const Variable& MambaForCausalLM::lm_head_weight() const {
  return lm_head_ != nullptr ? lm_head_->weight() : backbone_->embeddings().weight();
}

absl::StatusOr<Variable> MambaForCausalLM::Head(const Variable& hidden) const {
  if (lm_head_ != nullptr) return lm_head_->Forward(hidden);
  LYRA_ASSIGN_OR_RETURN(Variable w, nn::ComputeWeight(backbone_->embeddings().weight()));
  LYRA_ASSIGN_OR_RETURN(Variable x, nn::ComputeInput(hidden));
  if (w.dtype() != x.dtype()) {
    LYRA_ASSIGN_OR_RETURN(w, autograd::Cast(w, x.dtype()));
  }
  return nn::functional::Linear(x, w);
}

absl::StatusOr<Variable> MambaForCausalLM::Forward(const Tensor& input_ids,
                                                   const Tensor& seq_idx) const {
  LYRA_ASSIGN_OR_RETURN(Variable hidden, backbone_->Forward(input_ids, seq_idx));
  return Head(hidden);
}

absl::StatusOr<Variable> MambaForCausalLM::Loss(const Tensor& input_ids, const Tensor& labels,
                                                const Tensor& seq_idx) const {
  LYRA_RETURN_IF_ERROR(CheckIds("MambaForCausalLM::Loss", input_ids, 2));
  const int64_t B = input_ids.size(0), L = input_ids.size(1), V = config_.vocab_size;
  if (L < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MambaForCausalLM::Loss: needs L >= 2 to predict a next token, got ",
        input_ids.Describe()));
  }
  const Tensor& target_ids = labels.defined() ? labels : input_ids;
  if (!IsInteger(target_ids.dtype()) || target_ids.shape() != input_ids.shape()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MambaForCausalLM::Loss: labels must be an integer tensor of the ids' shape ",
                     input_ids.Describe(), ", got ", target_ids.Describe()));
  }
  LYRA_ASSIGN_OR_RETURN(Variable logits, Forward(input_ids, seq_idx));
  LYRA_ASSIGN_OR_RETURN(Variable shifted, autograd::Narrow(logits, 1, 0, L - 1));
  LYRA_ASSIGN_OR_RETURN(Variable flat, autograd::Reshape(shifted, {B * (L - 1), V}));
  LYRA_ASSIGN_OR_RETURN(Tensor next, target_ids.Narrow(1, 1, L - 1));
  LYRA_ASSIGN_OR_RETURN(Tensor next_c, next.Contiguous());
  LYRA_ASSIGN_OR_RETURN(Tensor targets, next_c.Reshape({B * (L - 1)}));
  LYRA_ASSIGN_OR_RETURN(targets, targets.To(flat.device()));
  return nn::CrossEntropy(flat, targets, nn::kDefaultIgnoreIndex, nn::Reduction::kMean);
}

absl::StatusOr<Tensor> MambaForCausalLM::Prefill(const Tensor& input_ids,
                                                 MambaCache& cache) const {
  LYRA_RETURN_IF_ERROR(CheckIds("MambaForCausalLM::Prefill", input_ids, 2));
  autograd::NoGradGuard no_grad;
  std::vector<MambaLayerState> states(backbone_->num_layers());
  if (!cache.empty()) {
    LYRA_RETURN_IF_ERROR(cache.CheckFor(backbone_->num_layers(), input_ids.size(0)));
    states = cache.layers();
  }
  LYRA_ASSIGN_OR_RETURN(Variable hidden, backbone_->Forward(input_ids, Tensor(), &states));
  LYRA_ASSIGN_OR_RETURN(Variable logits, Head(hidden));
  cache.SetLayers(std::move(states), input_ids.size(1));
  return logits.data();
}

absl::StatusOr<Tensor> MambaForCausalLM::Step(const Tensor& tokens, MambaCache& cache) const {
  LYRA_RETURN_IF_ERROR(CheckIds("MambaForCausalLM::Step", tokens, 1));
  LYRA_RETURN_IF_ERROR(cache.CheckFor(backbone_->num_layers(), tokens.size(0)));
  autograd::NoGradGuard no_grad;
  LYRA_ASSIGN_OR_RETURN(Tensor hidden, backbone_->Step(tokens, cache.layers()));
  LYRA_ASSIGN_OR_RETURN(Variable logits, Head(Variable(hidden)));
  cache.AddTokens(1);
  return logits.data();
}

absl::StatusOr<Tensor> MambaForCausalLM::Generate(const Tensor& prompt,
                                                  int64_t new_tokens) const {
  LYRA_RETURN_IF_ERROR(CheckIds("MambaForCausalLM::Generate", prompt, 2));
  if (new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("MambaForCausalLM::Generate: new_tokens must be >= 0, got ", new_tokens));
  }
  const int64_t B = prompt.size(0), L = prompt.size(1);
  LYRA_ASSIGN_OR_RETURN(Tensor prompt64, prompt.To(DType::kI64));
  std::vector<Tensor> pieces = {prompt64};
  if (new_tokens > 0) {
    MambaCache cache;
    LYRA_ASSIGN_OR_RETURN(Tensor logits, Prefill(prompt, cache));  // [B, L, V]
    LYRA_ASSIGN_OR_RETURN(Tensor last, logits.Select(1, L - 1));    // [B, V]
    for (int64_t i = 0; i < new_tokens; ++i) {
      LYRA_ASSIGN_OR_RETURN(Tensor next, Argmax(last, 1));  // [B] i64
      LYRA_ASSIGN_OR_RETURN(Tensor column, next.Reshape({B, 1}));
      pieces.push_back(column);
      if (i + 1 < new_tokens) {
        LYRA_ASSIGN_OR_RETURN(last, Step(next, cache));
      }
    }
  }
  return Concat(pieces, 1);
}

}  // namespace lyra::mamba
