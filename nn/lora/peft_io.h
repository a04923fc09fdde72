// LoRA adapters in PEFT's on-disk layout, so adapters move between Lyra and Python's peft.
//
// An adapter directory holds
//   adapter_config.json          the LoraConfig as PEFT's LoraConfig.to_dict() writes it
//                                ("peft_type": "LORA", "task_type", "r", "lora_alpha",
//                                "lora_dropout", "target_modules" (a list, or a string = regex),
//                                "modules_to_save", "bias": "none", "use_rslora",
//                                "layers_to_transform", "layers_pattern", "fan_in_fan_out": false,
//                                "init_lora_weights": true, "inference_mode": true (PEFT's
//                                save_pretrained writes true), "revision", "use_dora": false, ...)
//   adapter_model.safetensors    the adapter's tensors under PEFT's keys (get_peft_model_state_dict
//                                with the adapter name removed), metadata {"format": "pt"}:
//     base_model.model.<path>.lora_A.weight     [r, in]    Linear
//     base_model.model.<path>.lora_B.weight     [out, r]
//     base_model.model.<path>.lora_embedding_A  [r, V]     Embedding
//     base_model.model.<path>.lora_embedding_B  [M, r]
//     base_model.model.<path>.<param>                      modules_to_save copies
//
//   LYRA_RETURN_IF_ERROR(nn::SaveLoraAdapter(*model, config, "/tmp/adapter"));
//   LYRA_ASSIGN_OR_RETURN(nn::LoraConfig loaded,
//                         nn::LoadLoraAdapter(*model, "/tmp/adapter", "default", /*trainable=*/false));
#ifndef LYRA_NN_LORA_PEFT_IO_H_
#define LYRA_NN_LORA_PEFT_IO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nn/lora/lora.h"
#include "nn/module.h"

namespace lyra::nn {

inline constexpr char kPeftConfigFile[] = "adapter_config.json";
inline constexpr char kPeftWeightsFile[] = "adapter_model.safetensors";

// adapter_config.json's text for `config`: every field PEFT 0.21's LoraConfig writes, the
// unused ones at PEFT's defaults (null, {}, false), "peft_version": "0.21.0", inference_mode
// true; keys sorted as PEFT's json.dump(sort_keys=True).
std::string PeftConfigJson(const LoraConfig& config);
// Parses adapter_config.json's text (`file` names it in errors). InvalidArgument naming the file
// for malformed JSON or a field of the wrong type; Unimplemented for a peft_type other than
// "LORA", bias other than "none", and for PEFT features Lyra lacks when they are in use:
// use_dora, fan_in_fan_out, a non-empty rank_pattern / alpha_pattern, target_parameters,
// trainable_token_indices, layer_replication, lora_bias, use_qalora, use_bdlora,
// alora_invocation_tokens. Fields Lyra does not need (init_lora_weights, megatron_*, the
// *_config of initialisation methods, auto_mapping, peft_version) are ignored. adapter_name is
// set to `adapter_name`.
absl::StatusOr<LoraConfig> ParsePeftConfig(const std::string& text, const std::string& file,
                                           const std::string& adapter_name = "default");

// Writes dir/adapter_config.json (from `config`, whose adapter_name names the adapter saved)
// and dir/adapter_model.safetensors (that adapter's parameters in their dtype), each atomically;
// creates `dir`. NotFound when `root` has no adapter of that name.
absl::Status SaveLoraAdapter(const Module& root, const LoraConfig& config, const std::string& dir);

// Reads dir's config and weights, injects them as adapter `adapter_name` (InjectLora), loads the
// tensors strictly (converted to the layers' dtype and device) and makes it active; trainable:
// the adapter's parameters require grad (PEFT's is_trainable), else it is frozen. Errors:
// NotFound for a missing file; the config errors of ParsePeftConfig and InjectLora;
// InvalidArgument for a missing or unexpected key (listed) or a shape mismatch (naming the key,
// the file's shape and the model's). On error the adapter is removed again. Returns the config.
absl::StatusOr<LoraConfig> LoadLoraAdapter(Module& root, const std::string& dir,
                                           const std::string& adapter_name = "default",
                                           bool trainable = false);

}  // namespace lyra::nn

#endif  // LYRA_NN_LORA_PEFT_IO_H_
