// AdamW and SGD: CPU results against closed-form f64 trajectories of torch's update rules (with
// and without weight decay, bias correction, parameter groups, skipped parameters, 16-bit
// gradients), the decay / no-decay grouping, bit-exact state round trips through safetensors,
// argument errors, and the CUDA kernel against the CPU reference over many tensors of odd sizes
// (chunks across tensor boundaries, several chunks per tensor, hundreds of tiny tensors,
// unaligned views).
#include "optim/adamw.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/variable.h"
#include "nn/module.h"
#include "optim/optimizer.h"
#include "optim/sgd.h"
#include "tensor/safetensors.h"
#include "tests/testing/testing.h"

namespace lyra::optim {
namespace {

using ::lyra::testing::AllClose;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

// f32 results against an f64 trajectory: a few f32 roundings per step.
constexpr Tolerance kTrajectoryTolerance = {1e-6, 2e-5};

Variable MakeParam(const std::vector<double>& values, Device device = Device::Cpu()) {
  absl::StatusOr<Tensor> t = Tensor::FromDoubles(values, {static_cast<int64_t>(values.size())},
                                                 DType::kF32, device);
  LYRA_CHECK(t.ok()) << t.status();
  return Variable(*t, /*requires_grad=*/true);
}

// Installs `grad` (any float dtype) as the parameter's gradient, as a backward pass would.
void SetGrad(const Variable& param, const Tensor& grad) { param.state()->grad = grad; }

void SetGradDoubles(const Variable& param, const std::vector<double>& g,
                    DType dtype = DType::kF32) {
  absl::StatusOr<Tensor> t = Tensor::FromDoubles(g, param.shape(), dtype, param.device());
  LYRA_CHECK(t.ok()) << t.status();
  SetGrad(param, *t);
}

std::vector<double> Values(const Tensor& t) {
  absl::StatusOr<std::vector<double>> v = t.ToDoubles();
  LYRA_CHECK(v.ok()) << v.status();
  return *v;
}

// The gradient of element i at step t (1-based): varied signs and magnitudes.
double GradAt(int64_t t, size_t i) {
  return 0.3 * std::cos(1.7 * static_cast<double>(t) + static_cast<double>(i)) *
         (1.0 + static_cast<double>(i));
}

// torch.optim.AdamW's update in f64, written out from the definition.
struct AdamWTrajectory {
  std::vector<double> p, m, v;
  int64_t t = 0;

  explicit AdamWTrajectory(std::vector<double> p0)
      : p(std::move(p0)), m(p.size(), 0.0), v(p.size(), 0.0) {}

  void Step(const std::vector<double>& g, double lr, double wd, double b1 = 0.9,
            double b2 = 0.999, double eps = 1e-8) {
    ++t;
    for (size_t i = 0; i < p.size(); ++i) {
      p[i] -= lr * wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(b1, t));
      const double v_hat = v[i] / (1 - std::pow(b2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
  }
};

std::vector<double> StepGrads(int64_t t, size_t n) {
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i) g[i] = GradAt(t, i);
  return g;
}

TEST(AdamWTest, MatchesClosedFormWithAndWithoutWeightDecay) {
  const std::vector<double> p0 = {0.5, -1.25, 2.0, 1e-3, -0.75};
  for (double wd : {0.0, 0.01, 0.1}) {
    SCOPED_TRACE(absl::StrCat("weight_decay ", wd));
    Variable w = MakeParam(p0);
    ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create({{"w", w}}, {.lr = 1e-2, .weight_decay = wd}));
    AdamWTrajectory ref(p0);
    for (int64_t t = 1; t <= 6; ++t) {
      const std::vector<double> g = StepGrads(t, p0.size());
      SetGradDoubles(w, g);
      ASSERT_OK(opt->Step());
      ref.Step(g, 1e-2, wd);
      EXPECT_TRUE(AllClose(Values(w.data()), ref.p, kTrajectoryTolerance)) << "step " << t;
    }
    ASSERT_OK_AND_ASSIGN(int64_t steps, opt->StepCount("w"));
    EXPECT_EQ(steps, 6);
  }
}

TEST(AdamWTest, DefaultsAreTorchs) {
  Variable w = MakeParam({1.0});
  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create({{"w", w}}));
  EXPECT_EQ(opt->options().lr, 1e-3);
  EXPECT_EQ(opt->options().beta1, 0.9);
  EXPECT_EQ(opt->options().beta2, 0.999);
  EXPECT_EQ(opt->options().eps, 1e-8);
  EXPECT_EQ(opt->weight_decay(0), 0.01);
}

// With bias correction the first step moves every element by lr * g / (|g| + eps'), i.e. by lr
// in the direction of -sign(g) whatever the gradient's scale (without it, by lr * 0.1 / 0.0316).
TEST(AdamWTest, BiasCorrectionMakesTheFirstStepLrSized) {
  const std::vector<double> p0 = {1.0, 1.0, 1.0, 1.0};
  const std::vector<double> g = {1e-3, -2.0, 50.0, -0.25};
  Variable w = MakeParam(p0);
  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create({{"w", w}}, {.lr = 0.01, .weight_decay = 0}));
  SetGradDoubles(w, g);
  ASSERT_OK(opt->Step());
  const std::vector<double> p1 = Values(w.data());
  for (size_t i = 0; i < p0.size(); ++i) {
    const double expected = 1.0 - 0.01 * (g[i] > 0 ? 1 : -1) * std::abs(g[i]) /
                                      (std::abs(g[i]) + 1e-8);
    EXPECT_NEAR(p1[i], expected, 1e-6) << i;
  }
  // Second step with the same gradient: m_hat = g and v_hat = g^2 again, another lr-sized step.
  SetGradDoubles(w, g);
  ASSERT_OK(opt->Step());
  const std::vector<double> p2 = Values(w.data());
  for (size_t i = 0; i < p0.size(); ++i) {
    EXPECT_NEAR(p1[i] - p2[i], p0[i] - p1[i], 1e-6) << i;
  }
}

TEST(AdamWTest, GroupsUseTheirOwnLrAndWeightDecay) {
  const std::vector<double> a0 = {0.3, -0.6, 0.9};
  const std::vector<double> b0 = {-2.0, 4.0};
  Variable a = MakeParam(a0);
  Variable b = MakeParam(b0);
  std::vector<ParamGroup> groups(2);
  groups[0].params = {{"a", a}};
  groups[0].lr = 0.05;
  groups[0].weight_decay = 0.2;
  groups[1].params = {{"b", b}};  // optimizer defaults: lr 1e-2, wd 0
  ASSERT_OK_AND_ASSIGN(auto opt,
                       AdamW::Create(std::move(groups), {.lr = 1e-2, .weight_decay = 0}));
  EXPECT_EQ(opt->lr(0), 0.05);
  EXPECT_EQ(opt->weight_decay(0), 0.2);
  EXPECT_EQ(opt->lr(1), 1e-2);
  EXPECT_EQ(opt->weight_decay(1), 0.0);
  AdamWTrajectory ra(a0), rb(b0);
  for (int64_t t = 1; t <= 4; ++t) {
    SetGradDoubles(a, StepGrads(t, a0.size()));
    SetGradDoubles(b, StepGrads(t + 10, b0.size()));
    ASSERT_OK(opt->Step());
    ra.Step(StepGrads(t, a0.size()), 0.05, 0.2);
    rb.Step(StepGrads(t + 10, b0.size()), 1e-2, 0.0);
  }
  EXPECT_TRUE(AllClose(Values(a.data()), ra.p, kTrajectoryTolerance));
  EXPECT_TRUE(AllClose(Values(b.data()), rb.p, kTrajectoryTolerance));

  // A changed lr applies from the next step on.
  ASSERT_OK(opt->SetLr(1, 0.5));
  SetGradDoubles(a, StepGrads(5, a0.size()));
  SetGradDoubles(b, StepGrads(15, b0.size()));
  ASSERT_OK(opt->Step());
  ra.Step(StepGrads(5, a0.size()), 0.05, 0.2);
  rb.Step(StepGrads(15, b0.size()), 0.5, 0.0);
  EXPECT_TRUE(AllClose(Values(a.data()), ra.p, kTrajectoryTolerance));
  EXPECT_TRUE(AllClose(Values(b.data()), rb.p, kTrajectoryTolerance));
  EXPECT_EQ(opt->initial_lr(1), 1e-2);
}

// torch skips a parameter without a gradient: no decay, no moment update, no step count; its
// first step later uses the bias correction of t = 1.
TEST(AdamWTest, ParametersWithoutGradientAreSkipped) {
  const std::vector<double> a0 = {1.0, 2.0};
  const std::vector<double> b0 = {-3.0};
  Variable a = MakeParam(a0);
  Variable b = MakeParam(b0);
  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create({{"a", a}, {"b", b}}, {.lr = 0.1}));
  AdamWTrajectory ra(a0), rb(b0);
  for (int64_t t = 1; t <= 3; ++t) {
    SetGradDoubles(a, StepGrads(t, 2));
    ASSERT_OK(opt->Step());
    ra.Step(StepGrads(t, 2), 0.1, 0.01);
  }
  EXPECT_EQ(Values(b.data()), b0);
  ASSERT_OK_AND_ASSIGN(int64_t b_steps, opt->StepCount("b"));
  EXPECT_EQ(b_steps, 0);
  ASSERT_OK_AND_ASSIGN(NamedTensors state, opt->StateDict());
  for (const auto& [key, t] : state) EXPECT_EQ(key.find("state.b."), std::string::npos) << key;

  opt->ZeroGrad();
  EXPECT_FALSE(a.grad().defined());
  const std::vector<double> a_before = Values(a.data());
  SetGradDoubles(b, {0.7});
  ASSERT_OK(opt->Step());
  rb.Step({0.7}, 0.1, 0.01);
  EXPECT_EQ(Values(a.data()), a_before);  // untouched this step
  EXPECT_TRUE(AllClose(Values(b.data()), rb.p, kTrajectoryTolerance));
  ASSERT_OK_AND_ASSIGN(int64_t a_steps, opt->StepCount("a"));
  ASSERT_OK_AND_ASSIGN(b_steps, opt->StepCount("b"));
  EXPECT_EQ(a_steps, 3);
  EXPECT_EQ(b_steps, 1);
  EXPECT_STATUS_IS(opt->StepCount("c"), absl::StatusCode::kNotFound, "'c'");
}

// A 16-bit gradient is upcast exactly: the step equals one with the same values in f32.
TEST(AdamWTest, HalfGradientsAreUpcast) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    ASSERT_OK_AND_ASSIGN(Tensor p0, RandomTensor({37}, DType::kF32, 1));
    ASSERT_OK_AND_ASSIGN(Tensor p0_copy, p0.Clone());
    Variable half(p0, true), full(p0_copy, true);
    ASSERT_OK_AND_ASSIGN(auto opt_half, AdamW::Create({{"w", half}}, {.chunk_elements = 8}));
    ASSERT_OK_AND_ASSIGN(auto opt_full, AdamW::Create({{"w", full}}));
    for (int t = 0; t < 3; ++t) {
      ASSERT_OK_AND_ASSIGN(Tensor g, RandomTensor({37}, dtype, 100 + t));
      ASSERT_OK_AND_ASSIGN(Tensor g32, g.To(DType::kF32));
      SetGrad(half, g);
      SetGrad(full, g32);
      ASSERT_OK(opt_half->Step());
      ASSERT_OK(opt_full->Step());
    }
    EXPECT_TRUE(AllClose(half.data(), full.data(), {0, 0}));
  }
}

// Chunk size does not change results, and a strided gradient is read correctly.
TEST(AdamWTest, ChunkSizeAndGradientLayoutDoNotMatter) {
  ASSERT_OK_AND_ASSIGN(Tensor p0, RandomTensor({13, 7}, DType::kF32, 3));
  ASSERT_OK_AND_ASSIGN(Tensor p1, p0.Clone());
  Variable a(p0, true), b(p1, true);
  ASSERT_OK_AND_ASSIGN(auto opt_a, AdamW::Create({{"w", a}}, {.chunk_elements = 4}));
  ASSERT_OK_AND_ASSIGN(auto opt_b, AdamW::Create({{"w", b}}));
  for (int t = 0; t < 3; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor gt, RandomTensor({7, 13}, DType::kF32, 50 + t));
    ASSERT_OK_AND_ASSIGN(Tensor g, gt.Transpose(0, 1));  // strided [13, 7]
    ASSERT_OK_AND_ASSIGN(Tensor g_contiguous, g.Contiguous());
    SetGrad(a, g);
    SetGrad(b, g_contiguous);
    ASSERT_OK(opt_a->Step());
    ASSERT_OK(opt_b->Step());
  }
  EXPECT_TRUE(AllClose(a.data(), b.data(), {0, 0}));
}

// A module tree whose parameter names follow the HF Mamba layout.
class Holder : public nn::Module {
 public:
  Holder() : Module("Holder") {}
  Holder* Add(const std::string& name) {
    return RegisterModule(name, std::make_unique<Holder>());
  }
  Variable Param(const std::string& name, const Shape& shape, bool requires_grad = true) {
    absl::StatusOr<Tensor> t = Tensor::Zeros(shape, DType::kF32);
    LYRA_CHECK(t.ok());
    return RegisterParameter(name, *t, requires_grad);
  }
};

std::vector<std::string> Names(const ParamGroup& group) {
  std::vector<std::string> names;
  for (const auto& [name, p] : group.params) names.push_back(name);
  return names;
}

TEST(DecayGroupsTest, SplitsBiasesNormsOneDimAndMambaNames) {
  Holder model;
  Holder* backbone = model.Add("backbone");
  backbone->Add("embeddings")->Param("weight", {50, 8});
  Holder* layer = backbone->Add("layers")->Add("0");
  layer->Add("norm")->Param("weight", {8});
  Holder* mixer = layer->Add("mixer");
  Holder* in_proj = mixer->Add("in_proj");
  in_proj->Param("weight", {32, 8});
  in_proj->Param("bias", {32});
  mixer->Param("A_log", {16, 4});
  mixer->Param("D", {16});
  mixer->Add("conv1d")->Param("weight", {16, 1, 4});
  mixer->Add("frozen")->Param("weight", {4, 4}, /*requires_grad=*/false);
  backbone->Add("norm_f")->Param("weight", {8});

  ASSERT_OK_AND_ASSIGN(std::vector<ParamGroup> groups, DecayGroups(model, {.weight_decay = 0.1}));
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].weight_decay, 0.1);
  EXPECT_EQ(groups[1].weight_decay, 0.0);
  EXPECT_FALSE(groups[0].lr.has_value());
  EXPECT_EQ(Names(groups[0]),
            (std::vector<std::string>{"backbone.embeddings.weight",
                                      "backbone.layers.0.mixer.in_proj.weight",
                                      "backbone.layers.0.mixer.conv1d.weight"}));
  EXPECT_EQ(Names(groups[1]),
            (std::vector<std::string>{"backbone.layers.0.norm.weight",
                                      "backbone.layers.0.mixer.A_log",
                                      "backbone.layers.0.mixer.D",
                                      "backbone.layers.0.mixer.in_proj.bias",
                                      "backbone.norm_f.weight"}));

  ASSERT_OK_AND_ASSIGN(groups, DecayGroups(model, {.no_decay_embeddings = true,
                                                   .no_decay_names = {}}));
  EXPECT_EQ(Names(groups[0]),
            (std::vector<std::string>{"backbone.layers.0.mixer.A_log",
                                      "backbone.layers.0.mixer.in_proj.weight",
                                      "backbone.layers.0.mixer.conv1d.weight"}));
  EXPECT_EQ(groups[1].params.front().first, "backbone.embeddings.weight");

  // Everything decays when every rule is off.
  ASSERT_OK_AND_ASSIGN(groups, DecayGroups(model, {.no_decay_biases = false,
                                                   .no_decay_norms_and_1d = false,
                                                   .no_decay_names = {}}));
  EXPECT_EQ(groups[0].params.size(), 8u);
  EXPECT_TRUE(groups[1].params.empty());
  EXPECT_STATUS_IS(DecayGroups(model, {.weight_decay = -1}), absl::StatusCode::kInvalidArgument,
                   "weight_decay");

  // The groups feed AdamW directly.
  ASSERT_OK_AND_ASSIGN(groups, DecayGroups(model));
  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create(std::move(groups)));
  EXPECT_EQ(opt->num_groups(), 2);
  EXPECT_EQ(opt->weight_decay(0), 0.01);
  EXPECT_EQ(opt->weight_decay(1), 0.0);
}

TEST(AdamWTest, RejectsBadArguments) {
  Variable w = MakeParam({1.0, 2.0});
  EXPECT_STATUS_IS(AdamW::Create({{"w", w}}, {.beta1 = 1.0}), absl::StatusCode::kInvalidArgument,
                   "betas");
  EXPECT_STATUS_IS(AdamW::Create({{"w", w}}, {.lr = -1}), absl::StatusCode::kInvalidArgument,
                   "lr");
  EXPECT_STATUS_IS(AdamW::Create({{"w", w}}, {.chunk_elements = 6}),
                   absl::StatusCode::kInvalidArgument, "chunk_elements");
  EXPECT_STATUS_IS(AdamW::Create({{"w", w}, {"w", MakeParam({1.0})}}),
                   absl::StatusCode::kInvalidArgument, "two parameters are named 'w'");
  EXPECT_STATUS_IS(AdamW::Create({{"w", w}, {"v", w}}), absl::StatusCode::kInvalidArgument,
                   "appears twice");
  ASSERT_OK_AND_ASSIGN(Tensor d, Tensor::Zeros({2}, DType::kF64));
  EXPECT_STATUS_IS(AdamW::Create({{"d", Variable(d, true)}}), absl::StatusCode::kInvalidArgument,
                   "must be f32");
  ASSERT_OK_AND_ASSIGN(Tensor m, Tensor::Zeros({3, 4}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor mt, m.Transpose(0, 1));
  EXPECT_STATUS_IS(AdamW::Create({{"mt", Variable(mt, true)}}), absl::StatusCode::kUnimplemented,
                   "not contiguous");

  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create({{"w", w}}));
  ASSERT_OK_AND_ASSIGN(Tensor wrong, Tensor::Zeros({3}, DType::kF32));
  SetGrad(w, wrong);
  EXPECT_STATUS_IS(opt->Step(), absl::StatusCode::kInvalidArgument, "'w'");
  ASSERT_OK_AND_ASSIGN(Tensor grad64, Tensor::Zeros({2}, DType::kF64));
  SetGrad(w, grad64);
  EXPECT_STATUS_IS(opt->Step(), absl::StatusCode::kInvalidArgument, "f64");
  EXPECT_EQ(Values(w.data()), (std::vector<double>{1.0, 2.0}));  // nothing was updated
  EXPECT_STATUS_IS(opt->SetLr(3, 0.1), absl::StatusCode::kInvalidArgument, "group 3");
}

// The parameters and gradients of a small "model" for the round-trip tests.
struct Model {
  std::vector<std::pair<std::string, Variable>> params;

  static Model Make(Device device, uint64_t seed) {
    Model model;
    const std::vector<std::pair<std::string, Shape>> shapes = {
        {"embed", {17, 5}}, {"w", {9, 3}}, {"b", {9}}, {"norm", {5}}};
    for (size_t i = 0; i < shapes.size(); ++i) {
      absl::StatusOr<Tensor> t = RandomTensor(shapes[i].second, DType::kF32, seed + i);
      LYRA_CHECK(t.ok());
      absl::StatusOr<Tensor> on_device = t->To(device);
      LYRA_CHECK(on_device.ok());
      model.params.emplace_back(shapes[i].first, Variable(*on_device, true));
    }
    return model;
  }

  // Gradients of step t; "norm" gets none on odd steps (a skipped parameter).
  void SetGrads(int t) const {
    for (size_t i = 0; i < params.size(); ++i) {
      const Variable& p = params[i].second;
      if (params[i].first == "norm" && t % 2 == 1) {
        p.ZeroGrad();
        continue;
      }
      absl::StatusOr<Tensor> g = RandomTensor(p.shape(), DType::kF32, 1000 + 10 * t + i);
      LYRA_CHECK(g.ok());
      absl::StatusOr<Tensor> on_device = g->To(p.device());
      LYRA_CHECK(on_device.ok());
      SetGrad(p, *on_device);
    }
  }

  std::vector<ParamGroup> Groups() const {
    std::vector<ParamGroup> groups(2);
    groups[0].params = {params[0], params[1]};
    groups[1].params = {params[2], params[3]};
    groups[1].weight_decay = 0.0;
    groups[1].lr = 3e-3;
    return groups;
  }

  // The model's parameters, copied (for saving).
  NamedTensors Values() const {
    NamedTensors out;
    for (const auto& [name, p] : params) {
      absl::StatusOr<Tensor> copy = p.data().Clone();
      LYRA_CHECK(copy.ok());
      out.emplace_back(name, *copy);
    }
    return out;
  }
};

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name, ".", getpid(), ".safetensors");
}

// Save after k steps (through a safetensors file), load into a fresh optimizer over fresh
// parameters, continue: the parameters equal those of an uninterrupted run bit for bit.
template <typename Opt, typename Options>
void RoundTripIsBitExact(Device device, const Options& options) {
  constexpr int kSteps = 7;
  constexpr int kSaveAfter = 4;
  Model straight = Model::Make(device, 7);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Opt> opt, Opt::Create(straight.Groups(), options));
  for (int t = 0; t < kSteps; ++t) {
    straight.SetGrads(t);
    ASSERT_OK(opt->Step());
  }

  Model first = Model::Make(device, 7);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Opt> opt1, Opt::Create(first.Groups(), options));
  for (int t = 0; t < kSaveAfter; ++t) {
    first.SetGrads(t);
    ASSERT_OK(opt1->Step());
  }
  ASSERT_OK(opt1->SetLr(0, opt1->lr(0)));  // nothing changes; lr is saved as is
  ASSERT_OK_AND_ASSIGN(NamedTensors state, opt1->StateDict());
  const std::string state_path = TempPath("optimizer_state");
  const std::string params_path = TempPath("params");
  ASSERT_OK(WriteSafetensors(state_path, state));
  ASSERT_OK(WriteSafetensors(params_path, first.Values()));
  opt1.reset();

  Model second = Model::Make(device, 99);  // other initial values, overwritten below
  ASSERT_OK_AND_ASSIGN(SafetensorsContents saved_params, ReadSafetensors(params_path));
  for (const auto& [name, p] : second.params) {
    ASSERT_OK_AND_ASSIGN(Tensor value, saved_params.Get(name));
    ASSERT_OK(p.data().CopyFrom(value));
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Opt> opt2, Opt::Create(second.Groups(), options));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents saved_state, ReadSafetensors(state_path));
  ASSERT_OK(opt2->LoadStateDict(saved_state.tensors));
  for (int t = kSaveAfter; t < kSteps; ++t) {
    second.SetGrads(t);
    ASSERT_OK(opt2->Step());
  }
  for (size_t i = 0; i < straight.params.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(std::vector<float> expected,
                         straight.params[i].second.data().ToVector<float>());
    ASSERT_OK_AND_ASSIGN(std::vector<float> actual,
                         second.params[i].second.data().ToVector<float>());
    EXPECT_EQ(actual, expected) << straight.params[i].first;
  }
  std::remove(state_path.c_str());
  std::remove(params_path.c_str());
}

TEST(AdamWTest, StateRoundTripIsBitExact) {
  RoundTripIsBitExact<AdamW>(Device::Cpu(), AdamWOptions{.lr = 1e-2, .weight_decay = 0.05});
}

TEST(AdamWTest, StateRoundTripIsBitExactOnGpu) {
  LYRA_REQUIRE_GPU();
  RoundTripIsBitExact<AdamW>(Device::Cuda(0), AdamWOptions{.lr = 1e-2, .weight_decay = 0.05});
}

TEST(AdamWTest, StateDictHasTheDocumentedKeys) {
  Model model = Model::Make(Device::Cpu(), 1);
  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create(model.Groups()));
  model.SetGrads(1);  // "norm" has no gradient
  ASSERT_OK(opt->Step());
  ASSERT_OK_AND_ASSIGN(NamedTensors state, opt->StateDict());
  std::vector<std::string> keys;
  for (const auto& [key, t] : state) keys.push_back(key);
  const std::vector<std::string> expected = {
      "group.0.lr", "group.0.initial_lr", "group.0.weight_decay", "group.0.num_params",
      "group.1.lr", "group.1.initial_lr", "group.1.weight_decay", "group.1.num_params",
      "beta1", "beta2", "eps",
      "state.embed.exp_avg", "state.embed.exp_avg_sq", "state.embed.step",
      "state.w.exp_avg", "state.w.exp_avg_sq", "state.w.step",
      "state.b.exp_avg", "state.b.exp_avg_sq", "state.b.step"};
  EXPECT_EQ(keys, expected);
  for (const auto& [key, t] : state) {
    if (key.ends_with(".step") || key.ends_with("num_params")) {
      EXPECT_EQ(t.dtype(), DType::kI64) << key;
      EXPECT_EQ(t.dim(), 0) << key;
    }
  }
}

TEST(AdamWTest, LoadStateDictRejectsMismatchesAndChangesNothing) {
  Model model = Model::Make(Device::Cpu(), 1);
  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create(model.Groups()));
  model.SetGrads(0);
  ASSERT_OK(opt->Step());
  ASSERT_OK_AND_ASSIGN(NamedTensors good, opt->StateDict());

  ASSERT_OK_AND_ASSIGN(auto fresh, AdamW::Create(Model::Make(Device::Cpu(), 2).Groups()));
  NamedTensors extra = good;
  extra.emplace_back("state.nope.exp_avg", internal::ScalarF64(1));
  EXPECT_STATUS_IS(fresh->LoadStateDict(extra), absl::StatusCode::kInvalidArgument,
                   "state.nope.exp_avg");
  NamedTensors wrong_shape = good;
  for (auto& [key, t] : wrong_shape) {
    if (key == "state.w.exp_avg") {
      ASSERT_OK_AND_ASSIGN(t, Tensor::Zeros({3}, DType::kF32));
    }
  }
  EXPECT_STATUS_IS(fresh->LoadStateDict(wrong_shape), absl::StatusCode::kInvalidArgument,
                   "state.w.exp_avg");
  NamedTensors missing;
  for (const auto& kv : good) {
    if (kv.first != "state.w.step") missing.push_back(kv);
  }
  EXPECT_STATUS_IS(fresh->LoadStateDict(missing), absl::StatusCode::kInvalidArgument,
                   "state.w.step");
  Variable lone = MakeParam({1.0});
  ASSERT_OK_AND_ASSIGN(auto one_group, AdamW::Create({{"embed", lone}}));
  EXPECT_STATUS_IS(one_group->LoadStateDict(good), absl::StatusCode::kInvalidArgument, "groups");
  // None of the failed loads changed anything.
  ASSERT_OK_AND_ASSIGN(NamedTensors fresh_state, fresh->StateDict());
  EXPECT_EQ(fresh_state.size(), 11u);  // group and hyper-parameter keys only
  EXPECT_OK(fresh->LoadStateDict(good));
}

// SGD against torch.optim.SGD's rule in f64.
TEST(SgdTest, MatchesClosedForm) {
  struct Case {
    double momentum, dampening, wd;
    bool nesterov;
  };
  const std::vector<double> p0 = {0.4, -1.1, 2.5};
  for (const Case& c : {Case{0, 0, 0, false}, Case{0, 0, 0.1, false}, Case{0.9, 0, 0, false},
                        Case{0.9, 0.25, 0.01, false}, Case{0.8, 0, 0.05, true}}) {
    SCOPED_TRACE(absl::StrCat("momentum ", c.momentum, " dampening ", c.dampening, " wd ", c.wd,
                              " nesterov ", c.nesterov));
    Variable w = MakeParam(p0);
    const double lr = 0.1;
    ASSERT_OK_AND_ASSIGN(auto opt,
                         Sgd::Create({{"w", w}}, {.lr = lr, .momentum = c.momentum,
                                                  .dampening = c.dampening,
                                                  .weight_decay = c.wd, .nesterov = c.nesterov}));
    std::vector<double> p = p0, buf;
    for (int64_t t = 1; t <= 5; ++t) {
      const std::vector<double> g = StepGrads(t, p0.size());
      SetGradDoubles(w, g);
      ASSERT_OK(opt->Step());
      std::vector<double> d(p.size());
      for (size_t i = 0; i < p.size(); ++i) d[i] = g[i] + c.wd * p[i];
      if (c.momentum != 0) {
        if (buf.empty()) {
          buf = d;
        } else {
          for (size_t i = 0; i < p.size(); ++i) {
            buf[i] = c.momentum * buf[i] + (1 - c.dampening) * d[i];
          }
        }
        for (size_t i = 0; i < p.size(); ++i) d[i] = c.nesterov ? d[i] + c.momentum * buf[i] : buf[i];
      }
      for (size_t i = 0; i < p.size(); ++i) p[i] -= lr * d[i];
      EXPECT_TRUE(AllClose(Values(w.data()), p, kTrajectoryTolerance)) << "step " << t;
    }
  }
  Variable w = MakeParam(p0);
  EXPECT_STATUS_IS(Sgd::Create({{"w", w}}, {.nesterov = true}),
                   absl::StatusCode::kInvalidArgument, "Nesterov");
}

TEST(SgdTest, HalfGradientsAndSkippedParameters) {
  Variable a = MakeParam({1.0, -1.0});
  Variable b = MakeParam({5.0});
  ASSERT_OK_AND_ASSIGN(auto opt, Sgd::Create({{"a", a}, {"b", b}}, {.lr = 0.5, .momentum = 0.5}));
  SetGradDoubles(a, {0.25, -0.5}, DType::kBF16);
  ASSERT_OK(opt->Step());
  EXPECT_EQ(Values(a.data()), (std::vector<double>{0.875, -0.75}));
  EXPECT_EQ(Values(b.data()), (std::vector<double>{5.0}));
  ASSERT_OK_AND_ASSIGN(NamedTensors state, opt->StateDict());
  EXPECT_EQ(state.back().first, "state.a.momentum_buffer");
}

TEST(SgdTest, StateRoundTripIsBitExact) {
  RoundTripIsBitExact<Sgd>(Device::Cpu(), SgdOptions{.lr = 0.05, .momentum = 0.9,
                                                     .dampening = 0.1, .weight_decay = 0.01});
}

TEST(SgdTest, StateRoundTripIsBitExactOnGpu) {
  LYRA_REQUIRE_GPU();
  RoundTripIsBitExact<Sgd>(Device::Cuda(0), SgdOptions{.lr = 0.05, .momentum = 0.9,
                                                       .nesterov = true});
}

// ---------------------------------------------------------------------------------------------
// CUDA against the CPU reference.

struct GpuCase {
  std::string name;
  std::vector<int64_t> sizes;
  int64_t chunk_elements;
};

// Runs the same steps on the CPU and on cuda:0 and compares parameters and moments. Every third
// tensor gets a bf16 gradient, every fifth an f16 one, every seventh none at step 1; tensors
// alternate between two groups; one parameter is an unaligned view (offset 1 into a buffer).
void CompareCpuAndGpu(const GpuCase& c) {
  SCOPED_TRACE(c.name);
  constexpr int kSteps = 3;
  std::vector<ParamGroup> cpu_groups(2), gpu_groups(2);
  cpu_groups[1].lr = gpu_groups[1].lr = 5e-3;
  cpu_groups[1].weight_decay = gpu_groups[1].weight_decay = 0.0;
  std::vector<Variable> cpu_params, gpu_params;
  for (size_t i = 0; i < c.sizes.size(); ++i) {
    absl::StatusOr<Tensor> p = RandomTensor({c.sizes[i]}, DType::kF32, 10 + i);
    ASSERT_TRUE(p.ok());
    Tensor gpu_value;
    if (i == 1) {  // unaligned: element 1 onward of a larger buffer
      ASSERT_OK_AND_ASSIGN(Tensor buffer, Tensor::Zeros({c.sizes[i] + 1}, DType::kF32,
                                                        Device::Cuda(0)));
      ASSERT_OK_AND_ASSIGN(gpu_value, buffer.Narrow(0, 1, c.sizes[i]));
      ASSERT_OK(gpu_value.CopyFrom(*p));
    } else {
      ASSERT_OK_AND_ASSIGN(gpu_value, p->To(Device::Cuda(0)));
    }
    ASSERT_OK_AND_ASSIGN(Tensor cpu_value, p->Clone());
    cpu_params.emplace_back(cpu_value, true);
    gpu_params.emplace_back(gpu_value, true);
    const std::string name = absl::StrCat("p", i);
    cpu_groups[i % 2].params.emplace_back(name, cpu_params.back());
    gpu_groups[i % 2].params.emplace_back(name, gpu_params.back());
  }
  const AdamWOptions options{.lr = 1e-2, .weight_decay = 0.1, .chunk_elements = c.chunk_elements};
  ASSERT_OK_AND_ASSIGN(auto cpu_opt, AdamW::Create(std::move(cpu_groups), options));
  ASSERT_OK_AND_ASSIGN(auto gpu_opt, AdamW::Create(std::move(gpu_groups), options));
  for (int t = 0; t < kSteps; ++t) {
    for (size_t i = 0; i < c.sizes.size(); ++i) {
      if (i % 7 == 0 && t == 1) {
        cpu_params[i].ZeroGrad();
        gpu_params[i].ZeroGrad();
        continue;
      }
      const DType dtype = i % 3 == 0 ? DType::kBF16 : i % 5 == 0 ? DType::kF16 : DType::kF32;
      ASSERT_OK_AND_ASSIGN(Tensor g, RandomTensor({c.sizes[i]}, dtype, 500 + 31 * t + i));
      ASSERT_OK_AND_ASSIGN(Tensor g_gpu, g.To(Device::Cuda(0)));
      SetGrad(cpu_params[i], g);
      SetGrad(gpu_params[i], g_gpu);
    }
    ASSERT_OK(cpu_opt->Step());
    ASSERT_OK(gpu_opt->Step());
  }
  // Same operations, same roundings (no FMA on either side); the f64 pow of the bias
  // corrections may differ in its last bit between libm and CUDA, so allow an ulp or two.
  const Tolerance tol{0, 3e-7};
  for (size_t i = 0; i < c.sizes.size(); ++i) {
    EXPECT_TRUE(AllClose(gpu_params[i].data(), cpu_params[i].data(), tol)) << "p" << i;
  }
  ASSERT_OK_AND_ASSIGN(NamedTensors cpu_state, cpu_opt->StateDict());
  ASSERT_OK_AND_ASSIGN(NamedTensors gpu_state, gpu_opt->StateDict());
  ASSERT_EQ(cpu_state.size(), gpu_state.size());
  for (size_t k = 0; k < cpu_state.size(); ++k) {
    ASSERT_EQ(cpu_state[k].first, gpu_state[k].first);
    EXPECT_TRUE(AllClose(gpu_state[k].second, cpu_state[k].second, tol)) << cpu_state[k].first;
  }
}

TEST(AdamWGpuTest, MatchesCpuReference) {
  LYRA_REQUIRE_GPU();
  std::vector<int64_t> tiny(300);
  for (size_t i = 0; i < tiny.size(); ++i) tiny[i] = 1 + static_cast<int64_t>(i % 9);
  std::vector<int64_t> with_empty = {5, 0, 17, 0, 3};
  const std::vector<GpuCase> cases = {
      {"odd sizes, default chunks", {1, 3, 7, 1000, 65537, 200003, 4, 5, 131072, 12345}, 
       cuda::kMultiTensorChunkElements},
      {"odd sizes, small chunks", {1, 3, 7, 1000, 65537, 20003, 4, 5, 4096, 12345}, 1024},
      {"mamba-130m-like", {50280 * 8, 768, 1536 * 768, 1536 * 4, 1536, 768 * 1536, 1536 * 16},
       cuda::kMultiTensorChunkElements},
      {"300 tiny tensors", tiny, cuda::kMultiTensorChunkElements},
      {"tiny tensors, 4-element chunks", tiny, 4},
      {"empty tensors", with_empty, 8},
  };
  for (const GpuCase& c : cases) CompareCpuAndGpu(c);
}

// The step counters live on the device and advance once per step, also for empty tensors and
// for tensors of many chunks.
TEST(AdamWGpuTest, StepCountersAdvanceOncePerStep) {
  LYRA_REQUIRE_GPU();
  Variable big = MakeParam(std::vector<double>(10000, 1.0), Device::Cuda(0));
  ASSERT_OK_AND_ASSIGN(Tensor empty, Tensor::Zeros({0}, DType::kF32, Device::Cuda(0)));
  Variable none(empty, true);
  ASSERT_OK_AND_ASSIGN(auto opt, AdamW::Create({{"big", big}, {"none", none}},
                                               {.chunk_elements = 64}));
  for (int t = 0; t < 5; ++t) {
    SetGradDoubles(big, std::vector<double>(10000, 0.5));
    ASSERT_OK_AND_ASSIGN(Tensor g0, Tensor::Zeros({0}, DType::kF32, Device::Cuda(0)));
    SetGrad(none, g0);
    ASSERT_OK(opt->Step());
  }
  ASSERT_OK_AND_ASSIGN(int64_t big_steps, opt->StepCount("big"));
  ASSERT_OK_AND_ASSIGN(int64_t none_steps, opt->StepCount("none"));
  EXPECT_EQ(big_steps, 5);
  EXPECT_EQ(none_steps, 5);
  // Constant gradient: every step moves by lr (m_hat = g, v_hat = g^2), decay aside.
  AdamWTrajectory ref(std::vector<double>(1, 1.0));
  for (int t = 0; t < 5; ++t) ref.Step({0.5}, 1e-3, 0.01);
  ASSERT_OK_AND_ASSIGN(std::vector<double> values, big.data().ToDoubles());
  for (double v : values) EXPECT_NEAR(v, ref.p[0], 1e-6);
}

}  // namespace
}  // namespace lyra::optim
