// `lyra forward` (train/forward_command.h) end to end on the committed Hugging Face fixtures
// (tests/fixtures/mamba/): RunForward's output file against transformers' float64 logits, loss
// and gradients, its errors, and the //train:lyra binary's exit codes.
#include "train/forward_command.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"
#include "tests/fixtures/mamba/mamba_fixtures.h"
#include "tests/testing/testing.h"

namespace lyra::train {
namespace {

namespace fs = std::filesystem;
using ::lyra::testing::MambaExpected;
using ::lyra::testing::NormwiseClose;

constexpr char kCase[] = "tied_conv_bias";

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return (fs::path(dir != nullptr ? dir : fs::temp_directory_path().string()) /
          absl::StrCat("forward_command_test_", name))
      .string();
}

class ForwardCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(dir_, ::lyra::testing::MambaFixtureDir(kCase));
    ASSERT_OK_AND_ASSIGN(expected_, ::lyra::testing::ReadMambaExpected(dir_));
    input_ = TempPath("input.safetensors");
    ASSERT_OK(WriteSafetensors(input_, {{"input_ids", expected_.input_ids}}));
  }

  ForwardOptions Options(const std::string& out, DType dtype, bool grads) const {
    ForwardOptions o;
    o.model_dir = dir_;
    o.input_path = input_;
    o.output_path = out;
    o.dtype = dtype;
    o.grads = grads;
    return o;
  }

  // Checks an output file against the fixture: logits and loss, and with `grads` exactly the
  // fixture's parameter names (bare HF names) with their gradients.
  void ExpectOutputMatches(const std::string& out, DType file_dtype, bool grads, double tol_logits,
                           double tol_grads) {
    ASSERT_OK_AND_ASSIGN(SafetensorsContents contents, ReadSafetensors(out));
    ASSERT_OK_AND_ASSIGN(Tensor logits, contents.Get("logits"));
    ASSERT_OK_AND_ASSIGN(Tensor loss, contents.Get("loss"));
    EXPECT_EQ(logits.dtype(), file_dtype);
    EXPECT_EQ(loss.dtype(), file_dtype);
    EXPECT_EQ(loss.shape(), Shape({1}));
    EXPECT_TRUE(NormwiseClose("logits", logits, expected_.logits, tol_logits));
    EXPECT_TRUE(NormwiseClose("loss", loss, expected_.loss, tol_logits));
    std::set<std::string> names;
    for (const auto& [name, t] : contents.tensors) {
      if (name != "logits" && name != "loss") names.insert(name);
    }
    if (!grads) {
      EXPECT_TRUE(names.empty()) << "gradients written without --grads";
      return;
    }
    std::set<std::string> expected_names;
    for (const auto& [name, g] : expected_.grads) expected_names.insert(name);
    EXPECT_EQ(names, expected_names);
    for (const auto& [name, g] : expected_.grads) {
      absl::StatusOr<Tensor> grad = contents.Get(name);
      ASSERT_TRUE(grad.ok()) << grad.status();
      EXPECT_EQ(grad->dtype(), file_dtype) << name;
      EXPECT_TRUE(NormwiseClose("grad " + name, *grad, g, tol_grads));
    }
    EXPECT_EQ(contents.metadata.at("command"), "lyra forward");
    EXPECT_EQ(contents.metadata.at("model"), dir_);
  }

  std::string dir_;
  std::string input_;
  MambaExpected expected_;
};

TEST_F(ForwardCommandTest, F64WithGradsMatchesTransformers) {
  const std::string out = TempPath("f64.safetensors");
  ASSERT_OK(RunForward(Options(out, DType::kF64, /*grads=*/true)));
  ExpectOutputMatches(out, DType::kF64, /*grads=*/true, 1e-8, 1e-8);
}

TEST_F(ForwardCommandTest, F32WithoutGradsWritesLogitsAndLossOnly) {
  const std::string out = TempPath("f32.safetensors");
  ASSERT_OK(RunForward(Options(out, DType::kF32, /*grads=*/false)));
  ExpectOutputMatches(out, DType::kF32, /*grads=*/false, 1e-4, 1e-4);
}

TEST_F(ForwardCommandTest, F32WithGradsMatchesTransformers) {
  const std::string out = TempPath("f32_grads.safetensors");
  ASSERT_OK(RunForward(Options(out, DType::kF32, /*grads=*/true)));
  ExpectOutputMatches(out, DType::kF32, /*grads=*/true, 1e-4, 1e-4);
}

// bf16 / f16 autocast: FP32 master weights, f32 outputs; tolerances as tests/mamba/hf_parity_test.
TEST_F(ForwardCommandTest, Bf16AutocastWritesF32CloseToTransformers) {
  const std::string out = TempPath("bf16.safetensors");
  ASSERT_OK(RunForward(Options(out, DType::kBF16, /*grads=*/true)));
  ExpectOutputMatches(out, DType::kF32, /*grads=*/true, 2e-2, 1e-1);
}

TEST_F(ForwardCommandTest, F16AutocastWritesF32CloseToTransformers) {
  const std::string out = TempPath("f16.safetensors");
  ASSERT_OK(RunForward(Options(out, DType::kF16, /*grads=*/true)));
  // f16 keeps 3 more mantissa bits than bf16.
  ExpectOutputMatches(out, DType::kF32, /*grads=*/true, 5e-3, 3e-2);
}

TEST_F(ForwardCommandTest, I32InputIdsAreAccepted) {
  ASSERT_OK_AND_ASSIGN(Tensor ids32, expected_.input_ids.To(DType::kI32));
  const std::string input = TempPath("input_i32.safetensors");
  ASSERT_OK(WriteSafetensors(input, {{"input_ids", ids32}}));
  ForwardOptions o = Options(TempPath("i32.safetensors"), DType::kF64, false);
  o.input_path = input;
  ASSERT_OK(RunForward(o));
  ExpectOutputMatches(o.output_path, DType::kF64, false, 1e-8, 1e-8);
}

TEST_F(ForwardCommandTest, Errors) {
  const std::string out = TempPath("errors.safetensors");
  ForwardOptions o = Options(out, DType::kF32, false);

  ForwardOptions missing_model = o;
  missing_model.model_dir = TempPath("no_such_model_dir");
  EXPECT_STATUS_IS(RunForward(missing_model), absl::StatusCode::kNotFound, "no_such_model_dir");

  ForwardOptions missing_input = o;
  missing_input.input_path = TempPath("no_such_input.safetensors");
  EXPECT_STATUS_IS(RunForward(missing_input), absl::StatusCode::kNotFound, "no_such_input");

  ASSERT_OK_AND_ASSIGN(Tensor other, Tensor::Zeros({2, 3}, DType::kI64));
  const std::string no_ids = TempPath("no_ids.safetensors");
  ASSERT_OK(WriteSafetensors(no_ids, {{"tokens", other}}));
  ForwardOptions without_ids = o;
  without_ids.input_path = no_ids;
  EXPECT_STATUS_IS(RunForward(without_ids), absl::StatusCode::kNotFound, "input_ids");

  ASSERT_OK_AND_ASSIGN(Tensor one_token, Tensor::Zeros({2, 1}, DType::kI64));
  const std::string short_ids = TempPath("short_ids.safetensors");
  ASSERT_OK(WriteSafetensors(short_ids, {{"input_ids", one_token}}));
  ForwardOptions too_short = o;
  too_short.input_path = short_ids;
  EXPECT_STATUS_IS(RunForward(too_short), absl::StatusCode::kInvalidArgument, "T >= 2");

  ASSERT_OK_AND_ASSIGN(Tensor float_ids, Tensor::Zeros({2, 4}, DType::kF32));
  const std::string float_input = TempPath("float_ids.safetensors");
  ASSERT_OK(WriteSafetensors(float_input, {{"input_ids", float_ids}}));
  ForwardOptions floats = o;
  floats.input_path = float_input;
  EXPECT_STATUS_IS(RunForward(floats), absl::StatusCode::kInvalidArgument, "input_ids");

  ASSERT_OK_AND_ASSIGN(Tensor big_ids, Tensor::Full({1, 3}, 1000, DType::kI64));
  const std::string big_input = TempPath("big_ids.safetensors");
  ASSERT_OK(WriteSafetensors(big_input, {{"input_ids", big_ids}}));
  ForwardOptions out_of_vocab = o;
  out_of_vocab.input_path = big_input;
  EXPECT_EQ(RunForward(out_of_vocab).code(), absl::StatusCode::kInvalidArgument);

  ForwardOptions no_out = o;
  no_out.output_path.clear();
  EXPECT_STATUS_IS(RunForward(no_out), absl::StatusCode::kInvalidArgument, "--out");

  ForwardOptions f64_cuda = o;
  f64_cuda.dtype = DType::kF64;
  f64_cuda.device = Device::Cuda(0);
  EXPECT_STATUS_IS(RunForward(f64_cuda), absl::StatusCode::kUnimplemented, "CPU only");

  ForwardOptions int_dtype = o;
  int_dtype.dtype = DType::kI32;
  EXPECT_STATUS_IS(RunForward(int_dtype), absl::StatusCode::kInvalidArgument, "--dtype");

  EXPECT_FALSE(fs::exists(out)) << "a failed run wrote its output";
  EXPECT_STATUS_IS(ParseForwardDType("f8"), absl::StatusCode::kInvalidArgument, "'f8'");
  ASSERT_OK_AND_ASSIGN(DType bf16, ParseForwardDType("bf16"));
  EXPECT_EQ(bf16, DType::kBF16);
}

TEST_F(ForwardCommandTest, FailedRunLeavesAnExistingOutputUntouched) {
  const std::string out = TempPath("kept.safetensors");
  {
    std::ofstream f(out, std::ios::binary);
    f << "previous contents";
  }
  ForwardOptions o = Options(out, DType::kF32, false);
  o.input_path = TempPath("no_such_input_2.safetensors");
  EXPECT_FALSE(RunForward(o).ok());
  std::ifstream f(out, std::ios::binary);
  std::string contents((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(contents, "previous contents");
}

TEST_F(ForwardCommandTest, CudaF32MatchesTransformers) {
  LYRA_REQUIRE_GPU();
  const std::string out = TempPath("cuda_f32.safetensors");
  ForwardOptions o = Options(out, DType::kF32, /*grads=*/true);
  o.device = Device::Cuda(0);
  ASSERT_OK(RunForward(o));
  ExpectOutputMatches(out, DType::kF32, /*grads=*/true, 1e-4, 1e-4);
}

TEST_F(ForwardCommandTest, CudaBf16AutocastCloseToTransformers) {
  LYRA_REQUIRE_GPU();
  const std::string out = TempPath("cuda_bf16.safetensors");
  ForwardOptions o = Options(out, DType::kBF16, /*grads=*/true);
  o.device = Device::Cuda(0);
  ASSERT_OK(RunForward(o));
  ExpectOutputMatches(out, DType::kF32, /*grads=*/true, 2e-2, 1e-1);
}

// --- The binary ---------------------------------------------------------------------------

// //train:lyra in the test's runfiles (absent when this file is linked into another binary).
std::string LyraBinary() {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  if (srcdir == nullptr) return "";
  const char* workspace = std::getenv("TEST_WORKSPACE");
  const fs::path path =
      fs::path(srcdir) / (workspace != nullptr ? workspace : "lyra") / "train" / "lyra";
  return fs::exists(path) ? path.string() : "";
}

// Runs `binary args` with output to files; returns the exit code (-1 if it did not exit).
int RunBinary(const std::string& binary, const std::string& args, std::string* err = nullptr) {
  const std::string err_path = TempPath("stderr.txt");
  const std::string command = absl::StrCat("'", binary, "' ", args, " > '",
                                           TempPath("stdout.txt"), "' 2> '", err_path, "'");
  const int status = std::system(command.c_str());
  if (err != nullptr) {
    std::ifstream f(err_path);
    err->assign((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(ForwardCommandTest, BinaryEndToEnd) {
  const std::string lyra = LyraBinary();
  if (lyra.empty()) GTEST_SKIP() << "//train:lyra is not in this binary's runfiles";
  const std::string out = TempPath("binary.safetensors");
  std::string err;
  EXPECT_EQ(RunBinary(lyra, absl::StrCat("forward --model='", dir_, "' --input='", input_,
                                         "' --out='", out, "' --dtype=f64 --grads"),
                      &err),
            0)
      << err;
  ExpectOutputMatches(out, DType::kF64, /*grads=*/true, 1e-8, 1e-8);

  EXPECT_EQ(RunBinary(lyra, "", &err), 2);
  EXPECT_NE(err.find("no command"), std::string::npos) << err;
  EXPECT_EQ(RunBinary(lyra, "backward", &err), 2);
  EXPECT_NE(err.find("unknown command 'backward'"), std::string::npos) << err;
  EXPECT_EQ(RunBinary(lyra, "forward --modle=x", &err), 2);
  EXPECT_NE(err.find("unknown flag '--modle=x'"), std::string::npos) << err;
  EXPECT_EQ(RunBinary(lyra, "forward --model=x stray", &err), 2);
  EXPECT_NE(err.find("unexpected argument 'stray'"), std::string::npos) << err;
  EXPECT_EQ(RunBinary(lyra, "forward --grads=maybe", &err), 2);
  EXPECT_NE(err.find("--grads"), std::string::npos) << err;
  EXPECT_EQ(RunBinary(lyra, "forward --dtype=f8 --model=a --input=b --out=c", &err), 2);
  EXPECT_NE(err.find("'f8'"), std::string::npos) << err;
  EXPECT_EQ(RunBinary(lyra, "forward --device=tpu --model=a --input=b --out=c", &err), 2);
  EXPECT_EQ(RunBinary(lyra, "forward --input=b --out=c", &err), 2);
  EXPECT_NE(err.find("--model is required"), std::string::npos) << err;
  EXPECT_EQ(RunBinary(lyra, absl::StrCat("forward --model='", dir_,
                                         "' --input=/no/such/ids.safetensors --out='", out, "'"),
                      &err),
            1);
  EXPECT_NE(err.find("NOT_FOUND"), std::string::npos) << err;
  EXPECT_EQ(RunBinary(lyra, "help forward", &err), 0);
  EXPECT_EQ(RunBinary(lyra, "forward --help", &err), 0);
}

}  // namespace
}  // namespace lyra::train
