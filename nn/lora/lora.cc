#include "nn/lora/lora.h"

#include <regex>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "nn/embedding.h"
#include "nn/linear.h"

namespace lyra::nn {
namespace {

constexpr absl::string_view kCopyPrefix = "modules_to_save.";

std::string JoinPath(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  if (name.empty()) return prefix;
  return absl::StrCat(prefix, ".", name);
}

absl::StatusOr<std::regex> CompileRegex(const std::string& pattern, absl::string_view what) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA: bad ", what, " regular expression '", pattern, "': ", e.what()));
  }
}

// A Linear or an Embedding seen through one interface.
struct LoraLayer {
  std::string path;
  Linear* linear = nullptr;
  Embedding* embedding = nullptr;

  const LoraAdapters& adapters() const {
    return linear ? linear->lora_adapters() : embedding->lora_adapters();
  }
  bool Has(const std::string& name) const { return adapters().Find(name) != nullptr; }
  absl::Status Add(const std::string& name, const LoraAdapterSpec& spec, Generator& gen) {
    return linear ? linear->AddLoraAdapter(name, spec, gen)
                  : embedding->AddLoraAdapter(name, spec, gen);
  }
  absl::Status Delete(const std::string& name) {
    return linear ? linear->DeleteAdapter(name) : embedding->DeleteAdapter(name);
  }
  absl::Status SetActive(const std::string& name) {
    return linear ? linear->SetActiveAdapter(name) : embedding->SetActiveAdapter(name);
  }
  absl::Status Disable(bool disabled) {
    return linear ? linear->DisableAdapters(disabled) : embedding->DisableAdapters(disabled);
  }
  absl::Status Merge() { return linear ? linear->Merge() : embedding->Merge(); }
  absl::Status Unmerge() { return linear ? linear->Unmerge() : embedding->Unmerge(); }
};

std::vector<LoraLayer> LoraLayers(const Module& root) {
  std::vector<LoraLayer> out;
  for (const auto& [path, m] : const_cast<Module&>(root).NamedModules()) {
    LoraLayer layer{path, dynamic_cast<Linear*>(m), dynamic_cast<Embedding*>(m)};
    if ((layer.linear || layer.embedding) && !layer.adapters().empty()) out.push_back(layer);
  }
  return out;
}

// The module's own base parameters (not a child's, not adapter parameters).
std::vector<std::pair<std::string, Variable>> OwnBaseParameters(const Module& m) {
  std::vector<std::pair<std::string, Variable>> out;
  std::set<std::string> adapter;
  for (const auto& [name, v] : m.NamedAdapterParameters()) adapter.insert(name);
  for (const auto& [name, v] : m.NamedParameters()) {
    if (name.find('.') == std::string::npos && !adapter.count(name)) out.emplace_back(name, v);
  }
  return out;
}

// A module holding modules_to_save copies: its path, and per adapter the copies of its own
// parameters ("modules_to_save.<adapter>.<param>").
struct CopyModule {
  std::string path;
  Module* module = nullptr;
  // adapter -> [(param, copy)]
  std::vector<std::pair<std::string, std::vector<std::pair<std::string, Variable>>>> copies;

  const std::vector<std::pair<std::string, Variable>>* Of(const std::string& adapter) const {
    for (const auto& [a, list] : copies) {
      if (a == adapter) return &list;
    }
    return nullptr;
  }
  // The adapter whose copy is swapped in, or "".
  std::string SwappedIn() const {
    for (const auto& [a, list] : copies) {
      for (const auto& [param, copy] : list) {
        Variable with;
        if (module->IsParameterSwapped(param, &with) && with.SameAs(copy)) return a;
      }
    }
    return "";
  }
  absl::Status Swap(const std::string& adapter) {
    for (const auto& [param, copy] : *Of(adapter)) {
      LYRA_RETURN_IF_ERROR(module->SwapParameter(param, copy));
    }
    return absl::OkStatus();
  }
};

std::vector<CopyModule> CopyModules(const Module& root) {
  std::vector<CopyModule> out;
  for (const auto& [path, m] : const_cast<Module&>(root).NamedModules()) {
    CopyModule cm{path, m, {}};
    for (const auto& [name, v] : m->NamedAdapterParameters()) {
      if (!absl::StartsWith(name, kCopyPrefix)) continue;
      const std::string rest = name.substr(kCopyPrefix.size());
      const size_t dot = rest.find('.');
      if (dot == std::string::npos || rest.find('.', dot + 1) != std::string::npos) continue;
      const std::string adapter = rest.substr(0, dot), param = rest.substr(dot + 1);
      auto* list = const_cast<std::vector<std::pair<std::string, Variable>>*>(cm.Of(adapter));
      if (list == nullptr) {
        cm.copies.push_back({adapter, {}});
        list = &cm.copies.back().second;
      }
      list->emplace_back(param, v);
    }
    if (!cm.copies.empty()) out.push_back(std::move(cm));
  }
  return out;
}

absl::Status SetTrainable(const Variable& v, bool trainable) {
  return const_cast<Variable&>(v).set_requires_grad(trainable);
}

absl::Status ValidateConfig(const LoraConfig& config) {
  if (config.bias != "none") {
    return absl::UnimplementedError(absl::StrCat(
        "LoRA: bias = \"", config.bias, "\" is not implemented (only \"none\")"));
  }
  if (config.r < 1) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA: r = ", config.r, " must be >= 1"));
  }
  if (!(config.lora_dropout >= 0 && config.lora_dropout < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA: lora_dropout = ", config.lora_dropout, " outside [0, 1)"));
  }
  if (config.target_modules.empty() && config.target_regex.empty()) {
    return absl::InvalidArgumentError("LoRA: no target_modules (nor a target regex) given");
  }
  if (config.adapter_name.empty() || config.adapter_name.find('.') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA: bad adapter name '",
                                                   config.adapter_name,
                                                   "' (non-empty, without '.')"));
  }
  return absl::OkStatus();
}

std::string TargetsText(const LoraConfig& config) {
  if (!config.target_regex.empty()) return absl::StrCat("'", config.target_regex, "'");
  return absl::StrCat("[", absl::StrJoin(config.target_modules, ", "), "]");
}

}  // namespace

absl::StatusOr<LoraConfig> LoraConfig::Preset(absl::string_view name, int mamba_version) {
  if (mamba_version != 1 && mamba_version != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoraConfig::Preset: Mamba version ", mamba_version, " (1 or 2)"));
  }
  LoraConfig config;
  if (name == "sll") {
    config.target_modules = mamba_version == 1
                                ? std::vector<std::string>{"x_proj", "embeddings", "in_proj",
                                                           "out_proj"}
                                : std::vector<std::string>{"embeddings", "in_proj", "out_proj"};
  } else if (name == "all") {
    config.target_modules = mamba_version == 1
                                ? std::vector<std::string>{"in_proj", "x_proj", "dt_proj",
                                                           "out_proj", "embeddings"}
                                : std::vector<std::string>{"in_proj", "out_proj", "embeddings"};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("LoraConfig::Preset: unknown preset '", name, "' (sll or all)"));
  }
  return config;
}

absl::StatusOr<bool> IsLoraTarget(const LoraConfig& config, const std::string& path) {
  if (!config.exclude_regex.empty()) {
    LYRA_ASSIGN_OR_RETURN(std::regex re, CompileRegex(config.exclude_regex, "exclude"));
    if (std::regex_match(path, re)) return false;
  }
  for (const std::string& e : config.exclude_modules) {
    if (path == e || absl::EndsWith(path, absl::StrCat(".", e))) return false;
  }
  if (!config.target_regex.empty()) {
    LYRA_ASSIGN_OR_RETURN(std::regex re, CompileRegex(config.target_regex, "target"));
    return std::regex_match(path, re);
  }
  bool found = false;
  for (const std::string& t : config.target_modules) {
    if (path == t) return true;  // named exactly: layers_to_transform does not apply
    found |= absl::EndsWith(path, absl::StrCat(".", t));
  }
  if (!found || config.layers_to_transform.empty()) return found;
  // The first numbered segment (lazy .*?, as PEFT) of the layers' container.
  std::vector<std::string> patterns = config.layers_pattern;
  if (patterns.empty()) patterns.push_back("[^.]*");
  for (const std::string& pattern : patterns) {
    LYRA_ASSIGN_OR_RETURN(std::regex re,
                          CompileRegex(absl::StrCat(".*?\\.", pattern, "\\.(\\d+)\\..*"),
                                       "layers_pattern"));
    std::smatch m;
    if (!std::regex_match(path, m, re)) continue;
    const int index = std::stoi(m[1].str());
    for (int want : config.layers_to_transform) {
      if (want == index) return true;
    }
    return false;
  }
  return false;
}

absl::StatusOr<LoraInjection> InjectLora(Module& root, const LoraConfig& config, Generator& gen) {
  LYRA_RETURN_IF_ERROR(ValidateConfig(config));
  const std::string& name = config.adapter_name;
  for (const std::string& existing : AdapterNames(root)) {
    if (existing == name) {
      return absl::InvalidArgumentError(
          absl::StrCat("InjectLora: the model already has an adapter '", name, "'"));
    }
  }
  std::vector<std::regex> save_res;
  for (const std::string& m : config.modules_to_save) {
    LYRA_ASSIGN_OR_RETURN(std::regex re,
                          CompileRegex(absl::StrCat("(^|.*\\.)", m, "($|\\..*)"),
                                       "modules_to_save"));
    save_res.push_back(std::move(re));
  }
  // Targets and modules_to_save, all checked before anything changes.
  LoraInjection report;
  std::vector<LoraLayer> targets;
  std::vector<std::pair<std::string, Module*>> to_save;
  std::set<std::string> save_found;
  for (const auto& [path, m] : root.NamedModules()) {
    if (path.empty()) continue;
    bool excluded = false;
    for (const std::regex& re : save_res) excluded |= std::regex_match(path, re);
    for (const std::string& entry : config.modules_to_save) {
      if (!absl::EndsWith(path, entry)) continue;
      save_found.insert(entry);
      auto* lin = dynamic_cast<Linear*>(m);
      auto* emb = dynamic_cast<Embedding*>(m);
      const bool has_lora = (lin && !lin->lora_adapters().empty()) ||
                            (emb && !emb->lora_adapters().empty());
      const auto own = OwnBaseParameters(*m);
      const bool child_params = m->NamedParameters().size() !=
                                own.size() + m->NamedAdapterParameters().size();
      if (own.empty() || child_params || has_lora) {
        return absl::InvalidArgumentError(absl::StrCat(
            "InjectLora: modules_to_save '", path, "' (", m->type_name(), ") must own its ",
            "parameters directly and carry no LoRA adapter"));
      }
      to_save.emplace_back(path, m);
      break;
    }
    if (excluded) continue;
    LYRA_ASSIGN_OR_RETURN(bool matched, IsLoraTarget(config, path));
    if (!matched) continue;
    LoraLayer layer{path, dynamic_cast<Linear*>(m), dynamic_cast<Embedding*>(m)};
    if (!layer.linear && !layer.embedding) {
      return absl::InvalidArgumentError(absl::StrCat(
          "InjectLora: target module '", path, "' is a ", m->type_name(),
          "; LoRA supports Linear and Embedding targets"));
    }
    targets.push_back(layer);
  }
  if (targets.empty()) {
    return absl::NotFoundError(absl::StrCat("InjectLora: target modules ", TargetsText(config),
                                            " not found in the base model (", root.type_name(),
                                            ")"));
  }
  for (const std::string& entry : config.modules_to_save) {
    if (!save_found.count(entry)) {
      return absl::NotFoundError(
          absl::StrCat("InjectLora: modules_to_save '", entry, "' matches no module"));
    }
  }

  const LoraAdapterSpec spec{config.r, config.lora_alpha, config.lora_dropout, config.use_rslora};
  auto rollback = [&](size_t added) {
    for (size_t i = 0; i < added; ++i) LYRA_CHECK_OK(targets[i].Delete(name));
  };
  for (size_t i = 0; i < targets.size(); ++i) {
    const absl::Status s = targets[i].Add(name, spec, gen);
    if (!s.ok()) {
      rollback(i);
      return s;
    }
    report.adapted.push_back(targets[i].path);
  }
  auto copy_and_activate = [&]() -> absl::Status {
    for (const auto& [path, m] : to_save) {
      for (const auto& [param, live] : OwnBaseParameters(*m)) {
        // The copy of the original (the live value unless another adapter's copy is in).
        Variable original;
        const Variable& source = m->IsParameterSwapped(param, &original) ? original : live;
        LYRA_ASSIGN_OR_RETURN(Tensor copy, source.data().Clone());
        LYRA_RETURN_IF_ERROR(
            m->AddAdapterParameter(absl::StrCat(kCopyPrefix, name, ".", param), copy).status());
      }
      report.modules_to_save.push_back(path);
    }
    // PEFT's _mark_only_adapters_as_trainable, then set_adapter(name).
    root.SetRequiresGradAll(false);
    return SetActiveAdapter(root, name, !config.inference_mode);
  };
  if (absl::Status s = copy_and_activate(); !s.ok()) {
    DeleteAdapter(root, name).IgnoreError();  // best effort: the failure is what matters
    return s;
  }
  return report;
}

std::vector<std::string> AdapterNames(const Module& root) {
  std::vector<std::string> out;
  auto add = [&](const std::string& n) {
    for (const std::string& o : out) {
      if (o == n) return;
    }
    out.push_back(n);
  };
  for (const auto& [path, m] : const_cast<Module&>(root).NamedModules()) {
    if (auto* lin = dynamic_cast<const Linear*>(m)) {
      for (const std::string& n : lin->lora_adapters().Names()) add(n);
    } else if (auto* emb = dynamic_cast<const Embedding*>(m)) {
      for (const std::string& n : emb->lora_adapters().Names()) add(n);
    }
  }
  for (const CopyModule& cm : CopyModules(root)) {
    for (const auto& [a, list] : cm.copies) add(a);
  }
  return out;
}

std::string ActiveAdapter(const Module& root) {
  for (const LoraLayer& layer : LoraLayers(root)) {
    if (!layer.adapters().active_name().empty()) return layer.adapters().active_name();
  }
  for (const CopyModule& cm : CopyModules(root)) {
    const std::string in = cm.SwappedIn();
    if (!in.empty()) return in;
  }
  return "";
}

absl::Status SetActiveAdapter(Module& root, const std::string& name, bool trainable) {
  std::vector<LoraLayer> layers = LoraLayers(root);
  std::vector<CopyModule> copies = CopyModules(root);
  bool known = name.empty();
  for (const LoraLayer& layer : layers) {
    known |= layer.Has(name);
    if (!layer.adapters().merged_name().empty() && layer.adapters().merged_name() != name) {
      return absl::FailedPreconditionError(
          absl::StrCat("SetActiveAdapter: adapter '", layer.adapters().merged_name(),
                       "' is merged into ", layer.path, "; unmerge it first"));
    }
  }
  for (const CopyModule& cm : copies) known |= cm.Of(name) != nullptr;
  if (!known) return absl::NotFoundError(absl::StrCat("SetActiveAdapter: no adapter '", name, "'"));

  for (LoraLayer& layer : layers) {
    LYRA_RETURN_IF_ERROR(layer.SetActive(layer.Has(name) ? name : ""));
    for (const std::string& a : layer.adapters().Names()) {
      const LoraFactors& f = layer.adapters().Find(a)->factors;
      LYRA_RETURN_IF_ERROR(SetTrainable(f.A, a == name && trainable));
      LYRA_RETURN_IF_ERROR(SetTrainable(f.B, a == name && trainable));
    }
  }
  for (CopyModule& cm : copies) {
    const std::string in = cm.SwappedIn();
    if (!in.empty()) LYRA_RETURN_IF_ERROR(cm.Swap(in));  // the original is back in
    for (const auto& [a, list] : cm.copies) {
      for (const auto& [param, copy] : list) {
        LYRA_RETURN_IF_ERROR(SetTrainable(copy, a == name && trainable));
      }
    }
    const bool disabled = [&] {
      for (const LoraLayer& layer : layers) {
        if (layer.adapters().disabled()) return true;
      }
      return false;
    }();
    if (cm.Of(name) != nullptr && !disabled) LYRA_RETURN_IF_ERROR(cm.Swap(name));
  }
  return absl::OkStatus();
}

absl::Status DisableAdapters(Module& root, bool disabled) {
  const std::string active = ActiveAdapter(root);
  for (LoraLayer& layer : LoraLayers(root)) LYRA_RETURN_IF_ERROR(layer.Disable(disabled));
  for (CopyModule& cm : CopyModules(root)) {
    const std::string in = cm.SwappedIn();
    if (disabled && !in.empty()) LYRA_RETURN_IF_ERROR(cm.Swap(in));
    if (!disabled && in.empty() && !active.empty() && cm.Of(active) != nullptr) {
      LYRA_RETURN_IF_ERROR(cm.Swap(active));
    }
  }
  return absl::OkStatus();
}

absl::Status DeleteAdapter(Module& root, const std::string& name) {
  bool found = false;
  for (LoraLayer& layer : LoraLayers(root)) {
    if (!layer.Has(name)) continue;
    found = true;
    if (layer.adapters().merged_name() == name) LYRA_RETURN_IF_ERROR(layer.Unmerge());
    LYRA_RETURN_IF_ERROR(layer.Delete(name));
  }
  for (CopyModule& cm : CopyModules(root)) {
    const auto* list = cm.Of(name);
    if (list == nullptr) continue;
    found = true;
    if (cm.SwappedIn() == name) LYRA_RETURN_IF_ERROR(cm.Swap(name));
    for (const auto& [param, copy] : *list) {
      LYRA_RETURN_IF_ERROR(
          cm.module->RemoveAdapterParameter(absl::StrCat(kCopyPrefix, name, ".", param)));
    }
  }
  if (!found) return absl::NotFoundError(absl::StrCat("DeleteAdapter: no adapter '", name, "'"));
  return absl::OkStatus();
}

absl::Status MergeAdapter(Module& root) {
  int merged = 0;
  for (LoraLayer& layer : LoraLayers(root)) {
    if (layer.adapters().Active() == nullptr || !layer.adapters().merged_name().empty()) continue;
    LYRA_RETURN_IF_ERROR(layer.Merge());
    ++merged;
  }
  if (merged == 0) return absl::FailedPreconditionError("MergeAdapter: nothing to merge");
  return absl::OkStatus();
}

absl::Status UnmergeAdapter(Module& root) {
  int unmerged = 0;
  for (LoraLayer& layer : LoraLayers(root)) {
    if (layer.adapters().merged_name().empty()) continue;
    LYRA_RETURN_IF_ERROR(layer.Unmerge());
    ++unmerged;
  }
  if (unmerged == 0) return absl::FailedPreconditionError("UnmergeAdapter: nothing is merged");
  return absl::OkStatus();
}

std::vector<std::pair<std::string, autograd::Variable>> PeftAdapterParameters(
    const Module& root, const std::string& name, const std::string& prefix) {
  std::vector<std::pair<std::string, Variable>> out;
  std::vector<CopyModule> copies = CopyModules(root);
  for (const auto& [path, m] : const_cast<Module&>(root).NamedModules()) {
    const std::string base = prefix + path;
    if (auto* lin = dynamic_cast<const Linear*>(m)) {
      if (const auto* a = lin->lora_adapters().Find(name)) {
        out.emplace_back(base + ".lora_A.weight", a->factors.A);
        out.emplace_back(base + ".lora_B.weight", a->factors.B);
      }
    } else if (auto* emb = dynamic_cast<const Embedding*>(m)) {
      if (const auto* a = emb->lora_adapters().Find(name)) {
        out.emplace_back(base + ".lora_embedding_A", a->factors.A);
        out.emplace_back(base + ".lora_embedding_B", a->factors.B);
      }
    }
    for (const CopyModule& cm : copies) {
      if (cm.module != m || cm.Of(name) == nullptr) continue;
      const bool in = cm.SwappedIn() == name;
      const auto own = OwnBaseParameters(*m);
      for (const auto& [param, copy] : *cm.Of(name)) {
        Variable value = copy;
        if (in) {
          for (const auto& [n, live] : own) {
            if (n == param) value = live;
          }
        }
        out.emplace_back(JoinPath(base, param), value);
      }
    }
  }
  return out;
}

ParameterCounts CountParameters(const Module& root) {
  return {root.NumParameters(/*trainable_only=*/true), root.NumParameters()};
}

std::string TrainableParametersSummary(const Module& root) {
  const ParameterCounts c = CountParameters(root);
  auto grouped = [](int64_t n) {
    std::string digits = absl::StrCat(n), out;
    for (size_t i = 0; i < digits.size(); ++i) {
      if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
      out.push_back(digits[i]);
    }
    return out;
  };
  const double percent = c.total > 0 ? 100.0 * c.trainable / c.total : 0.0;
  return absl::StrFormat("trainable params: %s || all params: %s || trainable%%: %.4f",
                         grouped(c.trainable), grouped(c.total), percent);
}

}  // namespace lyra::nn
