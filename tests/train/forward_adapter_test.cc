// `lyra forward --adapter=DIR` (train/forward_command.h): a PEFT LoRA adapter saved by
// nn::SaveLoraAdapter is loaded onto a committed Hugging Face fixture model; the logits equal
// the in-process adapted model's, --grads writes exactly the adapter's parameters under PEFT's
// on-disk keys, and those gradients agree with central differences of the loss.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/variable.h"
#include "mamba/checkpoint.h"
#include "nn/lora/lora.h"
#include "nn/lora/peft_io.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"
#include "tests/fixtures/mamba/mamba_fixtures.h"
#include "tests/testing/testing.h"
#include "train/forward_command.h"

namespace lyra::train {
namespace {

namespace fs = std::filesystem;
using autograd::Variable;

constexpr char kCase[] = "tied_conv_bias";

std::string TempPath(const std::string& name) {
  return (fs::path(::testing::TempDir()) / absl::StrCat("forward_adapter_test_", name)).string();
}

std::vector<double> D(const Tensor& t) { return t.ToDoubles().value(); }

class ForwardAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, ::lyra::testing::MambaFixtureDir(kCase));
    ASSERT_OK_AND_ASSIGN(expected_, ::lyra::testing::ReadMambaExpected(dir_));
    input_ = TempPath("input.safetensors");
    ASSERT_OK(WriteSafetensors(input_, {{"input_ids", expected_.input_ids}}));
    // An adapter with non-zero factors everywhere, and a modules_to_save copy of norm_f.
    ASSERT_OK_AND_ASSIGN(model_, mamba::LoadMamba(dir_, Device::Cpu(), DType::kF64));
    // Every linear layer of the mixers and the embeddings (x_proj, dt_proj and out_proj act
    // inside the fused inner path).
    ASSERT_OK_AND_ASSIGN(config_, nn::LoraConfig::Preset("all", 1));
    config_.r = 2;
    config_.lora_alpha = 4;
    config_.modules_to_save = {"norm_f"};
    Generator gen(7);
    ASSERT_OK(nn::InjectLora(*model_, config_, gen).status());
    uint64_t seed = 20;
    for (const auto& [key, v] : nn::PeftAdapterParameters(*model_, "default")) {
      ASSERT_OK_AND_ASSIGN(Tensor t,
                           ::lyra::testing::RandomTensor(v.shape(), DType::kF64, ++seed, -0.3, 0.3));
      if (key.find("norm_f") != std::string::npos) {
        ASSERT_OK_AND_ASSIGN(t, ::lyra::testing::RandomTensor(v.shape(), DType::kF64, seed, 0.5, 1.5));
      }
      ASSERT_OK(v.set_data(t));
    }
    adapter_ = TempPath("adapter");
    fs::remove_all(adapter_);
    ASSERT_OK(nn::SaveLoraAdapter(*model_, config_, adapter_));
  }

  ForwardOptions Options(const std::string& out, bool grads) const {
    ForwardOptions o;
    o.model_dir = dir_;
    o.input_path = input_;
    o.output_path = out;
    o.dtype = DType::kF64;
    o.grads = grads;
    o.adapter_dir = adapter_;
    return o;
  }

  double Loss() {
    autograd::NoGradGuard no_grad;
    ForwardOutputs out = ComputeForward(*model_, expected_.input_ids, DType::kF64, false).value();
    return D(out.loss)[0];
  }

  std::string dir_, input_, adapter_;
  ::lyra::testing::MambaExpected expected_;
  std::unique_ptr<mamba::MambaForCausalLM> model_;
  nn::LoraConfig config_;
};

TEST_F(ForwardAdapterTest, LogitsEqualTheAdaptedModelAndDifferFromTheBase) {
  const std::string out = TempPath("logits.safetensors");
  ASSERT_OK(RunForward(Options(out, /*grads=*/false)));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(out));
  ASSERT_OK_AND_ASSIGN(Tensor logits, contents.Get("logits"));
  ASSERT_OK_AND_ASSIGN(ForwardOutputs in_process,
                       ComputeForward(*model_, expected_.input_ids, DType::kF64, false));
  EXPECT_EQ(D(logits), D(in_process.logits));
  EXPECT_FALSE(::lyra::testing::AllClose(logits, expected_.logits, {1e-6, 1e-6}))
      << "the adapter did not change the output";
  EXPECT_EQ(contents.metadata.at("adapter"), adapter_);
  EXPECT_EQ(contents.tensors.size(), 2u);  // logits and loss only
}

TEST_F(ForwardAdapterTest, GradsAreTheAdaptersUnderPeftKeys) {
  const std::string out = TempPath("grads.safetensors");
  ASSERT_OK(RunForward(Options(out, /*grads=*/true)));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(out));
  std::set<std::string> names, want;
  for (const auto& [name, t] : contents.tensors) {
    if (name != "logits" && name != "loss") names.insert(name);
  }
  const auto params = nn::PeftAdapterParameters(*model_, "default");
  for (const auto& [key, v] : params) want.insert(key);
  EXPECT_EQ(names, want);
  EXPECT_TRUE(names.count("base_model.model.backbone.embeddings.lora_embedding_A"));
  EXPECT_TRUE(names.count("base_model.model.backbone.layers.0.mixer.in_proj.lora_B.weight"));
  EXPECT_TRUE(names.count("base_model.model.backbone.layers.0.mixer.x_proj.lora_A.weight"));
  EXPECT_TRUE(names.count("base_model.model.backbone.layers.0.mixer.dt_proj.lora_B.weight"));
  EXPECT_TRUE(names.count("base_model.model.backbone.layers.0.mixer.out_proj.lora_B.weight"));
  EXPECT_TRUE(names.count("base_model.model.backbone.norm_f.weight"));

  // Central differences of the loss for a few elements of each adapter tensor.
  for (const auto& [key, v] : params) {
    ASSERT_OK_AND_ASSIGN(Tensor grad, contents.Get(key));
    const std::vector<double> g = D(grad);
    std::vector<double> values = D(v.data());
    for (size_t i = 0; i < values.size(); i += values.size() / 3 + 1) {
      const double eps = 1e-6, x0 = values[i];
      values[i] = x0 + eps;
      ASSERT_OK(v.set_data(Tensor::FromDoubles(values, v.shape(), DType::kF64).value()));
      const double fp = Loss();
      values[i] = x0 - eps;
      ASSERT_OK(v.set_data(Tensor::FromDoubles(values, v.shape(), DType::kF64).value()));
      const double fm = Loss();
      values[i] = x0;
      ASSERT_OK(v.set_data(Tensor::FromDoubles(values, v.shape(), DType::kF64).value()));
      const double numeric = (fp - fm) / (2 * eps);
      EXPECT_NEAR(g[i], numeric, 1e-7 + 1e-5 * std::abs(numeric)) << key << "[" << i << "]";
    }
  }
}

TEST_F(ForwardAdapterTest, MissingAdapterIsNotFound) {
  ForwardOptions o = Options(TempPath("missing.safetensors"), false);
  o.adapter_dir = TempPath("no_such_adapter");
  EXPECT_EQ(RunForward(o).code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(o.output_path));
}

// //train:lyra in the test's runfiles (absent when this file is linked into another binary).
std::string LyraBinary() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir == nullptr) return "";
  const char* workspace = std::getenv("TEST_WORKSPACE");
  const fs::path path =
      fs::path(srcdir) / (workspace != nullptr ? workspace : "lyra") / "train" / "lyra";
  return fs::exists(path) ? path.string() : "";
}

TEST_F(ForwardAdapterTest, BinaryTakesTheAdapterFlag) {
  const std::string lyra = LyraBinary();
  if (lyra.empty()) GTEST_SKIP() << "//train:lyra is not in this binary's runfiles";
  const std::string out = TempPath("binary.safetensors");
  const std::string command =
      absl::StrCat("'", lyra, "' forward --model='", dir_, "' --input='", input_, "' --out='", out,
                   "' --dtype=f64 --grads --adapter='", adapter_, "' > /dev/null 2>&1");
  ASSERT_EQ(std::system(command.c_str()), 0);
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(out));
  EXPECT_TRUE(contents.Get("base_model.model.backbone.layers.0.mixer.in_proj.lora_A.weight").ok());
  EXPECT_FALSE(contents.Get("backbone.embeddings.weight").ok());
}

}  // namespace
}  // namespace lyra::train
