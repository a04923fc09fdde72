// Parity of Lyra's Mamba-2 language model with Hugging Face transformers.
//
// The oracle: tests/fixtures/mamba2/<case>/, written by tools/fixtures/make_mamba2_fixtures.py —
// transformers 5.17's Mamba2ForCausalLM (its pure-PyTorch chunked SSD) in float64 on the CPU,
// saved with save_pretrained, with the logits, the loss (labels = input_ids) and every parameter's
// gradient. The cases cover one and two groups (heads > groups), a length that is not a multiple
// of the chunk (T = 37, 20, 33 with Q = 16), tied and untied heads, in/out_proj and conv bias
// variants, and a finite time_step_limit that clamps dt on both sides. Each test loads the
// checkpoint with LoadMamba (config.json "model_type": "mamba2" with transformers'
// {"__float__": "Infinity"}), runs MambaForCausalLM::Forward for the logits and ::Loss + Backward
// for the loss and gradients, and compares every tensor norm-wise (NormwiseClose) under the
// Mamba-2 tolerances of the table in tests/fixtures/mamba/hf_parity.cc (the harness this file
// shares with hf_parity_test).
//
// CPU: f64 against the float64 oracle (1e-8), f32 against it (1e-4), bf16 autocast against it.
// CUDA (skipped without a GPU): f32 and bf16 autocast against the CPU f32 run of the same
// checkpoint, and f32 against the oracle. `lyra forward` (train/forward_command.h) on every case
// in f64 on the CPU, with gradients, against the oracle.
#include <gtest/gtest.h>

#include <string>

#include "absl/status/statusor.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"
#include "tests/fixtures/mamba/hf_parity.h"
#include "tests/fixtures/mamba/mamba_fixtures.h"
#include "tests/testing/testing.h"
#include "train/forward_command.h"

namespace lyra::mamba {
namespace {

using ::lyra::testing::NormwiseClose;

class Mamba2HfParityTest : public ::lyra::testing::HfParityFixture {
 protected:
  Mamba2HfParityTest() : HfParityFixture(/*version=*/2) {}
};

TEST_P(Mamba2HfParityTest, F64CpuMatchesTransformers) {
  ExpectCpuMatchesTransformers(DType::kF64);
}

TEST_P(Mamba2HfParityTest, F32CpuMatchesTransformers) {
  ExpectCpuMatchesTransformers(DType::kF32);
}

TEST_P(Mamba2HfParityTest, Bf16AutocastCpuCloseToTransformers) {
  ExpectCpuMatchesTransformers(DType::kBF16);
}

TEST_P(Mamba2HfParityTest, CudaF32MatchesCpuAndTransformers) {
  LYRA_REQUIRE_GPU();
  ExpectCudaF32MatchesCpuAndTransformers();
}

TEST_P(Mamba2HfParityTest, CudaBf16AutocastMatchesCpu) {
  LYRA_REQUIRE_GPU();
  ExpectCudaBf16AutocastMatchesCpu();
}

// The fixtures are what they claim: HF's loss convention holds for the stored logits.
TEST_P(Mamba2HfParityTest, FixtureLossIsShiftedMeanCrossEntropy) {
  ::lyra::testing::ExpectLossIsShiftedMeanCrossEntropy(expected_);
}

// `lyra forward --dtype=f64 --grads` on the case: the output file against the oracle.
TEST_P(Mamba2HfParityTest, LyraForwardF64MatchesTransformers) {
  const std::string tmp = ::testing::TempDir();
  const std::string input = tmp + "/mamba2_" + GetParam() + "_input.safetensors";
  const std::string out = tmp + "/mamba2_" + GetParam() + "_out.safetensors";
  ASSERT_OK(WriteSafetensors(input, {{"input_ids", expected_.input_ids}}));
  train::ForwardOptions options;
  options.model_dir = dir_;
  options.input_path = input;
  options.output_path = out;
  options.dtype = DType::kF64;
  options.grads = true;
  ASSERT_OK(train::RunForward(options));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(out));
  ASSERT_OK_AND_ASSIGN(Tensor logits, contents.Get("logits"));
  ASSERT_OK_AND_ASSIGN(Tensor loss, contents.Get("loss"));
  EXPECT_EQ(logits.dtype(), DType::kF64);
  const ::lyra::testing::ParityTolerance& f64_tol = tolerances().f64_vs_hf;
  EXPECT_TRUE(NormwiseClose("lyra forward logits", logits, expected_.logits, f64_tol.logits));
  EXPECT_TRUE(NormwiseClose("lyra forward loss", loss, expected_.loss, f64_tol.loss));
  for (const auto& [name, g] : expected_.grads) {
    absl::StatusOr<Tensor> grad = contents.Get(name);
    ASSERT_TRUE(grad.ok()) << grad.status();
    EXPECT_TRUE(NormwiseClose("lyra forward grad " + name, *grad, g, f64_tol.grads));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Mamba2HfParityTest,
                         ::testing::ValuesIn(::lyra::testing::HfFixtureCases(2)),
                         ::lyra::testing::HfCaseName);

}  // namespace
}  // namespace lyra::mamba
