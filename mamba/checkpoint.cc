#include "mamba/checkpoint.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"

namespace lyra::mamba {
namespace {

namespace fs = std::filesystem;

constexpr char kConfigFile[] = "config.json";
constexpr char kWeightsFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr char kLmHead[] = "lm_head.weight";

// mamba_ssm's "backbone.embedding.weight" -> HF's "backbone.embeddings.weight".
std::string HfName(const std::string& name) {
  if (name == "backbone.embedding.weight") return "backbone.embeddings.weight";
  return name;
}

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read ", path));
  return buffer.str();
}

// The shard files of an index, in first-mention order.
absl::StatusOr<std::vector<std::string>> IndexShards(const std::string& index_path) {
  LYRA_ASSIGN_OR_RETURN(std::string text, ReadText(index_path));
  nlohmann::json root = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object() || !root.contains("weight_map") ||
      !root["weight_map"].is_object()) {
    return absl::DataLossError(absl::StrCat(
        index_path, " is not a safetensors index (a JSON object with a \"weight_map\" object)"));
  }
  std::vector<std::string> shards;
  std::set<std::string> seen;
  for (const auto& [key, file] : root["weight_map"].items()) {
    if (!file.is_string()) {
      return absl::DataLossError(
          absl::StrCat(index_path, ": weight_map[\"", key, "\"] is not a file name"));
    }
    const std::string f = file.get<std::string>();
    if (f.empty() || absl::StrContains(f, "/") || f == "." || f == "..") {
      return absl::DataLossError(
          absl::StrCat(index_path, ": weight_map[\"", key, "\"] names \"", f,
                       "\", not a file of this directory"));
    }
    if (seen.insert(f).second) shards.push_back(f);
  }
  return shards;
}

absl::Status WriteTextAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = absl::StrCat(path, ".tmp.", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::NotFoundError(absl::StrCat("SaveMamba: cannot create ", tmp));
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::InternalError(absl::StrCat("SaveMamba: cannot write ", tmp));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("SaveMamba: cannot rename ", tmp, " to ", path, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<nn::NamedTensors> ReadMambaWeights(const std::string& dir) {
  std::vector<std::string> files;
  const std::string single = (fs::path(dir) / kWeightsFile).string();
  const std::string index = (fs::path(dir) / kIndexFile).string();
  if (fs::exists(single)) {
    files.push_back(single);
  } else if (fs::exists(index)) {
    LYRA_ASSIGN_OR_RETURN(std::vector<std::string> shards, IndexShards(index));
    for (const std::string& s : shards) files.push_back((fs::path(dir) / s).string());
  } else {
    return absl::NotFoundError(absl::StrCat("LoadMamba: ", dir, " has neither ", kWeightsFile,
                                            " nor ", kIndexFile));
  }
  nn::NamedTensors out;
  std::map<std::string, std::string> origin;  // HF name -> file
  for (const std::string& file : files) {
    LYRA_ASSIGN_OR_RETURN(SafetensorsContents contents, ReadSafetensors(file));
    for (auto& [name, tensor] : contents.tensors) {
      const std::string hf = HfName(name);
      auto [it, inserted] = origin.emplace(hf, file);
      if (!inserted) {
        return absl::InvalidArgumentError(absl::StrCat("LoadMamba: tensor \"", hf,
                                                       "\" appears twice: in ", it->second,
                                                       " and in ", file));
      }
      out.emplace_back(hf, std::move(tensor));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<MambaForCausalLM>> LoadMamba(const std::string& dir,
                                                            Device device, DType dtype) {
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("LoadMamba: dtype ", DTypeName(dtype), " is not a floating dtype"));
  }
  if (!fs::is_directory(dir)) {
    return absl::NotFoundError(absl::StrCat("LoadMamba: ", dir, " is not a directory"));
  }
  LYRA_ASSIGN_OR_RETURN(MambaConfig config,
                        MambaConfig::FromFile((fs::path(dir) / kConfigFile).string()));
  LYRA_ASSIGN_OR_RETURN(nn::NamedTensors weights, ReadMambaWeights(dir));
  if (config.tie_word_embeddings) {
    // The tied copy some writers keep is the embedding table itself: drop it.
    nn::NamedTensors kept;
    for (auto& entry : weights) {
      if (entry.first != kLmHead) kept.push_back(std::move(entry));
    }
    weights = std::move(kept);
  }
  // Built in `dtype` first so that each file tensor is converted once, straight to it.
  Generator gen(/*seed=*/0);
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<MambaForCausalLM> model,
                        MambaForCausalLM::Create(config, gen, dtype, Device::Cpu()));
  absl::StatusOr<nn::LoadReport> report = model->LoadStateDict(weights, /*strict=*/true);
  if (!report.ok()) {
    return absl::Status(report.status().code(),
                        absl::StrCat("LoadMamba(", dir, "): ", report.status().message()));
  }
  if (!device.is_cpu()) LYRA_RETURN_IF_ERROR(model->To(device));
  model->Eval();
  return model;
}

absl::Status SaveMamba(const MambaForCausalLM& model, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("SaveMamba: cannot create directory ", dir, ": ", ec.message()));
  }
  LYRA_RETURN_IF_ERROR(WriteSafetensors((fs::path(dir) / kWeightsFile).string(),
                                        model.StateDict(), {{"format", "pt"}}));
  return WriteTextAtomic((fs::path(dir) / kConfigFile).string(), model.config().ToHfJson());
}

}  // namespace lyra::mamba
