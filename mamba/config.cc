#include "mamba/config.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace lyra::mamba {
namespace {

using Json = nlohmann::json;

// A JSON number, a string naming a non-finite float, or {"__float__": "<such a string>"}.
bool ParseFloat(const Json& v, double& out) {
  if (v.is_number()) {
    out = v.get<double>();
    return true;
  }
  const Json* s = &v;
  if (v.is_object() && v.size() == 1 && v.contains("__float__")) s = &v["__float__"];
  if (!s->is_string()) return false;
  std::string text = s->get<std::string>();
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (text == "inf" || text == "+inf" || text == "infinity" || text == "+infinity") {
    out = std::numeric_limits<double>::infinity();
    return true;
  }
  if (text == "-inf" || text == "-infinity") {
    out = -std::numeric_limits<double>::infinity();
    return true;
  }
  if (text == "nan") {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  return false;
}

// Typed, non-throwing reads of one JSON object's keys; every error names the key (with its
// parent's path, e.g. "ssm_cfg.d_state") and the source.
class Reader {
 public:
  Reader(const Json& object, std::string prefix, std::string source)
      : object_(object), prefix_(std::move(prefix)), source_(std::move(source)) {}

  bool Has(const char* key) const { return object_.contains(key) && !object_[key].is_null(); }
  const Json& at(const char* key) const { return object_[key]; }

  absl::Status Int(const char* key, int64_t& out, bool required) const {
    if (!Has(key)) return Missing(key, required);
    const Json& v = object_[key];
    if (v.is_number_integer()) {
      out = v.get<int64_t>();
      return absl::OkStatus();
    }
    // 2.0 is an integer written by some writers; 2.5 is not.
    if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
        std::fabs(v.get<double>()) < 9e15) {
      out = static_cast<int64_t>(v.get<double>());
      return absl::OkStatus();
    }
    return WrongType(key, "an integer");
  }
  absl::Status Double(const char* key, double& out, bool required) const {
    if (!Has(key)) return Missing(key, required);
    const Json& v = object_[key];
    if (!v.is_number()) return WrongType(key, "a number");
    out = v.get<double>();
    return absl::OkStatus();
  }
  absl::Status Bool(const char* key, bool& out, bool required) const {
    if (!Has(key)) return Missing(key, required);
    const Json& v = object_[key];
    if (!v.is_boolean()) return WrongType(key, "a boolean");
    out = v.get<bool>();
    return absl::OkStatus();
  }
  absl::Status String(const char* key, std::string& out, bool required) const {
    if (!Has(key)) return Missing(key, required);
    const Json& v = object_[key];
    if (!v.is_string()) return WrongType(key, "a string");
    out = v.get<std::string>();
    return absl::OkStatus();
  }
  // An integer, or the string "auto" (then `out` is left as `auto_value`).
  absl::Status IntOrAuto(const char* key, int64_t& out, int64_t auto_value) const {
    if (!Has(key) || (object_[key].is_string() && object_[key].get<std::string>() == "auto")) {
      out = auto_value;
      return absl::OkStatus();
    }
    if (object_[key].is_string()) return WrongType(key, "an integer or \"auto\"");
    return Int(key, out, /*required=*/true);
  }

  // A [min, max] pair of numbers; each may also be "inf" / "Infinity" / "-inf" (any case) or
  // transformers' {"__float__": "Infinity"} encoding of a non-finite float.
  absl::Status Range(const char* key, double& lo, double& hi) const {
    if (!Has(key)) return absl::OkStatus();
    const Json& v = object_[key];
    if (!v.is_array() || v.size() != 2) return WrongType(key, "a [min, max] pair");
    double* out[2] = {&lo, &hi};
    for (int i = 0; i < 2; ++i) {
      if (!ParseFloat(v[i], *out[i])) {
        return WrongType(key, "a [min, max] pair of numbers (or \"inf\" / {\"__float__\": ...})");
      }
    }
    return absl::OkStatus();
  }

  absl::Status WrongType(const char* key, const char* expected) const {
    return absl::InvalidArgumentError(absl::StrCat("MambaConfig: key \"", prefix_, key,
                                                   "\" in ", source_, " must be ", expected,
                                                   ", got ", object_[key].dump()));
  }

 private:
  absl::Status Missing(const char* key, bool required) const {
    if (!required) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("MambaConfig: required key \"", prefix_, key,
                                                   "\" is missing in ", source_));
  }

  const Json& object_;
  std::string prefix_;
  std::string source_;
};

// The keys transformers' MambaConfig and Mamba2Config share, with the same meaning (the
// defaults that differ are set before).
absl::Status ParseHfSharedKeys(const Reader& r, MambaConfig& c) {
  LYRA_RETURN_IF_ERROR(r.Int("vocab_size", c.vocab_size, true));
  LYRA_RETURN_IF_ERROR(r.Int("hidden_size", c.hidden_size, true));
  LYRA_RETURN_IF_ERROR(r.Int("num_hidden_layers", c.num_hidden_layers, true));
  LYRA_RETURN_IF_ERROR(r.Double("layer_norm_epsilon", c.layer_norm_epsilon, false));
  LYRA_RETURN_IF_ERROR(r.Int("expand", c.expand, false));
  c.intermediate_size = c.expand * c.hidden_size;
  LYRA_RETURN_IF_ERROR(r.Int("conv_kernel", c.conv_kernel, false));
  LYRA_RETURN_IF_ERROR(r.Bool("use_bias", c.use_bias, false));
  LYRA_RETURN_IF_ERROR(r.Bool("use_conv_bias", c.use_conv_bias, false));
  LYRA_RETURN_IF_ERROR(r.String("hidden_act", c.hidden_act, false));
  LYRA_RETURN_IF_ERROR(r.Double("initializer_range", c.initializer_range, false));
  LYRA_RETURN_IF_ERROR(r.Bool("residual_in_fp32", c.residual_in_fp32, false));
  LYRA_RETURN_IF_ERROR(
      r.IntOrAuto("time_step_rank", c.time_step_rank, AutoTimeStepRank(c.hidden_size)));
  LYRA_RETURN_IF_ERROR(r.Double("time_step_min", c.time_step_min, false));
  LYRA_RETURN_IF_ERROR(r.Double("time_step_max", c.time_step_max, false));
  LYRA_RETURN_IF_ERROR(r.Double("time_step_floor", c.time_step_floor, false));
  LYRA_RETURN_IF_ERROR(r.Bool("rescale_prenorm_residual", c.rescale_prenorm_residual, false));
  LYRA_RETURN_IF_ERROR(r.Bool("tie_word_embeddings", c.tie_word_embeddings, false));
  LYRA_RETURN_IF_ERROR(r.Int("pad_vocab_size_multiple", c.pad_vocab_size_multiple, false));
  LYRA_RETURN_IF_ERROR(r.Int("pad_token_id", c.pad_token_id, false));
  LYRA_RETURN_IF_ERROR(r.Int("bos_token_id", c.bos_token_id, false));
  LYRA_RETURN_IF_ERROR(r.Int("eos_token_id", c.eos_token_id, false));
  c.layout = CheckpointLayout::kHuggingFace;
  return absl::OkStatus();
}

absl::Status ParseHf(const Reader& r, MambaConfig& c) {
  LYRA_RETURN_IF_ERROR(ParseHfSharedKeys(r, c));
  LYRA_RETURN_IF_ERROR(r.Int("state_size", c.state_size, true));
  LYRA_RETURN_IF_ERROR(r.Int("intermediate_size", c.intermediate_size, false));
  LYRA_RETURN_IF_ERROR(r.Double("time_step_scale", c.time_step_scale, false));
  LYRA_RETURN_IF_ERROR(r.String("time_step_init_scheme", c.time_step_init_scheme, false));
  return absl::OkStatus();
}

absl::Status ParseHf2(const Reader& r, MambaConfig& c) {
  // transformers' Mamba2Config defaults where they differ from MambaConfig's.
  c.version = 2;
  c.head_dim = 64;
  c.n_groups = 8;
  c.state_size = 128;
  c.chunk_size = 256;
  c.use_bias = false;
  c.tie_word_embeddings = false;
  c.pad_token_id = 1;
  c.bos_token_id = 0;
  c.eos_token_id = 2;
  LYRA_RETURN_IF_ERROR(ParseHfSharedKeys(r, c));
  LYRA_RETURN_IF_ERROR(r.Int("num_heads", c.num_heads, true));
  LYRA_RETURN_IF_ERROR(r.Int("head_dim", c.head_dim, false));
  LYRA_RETURN_IF_ERROR(r.Int("n_groups", c.n_groups, false));
  LYRA_RETURN_IF_ERROR(r.Int("state_size", c.state_size, false));
  LYRA_RETURN_IF_ERROR(r.Int("chunk_size", c.chunk_size, false));
  LYRA_RETURN_IF_ERROR(
      r.Range("time_step_limit", c.time_step_limit_min, c.time_step_limit_max));
  LYRA_RETURN_IF_ERROR(r.Bool("rms_norm", c.rms_norm, false));
  // transformers' MambaRMSNormGated: one group over all D channels, the blocks' epsilon.
  c.norm_group_size = c.intermediate_size;
  c.norm_epsilon = c.layer_norm_epsilon;
  return absl::OkStatus();
}

// ssm_cfg of a mamba_ssm "Mamba2" layer (defaults of mamba_ssm's Mamba2).
absl::Status ParseMambaSsm2(const Reader& s, const std::string& source, MambaConfig& c) {
  c.version = 2;
  c.state_size = 128;
  c.head_dim = 64;
  c.n_groups = 1;
  c.chunk_size = 256;
  c.D_has_hdim = false;
  LYRA_RETURN_IF_ERROR(s.Int("d_state", c.state_size, false));
  LYRA_RETURN_IF_ERROR(s.Int("d_conv", c.conv_kernel, false));
  LYRA_RETURN_IF_ERROR(s.Int("expand", c.expand, false));
  LYRA_RETURN_IF_ERROR(s.Int("headdim", c.head_dim, false));
  LYRA_RETURN_IF_ERROR(s.Int("ngroups", c.n_groups, false));
  LYRA_RETURN_IF_ERROR(s.Int("chunk_size", c.chunk_size, false));
  LYRA_RETURN_IF_ERROR(s.Double("dt_min", c.time_step_min, false));
  LYRA_RETURN_IF_ERROR(s.Double("dt_max", c.time_step_max, false));
  LYRA_RETURN_IF_ERROR(s.Double("dt_init_floor", c.time_step_floor, false));
  LYRA_RETURN_IF_ERROR(s.Range("dt_limit", c.time_step_limit_min, c.time_step_limit_max));
  LYRA_RETURN_IF_ERROR(s.Bool("D_has_hdim", c.D_has_hdim, false));
  LYRA_RETURN_IF_ERROR(s.Bool("conv_bias", c.use_conv_bias, false));
  LYRA_RETURN_IF_ERROR(s.Bool("bias", c.use_bias, false));
  bool rmsnorm = true, norm_before_gate = false;
  LYRA_RETURN_IF_ERROR(s.Bool("rmsnorm", rmsnorm, false));
  LYRA_RETURN_IF_ERROR(s.Bool("norm_before_gate", norm_before_gate, false));
  if (!rmsnorm || norm_before_gate) {
    return absl::UnimplementedError(absl::StrCat(
        "MambaConfig: \"ssm_cfg.", !rmsnorm ? "rmsnorm\": false" : "norm_before_gate\": true",
        "\" in ", source, " is not supported (only the gated RMSNorm after the gate)"));
  }
  if (s.Has("d_ssm")) {
    return absl::UnimplementedError(absl::StrCat(
        "MambaConfig: \"ssm_cfg.d_ssm\" (a partial SSM with a gated MLP) in ", source,
        " is not supported"));
  }
  c.intermediate_size = c.expand * c.hidden_size;
  if (c.head_dim < 1 || c.intermediate_size % c.head_dim != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MambaConfig: \"ssm_cfg.headdim\" in ", source, " must divide d_inner = expand * d_model = ",
        c.intermediate_size, ", got ", c.head_dim));
  }
  c.num_heads = c.intermediate_size / c.head_dim;
  c.rms_norm = true;
  c.norm_group_size = c.n_groups >= 1 ? c.intermediate_size / c.n_groups : c.intermediate_size;
  c.norm_epsilon = 1e-5;
  return absl::OkStatus();
}

absl::Status ParseMambaSsm(const Reader& r, const std::string& source, MambaConfig& c) {
  LYRA_RETURN_IF_ERROR(r.Int("d_model", c.hidden_size, true));
  LYRA_RETURN_IF_ERROR(r.Int("n_layer", c.num_hidden_layers, true));
  LYRA_RETURN_IF_ERROR(r.Int("vocab_size", c.vocab_size, true));
  c.pad_vocab_size_multiple = 8;
  LYRA_RETURN_IF_ERROR(r.Int("pad_vocab_size_multiple", c.pad_vocab_size_multiple, false));
  LYRA_RETURN_IF_ERROR(r.Bool("residual_in_fp32", c.residual_in_fp32, false));
  c.tie_word_embeddings = true;
  LYRA_RETURN_IF_ERROR(r.Bool("tie_embeddings", c.tie_word_embeddings, false));
  bool rms_norm = true;
  LYRA_RETURN_IF_ERROR(r.Bool("rms_norm", rms_norm, false));
  if (!rms_norm) {
    return absl::UnimplementedError(
        absl::StrCat("MambaConfig: \"rms_norm\": false (LayerNorm blocks) in ", source,
                     " is not supported"));
  }
  int64_t d_intermediate = 0;
  LYRA_RETURN_IF_ERROR(r.Int("d_intermediate", d_intermediate, false));
  if (d_intermediate != 0) {
    return absl::UnimplementedError(absl::StrCat("MambaConfig: \"d_intermediate\": ",
                                                 d_intermediate, " (MLP blocks) in ", source,
                                                 " is not supported"));
  }
  if (r.Has("attn_layer_idx")) {
    if (!r.at("attn_layer_idx").is_array()) return r.WrongType("attn_layer_idx", "an array");
    if (!r.at("attn_layer_idx").empty()) {
      return absl::UnimplementedError(absl::StrCat(
          "MambaConfig: attention layers (\"attn_layer_idx\") in ", source, " are not supported"));
    }
  }
  // mamba_ssm's Mamba defaults; mamba_ssm always uses SiLU, no in/out bias, norm eps 1e-5.
  c.state_size = 16;
  c.conv_kernel = 4;
  c.expand = 2;
  c.use_bias = false;
  c.use_conv_bias = true;
  c.hidden_act = "silu";
  c.layer_norm_epsilon = 1e-5;
  c.time_step_rank = AutoTimeStepRank(c.hidden_size);
  if (r.Has("ssm_cfg")) {
    const Json& ssm = r.at("ssm_cfg");
    if (!ssm.is_object()) return r.WrongType("ssm_cfg", "an object");
    Reader s(ssm, "ssm_cfg.", source);
    std::string layer = "Mamba1";
    LYRA_RETURN_IF_ERROR(s.String("layer", layer, false));
    if (layer == "Mamba2") {
      LYRA_RETURN_IF_ERROR(ParseMambaSsm2(s, source, c));
    } else if (layer != "Mamba1") {
      return absl::UnimplementedError(absl::StrCat("MambaConfig: \"ssm_cfg.layer\": \"", layer,
                                                   "\" in ", source,
                                                   " is not supported (\"Mamba1\" or \"Mamba2\")"));
    }
  }
  if (c.version == 1 && r.Has("ssm_cfg")) {
    const Json& ssm = r.at("ssm_cfg");
    Reader s(ssm, "ssm_cfg.", source);
    LYRA_RETURN_IF_ERROR(s.Int("d_state", c.state_size, false));
    LYRA_RETURN_IF_ERROR(s.Int("d_conv", c.conv_kernel, false));
    LYRA_RETURN_IF_ERROR(s.Int("expand", c.expand, false));
    LYRA_RETURN_IF_ERROR(s.IntOrAuto("dt_rank", c.time_step_rank, c.time_step_rank));
    LYRA_RETURN_IF_ERROR(s.Double("dt_min", c.time_step_min, false));
    LYRA_RETURN_IF_ERROR(s.Double("dt_max", c.time_step_max, false));
    LYRA_RETURN_IF_ERROR(s.String("dt_init", c.time_step_init_scheme, false));
    LYRA_RETURN_IF_ERROR(s.Double("dt_scale", c.time_step_scale, false));
    LYRA_RETURN_IF_ERROR(s.Double("dt_init_floor", c.time_step_floor, false));
    LYRA_RETURN_IF_ERROR(s.Bool("conv_bias", c.use_conv_bias, false));
    LYRA_RETURN_IF_ERROR(s.Bool("bias", c.use_bias, false));
  }
  c.intermediate_size = c.expand * c.hidden_size;
  if (c.pad_vocab_size_multiple < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("MambaConfig: \"pad_vocab_size_multiple\" in ", source, " must be >= 1, got ",
                     c.pad_vocab_size_multiple));
  }
  if (c.vocab_size % c.pad_vocab_size_multiple != 0) {
    c.vocab_size += c.pad_vocab_size_multiple - c.vocab_size % c.pad_vocab_size_multiple;
  }
  c.layout = CheckpointLayout::kMambaSsm;
  return absl::OkStatus();
}

absl::Status Bad(const char* key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("MambaConfig: ", key, " ", what));
}

}  // namespace

int64_t AutoTimeStepRank(int64_t hidden_size) { return (hidden_size + 15) / 16; }

absl::Status MambaConfig::Validate() const {
  auto positive = [](const char* key, int64_t v) -> absl::Status {
    if (v >= 1) return absl::OkStatus();
    return Bad(key, absl::StrCat("must be >= 1, got ", v));
  };
  LYRA_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  LYRA_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  LYRA_RETURN_IF_ERROR(positive("state_size", state_size));
  LYRA_RETURN_IF_ERROR(positive("num_hidden_layers", num_hidden_layers));
  LYRA_RETURN_IF_ERROR(positive("expand", expand));
  LYRA_RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  LYRA_RETURN_IF_ERROR(positive("time_step_rank", time_step_rank));
  LYRA_RETURN_IF_ERROR(positive("pad_vocab_size_multiple", pad_vocab_size_multiple));
  if (conv_kernel < 1 || conv_kernel > 8) {
    return Bad("conv_kernel", absl::StrCat("must be in [1, 8], got ", conv_kernel));
  }
  if (!(layer_norm_epsilon >= 0) || !std::isfinite(layer_norm_epsilon)) {
    return Bad("layer_norm_epsilon", absl::StrCat("must be finite and >= 0, got ",
                                                  layer_norm_epsilon));
  }
  if (!(time_step_min > 0) || !(time_step_min <= time_step_max) ||
      !std::isfinite(time_step_max)) {
    return Bad("time_step_min/time_step_max",
               absl::StrCat("must satisfy 0 < min <= max, got ", time_step_min, " and ",
                            time_step_max));
  }
  if (!(time_step_floor >= 0) || !(time_step_scale >= 0) || !(initializer_range >= 0)) {
    return Bad("time_step_floor/time_step_scale/initializer_range", "must be >= 0");
  }
  if (time_step_init_scheme != "random" && time_step_init_scheme != "constant") {
    return Bad("time_step_init_scheme", absl::StrCat("must be \"random\" or \"constant\", got \"",
                                                     time_step_init_scheme, "\""));
  }
  if (version != 1 && version != 2) {
    return Bad("version", absl::StrCat("must be 1 or 2, got ", version));
  }
  if (version == 2) {
    LYRA_RETURN_IF_ERROR(positive("num_heads", num_heads));
    LYRA_RETURN_IF_ERROR(positive("head_dim", head_dim));
    LYRA_RETURN_IF_ERROR(positive("n_groups", n_groups));
    LYRA_RETURN_IF_ERROR(positive("chunk_size", chunk_size));
    LYRA_RETURN_IF_ERROR(positive("norm_group_size", norm_group_size));
    if (num_heads * head_dim != intermediate_size) {
      return Bad("num_heads", absl::StrCat("* head_dim must equal intermediate_size = expand * "
                                           "hidden_size = ", intermediate_size, ", got ",
                                           num_heads, " * ", head_dim));
    }
    if (num_heads % n_groups != 0) {
      return Bad("n_groups", absl::StrCat("must divide num_heads = ", num_heads, ", got ",
                                          n_groups));
    }
    if (intermediate_size % norm_group_size != 0) {
      return Bad("norm_group_size", absl::StrCat("must divide intermediate_size = ",
                                                 intermediate_size, ", got ", norm_group_size));
    }
    if (!(time_step_limit_min >= 0) || !(time_step_limit_min <= time_step_limit_max)) {
      return Bad("time_step_limit", absl::StrCat("must satisfy 0 <= min <= max, got [",
                                                 time_step_limit_min, ", ", time_step_limit_max,
                                                 "]"));
    }
    if (!(norm_epsilon >= 0) || !std::isfinite(norm_epsilon)) {
      return Bad("norm_epsilon", absl::StrCat("must be finite and >= 0, got ", norm_epsilon));
    }
  }
  if (hidden_act != "silu" && hidden_act != "swish") {
    return absl::UnimplementedError(absl::StrCat("MambaConfig: hidden_act \"", hidden_act,
                                                 "\" is not supported (only \"silu\")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<MambaConfig> MambaConfig::FromJson(absl::string_view text,
                                                  absl::string_view source) {
  const std::string src(source);
  Json root = Json::parse(text.begin(), text.end(), /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("MambaConfig: ", src, " is not valid JSON"));
  }
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("MambaConfig: ", src, " is not a JSON object"));
  }
  Reader r(root, "", src);
  MambaConfig c;
  if (r.Has("model_type")) {
    std::string model_type;
    LYRA_RETURN_IF_ERROR(r.String("model_type", model_type, true));
    if (model_type == "mamba") {
      LYRA_RETURN_IF_ERROR(ParseHf(r, c));
    } else if (model_type == "mamba2") {
      LYRA_RETURN_IF_ERROR(ParseHf2(r, c));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "MambaConfig: key \"model_type\" in ", src, " is \"", model_type,
          "\"; expected \"mamba\" or \"mamba2\" (a Hugging Face Mamba config)"));
    }
  } else if (r.Has("d_model")) {
    LYRA_RETURN_IF_ERROR(ParseMambaSsm(r, src, c));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "MambaConfig: ", src,
        " has neither \"model_type\" (Hugging Face) nor \"d_model\" (mamba_ssm)"));
  }
  absl::Status valid = c.Validate();
  if (!valid.ok()) {
    return absl::Status(valid.code(), absl::StrCat(valid.message(), " (in ", src, ")"));
  }
  return c;
}

absl::StatusOr<MambaConfig> MambaConfig::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("MambaConfig: cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("MambaConfig: cannot read ", path));
  return FromJson(buffer.str(), path);
}

namespace {

// A float as transformers' JSON encoder writes it: non-finite values as {"__float__": "..."}.
nlohmann::ordered_json HfFloat(double v) {
  if (std::isfinite(v)) return v;
  nlohmann::ordered_json j;
  j["__float__"] = std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity");
  return j;
}

std::string Mamba2HfJson(const MambaConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = nlohmann::ordered_json::array({"Mamba2ForCausalLM"});
  j["model_type"] = "mamba2";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["num_heads"] = c.num_heads;
  j["head_dim"] = c.head_dim;
  j["n_groups"] = c.n_groups;
  j["state_size"] = c.state_size;
  j["chunk_size"] = c.chunk_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["layer_norm_epsilon"] = c.layer_norm_epsilon;
  j["expand"] = c.expand;
  j["conv_kernel"] = c.conv_kernel;
  j["use_bias"] = c.use_bias;
  j["use_conv_bias"] = c.use_conv_bias;
  j["hidden_act"] = c.hidden_act;
  j["initializer_range"] = c.initializer_range;
  j["residual_in_fp32"] = c.residual_in_fp32;
  j["time_step_rank"] = c.time_step_rank;
  j["time_step_min"] = c.time_step_min;
  j["time_step_max"] = c.time_step_max;
  j["time_step_floor"] = c.time_step_floor;
  j["time_step_limit"] = nlohmann::ordered_json::array(
      {HfFloat(c.time_step_limit_min), HfFloat(c.time_step_limit_max)});
  j["rescale_prenorm_residual"] = c.rescale_prenorm_residual;
  j["rms_norm"] = c.rms_norm;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["pad_token_id"] = c.pad_token_id;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] = c.eos_token_id;
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

}  // namespace

std::string MambaConfig::ToHfJson() const {
  if (version == 2) return Mamba2HfJson(*this);
  nlohmann::ordered_json j;
  j["architectures"] = nlohmann::ordered_json::array({"MambaForCausalLM"});
  j["model_type"] = "mamba";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["state_size"] = state_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["layer_norm_epsilon"] = layer_norm_epsilon;
  j["expand"] = expand;
  j["intermediate_size"] = intermediate_size;
  j["conv_kernel"] = conv_kernel;
  j["use_bias"] = use_bias;
  j["use_conv_bias"] = use_conv_bias;
  j["hidden_act"] = hidden_act;
  j["initializer_range"] = initializer_range;
  j["residual_in_fp32"] = residual_in_fp32;
  j["time_step_rank"] = time_step_rank;
  j["time_step_scale"] = time_step_scale;
  j["time_step_min"] = time_step_min;
  j["time_step_max"] = time_step_max;
  j["time_step_init_scheme"] = time_step_init_scheme;
  j["time_step_floor"] = time_step_floor;
  j["rescale_prenorm_residual"] = rescale_prenorm_residual;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["pad_vocab_size_multiple"] = pad_vocab_size_multiple;
  j["pad_token_id"] = pad_token_id;
  j["bos_token_id"] = bos_token_id;
  j["eos_token_id"] = eos_token_id;
  j["use_cache"] = true;
  return j.dump(2) + "\n";
}

}  // namespace lyra::mamba
