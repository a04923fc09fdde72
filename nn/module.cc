#include "nn/module.h"

#include <map>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "tensor/safetensors.h"

namespace lyra::nn {
namespace {

std::string Join(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  if (name.empty()) return prefix;
  return absl::StrCat(prefix, ".", name);
}

// Converts `value` to the dtype and device of `like`.
absl::StatusOr<Tensor> ConvertLike(const Tensor& value, const Tensor& like) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, value.To(like.dtype()));
  return t.To(like.device());
}

}  // namespace

std::vector<std::pair<std::string, Variable>> Module::NamedParameters() const {
  std::vector<std::pair<std::string, Variable>> out;
  for (const auto& [prefix, m] : NamedModules()) {
    for (const auto& [name, v] : m->parameters_) out.emplace_back(Join(prefix, name), v);
    for (const auto& [name, v] : m->adapter_parameters_) out.emplace_back(Join(prefix, name), v);
  }
  return out;
}

std::vector<std::pair<std::string, Variable>> Module::NamedAdapterParameters() const {
  std::vector<std::pair<std::string, Variable>> out;
  for (const auto& [prefix, m] : NamedModules()) {
    for (const auto& [name, v] : m->adapter_parameters_) out.emplace_back(Join(prefix, name), v);
  }
  return out;
}

absl::StatusOr<Variable> Module::AddAdapterParameter(const std::string& name, Tensor value,
                                                     bool requires_grad) {
  bool well_formed = !name.empty();
  for (absl::string_view part : absl::StrSplit(name, '.')) well_formed &= !part.empty();
  if (!well_formed) {
    return absl::InvalidArgumentError(
        absl::StrCat(type_name_, ": bad adapter parameter name '", name, "'"));
  }
  for (const auto& [n, v] : adapter_parameters_) {
    if (n == name) {
      return absl::InvalidArgumentError(
          absl::StrCat(type_name_, " already has an adapter parameter '", name, "'"));
    }
  }
  for (const auto& [n, v] : parameters_) {
    if (n == name) {
      return absl::InvalidArgumentError(
          absl::StrCat(type_name_, ": adapter parameter '", name, "' is a base parameter name"));
    }
  }
  if (!value.defined()) {
    return absl::InvalidArgumentError(
        absl::StrCat(type_name_, ": adapter parameter '", name, "' is undefined"));
  }
  const bool trainable = requires_grad && IsFloating(value.dtype());
  Variable v(std::move(value), trainable);
  adapter_parameters_.emplace_back(name, v);
  return v;
}

absl::Status Module::RemoveAdapterParameter(const std::string& name) {
  for (auto it = adapter_parameters_.begin(); it != adapter_parameters_.end(); ++it) {
    if (it->first == name) {
      adapter_parameters_.erase(it);
      return absl::OkStatus();
    }
  }
  return absl::NotFoundError(
      absl::StrCat(type_name_, " has no adapter parameter '", name, "'"));
}

absl::Status Module::SwapParameter(const std::string& name, const Variable& other) {
  const Variable* live = nullptr;
  for (const auto& [n, v] : parameters_) {
    if (n == name) live = &v;
  }
  if (live == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("SwapParameter: ", type_name_, " has no parameter '", name, "'"));
  }
  if (!other.defined() || !other.is_leaf() || other.SameAs(*live)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SwapParameter: '", name, "' can only be swapped with another defined leaf"));
  }
  if (other.shape() != live->shape() || other.dtype() != live->dtype()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SwapParameter: '", name, "' is ", live->Describe(), " but the stand-in is ",
                     other.Describe()));
  }
  for (auto it = swapped_.begin(); it != swapped_.end(); ++it) {
    if (it->first != name) continue;
    if (!it->second.SameAs(other)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SwapParameter: '", name, "' is already swapped with another Variable"));
    }
    std::swap(*live->state(), *other.state());
    swapped_.erase(it);
    return absl::OkStatus();
  }
  std::swap(*live->state(), *other.state());
  swapped_.emplace_back(name, other);
  return absl::OkStatus();
}

bool Module::IsParameterSwapped(const std::string& name, Variable* with) const {
  for (const auto& [n, v] : swapped_) {
    if (n != name) continue;
    if (with != nullptr) *with = v;
    return true;
  }
  return false;
}

Variable Module::StateDictSlot(const std::string& name, const Variable& live) const {
  for (const auto& [n, v] : swapped_) {
    if (n == name) return v;
  }
  return live;
}

std::vector<Variable> Module::Parameters() const {
  std::vector<Variable> out;
  for (auto& [name, v] : NamedParameters()) out.push_back(v);
  return out;
}

std::vector<std::pair<std::string, Variable>> Module::TrainableParameters() const {
  std::vector<std::pair<std::string, Variable>> out;
  for (auto& [name, v] : NamedParameters()) {
    if (v.requires_grad()) out.emplace_back(name, v);
  }
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::NamedBuffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [prefix, m] : NamedModules()) {
    for (const auto& [name, t] : m->buffers_) out.emplace_back(Join(prefix, name), *t);
  }
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::NamedModules() {
  std::vector<std::pair<std::string, Module*>> out = {{"", this}};
  for (auto& [name, child] : children_) {
    for (auto& [sub, m] : child->NamedModules()) out.emplace_back(Join(name, sub), m);
  }
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::NamedModules() const {
  std::vector<std::pair<std::string, const Module*>> out = {{"", this}};
  for (const auto& [name, child] : children_) {
    for (const auto& [sub, m] : static_cast<const Module&>(*child).NamedModules()) {
      out.emplace_back(Join(name, sub), m);
    }
  }
  return out;
}

absl::StatusOr<Module*> Module::Child(const std::string& name) const {
  for (const auto& [n, child] : children_) {
    if (n == name) return child.get();
  }
  return absl::NotFoundError(absl::StrCat(type_name_, " has no child module '", name, "'"));
}

absl::StatusOr<Module*> Module::Find(const std::string& path) const {
  const Module* m = this;
  std::string walked;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    absl::StatusOr<Module*> next = m->Child(std::string(part));
    if (!next.ok()) {
      return absl::NotFoundError(absl::StrCat("no module '", path, "': '", walked.empty() ? "" : walked + ".",
                                              part, "' does not exist"));
    }
    walked = Join(walked, std::string(part));
    m = *next;
  }
  return const_cast<Module*>(m);
}

void Module::Train(bool training) {
  for (auto& [name, m] : NamedModules()) m->training_ = training;
}

absl::Status Module::To(Device device) {
  for (auto& [prefix, m] : NamedModules()) {
    for (auto* list : {&m->parameters_, &m->adapter_parameters_, &m->swapped_}) {
      for (auto& [name, v] : *list) {
        LYRA_ASSIGN_OR_RETURN(Tensor moved, v.data().To(device));
        LYRA_RETURN_IF_ERROR(v.Replace(moved));
      }
    }
    for (auto& [name, t] : m->buffers_) {
      LYRA_ASSIGN_OR_RETURN(*t, t->To(device));
    }
  }
  return absl::OkStatus();
}

absl::Status Module::To(DType dtype) {
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Module::To: ", DTypeName(dtype), " is not a floating-point dtype"));
  }
  for (auto& [prefix, m] : NamedModules()) {
    for (auto* list : {&m->parameters_, &m->adapter_parameters_, &m->swapped_}) {
      for (auto& [name, v] : *list) {
        if (!IsFloating(v.dtype())) continue;
        LYRA_ASSIGN_OR_RETURN(Tensor cast, v.data().To(dtype));
        LYRA_RETURN_IF_ERROR(v.Replace(cast));
      }
    }
    for (auto& [name, t] : m->buffers_) {
      if (IsFloating(t->dtype())) {
        LYRA_ASSIGN_OR_RETURN(*t, t->To(dtype));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Module::SetRequiresGrad(const std::string& pattern, bool requires_grad) {
  std::regex re;
  try {
    re = std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("SetRequiresGrad: bad pattern '", pattern, "': ", e.what()));
  }
  int matched = 0;
  for (auto& [name, v] : NamedParameters()) {
    if (!std::regex_match(name, re)) continue;
    LYRA_RETURN_IF_ERROR(v.set_requires_grad(requires_grad));
    ++matched;
  }
  if (matched == 0) {
    return absl::NotFoundError(
        absl::StrCat("SetRequiresGrad: no parameter of ", type_name_, " matches '", pattern, "'"));
  }
  return matched;
}

void Module::SetRequiresGradAll(bool requires_grad) {
  for (auto& [name, v] : NamedParameters()) {
    if (IsFloating(v.dtype())) LYRA_CHECK_OK(v.set_requires_grad(requires_grad));
  }
}

int64_t Module::NumParameters(bool trainable_only) const {
  int64_t n = 0;
  for (const auto& [name, v] : NamedParameters()) {
    if (!trainable_only || v.requires_grad()) n += v.numel();
  }
  return n;
}

void Module::ZeroGrad() {
  for (auto& [name, v] : NamedParameters()) v.ZeroGrad();
}

NamedTensors Module::StateDict() const {
  NamedTensors out;
  for (const auto& [prefix, m] : NamedModules()) {
    for (const auto& [name, v] : m->parameters_) {
      out.emplace_back(Join(prefix, name), m->StateDictSlot(name, v).data());
    }
    for (const auto& [name, t] : m->buffers_) out.emplace_back(Join(prefix, name), *t);
  }
  return out;
}

absl::StatusOr<LoadReport> Module::LoadStateDict(const NamedTensors& state, bool strict) {
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, t] : state) {
    if (!given.emplace(name, &t).second) {
      return absl::InvalidArgumentError(absl::StrCat("state dict has key '", name, "' twice"));
    }
  }
  // Every slot of the module: parameters (set through their Variable) and buffers.
  struct Slot {
    std::string name;
    Variable param;
    Tensor* buffer = nullptr;
    const Tensor& current() const { return buffer ? *buffer : param.data(); }
  };
  std::vector<Slot> slots;
  for (auto& [prefix, m] : NamedModules()) {
    for (auto& [name, v] : m->parameters_) {
      slots.push_back({Join(prefix, name), m->StateDictSlot(name, v), nullptr});
    }
    for (auto& [name, t] : m->buffers_) slots.push_back({Join(prefix, name), Variable(), t.get()});
  }
  LoadReport report;
  std::set<std::string> known;
  std::vector<std::pair<const Slot*, Tensor>> updates;
  for (const Slot& slot : slots) {
    known.insert(slot.name);
    auto it = given.find(slot.name);
    if (it == given.end()) {
      report.missing.push_back(slot.name);
      continue;
    }
    const Tensor& value = *it->second;
    if (!value.defined() || value.shape() != slot.current().shape()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "state dict key '", slot.name, "' has shape ",
          value.defined() ? ShapeToString(value.shape()) : "undefined", " but the ", type_name_,
          " expects ", ShapeToString(slot.current().shape())));
    }
    if (IsFloating(value.dtype()) != IsFloating(slot.current().dtype())) {
      return absl::InvalidArgumentError(absl::StrCat("state dict key '", slot.name, "' is ",
                                                     value.Describe(), " but the module holds ",
                                                     slot.current().Describe()));
    }
    LYRA_ASSIGN_OR_RETURN(Tensor converted, ConvertLike(value, slot.current()));
    updates.emplace_back(&slot, std::move(converted));
  }
  for (const auto& [name, t] : state) {
    if (!known.count(name)) report.unexpected.push_back(name);
  }
  if (strict && (!report.missing.empty() || !report.unexpected.empty())) {
    std::string message = absl::StrCat("LoadStateDict (strict) into ", type_name_, ":");
    if (!report.missing.empty()) {
      absl::StrAppend(&message, " missing keys [", absl::StrJoin(report.missing, ", "), "]");
    }
    if (!report.unexpected.empty()) {
      absl::StrAppend(&message, " unexpected keys [", absl::StrJoin(report.unexpected, ", "),
                      "]");
    }
    return absl::InvalidArgumentError(message);
  }
  for (auto& [slot, value] : updates) {
    if (slot->buffer) {
      *slot->buffer = std::move(value);
    } else {
      LYRA_RETURN_IF_ERROR(slot->param.Replace(value));
    }
  }
  return report;
}

absl::Status Module::SaveSafetensors(const std::string& path) const {
  return WriteSafetensors(path, StateDict());
}

absl::StatusOr<LoadReport> Module::LoadSafetensors(const std::string& path, bool strict) {
  LYRA_ASSIGN_OR_RETURN(SafetensorsContents contents, ReadSafetensors(path));
  return LoadStateDict(contents.tensors, strict);
}

Variable Module::RegisterParameter(const std::string& name, Tensor value, bool requires_grad) {
  CheckNewName(name);
  const bool trainable = requires_grad && IsFloating(value.dtype());
  Variable v(std::move(value), trainable);
  parameters_.emplace_back(name, v);
  return v;
}

Tensor* Module::RegisterBuffer(const std::string& name, Tensor value) {
  CheckNewName(name);
  buffers_.emplace_back(name, std::make_unique<Tensor>(std::move(value)));
  return buffers_.back().second.get();
}

void Module::AddChild(const std::string& name, std::unique_ptr<Module> module) {
  CheckNewName(name);
  LYRA_CHECK(module != nullptr) << "null child '" << name << "'";
  children_.emplace_back(name, std::move(module));
}

void Module::CheckNewName(const std::string& name) const {
  LYRA_CHECK(!name.empty() && name.find('.') == std::string::npos)
      << type_name_ << ": bad name '" << name << "'";
  for (const auto& [n, v] : parameters_) LYRA_CHECK(n != name) << "duplicate name " << name;
  for (const auto& [n, b] : buffers_) LYRA_CHECK(n != name) << "duplicate name " << name;
  for (const auto& [n, c] : children_) LYRA_CHECK(n != name) << "duplicate name " << name;
}

}  // namespace lyra::nn
