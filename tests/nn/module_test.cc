// Module: dotted names, traversal, freezing by pattern, counts, modes, devices and state dicts.
#include "nn/module.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/testing/testing.h"

namespace lyra::nn {
namespace {

Tensor Zeros(const Shape& shape) { return Tensor::Zeros(shape, DType::kF32).value(); }

class Leaf : public Module {
 public:
  Leaf() : Module("Leaf") {
    weight = RegisterParameter("weight", Zeros({3, 2}));
    bias = RegisterParameter("bias", Zeros({3}));
    steps = RegisterBuffer("steps", Tensor::Zeros({1}, DType::kI64).value());
  }
  Variable weight, bias;
  Tensor* steps;
};

class Block : public Module {
 public:
  Block() : Module("Block") {
    mixer = RegisterModule("mixer", std::make_unique<Leaf>());
    norm = RegisterModule("norm", std::make_unique<Leaf>());
  }
  Leaf* mixer;
  Leaf* norm;
};

class Model : public Module {
 public:
  Model() : Module("Model") {
    embedding = RegisterParameter("embedding", Zeros({5, 2}));
    layer0 = RegisterModule("layers_0", std::make_unique<Block>());
  }
  Variable embedding;
  Block* layer0;
};

std::vector<std::string> Names(const std::vector<std::pair<std::string, Variable>>& ps) {
  std::vector<std::string> out;
  for (const auto& [n, v] : ps) out.push_back(n);
  return out;
}

TEST(ModuleTest, DottedNamesInRegistrationOrder) {
  Model m;
  EXPECT_EQ(Names(m.NamedParameters()),
            (std::vector<std::string>{"embedding", "layers_0.mixer.weight", "layers_0.mixer.bias",
                                      "layers_0.norm.weight", "layers_0.norm.bias"}));
  ASSERT_EQ(m.NamedBuffers().size(), 2u);
  EXPECT_EQ(m.NamedBuffers()[0].first, "layers_0.mixer.steps");
  EXPECT_EQ(m.NamedModules().size(), 4u);
  ASSERT_OK_AND_ASSIGN(Module * found, m.Find("layers_0.norm"));
  EXPECT_EQ(found, m.layer0->norm);
  EXPECT_STATUS_IS(m.Find("layers_0.attn"), absl::StatusCode::kNotFound, "'layers_0.attn'");
  // The member handle and the registry share one Variable.
  EXPECT_TRUE(m.NamedParameters()[1].second.SameAs(m.layer0->mixer->weight));
}

TEST(ModuleTest, FreezingByPatternAndCounts) {
  Model m;
  EXPECT_EQ(m.NumParameters(), 10 + 4 * (6 + 3) / 2);
  ASSERT_OK_AND_ASSIGN(int n, m.SetRequiresGrad(".*\\.bias", false));
  EXPECT_EQ(n, 2);
  EXPECT_EQ(m.NumParameters(true), 10 + 12);
  EXPECT_EQ(m.TrainableParameters().size(), 3u);
  EXPECT_STATUS_IS(m.SetRequiresGrad("nothing", true), absl::StatusCode::kNotFound, "nothing");
  EXPECT_STATUS_IS(m.SetRequiresGrad("([", true), absl::StatusCode::kInvalidArgument,
                   "bad pattern");
  m.SetRequiresGradAll(false);
  EXPECT_EQ(m.NumParameters(true), 0);
}

TEST(ModuleTest, TrainEvalIsRecursive) {
  Model m;
  EXPECT_TRUE(m.layer0->mixer->is_training());
  m.Eval();
  EXPECT_FALSE(m.layer0->mixer->is_training());
  m.Train();
  EXPECT_TRUE(m.layer0->norm->is_training());
}

TEST(ModuleTest, StateDictRoundTripThroughSafetensors) {
  Model a;
  ASSERT_OK(a.layer0->mixer->weight.data().Fill(1.5));
  ASSERT_OK(a.layer0->mixer->steps->Fill(7));
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(tmp ? tmp : "/tmp") + "/module_test.safetensors";
  ASSERT_OK(a.SaveSafetensors(path));
  Model b;
  ASSERT_OK_AND_ASSIGN(LoadReport report, b.LoadSafetensors(path));
  EXPECT_TRUE(report.missing.empty() && report.unexpected.empty());
  EXPECT_EQ(b.layer0->mixer->weight.data().ToDoubles().value(), std::vector<double>(6, 1.5));
  EXPECT_EQ(b.layer0->mixer->steps->ToDoubles().value(), std::vector<double>{7});
}

TEST(ModuleTest, LoadStateDictErrorsNameTheKey) {
  Model m;
  NamedTensors state = m.StateDict();
  // Converts dtype on load.
  state[0].second = Tensor::Ones({5, 2}, DType::kF64).value();
  ASSERT_OK(m.LoadStateDict(state).status());
  EXPECT_EQ(m.embedding.dtype(), DType::kF32);
  EXPECT_EQ(m.embedding.data().ToDoubles().value(), std::vector<double>(10, 1.0));

  NamedTensors wrong_shape = m.StateDict();
  wrong_shape[1].second = Zeros({2, 3});
  EXPECT_STATUS_IS(m.LoadStateDict(wrong_shape, /*strict=*/false),
                   absl::StatusCode::kInvalidArgument,
                   "'layers_0.mixer.weight' has shape [2, 3] but the Model expects [3, 2]");

  NamedTensors missing = m.StateDict();
  missing.erase(missing.begin() + 2);
  missing.emplace_back("layers_0.extra", Zeros({1}));
  EXPECT_STATUS_IS(m.LoadStateDict(missing), absl::StatusCode::kInvalidArgument,
                   "missing keys [layers_0.mixer.bias] unexpected keys [layers_0.extra]");
  // Non-strict reports them and loads the rest.
  ASSERT_OK_AND_ASSIGN(LoadReport report, m.LoadStateDict(missing, /*strict=*/false));
  EXPECT_EQ(report.missing, std::vector<std::string>{"layers_0.mixer.bias"});
  EXPECT_EQ(report.unexpected, std::vector<std::string>{"layers_0.extra"});

  // A failed strict load changes nothing.
  Model fresh;
  NamedTensors partial = {{"embedding", Tensor::Ones({5, 2}, DType::kF32).value()}};
  EXPECT_FALSE(fresh.LoadStateDict(partial).ok());
  EXPECT_EQ(fresh.embedding.data().ToDoubles().value(), std::vector<double>(10, 0.0));
  EXPECT_STATUS_IS(fresh.LoadSafetensors("/nonexistent/x.safetensors"),
                   absl::StatusCode::kNotFound, "x.safetensors");
}

TEST(ModuleTest, ToDtypeAndDevice) {
  Model m;
  ASSERT_OK(m.To(DType::kF64));
  EXPECT_EQ(m.embedding.dtype(), DType::kF64);
  EXPECT_EQ(m.layer0->mixer->steps->dtype(), DType::kI64);  // integer buffers keep their dtype
  EXPECT_TRUE(m.embedding.requires_grad());
  EXPECT_STATUS_IS(m.To(DType::kI32), absl::StatusCode::kInvalidArgument, "floating-point");
  if (!cuda::HasGpu()) {
    EXPECT_STATUS_IS(m.To(Device::Cuda(0)), absl::StatusCode::kFailedPrecondition, "GPU");
    return;
  }
  ASSERT_OK(m.To(Device::Cuda(0)));
  EXPECT_EQ(m.layer0->norm->bias.device(), Device::Cuda(0));
  EXPECT_EQ(m.layer0->mixer->steps->device(), Device::Cuda(0));
}

}  // namespace
}  // namespace lyra::nn
