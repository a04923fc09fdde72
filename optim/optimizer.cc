#include "optim/optimizer.h"

#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace lyra::optim {
namespace {

bool FiniteNonNegative(double x) { return std::isfinite(x) && x >= 0; }

// The last dotted component of a parameter name.
std::string LastComponent(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

}  // namespace

bool IsNoDecayParameter(const std::string& name, int dim, const DecayGroupOptions& options) {
  const std::string last = LastComponent(name);
  if (options.no_decay_biases && last == "bias") return true;
  if (options.no_decay_norms_and_1d &&
      (dim <= 1 || absl::EndsWith(name, "norm.weight") || absl::EndsWith(name, "norm_f.weight"))) {
    return true;
  }
  if (options.no_decay_embeddings) {
    for (const char* suffix : {"embeddings.weight", "embedding.weight", "embed_tokens.weight",
                               "wte.weight"}) {
      if (absl::EndsWith(name, suffix)) return true;
    }
  }
  for (const std::string& no_decay : options.no_decay_names) {
    if (last == no_decay) return true;
  }
  return false;
}

absl::StatusOr<std::vector<ParamGroup>> DecayGroups(const nn::Module& module,
                                                    const DecayGroupOptions& options) {
  if (!FiniteNonNegative(options.weight_decay)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DecayGroups: weight_decay must be finite and >= 0, got ", options.weight_decay));
  }
  std::vector<ParamGroup> groups(2);
  groups[0].weight_decay = options.weight_decay;
  groups[1].weight_decay = 0.0;
  for (auto& [name, param] : module.TrainableParameters()) {
    groups[IsNoDecayParameter(name, param.dim(), options) ? 1 : 0].params.emplace_back(name,
                                                                                       param);
  }
  return groups;
}

void Optimizer::ZeroGrad() {
  for (const Group& group : groups_) {
    for (const auto& [name, param] : group.params) param.ZeroGrad();
  }
}

const NamedParameters& Optimizer::parameters(int group) const {
  LYRA_CHECK(group >= 0 && group < num_groups()) << name_ << ": group " << group;
  return groups_[group].params;
}

double Optimizer::lr(int group) const {
  LYRA_CHECK(group >= 0 && group < num_groups()) << name_ << ": group " << group;
  return groups_[group].lr;
}

double Optimizer::weight_decay(int group) const {
  LYRA_CHECK(group >= 0 && group < num_groups()) << name_ << ": group " << group;
  return groups_[group].weight_decay;
}

double Optimizer::initial_lr(int group) const {
  LYRA_CHECK(group >= 0 && group < num_groups()) << name_ << ": group " << group;
  return groups_[group].initial_lr;
}

absl::Status Optimizer::SetLr(int group, double lr) {
  if (group < 0 || group >= num_groups()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": group ", group, " out of range [0, ", num_groups(), ")"));
  }
  if (!FiniteNonNegative(lr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": lr must be finite and >= 0, got ", lr));
  }
  groups_[group].lr = lr;
  return absl::OkStatus();
}

absl::Status Optimizer::InitGroups(std::vector<ParamGroup> groups, double default_lr,
                                   double default_weight_decay) {
  std::set<std::string> names;
  std::set<const void*> states;
  bool have_device = false;
  std::vector<Group> stored;
  for (size_t g = 0; g < groups.size(); ++g) {
    ParamGroup& group = groups[g];
    Group out;
    out.lr = group.lr.value_or(default_lr);
    out.initial_lr = out.lr;
    out.weight_decay = group.weight_decay.value_or(default_weight_decay);
    if (!FiniteNonNegative(out.lr) || !FiniteNonNegative(out.weight_decay)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": group ", g, " has lr ", out.lr, " and weight_decay ",
                       out.weight_decay, "; both must be finite and >= 0"));
    }
    for (auto& [name, param] : group.params) {
      if (!param.defined()) {
        return absl::InvalidArgumentError(
            absl::StrCat(name_, ": parameter '", name, "' is undefined"));
      }
      if (!param.is_leaf()) {
        return absl::InvalidArgumentError(absl::StrCat(
            name_, ": parameter '", name, "' ", param.Describe(), " is not a leaf"));
      }
      if (param.dtype() != DType::kF32) {
        return absl::InvalidArgumentError(
            absl::StrCat(name_, ": parameter '", name, "' ", param.data().Describe(),
                         " must be f32 (FP32 master weights)"));
      }
      if (!param.data().is_contiguous()) {
        return absl::UnimplementedError(absl::StrCat(
            name_, ": parameter '", name, "' ", param.data().Describe(), " is not contiguous"));
      }
      if (!have_device) {
        device_ = param.device();
        have_device = true;
      } else if (param.device() != device_) {
        return absl::InvalidArgumentError(
            absl::StrCat(name_, ": parameter '", name, "' is on ", param.device().ToString(),
                         ", the others on ", device_.ToString()));
      }
      if (!names.insert(name).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(name_, ": two parameters are named '", name, "'"));
      }
      if (!states.insert(param.state().get()).second) {
        return absl::InvalidArgumentError(absl::StrCat(
            name_, ": parameter '", name, "' appears twice (in one or two groups)"));
      }
    }
    out.params = std::move(group.params);
    stored.push_back(std::move(out));
  }
  groups_ = std::move(stored);
  return absl::OkStatus();
}

void Optimizer::AppendGroupState(NamedTensors& state) const {
  for (int g = 0; g < num_groups(); ++g) {
    const std::string prefix = absl::StrCat("group.", g, ".");
    state.emplace_back(prefix + "lr", internal::ScalarF64(groups_[g].lr));
    state.emplace_back(prefix + "initial_lr", internal::ScalarF64(groups_[g].initial_lr));
    state.emplace_back(prefix + "weight_decay", internal::ScalarF64(groups_[g].weight_decay));
    state.emplace_back(prefix + "num_params",
                       internal::ScalarI64(static_cast<int64_t>(groups_[g].params.size())));
  }
}

namespace internal {

Tensor ScalarF64(double value) {
  absl::StatusOr<Tensor> t = Tensor::Scalar(value, DType::kF64);
  LYRA_CHECK(t.ok()) << t.status();
  return *t;
}

Tensor ScalarI64(int64_t value) {
  absl::StatusOr<Tensor> t = Tensor::FromVector<int64_t>({value}, {});
  LYRA_CHECK(t.ok()) << t.status();
  return *t;
}

StateReader::StateReader(std::string op, const NamedTensors& state) : op_(std::move(op)) {
  for (const auto& [key, tensor] : state) {
    index_[key] = tensor;
    used_[key] = false;
  }
}

absl::StatusOr<Tensor> StateReader::Get(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    return absl::InvalidArgumentError(absl::StrCat(op_, ": state dict lacks '", key, "'"));
  }
  if (!it->second.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(op_, ": state '", key, "' is undefined"));
  }
  used_[key] = true;
  return it->second;
}

absl::StatusOr<double> StateReader::GetDouble(const std::string& key) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, Get(key));
  if (t.numel() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(op_, ": state '", key, "' ", t.Describe(), " is not a scalar"));
  }
  return t.Item();
}

absl::StatusOr<int64_t> StateReader::GetInt(const std::string& key) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, Get(key));
  if (t.numel() != 1 || !IsInteger(t.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        op_, ": state '", key, "' ", t.Describe(), " is not an integer scalar"));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor t64, t.To(DType::kI64));
  LYRA_ASSIGN_OR_RETURN(std::vector<int64_t> v, t64.ToVector<int64_t>());
  return v[0];
}

absl::Status StateReader::CheckAllUsed() const {
  std::vector<std::string> unused;
  for (const auto& [key, used] : used_) {
    if (!used) unused.push_back(key);
  }
  if (unused.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op_, ": unexpected state-dict keys: ", absl::StrJoin(unused, ", ")));
}

absl::Status ReadGroupState(const std::string& op, StateReader& reader,
                            std::vector<double>& lr, std::vector<double>& initial_lr,
                            std::vector<double>& weight_decay, int num_groups,
                            const std::vector<int64_t>& params_per_group) {
  if (reader.Has(absl::StrCat("group.", num_groups, ".lr"))) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": the state dict has more than this optimizer's ", num_groups, " groups"));
  }
  lr.assign(num_groups, 0);
  initial_lr.assign(num_groups, 0);
  weight_decay.assign(num_groups, 0);
  for (int g = 0; g < num_groups; ++g) {
    const std::string prefix = absl::StrCat("group.", g, ".");
    LYRA_ASSIGN_OR_RETURN(lr[g], reader.GetDouble(prefix + "lr"));
    LYRA_ASSIGN_OR_RETURN(initial_lr[g], reader.GetDouble(prefix + "initial_lr"));
    LYRA_ASSIGN_OR_RETURN(weight_decay[g], reader.GetDouble(prefix + "weight_decay"));
    LYRA_ASSIGN_OR_RETURN(int64_t count, reader.GetInt(prefix + "num_params"));
    if (count != params_per_group[g]) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": group ", g, " of the state dict has ",
                                                     count, " parameters, this optimizer's ",
                                                     params_per_group[g]));
    }
    if (!FiniteNonNegative(lr[g]) || !FiniteNonNegative(initial_lr[g]) ||
        !FiniteNonNegative(weight_decay[g])) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": group ", g, " of the state dict has lr ", lr[g], ", initial_lr ",
                       initial_lr[g], ", weight_decay ", weight_decay[g]));
    }
  }
  return absl::OkStatus();
}

}  // namespace internal

}  // namespace lyra::optim
