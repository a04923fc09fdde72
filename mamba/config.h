// MambaConfig: the hyper-parameters of a Mamba-1 or Mamba-2 language model, read from either
// checkpoint layout in use and written back in the Hugging Face one. `version` (1 or 2) says which
// mixer the blocks hold; everything else (blocks, model, cache, checkpoints, `lyra forward`) is
// shared.
//
// Four config.json layouts are understood (FromJson detects which):
//
//   Hugging Face Mamba-1 (transformers' MambaConfig, "model_type": "mamba"):
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
//   Hugging Face Mamba-2 (transformers' Mamba2Config, "model_type": "mamba2"):
//     {"model_type": "mamba2", "vocab_size": 32768, "hidden_size": 4096, "num_heads": 128,
//      "head_dim": 64, "n_groups": 8, "state_size": 128, "chunk_size": 256, "expand": 2,
//      "conv_kernel": 4, "num_hidden_layers": 64, "time_step_limit": [0.0, {"__float__":
//      "Infinity"}], "tie_word_embeddings": false, ...}
//   Required: vocab_size, hidden_size, num_heads, num_hidden_layers. Defaults are Mamba2Config's
//   (head_dim 64, n_groups 8, state_size 128, chunk_size 256, use_bias false, tie_word_embeddings
//   false, pad 1 / bos 0 / eos 2). intermediate_size = expand * hidden_size always (HF ignores a
//   stored one); num_heads * head_dim must equal it. time_step_limit is [min, max]; each bound is a
//   number, a string ("inf", "Infinity") or transformers' {"__float__": "Infinity"}. The gated
//   norm (mixer.norm) normalises over the whole intermediate size with eps = layer_norm_epsilon,
//   as transformers' MambaRMSNormGated does (it ignores n_groups); rms_norm is kept but, as in
//   transformers, does not remove that norm.
//
//   mamba_ssm (mamba_ssm/models/config_mamba.py, no "model_type"):
//     {"d_model": 768, "n_layer": 24, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": true,
//      "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 8,
//      "tie_embeddings": true}
//   Required: d_model, n_layer, vocab_size. vocab_size is padded up to a multiple of
//   pad_vocab_size_multiple (default 8), as MambaLMHeadModel does: 50277 -> 50280.
//   ssm_cfg.layer "Mamba1" (default; mamba_ssm's Mamba defaults): d_state 16, d_conv 4, expand 2,
//   dt_rank "auto", dt_min, dt_max, dt_init, dt_scale, dt_init_floor, conv_bias true, bias false.
//   ssm_cfg.layer "Mamba2" (mamba_ssm's Mamba2 defaults): d_state 128, d_conv 4, expand 2,
//   headdim 64 (nheads = d_inner / headdim), ngroups 1, chunk_size 256, rmsnorm true,
//   norm_before_gate false, dt_limit [0, inf], D_has_hdim false, bias false, conv_bias true,
//   dt_min, dt_max, dt_init_floor. Its gated norm is grouped (group size d_inner / ngroups) with
//   eps 1e-5, as mamba_ssm's RMSNormGated.
//   Unimplemented: d_intermediate > 0 (MLP blocks), a non-empty attn_layer_idx (hybrid
//   attention), rms_norm false (LayerNorm), Mamba2's rmsnorm false, norm_before_gate true, d_ssm.
//
// ToHfJson writes the Hugging Face layout of the version. A mamba_ssm Mamba-2 model with
// ngroups > 1 written as HF loses its grouped norm (transformers has no key for it); Lyra reads
// such a config back with the HF (ungrouped) semantics.
//
// Errors: text that is not JSON or not an object, an unknown model_type, a missing required key
// or a key of the wrong JSON type is InvalidArgument naming the key and the source (file path);
// Validate() rejects values out of range (InvalidArgument naming the key); hidden_act other than
// "silu" is Unimplemented (the fused conv and scan gate are SiLU).
//
// Dimension letters (mamba/README.md): M = hidden_size, D = intermediate_size, N = state_size,
// R = time_step_rank, K = conv_kernel, V = vocab_size; Mamba-2: H = num_heads, P = head_dim,
// G = n_groups, Q = chunk_size.
#ifndef LYRA_MAMBA_CONFIG_H_
#define LYRA_MAMBA_CONFIG_H_

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lyra::mamba {

// Which key layout a checkpoint uses (config.json and tensor names).
enum class CheckpointLayout { kHuggingFace, kMambaSsm };

struct MambaConfig {
  // 1: Mamba-1 (MambaMixer, selective scan); 2: Mamba-2 (Mamba2Mixer, SSD).
  int version = 1;
  // Defaults are transformers' MambaConfig defaults (FromJson applies Mamba2Config's for v2).
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
  // Mamba-2 only (version 2).
  int64_t num_heads = 24;                // H
  int64_t head_dim = 64;                 // P, H * P = D
  int64_t n_groups = 1;                  // G, divides H
  int64_t chunk_size = 256;              // Q of the SSD
  double time_step_limit_min = 0.0;      // dt' = clamp(softplus(dt + dt_bias), min, max)
  double time_step_limit_max = std::numeric_limits<double>::infinity();
  bool rms_norm = true;
  bool D_has_hdim = false;               // D is [D] (per channel) instead of [H]
  // The gated norm's group (channels normalised together) and epsilon: D and layer_norm_epsilon
  // in the HF layout, D / G and 1e-5 in mamba_ssm's.
  int64_t norm_group_size = 1536;
  double norm_epsilon = 1e-5;
  // Where this config came from (written by FromJson; ToHfJson always writes the HF layout).
  CheckpointLayout layout = CheckpointLayout::kHuggingFace;

  // OK, or InvalidArgument naming the first bad field: sizes >= 1, K in [1, 8], eps >= 0,
  // 0 < time_step_min <= time_step_max, time_step_init_scheme "random" / "constant"; version 1
  // or 2; for version 2: H * P = D, G divides H, norm_group_size divides D, 0 <=
  // time_step_limit_min <= time_step_limit_max;
  // Unimplemented for hidden_act != "silu".
  absl::Status Validate() const;

  // Parses either layout (detected by "model_type", else by "d_model"), then Validate().
  // `source` names the text in errors (the file path).
  static absl::StatusOr<MambaConfig> FromJson(absl::string_view text,
                                              absl::string_view source = "config.json");
  // Reads and parses `path`: NotFound for a missing file.
  static absl::StatusOr<MambaConfig> FromFile(const std::string& path);

  // The Hugging Face config.json text, pretty-printed, loadable by transformers and by FromJson:
  // version 1: model_type "mamba", architectures ["MambaForCausalLM"], every Mamba-1 key with an
  // integer time_step_rank; version 2: model_type "mamba2", ["Mamba2ForCausalLM"], Mamba2Config's
  // keys (an infinite time_step_limit bound as {"__float__": "Infinity"}, as transformers writes).
  std::string ToHfJson() const;
};

// ceil(hidden_size / 16): "auto" time_step_rank / dt_rank.
int64_t AutoTimeStepRank(int64_t hidden_size);

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_CONFIG_H_
