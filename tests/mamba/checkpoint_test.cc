// Tests of the Mamba-1 checkpoint I/O (mamba/checkpoint.h): save -> load round trips (f32,
// f64 bit-exact, bf16 converted), mamba_ssm key names and config, sharded weights with an index,
// tied / untied heads, and the errors for weights that do not fit the config.
#include "mamba/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "mamba/config.h"
#include "mamba/model.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"

namespace lyra::mamba {
namespace {

namespace fs = std::filesystem;
using autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::Tolerance;

MambaConfig Tiny(bool tie = true) {
  MambaConfig c;
  c.vocab_size = 24;
  c.hidden_size = 8;
  c.state_size = 4;
  c.num_hidden_layers = 2;
  c.expand = 2;
  c.intermediate_size = 16;
  c.conv_kernel = 4;
  c.use_bias = false;
  c.time_step_rank = 1;
  c.tie_word_embeddings = tie;
  return c;
}

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/mamba_checkpoint_test_" + name;
  fs::remove_all(dir);
  return dir;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

absl::StatusOr<Tensor> SomeIds() {
  return Tensor::FromVector<int64_t>({1, 5, 2, 23, 7, 0, 3, 9}, {2, 4});
}

// Logits of `b` equal those of `a` on the same ids.
void ExpectSameLogits(const MambaForCausalLM& a, const MambaForCausalLM& b, Tolerance tol) {
  ASSERT_OK_AND_ASSIGN(Tensor ids, SomeIds());
  ASSERT_OK_AND_ASSIGN(Variable la, a.Forward(ids));
  ASSERT_OK_AND_ASSIGN(Variable lb, b.Forward(ids));
  EXPECT_TRUE(AllClose(lb.data(), la.data(), tol));
}

TEST(MambaCheckpointTest, SaveLoadRoundTripF32) {
  for (bool tie : {true, false}) {
    SCOPED_TRACE(tie ? "tied" : "untied");
    Generator gen(3);
    ASSERT_OK_AND_ASSIGN(auto model, MambaForCausalLM::Create(Tiny(tie), gen));
    const std::string dir = FreshDir(tie ? "f32_tied" : "f32_untied");
    ASSERT_OK(SaveMamba(*model, dir));
    EXPECT_TRUE(fs::exists(dir + "/config.json"));
    ASSERT_OK_AND_ASSIGN(SafetensorsContents file, ReadSafetensors(dir + "/model.safetensors"));
    EXPECT_EQ(file.metadata["format"], "pt");
    std::map<std::string, Tensor> saved(file.tensors.begin(), file.tensors.end());
    EXPECT_EQ(saved.count("lm_head.weight"), tie ? 0u : 1u);
    EXPECT_EQ(saved.count("backbone.embeddings.weight"), 1u);
    EXPECT_EQ(saved.count("backbone.layers.1.mixer.A_log"), 1u);
    EXPECT_EQ(saved.size(), model->StateDict().size());

    ASSERT_OK_AND_ASSIGN(auto loaded, LoadMamba(dir));
    EXPECT_FALSE(loaded->is_training());
    EXPECT_EQ(loaded->config().tie_word_embeddings, tie);
    auto a = model->StateDict();
    auto b = loaded->StateDict();
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].first, b[i].first);
      EXPECT_TRUE(AllClose(b[i].second, a[i].second, Tolerance{0, 0})) << a[i].first;
    }
    ExpectSameLogits(*model, *loaded, Tolerance{0, 0});
  }
}

TEST(MambaCheckpointTest, F64IsBitExactAndBf16Converts) {
  Generator gen(4);
  ASSERT_OK_AND_ASSIGN(auto model, MambaForCausalLM::Create(Tiny(), gen));
  ASSERT_OK(model->To(DType::kF64));
  const std::string dir = FreshDir("f64");
  ASSERT_OK(SaveMamba(*model, dir));
  ASSERT_OK_AND_ASSIGN(auto f64, LoadMamba(dir, Device::Cpu(), DType::kF64));
  for (auto& [name, t] : f64->StateDict()) EXPECT_EQ(t.dtype(), DType::kF64) << name;
  ExpectSameLogits(*model, *f64, Tolerance{0, 0});

  // A bf16 file loaded as f32 holds exactly the bf16 values.
  ASSERT_OK(model->To(DType::kBF16));
  const std::string dir16 = FreshDir("bf16");
  ASSERT_OK(SaveMamba(*model, dir16));
  ASSERT_OK_AND_ASSIGN(auto f32, LoadMamba(dir16, Device::Cpu(), DType::kF32));
  auto a = model->StateDict();
  auto b = f32->StateDict();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i].second.dtype(), DType::kF32);
    EXPECT_TRUE(AllClose(b[i].second, a[i].second, Tolerance{0, 0})) << a[i].first;
  }
}

TEST(MambaCheckpointTest, LoadsMambaSsmNamesAndConfig) {
  // A mamba_ssm checkpoint: d_model / n_layer / ssm_cfg config with vocab 21 padded to 24,
  // "backbone.embedding.weight", and the tied lm_head.weight saved as well.
  Generator gen(5);
  ASSERT_OK_AND_ASSIGN(auto model, MambaForCausalLM::Create(Tiny(), gen));
  const std::string dir = FreshDir("mamba_ssm");
  fs::create_directories(dir);
  WriteFile(dir + "/config.json", R"({"d_model": 8, "n_layer": 2, "vocab_size": 21,
      "ssm_cfg": {"d_state": 4, "dt_rank": 1}, "rms_norm": true, "residual_in_fp32": true,
      "fused_add_norm": true, "pad_vocab_size_multiple": 8, "tie_embeddings": true})");
  std::vector<std::pair<std::string, Tensor>> tensors;
  Tensor embedding;
  for (auto& [name, t] : model->StateDict()) {
    if (name == "backbone.embeddings.weight") {
      tensors.emplace_back("backbone.embedding.weight", t);
      embedding = t;
    } else {
      tensors.emplace_back(name, t);
    }
  }
  tensors.emplace_back("lm_head.weight", embedding);
  ASSERT_OK(WriteSafetensors(dir + "/model.safetensors", tensors));
  ASSERT_OK_AND_ASSIGN(auto loaded, LoadMamba(dir));
  EXPECT_EQ(loaded->config().layout, CheckpointLayout::kMambaSsm);
  EXPECT_EQ(loaded->config().vocab_size, 24);
  ExpectSameLogits(*model, *loaded, Tolerance{0, 0});

  ASSERT_OK_AND_ASSIGN(nn::NamedTensors weights, ReadMambaWeights(dir));
  bool found = false;
  for (auto& [name, t] : weights) found |= name == "backbone.embeddings.weight";
  EXPECT_TRUE(found);
}

TEST(MambaCheckpointTest, LoadsShardedWeights) {
  Generator gen(6);
  ASSERT_OK_AND_ASSIGN(auto model, MambaForCausalLM::Create(Tiny(/*tie=*/false), gen));
  const std::string dir = FreshDir("sharded");
  fs::create_directories(dir);
  WriteFile(dir + "/config.json", model->config().ToHfJson());
  auto state = model->StateDict();
  std::vector<std::pair<std::string, Tensor>> first(state.begin(), state.begin() + 9);
  std::vector<std::pair<std::string, Tensor>> second(state.begin() + 9, state.end());
  ASSERT_OK(WriteSafetensors(dir + "/model-00001-of-00002.safetensors", first));
  ASSERT_OK(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", second));
  std::string index = R"({"metadata": {"total_size": 0}, "weight_map": {)";
  for (size_t i = 0; i < state.size(); ++i) {
    index += (i ? ", " : "") + std::string("\"") + state[i].first + "\": \"model-0000" +
             (i < 9 ? "1" : "2") + "-of-00002.safetensors\"";
  }
  index += "}}";
  WriteFile(dir + "/model.safetensors.index.json", index);
  ASSERT_OK_AND_ASSIGN(auto loaded, LoadMamba(dir));
  ExpectSameLogits(*model, *loaded, Tolerance{0, 0});

  // A key present in two shards is an error naming it.
  ASSERT_OK(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", state));
  EXPECT_STATUS_IS(LoadMamba(dir), absl::StatusCode::kInvalidArgument, "appears twice");
  // A corrupt index is DataLoss.
  WriteFile(dir + "/model.safetensors.index.json", "{\"weight_map\": 3}");
  EXPECT_STATUS_IS(LoadMamba(dir), absl::StatusCode::kDataLoss, "weight_map");
}

TEST(MambaCheckpointTest, WeightsThatDoNotFitTheConfig) {
  Generator gen(7);
  ASSERT_OK_AND_ASSIGN(auto model, MambaForCausalLM::Create(Tiny(), gen));
  const std::string dir = FreshDir("mismatch");
  ASSERT_OK(SaveMamba(*model, dir));

  // A config with another state size: A_log [16, 4] in the file vs [16, 8] in the model.
  MambaConfig other = Tiny();
  other.state_size = 8;
  WriteFile(dir + "/config.json", other.ToHfJson());
  absl::Status status = LoadMamba(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("A_log"), std::string::npos) << status;
  EXPECT_NE(status.message().find("16, 4"), std::string::npos) << status;
  EXPECT_NE(status.message().find("16, 8"), std::string::npos) << status;

  // An untied config needs lm_head.weight.
  WriteFile(dir + "/config.json", Tiny(/*tie=*/false).ToHfJson());
  EXPECT_STATUS_IS(LoadMamba(dir), absl::StatusCode::kInvalidArgument, "lm_head.weight");

  // A missing tensor and an unexpected one are named.
  WriteFile(dir + "/config.json", Tiny().ToHfJson());
  auto state = model->StateDict();
  std::vector<std::pair<std::string, Tensor>> partial;
  for (auto& [name, t] : state) {
    if (name != "backbone.layers.1.mixer.D") partial.emplace_back(name, t);
  }
  partial.emplace_back("backbone.layers.1.mixer.extra", state[0].second);
  ASSERT_OK(WriteSafetensors(dir + "/model.safetensors", partial));
  status = LoadMamba(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("backbone.layers.1.mixer.D"), std::string::npos) << status;
  EXPECT_NE(status.message().find("backbone.layers.1.mixer.extra"), std::string::npos) << status;
}

TEST(MambaCheckpointTest, MissingFiles) {
  EXPECT_STATUS_IS(LoadMamba(FreshDir("none")), absl::StatusCode::kNotFound, "not a directory");
  const std::string dir = FreshDir("no_weights");
  fs::create_directories(dir);
  EXPECT_STATUS_IS(LoadMamba(dir), absl::StatusCode::kNotFound, "config.json");
  WriteFile(dir + "/config.json", Tiny().ToHfJson());
  EXPECT_STATUS_IS(LoadMamba(dir), absl::StatusCode::kNotFound, "model.safetensors");
  WriteFile(dir + "/model.safetensors", "garbage");
  EXPECT_STATUS_IS(LoadMamba(dir), absl::StatusCode::kDataLoss, "model.safetensors");
  EXPECT_STATUS_IS(LoadMamba(dir, Device::Cpu(), DType::kI32), absl::StatusCode::kInvalidArgument,
                   "floating");
}

TEST(MambaCheckpointCudaTest, LoadsOntoTheGpu) {
  LYRA_REQUIRE_GPU();
  Generator gen(8);
  ASSERT_OK_AND_ASSIGN(auto model, MambaForCausalLM::Create(Tiny(), gen));
  const std::string dir = FreshDir("gpu");
  ASSERT_OK(SaveMamba(*model, dir));
  ASSERT_OK_AND_ASSIGN(auto gpu, LoadMamba(dir, Device::Cuda(), DType::kF32));
  for (auto& [name, t] : gpu->StateDict()) EXPECT_TRUE(t.device().is_cuda()) << name;
  ASSERT_OK_AND_ASSIGN(Tensor ids, SomeIds());
  ASSERT_OK_AND_ASSIGN(Tensor ids_gpu, ids.To(Device::Cuda()));
  ASSERT_OK_AND_ASSIGN(Variable lc, model->Forward(ids));
  ASSERT_OK_AND_ASSIGN(Variable lg, gpu->Forward(ids_gpu));
  ASSERT_OK_AND_ASSIGN(Tensor host, lg.data().To(Device::Cpu()));
  EXPECT_TRUE(AllClose(host, lc.data(), Tolerance{2e-4, 2e-4}));
  // Saving from the GPU writes the same file.
  const std::string back = FreshDir("gpu_back");
  ASSERT_OK(SaveMamba(*gpu, back));
  ASSERT_OK_AND_ASSIGN(auto again, LoadMamba(back));
  ExpectSameLogits(*model, *again, Tolerance{0, 0});
}

}  // namespace
}  // namespace lyra::mamba
