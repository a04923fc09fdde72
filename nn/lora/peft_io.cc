#include "nn/lora/peft_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "tensor/safetensors.h"

namespace lyra::nn {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr char kPrefix[] = "base_model.model.";
// The PEFT release whose LoraConfig.to_dict() field set adapter_config.json reproduces.
constexpr char kPeftVersion[] = "0.21.0";

// A number that PEFT writes as an int when it is one (r, lora_alpha).
Json Number(double v) {
  if (std::floor(v) == v && std::fabs(v) < 9e15) return Json(static_cast<int64_t>(v));
  return Json(v);
}

absl::Status ErrnoStatus(int err, const std::string& what) {
  return absl::Status(absl::ErrnoToStatusCode(err), absl::StrCat(what, ": ", std::strerror(err)));
}

// temp file + fsync + rename + directory fsync, as WriteSafetensors.
absl::Status WriteTextAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    return ErrnoStatus(errno, absl::StrCat("SaveLoraAdapter: cannot create ", tmp));
  }
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      std::remove(tmp.c_str());
      return ErrnoStatus(err, absl::StrCat("SaveLoraAdapter: cannot write ", tmp));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return ErrnoStatus(err, absl::StrCat("SaveLoraAdapter: cannot sync ", tmp));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return ErrnoStatus(err, absl::StrCat("SaveLoraAdapter: cannot rename ", tmp, " to ",
                                                 path));
  }
  const std::string dir = fs::path(path).parent_path().string();
  const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("LoadLoraAdapter: cannot open ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A JSON value that is a string or a list of strings (null: empty).
absl::StatusOr<std::vector<std::string>> StringOrList(const Json& j, const std::string& field,
                                                      const std::string& file) {
  std::vector<std::string> out;
  if (j.is_null()) return out;
  if (j.is_string()) return std::vector<std::string>{j.get<std::string>()};
  if (j.is_array()) {
    for (const Json& e : j) {
      if (!e.is_string()) break;
      out.push_back(e.get<std::string>());
    }
    if (out.size() == j.size()) return out;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": \"", field, "\" must be a string or a list of strings"));
}

}  // namespace

std::string PeftConfigJson(const LoraConfig& config) {
  Json j;
  j["alora_invocation_tokens"] = nullptr;
  j["alpha_pattern"] = Json::object();
  j["arrow_config"] = nullptr;
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] =
      config.base_model_name_or_path.empty() ? Json(nullptr) : Json(config.base_model_name_or_path);
  j["bias"] = config.bias;
  j["corda_config"] = nullptr;
  j["ensure_weight_tying"] = false;
  j["eva_config"] = nullptr;
  j["exclude_modules"] = !config.exclude_regex.empty() ? Json(config.exclude_regex)
                         : config.exclude_modules.empty() ? Json(nullptr)
                                                          : Json(config.exclude_modules);
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["kasa_config"] = nullptr;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = config.layers_pattern.empty() ? Json(nullptr) : Json(config.layers_pattern);
  j["layers_to_transform"] =
      config.layers_to_transform.empty() ? Json(nullptr) : Json(config.layers_to_transform);
  j["loftq_config"] = Json::object();
  j["lora_alpha"] = Number(config.lora_alpha);
  j["lora_bias"] = false;
  j["lora_dropout"] = config.lora_dropout;
  j["lora_ga_config"] = nullptr;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] =
      config.modules_to_save.empty() ? Json(nullptr) : Json(config.modules_to_save);
  j["monteclora_config"] = nullptr;
  j["peft_type"] = "LORA";
  j["peft_version"] = kPeftVersion;
  j["qalora_group_size"] = 16;
  j["r"] = config.r;
  j["rank_pattern"] = Json::object();
  j["revision"] = config.revision.empty() ? Json(nullptr) : Json(config.revision);
  j["target_modules"] =
      config.target_regex.empty() ? Json(config.target_modules) : Json(config.target_regex);
  j["target_parameters"] = nullptr;
  j["task_type"] = config.task_type.empty() ? Json(nullptr) : Json(config.task_type);
  j["trainable_token_indices"] = nullptr;
  j["use_bdlora"] = nullptr;
  j["use_dora"] = false;
  j["use_qalora"] = false;
  j["use_rslora"] = config.use_rslora;
  j["velora_config"] = nullptr;
  return j.dump(2);  // json.dumps(indent=2, sort_keys=True): no trailing newline
}

absl::StatusOr<LoraConfig> ParsePeftConfig(const std::string& text, const std::string& file,
                                           const std::string& adapter_name) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": malformed JSON: ", e.what()));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": not a JSON object"));
  }
  auto get = [&](const char* key) -> const Json* {
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto wrong = [&](const char* key, const char* want) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": \"", key, "\" must be ", want));
  };
  const Json* peft_type = get("peft_type");
  if (peft_type == nullptr || !peft_type->is_string()) return wrong("peft_type", "a string");
  if (peft_type->get<std::string>() != "LORA") {
    return absl::UnimplementedError(absl::StrCat(file, ": peft_type \"",
                                                 peft_type->get<std::string>(),
                                                 "\" is not implemented (only \"LORA\")"));
  }
  LoraConfig config;
  config.adapter_name = adapter_name;
  if (const Json* v = get("r")) {
    if (!v->is_number_integer()) return wrong("r", "an integer");
    config.r = v->get<int64_t>();
  }
  if (const Json* v = get("lora_alpha")) {
    if (!v->is_number()) return wrong("lora_alpha", "a number");
    config.lora_alpha = v->get<double>();
  }
  if (const Json* v = get("lora_dropout")) {
    if (!v->is_number()) return wrong("lora_dropout", "a number");
    config.lora_dropout = v->get<double>();
  }
  for (const char* flag : {"use_rslora", "use_dora", "fan_in_fan_out", "inference_mode"}) {
    const Json* v = get(flag);
    if (v != nullptr && !v->is_boolean()) return wrong(flag, "true or false");
  }
  if (const Json* v = get("use_rslora")) config.use_rslora = v->get<bool>();
  if (const Json* v = get("inference_mode")) config.inference_mode = v->get<bool>();
  for (const char* flag : {"use_dora", "fan_in_fan_out"}) {
    if (const Json* v = get(flag); v != nullptr && v->get<bool>()) {
      return absl::UnimplementedError(absl::StrCat(file, ": \"", flag, "\": true is not implemented"));
    }
  }
  for (const char* pattern : {"rank_pattern", "alpha_pattern"}) {
    if (const Json* v = get(pattern)) {
      if (!v->is_object()) return wrong(pattern, "an object");
      if (!v->empty()) {
        return absl::UnimplementedError(
            absl::StrCat(file, ": a non-empty \"", pattern, "\" is not implemented"));
      }
    }
  }
  if (const Json* v = get("bias")) {
    if (!v->is_string()) return wrong("bias", "a string");
    config.bias = v->get<std::string>();
    if (config.bias != "none") {
      return absl::UnimplementedError(absl::StrCat(
          file, ": bias \"", config.bias, "\" is not implemented (only \"none\")"));
    }
  }
  if (const Json* v = get("exclude_modules")) {
    if (v->is_string()) {
      config.exclude_regex = v->get<std::string>();
    } else {
      LYRA_ASSIGN_OR_RETURN(config.exclude_modules, StringOrList(*v, "exclude_modules", file));
    }
  }
  // Features of PEFT's LoraConfig that Lyra does not have: refuse rather than ignore them.
  for (const char* feature : {"target_parameters", "trainable_token_indices", "layer_replication",
                              "lora_bias", "use_qalora", "use_bdlora", "alora_invocation_tokens"}) {
    const Json* v = get(feature);
    const bool in_use = v != nullptr && !(v->is_boolean() && !v->get<bool>()) &&
                        !((v->is_array() || v->is_object()) && v->empty());
    if (in_use) {
      return absl::UnimplementedError(
          absl::StrCat(file, ": \"", feature, "\" = ", v->dump(), " is not implemented"));
    }
  }
  const Json* targets = get("target_modules");
  if (targets == nullptr) return wrong("target_modules", "a string or a list of strings");
  if (targets->is_string()) {
    config.target_regex = targets->get<std::string>();
  } else {
    LYRA_ASSIGN_OR_RETURN(config.target_modules, StringOrList(*targets, "target_modules", file));
  }
  if (const Json* v = get("modules_to_save")) {
    if (!v->is_array()) return wrong("modules_to_save", "a list of strings");
    LYRA_ASSIGN_OR_RETURN(config.modules_to_save, StringOrList(*v, "modules_to_save", file));
  }
  if (const Json* v = get("layers_to_transform")) {
    if (v->is_number_integer()) {
      config.layers_to_transform = {v->get<int>()};
    } else if (v->is_array()) {
      for (const Json& e : *v) {
        if (!e.is_number_integer()) return wrong("layers_to_transform", "an int or a list of ints");
        config.layers_to_transform.push_back(e.get<int>());
      }
    } else {
      return wrong("layers_to_transform", "an int or a list of ints");
    }
  }
  if (const Json* v = get("layers_pattern")) {
    LYRA_ASSIGN_OR_RETURN(config.layers_pattern, StringOrList(*v, "layers_pattern", file));
  }
  for (auto [key, field] : {std::pair<const char*, std::string*>{"base_model_name_or_path",
                                                                 &config.base_model_name_or_path},
                            {"revision", &config.revision},
                            {"task_type", &config.task_type}}) {
    if (const Json* v = get(key)) {
      if (!v->is_string()) return wrong(key, "a string or null");
      *field = v->get<std::string>();
    } else {
      field->clear();
    }
  }
  return config;
}

absl::Status SaveLoraAdapter(const Module& root, const LoraConfig& config, const std::string& dir) {
  const auto params = PeftAdapterParameters(root, config.adapter_name, kPrefix);
  if (params.empty()) {
    return absl::NotFoundError(absl::StrCat("SaveLoraAdapter: ", root.type_name(),
                                            " has no adapter '", config.adapter_name, "'"));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("SaveLoraAdapter: cannot create ", dir, ": ", ec.message()));
  }
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& [key, v] : params) tensors.emplace_back(key, v.data());
  LYRA_RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / kPeftWeightsFile).string(), tensors,
                                        {{"format", "pt"}}));
  return WriteTextAtomic((fs::path(dir) / kPeftConfigFile).string(), PeftConfigJson(config));
}

absl::StatusOr<LoraConfig> LoadLoraAdapter(Module& root, const std::string& dir,
                                           const std::string& adapter_name, bool trainable) {
  const std::string config_path = (fs::path(dir) / kPeftConfigFile).string();
  LYRA_ASSIGN_OR_RETURN(std::string text, ReadText(config_path));
  LYRA_ASSIGN_OR_RETURN(LoraConfig config, ParsePeftConfig(text, config_path, adapter_name));
  LYRA_ASSIGN_OR_RETURN(SafetensorsContents weights,
                        ReadSafetensors((fs::path(dir) / kPeftWeightsFile).string()));
  config.inference_mode = !trainable;
  Generator gen(0);  // initial values are all overwritten below
  LYRA_RETURN_IF_ERROR(InjectLora(root, config, gen).status());

  auto load = [&]() -> absl::Status {
    std::map<std::string, const Tensor*> given;
    for (const auto& [key, t] : weights.tensors) given.emplace(key, &t);
    std::vector<std::string> missing, unexpected;
    std::set<std::string> known;
    const auto params = PeftAdapterParameters(root, adapter_name, kPrefix);
    for (const auto& [key, v] : params) {
      known.insert(key);
      auto it = given.find(key);
      if (it == given.end()) {
        missing.push_back(key);
        continue;
      }
      if (it->second->shape() != v.shape()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "LoadLoraAdapter: ", weights.path, ": '", key, "' has shape ",
            ShapeToString(it->second->shape()), " but the model expects ",
            ShapeToString(v.shape())));
      }
    }
    for (const auto& [key, t] : weights.tensors) {
      if (!known.count(key)) unexpected.push_back(key);
    }
    if (!missing.empty() || !unexpected.empty()) {
      std::string message = absl::StrCat("LoadLoraAdapter: ", weights.path, " does not fit the ",
                                         "adapter injected by its config:");
      if (!missing.empty()) absl::StrAppend(&message, " missing keys [", absl::StrJoin(missing, ", "), "]");
      if (!unexpected.empty()) {
        absl::StrAppend(&message, " unexpected keys [", absl::StrJoin(unexpected, ", "), "]");
      }
      return absl::InvalidArgumentError(message);
    }
    for (const auto& [key, v] : params) {
      const Tensor& t = *given.at(key);
      if (!IsFloating(t.dtype())) {
        return absl::InvalidArgumentError(absl::StrCat("LoadLoraAdapter: '", key, "' is ",
                                                       t.Describe(), ", not floating-point"));
      }
      LYRA_ASSIGN_OR_RETURN(Tensor cast, t.To(v.dtype()));
      LYRA_ASSIGN_OR_RETURN(Tensor moved, cast.To(v.device()));
      LYRA_ASSIGN_OR_RETURN(Tensor owned, moved.Clone());  // not a view of the mapped file
      LYRA_RETURN_IF_ERROR(v.set_data(owned));
    }
    return absl::OkStatus();
  };
  const absl::Status status = load();
  if (!status.ok()) {
    LYRA_CHECK_OK(DeleteAdapter(root, adapter_name));
    return status;
  }
  return config;
}

}  // namespace lyra::nn
