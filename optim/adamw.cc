#include "optim/adamw.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/device.h"
#include "cuda/stream.h"

namespace lyra::optim {
namespace {

bool FiniteNonNegative(double x) { return std::isfinite(x) && x >= 0; }

absl::Status CheckOptions(const AdamWOptions& o) {
  if (!FiniteNonNegative(o.lr) || !FiniteNonNegative(o.eps) ||
      !FiniteNonNegative(o.weight_decay) || !(o.beta1 >= 0 && o.beta1 < 1) ||
      !(o.beta2 >= 0 && o.beta2 < 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdamW: invalid options (lr ", o.lr, ", betas (", o.beta1, ", ", o.beta2, "), eps ",
        o.eps, ", weight_decay ", o.weight_decay,
        "): lr, eps and weight_decay must be finite and >= 0, betas in [0, 1)"));
  }
  if (o.chunk_elements <= 0 || o.chunk_elements % 4 != 0 ||
      o.chunk_elements >= (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdamW: chunk_elements must be a positive multiple of 4 below 2^31, got ",
        o.chunk_elements));
  }
  return absl::OkStatus();
}

std::string StateKey(const std::string& name, const char* what) {
  return absl::StrCat("state.", name, ".", what);
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdamW>> AdamW::Create(std::vector<ParamGroup> groups,
                                                     const AdamWOptions& options) {
  LYRA_RETURN_IF_ERROR(CheckOptions(options));
  std::unique_ptr<AdamW> adamw(new AdamW(options));
  LYRA_RETURN_IF_ERROR(adamw->InitGroups(std::move(groups), options.lr, options.weight_decay));
  adamw->state_.resize(adamw->groups_.size());
  for (size_t g = 0; g < adamw->groups_.size(); ++g) {
    adamw->state_[g].resize(adamw->groups_[g].params.size());
  }
  return adamw;
}

absl::StatusOr<std::unique_ptr<AdamW>> AdamW::Create(NamedParameters params,
                                                     const AdamWOptions& options) {
  std::vector<ParamGroup> groups(1);
  groups[0].params = std::move(params);
  return Create(std::move(groups), options);
}

absl::StatusOr<AdamW::State> AdamW::NewState(const Variable& param) const {
  State s;
  LYRA_ASSIGN_OR_RETURN(s.exp_avg, Tensor::Zeros(param.shape(), DType::kF32, param.device()));
  LYRA_ASSIGN_OR_RETURN(s.exp_avg_sq, Tensor::Zeros(param.shape(), DType::kF32, param.device()));
  LYRA_ASSIGN_OR_RETURN(s.step, Tensor::Zeros({}, DType::kI64, param.device()));
  return s;
}

absl::Status AdamW::Step() {
  std::vector<cuda::AdamWTensor> tensors;
  std::vector<cuda::TensorChunk> chunks;
  std::vector<Tensor> contiguous_grads;  // copies of strided gradients, alive until queued
  std::vector<cuda::AdamWHyperParams> hyper(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    hyper[g] = cuda::AdamWHyperParams{groups_[g].lr, options_.beta1, options_.beta2,
                                      options_.eps, groups_[g].weight_decay};
  }
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const auto& [name, param] = groups_[g].params[i];
      Tensor grad = param.grad();
      if (!grad.defined()) continue;  // skipped, as torch
      if (grad.shape() != param.shape() || grad.device() != param.device() ||
          (grad.dtype() != DType::kF32 && grad.dtype() != DType::kF16 &&
           grad.dtype() != DType::kBF16)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "AdamW: parameter '", name, "' ", param.data().Describe(), " has gradient ",
            grad.Describe(), "; expected its shape and device, dtype f32, f16 or bf16"));
      }
      if (!grad.is_contiguous()) {
        LYRA_ASSIGN_OR_RETURN(grad, grad.Contiguous());
        contiguous_grads.push_back(grad);
      }
      State& s = state_[g][i];
      if (!s.step.defined()) {
        LYRA_ASSIGN_OR_RETURN(s, NewState(param));
      }
      cuda::AdamWTensor t;
      t.param = param.data().data<float>();
      t.grad = grad.data();
      t.exp_avg = s.exp_avg.data<float>();
      t.exp_avg_sq = s.exp_avg_sq.data<float>();
      t.step = s.step.data<int64_t>();
      t.numel = param.numel();
      t.group = static_cast<int32_t>(g);
      t.grad_dtype = grad.dtype();
      t.num_chunks = cuda::AppendChunks(static_cast<int32_t>(tensors.size()), t.numel,
                                        options_.chunk_elements, chunks);
      tensors.push_back(t);
    }
  }
  if (tensors.empty()) return absl::OkStatus();
  LYRA_RETURN_IF_ERROR(cuda::AdamWSupported(tensors, chunks, hyper));

  cuda::AdamWParams p;
  p.num_tensors = static_cast<int32_t>(tensors.size());
  p.num_chunks = static_cast<int32_t>(chunks.size());
  p.num_groups = static_cast<int32_t>(hyper.size());
  if (device_.is_cpu()) {
    p.tensors = tensors.data();
    p.chunks = chunks.data();
    p.hyper = hyper.data();
    return cuda::AdamWReference(p);
  }
  LYRA_RETURN_IF_ERROR(cuda::CheckGpu(device_.index));
  cuda::DeviceGuard guard(device_.index);
  const cudaStream_t stream = cuda::CurrentStream(device_.index);
  LYRA_RETURN_IF_ERROR(tensor_table_.Upload(device_.index, tensors.data(),
                                            tensors.size() * sizeof(tensors[0]), stream));
  LYRA_RETURN_IF_ERROR(chunk_table_.Upload(device_.index, chunks.data(),
                                           chunks.size() * sizeof(chunks[0]), stream));
  LYRA_RETURN_IF_ERROR(hyper_table_.Upload(device_.index, hyper.data(),
                                           hyper.size() * sizeof(hyper[0]), stream));
  LYRA_RETURN_IF_ERROR(
      tickets_.EnsureZeroed(device_.index, tensors.size() * sizeof(int32_t), stream));
  p.tensors = tensor_table_.as<const cuda::AdamWTensor>();
  p.chunks = chunk_table_.as<const cuda::TensorChunk>();
  p.hyper = hyper_table_.as<const cuda::AdamWHyperParams>();
  p.tickets = tickets_.as<int32_t>();
  return cuda::AdamWCuda(p, stream);
}

const AdamW::State* AdamW::FindState(const std::string& name) const {
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      if (groups_[g].params[i].first == name) return &state_[g][i];
    }
  }
  return nullptr;
}

absl::StatusOr<int64_t> AdamW::StepCount(const std::string& name) const {
  const State* s = FindState(name);
  if (s == nullptr) {
    return absl::NotFoundError(absl::StrCat("AdamW: no parameter named '", name, "'"));
  }
  if (!s->step.defined()) return 0;
  LYRA_ASSIGN_OR_RETURN(std::vector<int64_t> v, s->step.ToVector<int64_t>());
  return v[0];
}

absl::StatusOr<NamedTensors> AdamW::StateDict() const {
  NamedTensors state;
  AppendGroupState(state);
  state.emplace_back("beta1", internal::ScalarF64(options_.beta1));
  state.emplace_back("beta2", internal::ScalarF64(options_.beta2));
  state.emplace_back("eps", internal::ScalarF64(options_.eps));
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const State& s = state_[g][i];
      if (!s.step.defined()) continue;
      const std::string& name = groups_[g].params[i].first;
      state.emplace_back(StateKey(name, "exp_avg"), s.exp_avg);
      state.emplace_back(StateKey(name, "exp_avg_sq"), s.exp_avg_sq);
      state.emplace_back(StateKey(name, "step"), s.step);
    }
  }
  return state;
}

absl::Status AdamW::LoadStateDict(const NamedTensors& state) {
  const std::string op = "AdamW::LoadStateDict";
  internal::StateReader reader(op, state);
  std::vector<int64_t> counts;
  for (const Group& group : groups_) counts.push_back(static_cast<int64_t>(group.params.size()));
  std::vector<double> lr, initial_lr, weight_decay;
  LYRA_RETURN_IF_ERROR(internal::ReadGroupState(op, reader, lr, initial_lr, weight_decay,
                                                num_groups(), counts));
  AdamWOptions options = options_;
  LYRA_ASSIGN_OR_RETURN(options.beta1, reader.GetDouble("beta1"));
  LYRA_ASSIGN_OR_RETURN(options.beta2, reader.GetDouble("beta2"));
  LYRA_ASSIGN_OR_RETURN(options.eps, reader.GetDouble("eps"));
  LYRA_RETURN_IF_ERROR(CheckOptions(options));

  std::vector<std::vector<State>> new_state(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    new_state[g].resize(groups_[g].params.size());
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const auto& [name, param] = groups_[g].params[i];
      const std::string m_key = StateKey(name, "exp_avg");
      const std::string v_key = StateKey(name, "exp_avg_sq");
      const std::string step_key = StateKey(name, "step");
      if (!reader.Has(m_key) && !reader.Has(v_key) && !reader.Has(step_key)) continue;
      LYRA_ASSIGN_OR_RETURN(Tensor m, reader.Get(m_key));
      LYRA_ASSIGN_OR_RETURN(Tensor v, reader.Get(v_key));
      LYRA_ASSIGN_OR_RETURN(int64_t step, reader.GetInt(step_key));
      for (const auto& [key, t] : {std::pair{m_key, m}, std::pair{v_key, v}}) {
        if (t.shape() != param.shape() || !IsFloating(t.dtype())) {
          return absl::InvalidArgumentError(
              absl::StrCat(op, ": state '", key, "' is ", t.Describe(), "; parameter '", name,
                           "' is ", param.data().Describe()));
        }
      }
      if (step < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(op, ": state '", step_key, "' is negative (", step, ")"));
      }
      LYRA_ASSIGN_OR_RETURN(State s, NewState(param));
      LYRA_RETURN_IF_ERROR(s.exp_avg.CopyFrom(m));
      LYRA_RETURN_IF_ERROR(s.exp_avg_sq.CopyFrom(v));
      LYRA_ASSIGN_OR_RETURN(s.step, Tensor::FromVector<int64_t>({step}, {}, param.device()));
      new_state[g][i] = std::move(s);
    }
  }
  LYRA_RETURN_IF_ERROR(reader.CheckAllUsed());

  for (size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].lr = lr[g];
    groups_[g].initial_lr = initial_lr[g];
    groups_[g].weight_decay = weight_decay[g];
  }
  options_ = options;
  state_ = std::move(new_state);
  return absl::OkStatus();
}

}  // namespace lyra::optim
