// Parity of Lyra's Mamba-1 language model with Hugging Face transformers.
//
// The oracle: tests/fixtures/mamba/<case>/, written by tools/fixtures/make_mamba_fixtures.py —
// transformers' MambaForCausalLM (its pure-PyTorch path) in float64 on the CPU, saved with
// save_pretrained, with the logits, the loss (labels = input_ids) and every parameter's
// gradient. Each test loads the checkpoint with LoadMamba, runs MambaForCausalLM::Forward for
// the logits and ::Loss + Backward for the loss and gradients, and compares every tensor with a
// norm-wise relative error ||a - b|| / ||b|| and a max-abs error against the tensor's largest
// magnitude (NormwiseClose), both under the Mamba-1 tolerances of the table in
// tests/fixtures/mamba/hf_parity.cc (the harness this file shares with mamba2_hf_parity_test).
//
// CPU: f64 against the float64 oracle (1e-8), f32 against it (1e-4), bf16 autocast (FP32
// master weights) against it. CUDA (skipped without a GPU): f32 and bf16 autocast against the
// CPU f32 run of the same checkpoint, and f32 against the oracle.
#include <gtest/gtest.h>

#include "tensor/tensor.h"
#include "tests/fixtures/mamba/hf_parity.h"
#include "tests/fixtures/mamba/mamba_fixtures.h"
#include "tests/testing/testing.h"

namespace lyra::mamba {
namespace {

class HfParityTest : public ::lyra::testing::HfParityFixture {
 protected:
  HfParityTest() : HfParityFixture(/*version=*/1) {}
};

TEST_P(HfParityTest, F64CpuMatchesTransformers) { ExpectCpuMatchesTransformers(DType::kF64); }

TEST_P(HfParityTest, F32CpuMatchesTransformers) { ExpectCpuMatchesTransformers(DType::kF32); }

TEST_P(HfParityTest, Bf16AutocastCpuCloseToTransformers) {
  ExpectCpuMatchesTransformers(DType::kBF16);
}

TEST_P(HfParityTest, CudaF32MatchesCpuAndTransformers) {
  LYRA_REQUIRE_GPU();
  ExpectCudaF32MatchesCpuAndTransformers();
}

TEST_P(HfParityTest, CudaBf16AutocastMatchesCpu) {
  LYRA_REQUIRE_GPU();
  ExpectCudaBf16AutocastMatchesCpu();
}

// The fixtures are what they claim: HF's loss convention holds for the stored logits.
TEST_P(HfParityTest, FixtureLossIsShiftedMeanCrossEntropy) {
  ::lyra::testing::ExpectLossIsShiftedMeanCrossEntropy(expected_);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfParityTest,
                         ::testing::ValuesIn(::lyra::testing::HfFixtureCases(1)),
                         ::lyra::testing::HfCaseName);

}  // namespace
}  // namespace lyra::mamba
