// The LoRA module system: PEFT's LoraConfig and its injection into any nn::Module tree.
//
//   LYRA_ASSIGN_OR_RETURN(nn::LoraConfig config, nn::LoraConfig::Preset("sll", /*version=*/1));
//   config.r = 8; config.lora_alpha = 16;
//   Generator gen(0);
//   LYRA_ASSIGN_OR_RETURN(nn::LoraInjection done, nn::InjectLora(*model, config, gen));
//   // done.adapted: "backbone.embeddings", "backbone.layers.0.mixer.in_proj", ...
//   // every base parameter is now frozen; the adapter's lora_A / lora_B train.
//   std::printf("%s\n", nn::TrainableParametersSummary(*model).c_str());
//
// Target rules are PEFT's (tuners_utils.check_target_module_exists), applied to every module's
// dotted path below the root ("backbone.layers.3.mixer.in_proj"):
//   - target_regex (PEFT's target_modules given as a string): the path must match it entirely
//     (re.fullmatch; ECMAScript std::regex here);
//   - else target_modules (a list): the path equals an entry or ends with "." + entry; only in
//     this case layers_to_transform (non-empty) further requires the first numbered path segment
//     ".<name>.<i>." (or ".<pattern>.<i>." for an entry of layers_pattern, tried in order) to have
//     i in layers_to_transform;
//   - a path matching a modules_to_save entry m as (^|.*\.)m($|\..*) is never a target, nor is
//     one excluded by exclude_modules (a list: equal to an entry or ending with "." + entry; or
//     exclude_regex, matched entirely).
// A target must be an nn::Linear or nn::Embedding (InvalidArgument naming it otherwise); no match
// at all is NotFound naming the patterns, as PEFT raises.
//
// modules_to_save: every module whose path ends with an entry (PEFT's plain endswith) gets a
// trainable full copy of its parameters for this adapter, as PEFT's ModulesToSaveWrapper: the
// original is kept (frozen, what the base state dict reads and writes) and the copy is what
// the module computes with while the adapter is active. Lyra does this by swapping the module's
// parameter state with the copy (Module::SwapParameter): the copies are adapter parameters
// "modules_to_save.<adapter>.<param>" of that module. The module must own its parameters
// directly (no child module with parameters: norms, Linear, Embedding) and carry no LoRA.
//
// Several adapters may be injected under different names; one is active model-wide
// (SetActiveAdapter). Freezing follows PEFT: after InjectLora every parameter is frozen except
// the active adapter's (its lora factors and modules_to_save copies), which train unless
// config.inference_mode. Only bias = "none" is implemented (others: Unimplemented).
#ifndef LYRA_NN_LORA_LORA_H_
#define LYRA_NN_LORA_LORA_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autograd/variable.h"
#include "nn/lora/lora_layer.h"
#include "nn/module.h"
#include "tensor/random.h"

namespace lyra::nn {

struct LoraConfig {
  int64_t r = 8;
  double lora_alpha = 8;
  double lora_dropout = 0;
  bool use_rslora = false;
  // Module names matched exactly or as a dotted suffix (PEFT's list form) ...
  std::vector<std::string> target_modules;
  // ... or, when non-empty, one regular expression matched against the whole path (PEFT's
  // string form; then target_modules and layers_to_transform are not used).
  std::string target_regex;
  // Modules never adapted: names (exact or dotted suffix), or one full-match regex.
  std::vector<std::string> exclude_modules;
  std::string exclude_regex;
  std::vector<std::string> modules_to_save;
  std::vector<int> layers_to_transform;
  std::vector<std::string> layers_pattern;
  std::string bias = "none";
  std::string base_model_name_or_path;
  std::string revision;  // "" is null
  std::string task_type = "CAUSAL_LM";
  bool inference_mode = false;
  std::string adapter_name = "default";

  // The paper's target sets: "sll" = {x_proj, embeddings, in_proj, out_proj} for Mamba-1 and
  // {embeddings, in_proj, out_proj} for Mamba-2 (its x_proj role is inside in_proj); "all" =
  // every linear layer of the mixers (Mamba-1: in_proj, x_proj, dt_proj, out_proj; Mamba-2:
  // in_proj, out_proj) plus embeddings, the LM head excluded as PEFT's all-linear does. Other
  // fields keep their defaults. InvalidArgument for another name or a version other than 1, 2.
  static absl::StatusOr<LoraConfig> Preset(absl::string_view name, int mamba_version);
};

// PEFT's check_target_module_exists for one module path (see the file comment), with the
// exclude_modules rule but without the modules_to_save exclusion. InvalidArgument for a
// malformed regular expression.
absl::StatusOr<bool> IsLoraTarget(const LoraConfig& config, const std::string& path);

struct LoraInjection {
  std::vector<std::string> adapted;          // Linear / Embedding paths, in module order
  std::vector<std::string> modules_to_save;  // paths given a trainable copy
};

// Injects adapter config.adapter_name (A, B initialised as PEFT's init_lora_weights=True, A's
// drawn from `gen` in module order) into every target, makes copies for modules_to_save, makes
// this adapter the active one and freezes as described above. InvalidArgument for a bad config
// (r < 1, lora_dropout outside [0, 1), no targets given, an adapter name that is empty, dotted
// or already present, a bad regex, a target that is neither Linear nor Embedding, a
// modules_to_save module with child parameters or LoRA); Unimplemented for bias != "none";
// NotFound when no module matches (or a modules_to_save entry matches nothing: stricter than
// PEFT, which skips it). Every check runs before the model changes; a failure while copying
// or activating (allocation) removes the adapter again.
absl::StatusOr<LoraInjection> InjectLora(Module& root, const LoraConfig& config, Generator& gen);

// Names of the adapters present anywhere in the tree (first-seen order).
std::vector<std::string> AdapterNames(const Module& root);
// The active adapter ("" when none): the first adapted layer's active adapter.
std::string ActiveAdapter(const Module& root);
// Activates `name` ("" for none) on every adapted layer and modules_to_save module (layers
// without it have none active), and sets requires_grad: `name`'s parameters train (unless
// !trainable), every other adapter's are frozen; base parameters are left as they are.
// NotFound for a name no layer has; FailedPrecondition while an adapter is merged.
absl::Status SetActiveAdapter(Module& root, const std::string& name, bool trainable = true);
// Disables every adapter (the model computes as the base, modules_to_save modules with their
// originals) or re-enables the active one.
absl::Status DisableAdapters(Module& root, bool disabled = true);
// Removes adapter `name` everywhere (NotFound if absent). A merged one is unmerged first.
absl::Status DeleteAdapter(Module& root, const std::string& name);
// Merges / unmerges the active adapter of every adapted Linear / Embedding (modules_to_save
// copies stay swapped in). FailedPrecondition when there is nothing to do.
absl::Status MergeAdapter(Module& root);
absl::Status UnmergeAdapter(Module& root);

// The parameters of adapter `name` under PEFT's on-disk keys (prefix + "<path>.lora_A.weight",
// "….lora_B.weight", "….lora_embedding_A", "….lora_embedding_B", and for modules_to_save
// "<path>.<param>"), each the Variable holding that adapter's value (for a swapped-in copy, the
// module's live parameter). Module order. prefix is PEFT's "base_model.model.".
std::vector<std::pair<std::string, autograd::Variable>> PeftAdapterParameters(
    const Module& root, const std::string& name, const std::string& prefix = "base_model.model.");

// PEFT's print_trainable_parameters numbers: parameters that require grad, and all parameters
// (base, every adapter, originals and copies of modules_to_save).
struct ParameterCounts {
  int64_t trainable = 0;
  int64_t total = 0;
};
ParameterCounts CountParameters(const Module& root);
// "trainable params: 1,234 || all params: 5,678 || trainable%: 21.7330", as PEFT prints it.
std::string TrainableParametersSummary(const Module& root);

}  // namespace lyra::nn

#endif  // LYRA_NN_LORA_LORA_H_
