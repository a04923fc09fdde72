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
// for the loss and gradients, and compares every tensor norm-wise (NormwiseClose).
//
// CPU: f64 against the float64 oracle (1e-8), f32 against it (1e-4), bf16 autocast against it.
// CUDA (skipped without a GPU): f32 and bf16 autocast against the CPU f32 run of the same
// checkpoint, and f32 against the oracle. `lyra forward` (train/forward_command.h) on every case
// in f64 on the CPU, with gradients, against the oracle.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "mamba/checkpoint.h"
#include "mamba/model.h"
#include "tensor/safetensors.h"
#include "train/forward_command.h"
#include "nn/autocast.h"
#include "tensor/tensor.h"
#include "tests/fixtures/mamba/mamba_fixtures.h"
#include "tests/testing/testing.h"

namespace lyra::mamba {
namespace {

using autograd::Variable;
using ::lyra::testing::MambaExpected;
using ::lyra::testing::NormwiseClose;

// The one table of tolerances (norm-wise relative error, and max-abs error over max |ref|).
struct ParityTolerance {
  double logits, loss, grads;
};
// Lyra f64 vs transformers f64: both exact up to rounding.
constexpr ParityTolerance kF64VsHf = {1e-8, 1e-8, 1e-8};
// Lyra f32 vs transformers f64 (f32 rounding through two or three layers).
constexpr ParityTolerance kF32VsHf = {1e-4, 1e-4, 1e-4};
// bf16 autocast (FP32 masters; 8-bit-mantissa activations and weight copies, f32 SSD states,
// norms and loss) vs the float64 oracle or an f32 run. Mamba-2 rounds more often per layer than
// Mamba-1 (the gated norm's input and output, the SSD's x / B / C / dt) and its A_log gradients
// are tiny (|max| 4e-5 .. 4e-4: they lose most). Measured on the CPU: logits 1.1e-2 .. 1.6e-2
// (max-abs 2.3e-2 of the largest logit), loss 1.2e-3 .. 1.8e-3, gradients <= 0.104 (A_log).
constexpr ParityTolerance kBf16VsRef = {4e-2, 1e-2, 2.5e-1};
// CUDA f32 vs CPU f32 (TF32 off, the default): accumulation order only.
constexpr ParityTolerance kCudaF32VsCpu = {3e-5, 3e-5, 3e-5};

// Everything a run produces, as f64 CPU tensors.
struct RunResult {
  Tensor logits;                       // [B, T, V]
  Tensor loss;                         // [1]
  std::map<std::string, Tensor> grads; // HF name -> gradient
};

absl::StatusOr<Tensor> ToF64Host(const Tensor& t) {
  LYRA_ASSIGN_OR_RETURN(Tensor host, t.device().is_cpu() ? t.Contiguous() : t.To(Device::Cpu()));
  return host.dtype() == DType::kF64 ? host : host.To(DType::kF64);
}

// Loads `dir` on `device` and runs forward + loss + backward. `compute` is kF64 / kF32 (weights
// in that dtype) or kBF16 / kF16 (FP32 weights under an autocast region).
absl::StatusOr<RunResult> RunModel(const std::string& dir, Device device, DType compute,
                              const Tensor& input_ids) {
  const DType weights = IsHalf(compute) ? DType::kF32 : compute;
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<MambaForCausalLM> model, LoadMamba(dir, device, weights));
  LYRA_ASSIGN_OR_RETURN(Tensor ids, input_ids.To(device));
  RunResult result;
  {
    std::optional<nn::AutocastGuard> autocast;
    if (IsHalf(compute)) autocast.emplace(compute);
    {
      autograd::NoGradGuard no_grad;
      LYRA_ASSIGN_OR_RETURN(Variable logits, model->Forward(ids));
      LYRA_ASSIGN_OR_RETURN(result.logits, ToF64Host(logits.data()));
    }
    LYRA_ASSIGN_OR_RETURN(Variable loss, model->Loss(ids));
    LYRA_RETURN_IF_ERROR(loss.Backward());
    LYRA_ASSIGN_OR_RETURN(Tensor loss_host, ToF64Host(loss.data()));
    LYRA_ASSIGN_OR_RETURN(result.loss, loss_host.Reshape({1}));
  }
  for (const auto& [name, param] : model->NamedParameters()) {
    if (!param.grad().defined()) {
      return absl::InternalError(absl::StrCat("no gradient reached ", name));
    }
    LYRA_ASSIGN_OR_RETURN(result.grads[name], ToF64Host(param.grad()));
  }
  return result;
}

// Compares a run with reference tensors (the oracle, or another run as MambaExpected) and
// prints the norm-wise errors it measured (one line; the worst gradient by name).
void ExpectMatches(const RunResult& run, const MambaExpected& ref, ParityTolerance tol,
                   const std::string& label) {
  EXPECT_TRUE(NormwiseClose(label + " logits", run.logits, ref.logits, tol.logits));
  EXPECT_TRUE(NormwiseClose(label + " loss", run.loss, ref.loss, tol.loss));
  std::set<std::string> lyra_names, ref_names;
  for (const auto& [name, grad] : run.grads) lyra_names.insert(name);
  for (const auto& [name, grad] : ref.grads) ref_names.insert(name);
  EXPECT_EQ(lyra_names, ref_names) << label << ": parameter names differ from transformers'";
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, grad] : ref.grads) {
    auto it = run.grads.find(name);
    if (it == run.grads.end()) continue;
    EXPECT_TRUE(NormwiseClose(label + " grad " + name, it->second, grad, tol.grads));
    absl::StatusOr<::lyra::testing::TensorErrors> e =
        ::lyra::testing::CompareTensors(it->second, grad);
    if (e.ok() && !(e->norm_rel <= worst)) {
      worst = e->norm_rel;
      worst_name = name;
    }
  }
  absl::StatusOr<::lyra::testing::TensorErrors> el =
      ::lyra::testing::CompareTensors(run.logits, ref.logits);
  absl::StatusOr<::lyra::testing::TensorErrors> eloss =
      ::lyra::testing::CompareTensors(run.loss, ref.loss);
  if (el.ok() && eloss.ok()) {
    std::printf("  [%s] norm-wise relative error: logits %.3g, loss %.3g, worst of %zu grads "
                "%.3g (%s)\n",
                label.c_str(), el->norm_rel, eloss->norm_rel, ref.grads.size(), worst,
                worst_name.c_str());
  }
}

// A run in the reference's shape (for CUDA vs CPU).
MambaExpected AsReference(const RunResult& run, const Tensor& input_ids) {
  MambaExpected ref;
  ref.input_ids = input_ids;
  ref.logits = run.logits;
  ref.loss = run.loss;
  for (const auto& [name, grad] : run.grads) ref.grads.emplace_back(name, grad);
  return ref;
}

class Mamba2HfParityTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, ::lyra::testing::Mamba2FixtureDir(GetParam()));
    ASSERT_OK_AND_ASSIGN(expected_, ::lyra::testing::ReadMambaExpected(dir_));
  }
  std::string dir_;
  MambaExpected expected_;
};

TEST_P(Mamba2HfParityTest, F64CpuMatchesTransformers) {
  ASSERT_OK_AND_ASSIGN(RunResult run, RunModel(dir_, Device::Cpu(), DType::kF64, expected_.input_ids));
  ExpectMatches(run, expected_, kF64VsHf, "f64 cpu");
}

TEST_P(Mamba2HfParityTest, F32CpuMatchesTransformers) {
  ASSERT_OK_AND_ASSIGN(RunResult run, RunModel(dir_, Device::Cpu(), DType::kF32, expected_.input_ids));
  ExpectMatches(run, expected_, kF32VsHf, "f32 cpu");
}

TEST_P(Mamba2HfParityTest, Bf16AutocastCpuCloseToTransformers) {
  ASSERT_OK_AND_ASSIGN(RunResult run,
                       RunModel(dir_, Device::Cpu(), DType::kBF16, expected_.input_ids));
  ExpectMatches(run, expected_, kBf16VsRef, "bf16 autocast cpu");
}

TEST_P(Mamba2HfParityTest, CudaF32MatchesCpuAndTransformers) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(RunResult cpu, RunModel(dir_, Device::Cpu(), DType::kF32, expected_.input_ids));
  ASSERT_OK_AND_ASSIGN(RunResult gpu,
                       RunModel(dir_, Device::Cuda(0), DType::kF32, expected_.input_ids));
  ExpectMatches(gpu, AsReference(cpu, expected_.input_ids), kCudaF32VsCpu, "cuda f32 vs cpu f32");
  ExpectMatches(gpu, expected_, kF32VsHf, "cuda f32 vs transformers");
}

TEST_P(Mamba2HfParityTest, CudaBf16AutocastMatchesCpu) {
  LYRA_REQUIRE_GPU();
  ASSERT_OK_AND_ASSIGN(RunResult cpu, RunModel(dir_, Device::Cpu(), DType::kF32, expected_.input_ids));
  ASSERT_OK_AND_ASSIGN(RunResult gpu,
                       RunModel(dir_, Device::Cuda(0), DType::kBF16, expected_.input_ids));
  ExpectMatches(gpu, AsReference(cpu, expected_.input_ids), kBf16VsRef,
                "cuda bf16 autocast vs cpu f32");
}

// The fixtures are what they claim: HF's loss convention holds for the stored logits.
TEST_P(Mamba2HfParityTest, FixtureLossIsShiftedMeanCrossEntropy) {
  ASSERT_OK_AND_ASSIGN(std::vector<double> logits, expected_.logits.ToDoubles());
  ASSERT_OK_AND_ASSIGN(std::vector<double> ids, expected_.input_ids.ToDoubles());
  ASSERT_OK_AND_ASSIGN(double loss, expected_.loss.Item());
  const int64_t B = expected_.logits.size(0), T = expected_.logits.size(1),
                V = expected_.logits.size(2);
  double sum = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t + 1 < T; ++t) {
      const double* row = logits.data() + (b * T + t) * V;
      double max = row[0];
      for (int64_t v = 1; v < V; ++v) max = std::max(max, row[v]);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - max);
      const int64_t target = static_cast<int64_t>(ids[b * T + t + 1]);
      sum += max + std::log(z) - row[target];
    }
  }
  const double mean = sum / static_cast<double>(B * (T - 1));
  EXPECT_NEAR(mean, loss, 1e-12 * std::fabs(loss));
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
  EXPECT_TRUE(NormwiseClose("lyra forward logits", logits, expected_.logits, kF64VsHf.logits));
  EXPECT_TRUE(NormwiseClose("lyra forward loss", loss, expected_.loss, kF64VsHf.loss));
  for (const auto& [name, g] : expected_.grads) {
    absl::StatusOr<Tensor> grad = contents.Get(name);
    ASSERT_TRUE(grad.ok()) << grad.status();
    EXPECT_TRUE(NormwiseClose("lyra forward grad " + name, *grad, g, kF64VsHf.grads));
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Mamba2HfParityTest,
                         ::testing::ValuesIn(::lyra::testing::Mamba2FixtureCases()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace lyra::mamba
