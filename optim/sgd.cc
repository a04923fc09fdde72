#include "optim/sgd.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "tensor/elementwise.h"

namespace lyra::optim {
namespace {

bool FiniteNonNegative(double x) { return std::isfinite(x) && x >= 0; }

absl::Status CheckOptions(const SgdOptions& o) {
  if (!FiniteNonNegative(o.lr) || !FiniteNonNegative(o.momentum) ||
      !FiniteNonNegative(o.dampening) || !FiniteNonNegative(o.weight_decay)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SGD: lr ", o.lr, ", momentum ", o.momentum, ", dampening ", o.dampening,
        ", weight_decay ", o.weight_decay, ": each must be finite and >= 0"));
  }
  if (o.nesterov && (o.momentum <= 0 || o.dampening != 0)) {
    return absl::InvalidArgumentError(
        "SGD: Nesterov momentum requires a momentum and zero dampening");
  }
  return absl::OkStatus();
}

std::string BufferKey(const std::string& name) {
  return absl::StrCat("state.", name, ".momentum_buffer");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Sgd>> Sgd::Create(std::vector<ParamGroup> groups,
                                                 const SgdOptions& options) {
  LYRA_RETURN_IF_ERROR(CheckOptions(options));
  std::unique_ptr<Sgd> sgd(new Sgd(options));
  LYRA_RETURN_IF_ERROR(sgd->InitGroups(std::move(groups), options.lr, options.weight_decay));
  sgd->momentum_buffers_.resize(sgd->groups_.size());
  for (size_t g = 0; g < sgd->groups_.size(); ++g) {
    sgd->momentum_buffers_[g].resize(sgd->groups_[g].params.size());
  }
  return sgd;
}

absl::StatusOr<std::unique_ptr<Sgd>> Sgd::Create(NamedParameters params,
                                                 const SgdOptions& options) {
  std::vector<ParamGroup> groups(1);
  groups[0].params = std::move(params);
  return Create(std::move(groups), options);
}

absl::Status Sgd::Step() {
  for (size_t g = 0; g < groups_.size(); ++g) {
    const double lr = groups_[g].lr;
    const double wd = groups_[g].weight_decay;
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const auto& [name, param] = groups_[g].params[i];
      const Tensor& grad = param.grad();
      if (!grad.defined()) continue;
      if (grad.shape() != param.shape() || grad.device() != param.device() ||
          (grad.dtype() != DType::kF32 && grad.dtype() != DType::kF16 &&
           grad.dtype() != DType::kBF16)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "SGD: parameter '", name, "' ", param.data().Describe(), " has gradient ",
            grad.Describe(), "; expected its shape and device, dtype f32, f16 or bf16"));
      }
      const Tensor& p = param.data();
      Tensor d = grad;
      if (grad.dtype() != DType::kF32) {
        LYRA_ASSIGN_OR_RETURN(d, grad.To(DType::kF32));
      }
      if (wd != 0) {
        LYRA_ASSIGN_OR_RETURN(d, Add(d, p, wd));
      }
      if (options_.momentum != 0) {
        Tensor& buf = momentum_buffers_[g][i];
        if (!buf.defined()) {
          LYRA_ASSIGN_OR_RETURN(buf, d.Clone());
        } else {
          LYRA_RETURN_IF_ERROR(UnaryInto(cuda::UnaryOp::kMulScalar, buf, buf, options_.momentum));
          LYRA_RETURN_IF_ERROR(
              BinaryInto(cuda::BinaryOp::kAdd, buf, d, buf, 1.0 - options_.dampening));
        }
        if (options_.nesterov) {
          LYRA_ASSIGN_OR_RETURN(d, Add(d, buf, options_.momentum));
        } else {
          d = buf;
        }
      }
      LYRA_RETURN_IF_ERROR(BinaryInto(cuda::BinaryOp::kAdd, p, d, p, -lr));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<NamedTensors> Sgd::StateDict() const {
  NamedTensors state;
  AppendGroupState(state);
  state.emplace_back("momentum", internal::ScalarF64(options_.momentum));
  state.emplace_back("dampening", internal::ScalarF64(options_.dampening));
  state.emplace_back("nesterov", internal::ScalarI64(options_.nesterov ? 1 : 0));
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      if (momentum_buffers_[g][i].defined()) {
        state.emplace_back(BufferKey(groups_[g].params[i].first), momentum_buffers_[g][i]);
      }
    }
  }
  return state;
}

absl::Status Sgd::LoadStateDict(const NamedTensors& state) {
  const std::string op = "SGD::LoadStateDict";
  internal::StateReader reader(op, state);
  std::vector<int64_t> counts;
  for (const Group& group : groups_) counts.push_back(static_cast<int64_t>(group.params.size()));
  std::vector<double> lr, initial_lr, weight_decay;
  LYRA_RETURN_IF_ERROR(internal::ReadGroupState(op, reader, lr, initial_lr, weight_decay,
                                                num_groups(), counts));
  SgdOptions options = options_;
  LYRA_ASSIGN_OR_RETURN(options.momentum, reader.GetDouble("momentum"));
  LYRA_ASSIGN_OR_RETURN(options.dampening, reader.GetDouble("dampening"));
  LYRA_ASSIGN_OR_RETURN(int64_t nesterov, reader.GetInt("nesterov"));
  options.nesterov = nesterov != 0;
  LYRA_RETURN_IF_ERROR(CheckOptions(options));
  std::vector<std::vector<Tensor>> buffers(groups_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    buffers[g].resize(groups_[g].params.size());
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const auto& [name, param] = groups_[g].params[i];
      const std::string key = BufferKey(name);
      if (!reader.Has(key)) continue;
      LYRA_ASSIGN_OR_RETURN(Tensor b, reader.Get(key));
      if (b.shape() != param.shape() || !IsFloating(b.dtype())) {
        return absl::InvalidArgumentError(absl::StrCat(op, ": state '", key, "' is ",
                                                       b.Describe(), "; parameter '", name,
                                                       "' is ", param.data().Describe()));
      }
      LYRA_ASSIGN_OR_RETURN(buffers[g][i],
                            Tensor::Empty(param.shape(), DType::kF32, param.device()));
      LYRA_RETURN_IF_ERROR(buffers[g][i].CopyFrom(b));
    }
  }
  LYRA_RETURN_IF_ERROR(reader.CheckAllUsed());
  for (size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].lr = lr[g];
    groups_[g].initial_lr = initial_lr[g];
    groups_[g].weight_decay = weight_decay[g];
  }
  options_ = options;
  momentum_buffers_ = std::move(buffers);
  return absl::OkStatus();
}

}  // namespace lyra::optim
