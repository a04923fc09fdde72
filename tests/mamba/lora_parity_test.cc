// PEFT parity of Lyra's LoRA adapters on the Mamba-1 model: Lyra loads a base checkpoint and an
// adapter written by PEFT's save_pretrained (tests/fixtures/lora, made by
// tools/fixtures/make_lora_fixtures.py with transformers + peft in float64 on the CPU) and
// reproduces PEFT's logits, loss and the gradients of every adapter tensor (keyed by PEFT's
// on-disk names): f64 within 1e-8 and f32 within 1e-5 (norm-wise and worst element against the
// tensor's scale), on the CPU; CUDA against the CPU on a GPU machine. The adapters here act
// inside the fused inner path (x_proj, out_proj), in in_proj / embeddings, and as
// modules_to_save copies (norm_f, lm_head), with plain and rsLoRA scaling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "mamba/checkpoint.h"
#include "mamba/model.h"
#include "nn/lora/lora.h"
#include "nn/lora/peft_io.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"
#include "tests/fixtures/fixture_files.h"
#include "tests/fixtures/lora/lora_fixtures.h"
#include "tests/testing/testing.h"

namespace lyra::mamba {
namespace {

using autograd::Variable;
using ::lyra::testing::FixtureExpected;
using ::lyra::testing::NormwiseClose;

// What one Lyra run gives: logits, loss and d loss / d adapter tensor by PEFT key.
struct AdapterRun {
  Tensor logits;
  Tensor loss;
  std::map<std::string, Tensor> grads;
};

absl::StatusOr<AdapterRun> RunWithAdapter(const std::string& dir, const Tensor& input_ids,
                                          DType dtype, Device device) {
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<MambaForCausalLM> model,
                        LoadMamba(dir + "/base", device, dtype));
  LYRA_ASSIGN_OR_RETURN(nn::LoraConfig config,
                        nn::LoadLoraAdapter(*model, dir + "/adapter", "default",
                                            /*trainable=*/true));
  model->Train();  // as the fixture (dropout 0: no numerical change)
  LYRA_ASSIGN_OR_RETURN(Tensor ids, input_ids.To(device));
  AdapterRun run;
  LYRA_ASSIGN_OR_RETURN(Variable logits, model->Forward(ids));
  LYRA_ASSIGN_OR_RETURN(run.logits, logits.data().To(Device::Cpu()));
  LYRA_ASSIGN_OR_RETURN(Variable loss, model->Loss(ids));
  LYRA_RETURN_IF_ERROR(loss.Backward());
  LYRA_ASSIGN_OR_RETURN(Tensor loss_cpu, loss.data().To(Device::Cpu()));
  LYRA_ASSIGN_OR_RETURN(run.loss, loss_cpu.Reshape({1}));
  for (const auto& [key, param] : nn::PeftAdapterParameters(*model, config.adapter_name)) {
    if (!param.grad().defined()) {
      return absl::InternalError(absl::StrCat("adapter tensor ", key, " got no gradient"));
    }
    LYRA_ASSIGN_OR_RETURN(run.grads[key], param.grad().To(Device::Cpu()));
  }
  return run;
}

void ExpectMatchesPeft(const std::string& name, DType dtype, double tol) {
  SCOPED_TRACE(name + " " + std::string(DTypeName(dtype)));
  ASSERT_OK_AND_ASSIGN(std::string dir, ::lyra::testing::LoraFixtureDir(name));
  ASSERT_OK_AND_ASSIGN(FixtureExpected expected, ::lyra::testing::ReadFixtureExpected(dir));
  ASSERT_OK_AND_ASSIGN(AdapterRun run,
                       RunWithAdapter(dir, expected.input_ids, dtype, Device::Cpu()));
  const ::testing::AssertionResult logits =
      NormwiseClose("logits", run.logits, expected.logits, tol);
  EXPECT_TRUE(logits);
  std::printf("[%s %s] %s\n", name.c_str(), std::string(DTypeName(dtype)).c_str(),
              logits.message());
  EXPECT_TRUE(NormwiseClose("loss", run.loss, expected.loss, tol));
  double worst = 0;  // the largest norm-wise gradient error, for the record
  EXPECT_EQ(run.grads.size(), expected.grads.size()) << "adapter tensors";
  for (const auto& [key, want] : expected.grads) {
    auto it = run.grads.find(key);
    if (it == run.grads.end()) {
      ADD_FAILURE() << "Lyra has no adapter tensor " << key;
      continue;
    }
    EXPECT_TRUE(NormwiseClose("grad " + key, it->second, want, tol));
    absl::StatusOr<::lyra::testing::TensorErrors> e =
        ::lyra::testing::CompareTensors(it->second, want);
    if (e.ok()) worst = std::max(worst, e->norm_rel);
  }
  std::printf("[%s %s] %zu adapter gradients, worst norm-wise relative error %.3g\n",
              name.c_str(), std::string(DTypeName(dtype)).c_str(), expected.grads.size(), worst);
}

TEST(LoraParityTest, MatchesPeftF64) {
  for (const std::string& name : ::lyra::testing::LoraFixtureCases()) {
    ExpectMatchesPeft(name, DType::kF64, 1e-8);
  }
}

TEST(LoraParityTest, MatchesPeftF32) {
  for (const std::string& name : ::lyra::testing::LoraFixtureCases()) {
    ExpectMatchesPeft(name, DType::kF32, 1e-5);
  }
}

TEST(LoraParityTest, CudaMatchesCpuF32) {
  LYRA_REQUIRE_GPU();
  for (const std::string& name : ::lyra::testing::LoraFixtureCases()) {
    SCOPED_TRACE(name);
    ASSERT_OK_AND_ASSIGN(std::string dir, ::lyra::testing::LoraFixtureDir(name));
    ASSERT_OK_AND_ASSIGN(FixtureExpected expected, ::lyra::testing::ReadFixtureExpected(dir));
    ASSERT_OK_AND_ASSIGN(AdapterRun cpu,
                         RunWithAdapter(dir, expected.input_ids, DType::kF32, Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(AdapterRun gpu,
                         RunWithAdapter(dir, expected.input_ids, DType::kF32, Device::Cuda(0)));
    EXPECT_TRUE(NormwiseClose("logits", gpu.logits, cpu.logits, 1e-5));
    EXPECT_TRUE(NormwiseClose("loss", gpu.loss, cpu.loss, 1e-5));
    for (const auto& [key, g] : cpu.grads) {
      EXPECT_TRUE(NormwiseClose("grad " + key, gpu.grads[key], g, 1e-4));
    }
    // And both against PEFT's float64.
    EXPECT_TRUE(NormwiseClose("logits vs PEFT", gpu.logits, expected.logits, 1e-5));
  }
}

// The reverse direction (tools/fixtures/check_lyra_adapter_in_peft.py): a Lyra model with an SLL
// rsLoRA adapter whose factors are random and non-zero, saved with SaveMamba and
// SaveLoraAdapter, and Lyra's f64 logits for fixed ids, into
//   <dir>/base/, <dir>/adapter/, <dir>/expected.safetensors (input_ids I64, logits F64)
// with <dir> = $LYRA_LORA_EXPORT_DIR when set (the folder to hand to the Python check), else a
// temporary folder. Lyra reloads what it wrote (LoadMamba + LoadLoraAdapter) and must reproduce
// its own logits exactly: the save is lossless.
TEST(LoraParityTest, ExportsAnAdapterForPeft) {
  std::string dir;
  if (const char* env = std::getenv("LYRA_LORA_EXPORT_DIR"); env != nullptr && *env != '\0') {
    dir = env;
  } else {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/lyra_lora_export";
  }
  MambaConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.state_size = 4;
  c.num_hidden_layers = 2;
  c.expand = 2;
  c.intermediate_size = 32;
  c.conv_kernel = 4;
  c.time_step_rank = 3;
  c.use_bias = true;
  c.use_conv_bias = true;
  c.tie_word_embeddings = true;
  Generator gen(11);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MambaForCausalLM> model,
                       MambaForCausalLM::Create(c, gen, DType::kF64));
  ASSERT_OK(SaveMamba(*model, dir + "/base"));
  ASSERT_OK_AND_ASSIGN(nn::LoraConfig config, nn::LoraConfig::Preset("sll", 1));
  config.r = 3;
  config.lora_alpha = 5;
  config.use_rslora = true;
  ASSERT_OK(nn::InjectLora(*model, config, gen).status());
  uint64_t seed = 900;
  for (auto& [key, p] : nn::PeftAdapterParameters(*model, config.adapter_name)) {
    ASSERT_OK_AND_ASSIGN(Tensor v,
                         ::lyra::testing::RandomTensor(p.shape(), p.dtype(), ++seed, -0.5, 0.5));
    ASSERT_OK(p.data().CopyFrom(v));
  }
  model->Eval();
  ASSERT_OK(nn::SaveLoraAdapter(*model, config, dir + "/adapter"));
  ASSERT_OK_AND_ASSIGN(Tensor ids, RandInt({2, 9}, 0, c.vocab_size, DType::kI64, Device::Cpu(),
                                           gen));
  ASSERT_OK_AND_ASSIGN(Variable logits, model->Forward(ids));
  ASSERT_OK(WriteSafetensors(dir + "/expected.safetensors",
                             {{"input_ids", ids}, {"logits", logits.data()}},
                             {{"generator", "tests/mamba/lora_parity_test.cc"}}));

  ASSERT_OK_AND_ASSIGN(std::unique_ptr<MambaForCausalLM> reloaded,
                       LoadMamba(dir + "/base", Device::Cpu(), DType::kF64));
  ASSERT_OK(nn::LoadLoraAdapter(*reloaded, dir + "/adapter").status());
  ASSERT_OK_AND_ASSIGN(Variable again, reloaded->Forward(ids));
  EXPECT_TRUE(NormwiseClose("reloaded logits", again.data(), logits.data(), 0));
  std::printf("adapter for the PEFT check written to %s\n", dir.c_str());
}

}  // namespace
}  // namespace lyra::mamba
