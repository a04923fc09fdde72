// MambaConfig: the hyper-parameters of a Mamba-1 language model, read from either checkpoint
// layout in use and written back in the Hugging Face one.
//
// Two config.json layouts are understood (FromJson detects which):
//
//   Hugging Face (transformers' MambaConfig, "model_type": "mamba"):
//     {"model_type": "mamba", "vocab_size": 50280, "hidden_size": 768, "state_size": 16,
//      "num_hidden_layers": 24, "layer_norm_epsilon": 1e-05, "expand": 2, "conv_kernel": 4,
//      "use_bias": false, "use_conv_bias": true, "hidden_act": "silu", "time_step_rank": 48,
//      "residual_in_fp32": true, "tie_word_embeddings": true, ...}
//   Required: vocab_size, hidden_size, state_size, num_hidden_layers. Every other key takes
//   transformers' default when absent (note: use_bias defaults to true there, as in HF).
//   time_step_rank may be "auto" (= ceil(hidden_size / 16)); intermediate_size, when present,
//   overrides expand * hidden_size (HF keeps the stored attribute). vocab_size is used as it is
//   (HF never pads it); pad_vocab_size_multiple is kept only to be written back. use_mambapy,
//   use_cache, initializer ranges and other keys HF reads but that do not change the model's
//   function are accepted (those listed below are kept, the rest ignored).
//
//   mamba_ssm (mamba_ssm/models/config_mamba.py, no "model_type"):
//     {"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true,
//      "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8,
//      "tie_embeddings": true}
//   Required: d_model, n_layer, vocab_size. vocab_size is padded up to a multiple of
//   pad_vocab_size_multiple (default 8), as MambaLMHeadModel does: 50277 -> 50280. ssm_cfg keys
//   (defaults of mamba_ssm's Mamba): d_state 16, d_conv 4, expand 2, dt_rank "auto", dt_min,
//   dt_max, dt_init, dt_scale, dt_init_floor, conv_bias true, bias false, layer "Mamba1".
//   Unimplemented: ssm_cfg.layer "Mamba2", d_intermediate > 0 (MLP blocks), a non-empty
//   attn_layer_idx (hybrid attention), rms_norm false (LayerNorm).
//
// Errors: text that is not JSON or not an object, an unknown model_type, a missing required key
// or a key of the wrong JSON type is InvalidArgument naming the key and the source (file path);
// Validate() rejects values out of range (InvalidArgument naming the key); hidden_act other than
// "silu" is Unimplemented (the fused conv and scan gate are SiLU).
//
// Dimension letters (mamba/README.md): M = hidden_size, D = intermediate_size, N = state_size,
// R = time_step_rank, K = conv_kernel, V = vocab_size.
#ifndef LYRA_MAMBA_CONFIG_H_
#define LYRA_MAMBA_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lyra::mamba {

// Which key layout a checkpoint uses (config.json and tensor names).
enum class CheckpointLayout { kHuggingFace, kMambaSsm };

struct MambaConfig {
  // Defaults are transformers' MambaConfig defaults.
  int64_t vocab_size = 50280;            // V: rows of the embedding (padded where mamba_ssm pads)
  int64_t hidden_size = 768;             // M
  int64_t state_size = 16;               // N
  int64_t num_hidden_layers = 32;
  double layer_norm_epsilon = 1e-5;
  int64_t expand = 2;
  int64_t intermediate_size = 1536;      // D = expand * M unless given
  int64_t conv_kernel = 4;               // K
  bool use_bias = true;                  // bias of in_proj and out_proj
  bool use_conv_bias = true;
  std::string hidden_act = "silu";
  double initializer_range = 0.1;
  bool residual_in_fp32 = true;
  int64_t time_step_rank = 48;           // R
  double time_step_scale = 1.0;
  double time_step_min = 0.001;
  double time_step_max = 0.1;
  std::string time_step_init_scheme = "random";  // "random" or "constant"
  double time_step_floor = 1e-4;
  bool rescale_prenorm_residual = false;
  bool tie_word_embeddings = true;
  int64_t pad_vocab_size_multiple = 8;
  int64_t pad_token_id = 0;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 0;
  // Where this config came from (written by FromJson; ToHfJson always writes the HF layout).
  CheckpointLayout layout = CheckpointLayout::kHuggingFace;

  // OK, or InvalidArgument naming the first bad field: sizes >= 1, K in [1, 8], eps >= 0,
  // 0 < time_step_min <= time_step_max, time_step_init_scheme "random" / "constant";
  // Unimplemented for hidden_act != "silu".
  absl::Status Validate() const;

  // Parses either layout (detected by "model_type", else by "d_model"), then Validate().
  // `source` names the text in errors (the file path).
  static absl::StatusOr<MambaConfig> FromJson(absl::string_view text,
                                              absl::string_view source = "config.json");
  // Reads and parses `path`: NotFound for a missing file.
  static absl::StatusOr<MambaConfig> FromFile(const std::string& path);

  // The Hugging Face config.json text (model_type "mamba", architectures ["MambaForCausalLM"],
  // every key above with an integer time_step_rank), pretty-printed, loadable by transformers
  // and by FromJson.
  std::string ToHfJson() const;
};

// ceil(hidden_size / 16): "auto" time_step_rank / dt_rank.
int64_t AutoTimeStepRank(int64_t hidden_size);

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_CONFIG_H_
