// The LoRA module system (nn/lora/): adapter math on Linear / Embedding against composed f64
// ops and finite differences, PEFT's initialisation and scaling, dropout, injection by PEFT's
// target rules into a real MambaForCausalLM, presets, freezing and counts, modules_to_save,
// merge / unmerge, several adapters, PEFT directory I/O (keys, config, round trip, errors), base
// checkpoints with adapters attached, and CUDA (f32, bf16 autocast) against the CPU.
#include "nn/lora/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "mamba/checkpoint.h"
#include "mamba/config.h"
#include "mamba/model.h"
#include "nn/autocast.h"
#include "nn/embedding.h"
#include "nn/functional_linear.h"
#include "nn/linear.h"
#include "nn/lora/lora_layer.h"
#include "nn/lora/peft_io.h"
#include "tensor/matmul.h"
#include "tensor/safetensors.h"
#include "tests/testing/testing.h"
#include "tests/testing/tiny_mamba.h"

namespace lyra::nn {
namespace {

namespace fs = std::filesystem;
using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::TinyMamba2Config;
using ::lyra::testing::Tolerance;

constexpr Tolerance kF64{1e-12, 1e-12};

std::string TempDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/lora_test_" + name;
  fs::remove_all(dir);
  return dir;
}

// Values of t as doubles.
std::vector<double> D(const Tensor& t) { return t.ToDoubles().value(); }

// Sets a parameter to deterministic random values (in its dtype and device).
void Randomize(const Variable& v, uint64_t seed, double scale = 1.0) {
  Tensor t = RandomTensor(v.shape(), v.dtype(), seed, -scale, scale).value();
  ASSERT_OK(v.set_data(t.To(v.device()).value()));
}

// x Wᵀ + b + scale (x Aᵀ) Bᵀ in f64 from the values, x [T, in].
std::vector<double> NaiveLoraLinear(const Tensor& x, const Tensor& w, const Tensor& b,
                                    const Tensor& A, const Tensor& B, double scale) {
  const int64_t T = x.size(0), in = x.size(1), out = w.size(0), r = A.size(0);
  const auto xv = D(x), wv = D(w), av = D(A), bv = D(B);
  const std::vector<double> biasv = b.defined() ? D(b) : std::vector<double>(out, 0.0);
  std::vector<double> y(T * out);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> h(r, 0.0);
    for (int64_t k = 0; k < r; ++k) {
      for (int64_t i = 0; i < in; ++i) h[k] += xv[t * in + i] * av[k * in + i];
    }
    for (int64_t o = 0; o < out; ++o) {
      double acc = biasv[o], u = 0;
      for (int64_t i = 0; i < in; ++i) acc += xv[t * in + i] * wv[o * in + i];
      for (int64_t k = 0; k < r; ++k) u += h[k] * bv[o * r + k];
      y[t * out + o] = acc + scale * u;
    }
  }
  return y;
}

std::unique_ptr<Linear> MakeLinear(int64_t in, int64_t out, bool bias, DType dtype = DType::kF64,
                                   uint64_t seed = 1) {
  Generator gen(seed);
  return Linear::Create(in, out, bias, gen, dtype).value();
}

// --- Layer math ---------------------------------------------------------------------------

TEST(LoraLinearTest, ForwardIsBasePlusScaledLowRankProductF64) {
  auto lin = MakeLinear(7, 5, /*bias=*/true);
  Generator gen(3);
  ASSERT_OK(lin->AddLoraAdapter("default", {3, 6, 0, false}, gen));
  const LoraFactors* f = lin->active_lora();
  ASSERT_NE(f, nullptr);
  EXPECT_DOUBLE_EQ(f->scale, 2.0);
  Randomize(f->B, 4);
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({4, 7}, DType::kF64, 5));
  ASSERT_OK_AND_ASSIGN(Variable y, lin->Forward(Variable(x)));
  EXPECT_TRUE(AllClose(D(y.data()), NaiveLoraLinear(x, lin->weight().data(), lin->bias().data(),
                                                    f->A.data(), f->B.data(), 2.0),
                       kF64));
  // Leading dims are kept.
  ASSERT_OK_AND_ASSIGN(Tensor x3, x.Reshape({2, 2, 7}));
  ASSERT_OK_AND_ASSIGN(Variable y3, lin->Forward(Variable(x3)));
  EXPECT_EQ(y3.shape(), (Shape{2, 2, 5}));
  EXPECT_TRUE(AllClose(D(y3.data()), D(y.data()), kF64));
}

TEST(LoraLinearTest, PeftInitialisationAndNames) {
  auto lin = MakeLinear(16, 6, /*bias=*/false, DType::kF32);
  Generator gen(9);
  ASSERT_OK(lin->AddLoraAdapter("default", {4, 8, 0, false}, gen));
  const auto names = lin->NamedAdapterParameters();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].first, "lora_A.default.weight");
  EXPECT_EQ(names[1].first, "lora_B.default.weight");
  EXPECT_EQ(names[0].second.shape(), (Shape{4, 16}));
  EXPECT_EQ(names[1].second.shape(), (Shape{6, 4}));
  // A ~ U(+-1/sqrt(in)) (kaiming_uniform a = sqrt 5), B = 0.
  const double bound = 1.0 / std::sqrt(16.0);
  double max_abs = 0;
  for (double v : D(names[0].second.data())) max_abs = std::max(max_abs, std::fabs(v));
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.5 * bound);
  for (double v : D(names[1].second.data())) EXPECT_EQ(v, 0.0);
  // B = 0: the output is the base output exactly.
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({3, 16}, DType::kF32, 2));
  ASSERT_OK_AND_ASSIGN(Variable with, lin->Forward(Variable(x)));
  ASSERT_OK(lin->DisableAdapters());
  EXPECT_EQ(lin->active_lora(), nullptr);
  ASSERT_OK_AND_ASSIGN(Variable base, lin->Forward(Variable(x)));
  EXPECT_EQ(D(with.data()), D(base.data()));
  // Adapters are not in the base state dict.
  std::set<std::string> keys;
  for (const auto& [k, t] : lin->StateDict()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"weight"}));
  EXPECT_EQ(lin->NamedParameters().size(), 3u);
}

TEST(LoraLinearTest, RsLoraScale) {
  EXPECT_DOUBLE_EQ(LoraScale({16, 32, 0, false}), 2.0);
  EXPECT_DOUBLE_EQ(LoraScale({16, 32, 0, true}), 8.0);
  auto lin = MakeLinear(4, 4, false);
  Generator gen(1);
  ASSERT_OK(lin->AddLoraAdapter("a", {9, 6, 0, /*use_rslora=*/true}, gen));
  EXPECT_DOUBLE_EQ(lin->active_lora()->scale, 2.0);
}

TEST(LoraLinearTest, GradCheckOfTheLowRankUpdateF64) {
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({3, 5}, DType::kF64, 1));
  ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor({4, 5}, DType::kF64, 2));
  ASSERT_OK_AND_ASSIGN(Tensor a, RandomTensor({2, 5}, DType::kF64, 3));
  ASSERT_OK_AND_ASSIGN(Tensor b, RandomTensor({4, 2}, DType::kF64, 4));
  const autograd::GradCheckResult r = autograd::GradCheck(
      [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
        LoraFactors f;
        f.A = v[2];
        f.B = v[3];
        f.scale = 1.5;
        LYRA_ASSIGN_OR_RETURN(Variable base, functional::Linear(v[0], v[1]));
        return AddLoraLinear(base, v[0], f);
      },
      {x, w, a, b});
  EXPECT_TRUE(r.ok) << r.message;
}

// d sum(y * wts) / d p for every element of parameter `p` by central differences, where y is
// `forward()`; compares with p.grad() after one Backward.
void ExpectGradientMatchesDifferences(const std::function<absl::StatusOr<Variable>()>& forward,
                                      const Variable& p, const Tensor& wts) {
  p.ZeroGrad();
  ASSERT_OK_AND_ASSIGN(Variable y, forward());
  ASSERT_OK_AND_ASSIGN(Variable prod, autograd::Mul(y, Variable(wts)));
  ASSERT_OK_AND_ASSIGN(Variable s, autograd::Sum(prod));
  ASSERT_OK(s.Backward());
  ASSERT_TRUE(p.grad().defined());
  const std::vector<double> analytic = D(p.grad());
  std::vector<double> values = D(p.data());
  std::vector<double> numeric(values.size());
  const double eps = 1e-6;
  auto eval = [&]() {
    autograd::NoGradGuard no_grad;
    Variable out = forward().value();
    return D(autograd::Sum(autograd::Mul(out, Variable(wts)).value()).value().data())[0];
  };
  for (size_t i = 0; i < values.size(); ++i) {
    std::vector<double> plus = values, minus = values;
    plus[i] += eps;
    minus[i] -= eps;
    ASSERT_OK(p.set_data(Tensor::FromDoubles(plus, p.shape(), DType::kF64).value()));
    const double fp = eval();
    ASSERT_OK(p.set_data(Tensor::FromDoubles(minus, p.shape(), DType::kF64).value()));
    const double fm = eval();
    numeric[i] = (fp - fm) / (2 * eps);
  }
  ASSERT_OK(p.set_data(Tensor::FromDoubles(values, p.shape(), DType::kF64).value()));
  EXPECT_TRUE(AllClose(analytic, numeric, {1e-7, 1e-6}));
}

TEST(LoraLinearTest, GradientsOfTheModuleReachAAndBF64) {
  auto lin = MakeLinear(5, 3, /*bias=*/true);
  Generator gen(2);
  ASSERT_OK(lin->AddLoraAdapter("default", {2, 4, 0, false}, gen));
  const LoraFactors* f = lin->active_lora();
  Randomize(f->B, 7);
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({4, 5}, DType::kF64, 8));
  ASSERT_OK_AND_ASSIGN(Tensor wts, RandomTensor({4, 3}, DType::kF64, 9));
  auto forward = [&]() { return lin->Forward(Variable(x)); };
  ExpectGradientMatchesDifferences(forward, f->A, wts);
  ExpectGradientMatchesDifferences(forward, f->B, wts);
  ExpectGradientMatchesDifferences(forward, lin->weight(), wts);
}

TEST(LoraEmbeddingTest, ForwardInitialisationAndGradientsF64) {
  Generator gen(4);
  ASSERT_OK_AND_ASSIGN(auto emb, Embedding::Create(6, 3, gen, /*padding_idx=*/1, DType::kF64));
  ASSERT_OK(emb->AddLoraAdapter("default", {2, 4, 0, false}, gen));
  const auto names = emb->NamedAdapterParameters();
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].first, "lora_embedding_A.default");
  EXPECT_EQ(names[1].first, "lora_embedding_B.default");
  const LoraFactors* f = emb->active_lora();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->A.shape(), (Shape{2, 6}));
  EXPECT_EQ(f->B.shape(), (Shape{3, 2}));
  for (double v : D(f->A.data())) EXPECT_EQ(v, 0.0);  // PEFT: A zeros, B normal
  double sq = 0;
  for (double v : D(f->B.data())) sq += v * v;
  EXPECT_GT(sq, 0.0);

  Randomize(f->A, 11);
  ASSERT_OK_AND_ASSIGN(Tensor ids, Tensor::FromVector<int64_t>({0, 5, 1, 3, 3}, {5}));
  ASSERT_OK_AND_ASSIGN(Variable y, emb->Forward(ids));
  ASSERT_EQ(y.shape(), (Shape{5, 3}));
  const auto wv = D(emb->weight().data()), av = D(f->A.data()), bv = D(f->B.data());
  const std::vector<int64_t> idv = {0, 5, 1, 3, 3};
  std::vector<double> expected;
  for (int64_t id : idv) {
    for (int64_t m = 0; m < 3; ++m) {
      double u = 0;
      for (int64_t k = 0; k < 2; ++k) u += av[k * 6 + id] * bv[m * 2 + k];
      expected.push_back(wv[id * 3 + m] + 2.0 * u);
    }
  }
  EXPECT_TRUE(AllClose(D(y.data()), expected, kF64));

  ASSERT_OK_AND_ASSIGN(Tensor wts, RandomTensor({5, 3}, DType::kF64, 12));
  auto forward = [&]() { return emb->Forward(ids); };
  ExpectGradientMatchesDifferences(forward, f->B, wts);
  // Without the padding id every element of A, B and the table matches central differences.
  ASSERT_OK_AND_ASSIGN(Tensor plain_ids, Tensor::FromVector<int64_t>({0, 5, 2, 3, 3}, {5}));
  auto plain = [&]() { return emb->Forward(plain_ids); };
  ExpectGradientMatchesDifferences(plain, f->A, wts);
  ExpectGradientMatchesDifferences(plain, f->B, wts);
  // A: the padding column gets no gradient (F.embedding's padding_idx), so compare the others
  // through the analytic formula dA[k, id] = scale * sum_m B[m, k] g[m] over lookups of id.
  f->A.ZeroGrad();
  ASSERT_OK_AND_ASSIGN(Variable y2, emb->Forward(ids));
  ASSERT_OK(autograd::Sum(autograd::Mul(y2, Variable(wts)).value()).value().Backward());
  const auto ga = D(f->A.grad()), wt = D(wts);
  for (int64_t k = 0; k < 2; ++k) {
    for (int64_t v = 0; v < 6; ++v) {
      double want = 0;
      for (size_t t = 0; t < idv.size(); ++t) {
        if (idv[t] != v || v == 1) continue;
        for (int64_t m = 0; m < 3; ++m) want += 2.0 * bv[m * 2 + k] * wt[t * 3 + m];
      }
      EXPECT_NEAR(ga[k * 6 + v], want, 1e-12) << "dA[" << k << ", " << v << "]";
    }
  }
}

TEST(LoraLinearTest, DropoutOnlyInTrainingAndReproducible) {
  auto make = [] {
    auto lin = MakeLinear(32, 8, false, DType::kF64, 3);
    Generator gen(5);
    LYRA_CHECK_OK(lin->AddLoraAdapter("default", {4, 4, 0.5, false}, gen));
    Randomize(lin->active_lora()->B, 6);
    return lin;
  };
  auto a = make(), b = make();
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({6, 32}, DType::kF64, 7));
  const LoraFactors* f = a->active_lora();
  EXPECT_TRUE(f->training);
  EXPECT_DOUBLE_EQ(f->dropout, 0.5);
  ASSERT_NE(f->generator, nullptr);
  ASSERT_OK_AND_ASSIGN(Variable ya, a->Forward(Variable(x)));
  ASSERT_OK_AND_ASSIGN(Variable yb, b->Forward(Variable(x)));
  EXPECT_EQ(D(ya.data()), D(yb.data()));  // same seeds, same masks
  const auto no_dropout = NaiveLoraLinear(x, a->weight().data(), Tensor(), f->A.data(),
                                          f->B.data(), 1.0);
  EXPECT_FALSE(AllClose(D(ya.data()), no_dropout, kF64));
  a->Eval();
  EXPECT_FALSE(a->active_lora()->training);
  ASSERT_OK_AND_ASSIGN(Variable ye, a->Forward(Variable(x)));
  EXPECT_TRUE(AllClose(D(ye.data()), no_dropout, kF64));
}

TEST(LoraLinearTest, MergeUnmergeRoundTrip) {
  auto lin = MakeLinear(9, 7, true, DType::kF32);
  Generator gen(1);
  ASSERT_OK(lin->AddLoraAdapter("default", {3, 6, 0, false}, gen));
  Randomize(lin->active_lora()->B, 2, 0.5);
  ASSERT_OK_AND_ASSIGN(Tensor w0, lin->weight().data().Clone());
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({5, 9}, DType::kF32, 3));
  ASSERT_OK_AND_ASSIGN(Variable unmerged, lin->Forward(Variable(x)));
  ASSERT_OK(lin->Merge());
  EXPECT_EQ(lin->active_lora(), nullptr);
  EXPECT_STATUS_IS(lin->Merge(), absl::StatusCode::kFailedPrecondition, "merged");
  EXPECT_STATUS_IS(lin->DeleteAdapter("default"), absl::StatusCode::kFailedPrecondition, "merged");
  ASSERT_OK_AND_ASSIGN(Variable merged, lin->Forward(Variable(x)));
  EXPECT_TRUE(AllClose(merged.data(), unmerged.data(), {1e-5, 1e-5}));
  ASSERT_OK(lin->Unmerge());
  EXPECT_NE(lin->active_lora(), nullptr);
  EXPECT_TRUE(AllClose(lin->weight().data(), w0, {1e-6, 1e-6}));
  EXPECT_STATUS_IS(lin->Unmerge(), absl::StatusCode::kFailedPrecondition, "nothing");
}

TEST(LoraEmbeddingTest, MergeUnmergeRoundTrip) {
  Generator gen(2);
  ASSERT_OK_AND_ASSIGN(auto emb, Embedding::Create(10, 4, gen, std::nullopt, DType::kF64));
  ASSERT_OK(emb->AddLoraAdapter("default", {3, 3, 0, false}, gen));
  Randomize(emb->active_lora()->A, 5);
  ASSERT_OK_AND_ASSIGN(Tensor w0, emb->weight().data().Clone());
  ASSERT_OK_AND_ASSIGN(Tensor ids, Tensor::FromVector<int64_t>({9, 0, 4, 4}, {2, 2}));
  ASSERT_OK_AND_ASSIGN(Variable unmerged, emb->Forward(ids));
  ASSERT_OK(emb->Merge());
  ASSERT_OK_AND_ASSIGN(Variable merged, emb->Forward(ids));
  EXPECT_TRUE(AllClose(merged.data(), unmerged.data(), kF64));
  ASSERT_OK(emb->Unmerge());
  EXPECT_TRUE(AllClose(emb->weight().data(), w0, kF64));
}

TEST(LoraLinearTest, SeveralAdaptersOneActive) {
  auto lin = MakeLinear(6, 4, false);
  Generator gen(1);
  ASSERT_OK(lin->AddLoraAdapter("a", {2, 2, 0, false}, gen));
  ASSERT_OK(lin->AddLoraAdapter("b", {3, 6, 0, false}, gen));
  EXPECT_EQ(lin->lora_adapters().active_name(), "a");  // the first stays active
  Randomize(lin->lora_adapters().Find("a")->factors.B, 1);
  Randomize(lin->lora_adapters().Find("b")->factors.B, 2);
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({2, 6}, DType::kF64, 3));
  for (const char* name : {"a", "b"}) {
    ASSERT_OK(lin->SetActiveAdapter(name));
    const LoraFactors* f = lin->active_lora();
    ASSERT_OK_AND_ASSIGN(Variable y, lin->Forward(Variable(x)));
    EXPECT_TRUE(AllClose(D(y.data()), NaiveLoraLinear(x, lin->weight().data(), Tensor(),
                                                      f->A.data(), f->B.data(), f->scale),
                         kF64))
        << name;
  }
  EXPECT_STATUS_IS(lin->SetActiveAdapter("c"), absl::StatusCode::kNotFound, "'c'");
  EXPECT_STATUS_IS(lin->AddLoraAdapter("a", {2, 2, 0, false}, gen),
                   absl::StatusCode::kInvalidArgument, "already");
  EXPECT_STATUS_IS(lin->AddLoraAdapter("x.y", {2, 2, 0, false}, gen),
                   absl::StatusCode::kInvalidArgument, "bad adapter name");
  EXPECT_STATUS_IS(lin->AddLoraAdapter("z", {0, 2, 0, false}, gen),
                   absl::StatusCode::kInvalidArgument, "r = 0");
  ASSERT_OK(lin->DeleteAdapter("b"));
  EXPECT_EQ(lin->active_lora(), nullptr);
  EXPECT_EQ(lin->NamedAdapterParameters().size(), 2u);
  EXPECT_STATUS_IS(lin->DeleteAdapter("b"), absl::StatusCode::kNotFound, "'b'");
}

TEST(ModuleAdapterTest, AdapterParametersAndSwapping) {
  auto lin = MakeLinear(3, 2, /*bias=*/true);
  ASSERT_OK_AND_ASSIGN(Tensor t, RandomTensor({2, 3}, DType::kF64, 1));
  ASSERT_OK_AND_ASSIGN(Variable extra, lin->AddAdapterParameter("x.y.z", t));
  EXPECT_TRUE(extra.requires_grad());
  EXPECT_STATUS_IS(lin->AddAdapterParameter("x.y.z", t).status(),
                   absl::StatusCode::kInvalidArgument, "already");
  EXPECT_STATUS_IS(lin->AddAdapterParameter("weight", t).status(),
                   absl::StatusCode::kInvalidArgument, "base parameter");
  EXPECT_STATUS_IS(lin->AddAdapterParameter("a..b", t).status(),
                   absl::StatusCode::kInvalidArgument, "bad adapter parameter name");
  EXPECT_EQ(lin->NamedParameters().back().first, "x.y.z");
  EXPECT_EQ(lin->StateDict().size(), 2u);
  // Swap the weight with a stand-in: the layer computes with it, the state dict keeps the
  // original, a second swap undoes it.
  ASSERT_OK_AND_ASSIGN(Tensor w0, lin->weight().data().Clone());
  Variable stand_in(t, /*requires_grad=*/true);
  ASSERT_OK(lin->SwapParameter("weight", stand_in));
  EXPECT_TRUE(lin->IsParameterSwapped("weight"));
  EXPECT_EQ(D(lin->weight().data()), D(t));
  EXPECT_EQ(D(stand_in.data()), D(w0));
  EXPECT_EQ(D(lin->StateDict()[0].second), D(w0));
  ASSERT_OK_AND_ASSIGN(Tensor loaded, RandomTensor({2, 3}, DType::kF64, 2));
  ASSERT_OK(lin->LoadStateDict({{"weight", loaded}, {"bias", lin->bias().data()}}).status());
  EXPECT_EQ(D(stand_in.data()), D(loaded)) << "the load went to the displaced original";
  EXPECT_EQ(D(lin->weight().data()), D(t));
  Variable other(t);
  EXPECT_STATUS_IS(lin->SwapParameter("weight", other), absl::StatusCode::kInvalidArgument,
                   "already swapped");
  EXPECT_STATUS_IS(lin->SwapParameter("nope", other), absl::StatusCode::kInvalidArgument, "nope");
  ASSERT_OK_AND_ASSIGN(Tensor wrong, RandomTensor({3, 2}, DType::kF64, 3));
  EXPECT_STATUS_IS(lin->SwapParameter("bias", Variable(wrong)),
                   absl::StatusCode::kInvalidArgument, "stand-in");
  ASSERT_OK(lin->SwapParameter("weight", stand_in));
  EXPECT_FALSE(lin->IsParameterSwapped("weight"));
  EXPECT_EQ(D(lin->weight().data()), D(loaded));
  ASSERT_OK(lin->RemoveAdapterParameter("x.y.z"));
  EXPECT_EQ(lin->RemoveAdapterParameter("x.y.z").code(), absl::StatusCode::kNotFound);
}

// --- Injection into a Mamba model -----------------------------------------------------------

// tests/testing/tiny_mamba.h's Mamba-1 with V = 24, R = 1 and `layers` layers.
mamba::MambaConfig Tiny(bool tie = true, int layers = 2) {
  mamba::MambaConfig c = ::lyra::testing::TinyMamba1Config(tie, /*use_bias=*/false);
  c.vocab_size = 24;
  c.num_hidden_layers = layers;
  c.time_step_rank = 1;
  return c;
}

std::unique_ptr<mamba::MambaForCausalLM> TinyModel(bool tie = true, DType dtype = DType::kF64,
                                                   int layers = 2) {
  Generator gen(42);
  auto model = mamba::MambaForCausalLM::Create(Tiny(tie, layers), gen, dtype).value();
  model->Eval();
  return model;
}

Tensor Ids() {
  return Tensor::FromVector<int64_t>({1, 5, 7, 2, 3, 9, 11, 0, 4, 23}, {2, 5}).value();
}

LoraConfig Targets(std::vector<std::string> t) {
  LoraConfig c;
  c.target_modules = std::move(t);
  return c;
}

TEST(InjectLoraTest, SuffixExactRegexAndLayerSelection) {
  Generator gen(0);
  {
    auto model = TinyModel();
    ASSERT_OK_AND_ASSIGN(LoraInjection r, InjectLora(*model, Targets({"in_proj"}), gen));
    EXPECT_EQ(r.adapted, (std::vector<std::string>{"backbone.layers.0.mixer.in_proj",
                                                   "backbone.layers.1.mixer.in_proj"}));
    EXPECT_EQ(model->NamedAdapterParameters()[0].first,
              "backbone.layers.0.mixer.in_proj.lora_A.default.weight");
  }
  {
    auto model = TinyModel();
    ASSERT_OK_AND_ASSIGN(LoraInjection r,
                         InjectLora(*model, Targets({"backbone.layers.1.mixer.x_proj"}), gen));
    EXPECT_EQ(r.adapted, (std::vector<std::string>{"backbone.layers.1.mixer.x_proj"}));
  }
  {
    auto model = TinyModel();
    LoraConfig c;
    c.target_regex = R"(.*layers\.1\.mixer\.(in|out)_proj)";
    ASSERT_OK_AND_ASSIGN(LoraInjection r, InjectLora(*model, c, gen));
    EXPECT_EQ(r.adapted, (std::vector<std::string>{"backbone.layers.1.mixer.in_proj",
                                                   "backbone.layers.1.mixer.out_proj"}));
  }
  {
    // The regex must match the whole path: "in_proj" alone matches nothing.
    auto model = TinyModel();
    LoraConfig c;
    c.target_regex = "in_proj";
    EXPECT_STATUS_IS(InjectLora(*model, c, gen), absl::StatusCode::kNotFound, "'in_proj'");
  }
  for (const std::vector<std::string>& pattern :
       {std::vector<std::string>{}, std::vector<std::string>{"layers"}}) {
    auto model = TinyModel(true, DType::kF64, 3);
    LoraConfig c = Targets({"in_proj", "out_proj", "embeddings"});
    c.layers_to_transform = {0, 2};
    c.layers_pattern = pattern;
    ASSERT_OK_AND_ASSIGN(LoraInjection r, InjectLora(*model, c, gen));
    // embeddings has no layer index: not transformed when layers_to_transform is given.
    EXPECT_EQ(r.adapted, (std::vector<std::string>{
                             "backbone.layers.0.mixer.in_proj", "backbone.layers.0.mixer.out_proj",
                             "backbone.layers.2.mixer.in_proj", "backbone.layers.2.mixer.out_proj"}));
  }
  {
    auto model = TinyModel();
    LoraConfig c = Targets({"in_proj"});
    c.layers_to_transform = {0};
    c.layers_pattern = {"blocks"};
    EXPECT_EQ(InjectLora(*model, c, gen).status().code(), absl::StatusCode::kNotFound);
  }
  {
    auto model = TinyModel();
    LoraConfig c = Targets({"in_proj", "out_proj"});
    c.exclude_modules = {"layers.0.mixer.in_proj"};
    ASSERT_OK_AND_ASSIGN(LoraInjection r, InjectLora(*model, c, gen));
    EXPECT_EQ(r.adapted, (std::vector<std::string>{"backbone.layers.0.mixer.out_proj",
                                                   "backbone.layers.1.mixer.in_proj",
                                                   "backbone.layers.1.mixer.out_proj"}));
    LoraConfig d = Targets({"in_proj"});
    d.exclude_regex = ".*\\.1\\..*";
    EXPECT_FALSE(IsLoraTarget(d, "backbone.layers.1.mixer.in_proj").value());
    EXPECT_TRUE(IsLoraTarget(d, "backbone.layers.0.mixer.in_proj").value());
  }
  EXPECT_TRUE(IsLoraTarget(Targets({"in_proj"}), "in_proj").value());
  EXPECT_FALSE(IsLoraTarget(Targets({"in_proj"}), "backbone.layers.0.mixer.xin_proj").value());
}

TEST(InjectLoraTest, Errors) {
  Generator gen(0);
  auto model = TinyModel();
  EXPECT_STATUS_IS(InjectLora(*model, Targets({"nothing_here"}), gen),
                   absl::StatusCode::kNotFound, "nothing_here");
  EXPECT_STATUS_IS(InjectLora(*model, Targets({"norm_f"}), gen),
                   absl::StatusCode::kInvalidArgument, "RMSNorm");
  EXPECT_STATUS_IS(InjectLora(*model, Targets({"mixer"}), gen),
                   absl::StatusCode::kInvalidArgument, "MambaMixer");
  LoraConfig bias = Targets({"in_proj"});
  bias.bias = "all";
  EXPECT_STATUS_IS(InjectLora(*model, bias, gen), absl::StatusCode::kUnimplemented, "bias");
  LoraConfig r0 = Targets({"in_proj"});
  r0.r = 0;
  EXPECT_EQ(InjectLora(*model, r0, gen).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(InjectLora(*model, LoraConfig{}, gen).status().code(),
            absl::StatusCode::kInvalidArgument);
  LoraConfig bad_re;
  bad_re.target_regex = "(";
  EXPECT_STATUS_IS(InjectLora(*model, bad_re, gen), absl::StatusCode::kInvalidArgument, "regular");
  LoraConfig missing_save = Targets({"in_proj"});
  missing_save.modules_to_save = {"classifier"};
  EXPECT_STATUS_IS(InjectLora(*model, missing_save, gen), absl::StatusCode::kNotFound,
                   "classifier");
  // Nothing was changed by the failures.
  EXPECT_TRUE(model->NamedAdapterParameters().empty());
  ASSERT_OK(InjectLora(*model, Targets({"in_proj"}), gen).status());
  EXPECT_STATUS_IS(InjectLora(*model, Targets({"in_proj"}), gen),
                   absl::StatusCode::kInvalidArgument, "already");
}

TEST(InjectLoraTest, PresetsOnMamba1) {
  ASSERT_OK_AND_ASSIGN(LoraConfig sll1, LoraConfig::Preset("sll", 1));
  EXPECT_EQ(sll1.target_modules,
            (std::vector<std::string>{"x_proj", "embeddings", "in_proj", "out_proj"}));
  ASSERT_OK_AND_ASSIGN(LoraConfig sll2, LoraConfig::Preset("sll", 2));
  EXPECT_EQ(sll2.target_modules, (std::vector<std::string>{"embeddings", "in_proj", "out_proj"}));
  ASSERT_OK_AND_ASSIGN(LoraConfig all2, LoraConfig::Preset("all", 2));
  EXPECT_EQ(all2.target_modules, (std::vector<std::string>{"in_proj", "out_proj", "embeddings"}));
  EXPECT_EQ(LoraConfig::Preset("most", 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoraConfig::Preset("sll", 3).status().code(), absl::StatusCode::kInvalidArgument);

  Generator gen(0);
  auto model = TinyModel(/*tie=*/false);
  ASSERT_OK_AND_ASSIGN(LoraInjection r, InjectLora(*model, sll1, gen));
  EXPECT_EQ(r.adapted.size(), 1u + 3u * 2u);
  EXPECT_EQ(r.adapted[0], "backbone.embeddings");
  auto model_all = TinyModel(/*tie=*/false);
  ASSERT_OK_AND_ASSIGN(LoraConfig all1, LoraConfig::Preset("all", 1));
  ASSERT_OK_AND_ASSIGN(LoraInjection ra, InjectLora(*model_all, all1, gen));
  EXPECT_EQ(ra.adapted.size(), 1u + 4u * 2u);
  for (const std::string& p : ra.adapted) EXPECT_NE(p, "lm_head");
}

TEST(InjectLoraTest, PresetsOnMamba2ActAndRoundTrip) {
  for (const char* preset : {"sll", "all"}) {
    SCOPED_TRACE(preset);
    Generator gen(1);
    ASSERT_OK_AND_ASSIGN(auto model, mamba::MambaForCausalLM::Create(TinyMamba2Config(), gen,
                                                                     DType::kF64));
    model->Eval();
    ASSERT_OK_AND_ASSIGN(LoraConfig c, LoraConfig::Preset(preset, 2));
    c.r = 2;
    ASSERT_OK_AND_ASSIGN(LoraInjection r, InjectLora(*model, c, gen));
    EXPECT_EQ(r.adapted, (std::vector<std::string>{
                             "backbone.embeddings", "backbone.layers.0.mixer.in_proj",
                             "backbone.layers.0.mixer.out_proj", "backbone.layers.1.mixer.in_proj",
                             "backbone.layers.1.mixer.out_proj"}));
    uint64_t seed = 50;
    for (const auto& [k, v] : PeftAdapterParameters(*model, "default")) Randomize(v, ++seed, 0.3);
    // Every adapter tensor receives a non-zero gradient through the model.
    ASSERT_OK_AND_ASSIGN(Variable loss, model->Loss(Ids()));
    ASSERT_OK(loss.Backward());
    for (const auto& [k, v] : PeftAdapterParameters(*model, "default")) {
      ASSERT_TRUE(v.grad().defined()) << k;
      double sq = 0;
      for (double g : D(v.grad())) sq += g * g;
      EXPECT_GT(sq, 0.0) << k;
    }
    ASSERT_OK_AND_ASSIGN(Variable y, model->Forward(Ids()));
    const std::string dir = TempDir(absl::StrCat("mamba2_", preset));
    ASSERT_OK(SaveLoraAdapter(*model, c, dir));
    Generator gen2(1);
    ASSERT_OK_AND_ASSIGN(auto other, mamba::MambaForCausalLM::Create(TinyMamba2Config(), gen2,
                                                                     DType::kF64));
    other->Eval();
    ASSERT_OK(LoadLoraAdapter(*other, dir).status());
    ASSERT_OK_AND_ASSIGN(Variable y2, other->Forward(Ids()));
    EXPECT_EQ(D(y2.data()), D(y.data()));
  }
}

TEST(InjectLoraTest, FreezingAndPeftCounts) {
  Generator gen(0);
  auto model = TinyModel();
  const int64_t base = model->NumParameters();
  LoraConfig c = Targets({"in_proj", "embeddings"});
  c.r = 2;
  ASSERT_OK(InjectLora(*model, c, gen).status());
  // in_proj [32, 8]: A [2, 8] + B [32, 2] = 80 per layer; embeddings [24, 8]: A [2, 24] + B
  // [8, 2] = 64.
  const int64_t lora = 2 * 80 + 64;
  const ParameterCounts counts = CountParameters(*model);
  EXPECT_EQ(counts.trainable, lora);
  EXPECT_EQ(counts.total, base + lora);
  for (const auto& [name, v] : model->NamedParameters()) {
    EXPECT_EQ(v.requires_grad(), name.find(".lora_") != std::string::npos) << name;
  }
  const std::string summary = TrainableParametersSummary(*model);
  EXPECT_EQ(summary.rfind("trainable params: 224 || all params: ", 0), 0u) << summary;
  EXPECT_NE(summary.find(absl::StrFormat(" || trainable%%: %.4f", 100.0 * lora / (base + lora))),
            std::string::npos)
      << summary;
  // Gradients reach the adapters of the in_proj and embeddings (B is zero at init: A's
  // gradient is zero, B's is not).
  ASSERT_OK_AND_ASSIGN(Variable loss, model->Loss(Ids()));
  ASSERT_OK(loss.Backward());
  for (const auto& [name, v] : model->NamedAdapterParameters()) {
    if (name.find("lora_B") == std::string::npos && name.find("lora_embedding_A") == std::string::npos) {
      continue;
    }
    ASSERT_TRUE(v.grad().defined()) << name;
    double sq = 0;
    for (double g : D(v.grad())) sq += g * g;
    EXPECT_GT(sq, 0.0) << name;
  }
}

TEST(InjectLoraTest, ModulesToSaveTrainsACopyAndKeepsTheOriginal) {
  Generator gen(0);
  auto model = TinyModel(/*tie=*/false);
  ASSERT_OK_AND_ASSIGN(Tensor norm0, model->backbone().norm_f().weight().data().Clone());
  ASSERT_OK_AND_ASSIGN(Variable before, model->Forward(Ids()));
  LoraConfig c = Targets({"in_proj"});
  c.modules_to_save = {"norm_f", "lm_head"};
  ASSERT_OK_AND_ASSIGN(LoraInjection r, InjectLora(*model, c, gen));
  EXPECT_EQ(r.modules_to_save, (std::vector<std::string>{"backbone.norm_f", "lm_head"}));
  // The live norm_f weight is the trainable copy; the base state dict still holds the original.
  const Variable& live = model->backbone().norm_f().weight();
  EXPECT_TRUE(live.requires_grad());
  ASSERT_OK(live.set_data(Tensor::Full(live.shape(), 3.0, live.dtype()).value()));
  for (const auto& [k, t] : model->StateDict()) {
    if (k == "backbone.norm_f.weight") { EXPECT_EQ(D(t), D(norm0)); }
  }
  ASSERT_OK_AND_ASSIGN(Variable changed, model->Forward(Ids()));
  EXPECT_FALSE(AllClose(changed.data(), before.data(), kF64));
  // Disabled: the original computes; enabled again: the copy.
  ASSERT_OK(DisableAdapters(*model));
  ASSERT_OK_AND_ASSIGN(Variable disabled, model->Forward(Ids()));
  EXPECT_TRUE(AllClose(disabled.data(), before.data(), kF64));
  EXPECT_FALSE(model->backbone().norm_f().weight().requires_grad());
  ASSERT_OK(DisableAdapters(*model, false));
  ASSERT_OK_AND_ASSIGN(Variable again, model->Forward(Ids()));
  EXPECT_TRUE(AllClose(again.data(), changed.data(), kF64));
  // PEFT's names and counts: the copies are trainable parameters, the originals counted too.
  std::set<std::string> keys;
  for (const auto& [k, v] : PeftAdapterParameters(*model, "default")) keys.insert(k);
  EXPECT_TRUE(keys.count("base_model.model.backbone.norm_f.weight"));
  EXPECT_TRUE(keys.count("base_model.model.lm_head.weight"));
  EXPECT_TRUE(keys.count("base_model.model.backbone.layers.1.mixer.in_proj.lora_B.weight"));
  const int64_t copies = 8 + 24 * 8;
  EXPECT_EQ(CountParameters(*model).trainable, 2 * (8 * 8 + 32 * 8) + copies);
  // Deleting the adapter restores the original module.
  ASSERT_OK(DeleteAdapter(*model, "default"));
  EXPECT_TRUE(model->NamedAdapterParameters().empty());
  EXPECT_EQ(D(model->backbone().norm_f().weight().data()), D(norm0));
}

TEST(InjectLoraTest, SeveralAdaptersSwitchModelWide) {
  Generator gen(0);
  auto model = TinyModel();
  ASSERT_OK_AND_ASSIGN(Variable base, model->Forward(Ids()));
  LoraConfig a = Targets({"in_proj"});
  a.adapter_name = "a";
  LoraConfig b = Targets({"in_proj", "embeddings"});
  b.adapter_name = "b";
  ASSERT_OK(InjectLora(*model, a, gen).status());
  for (const auto& [k, v] : model->NamedAdapterParameters()) Randomize(v, 3, 0.3);
  ASSERT_OK_AND_ASSIGN(Variable ya, model->Forward(Ids()));
  ASSERT_OK(InjectLora(*model, b, gen).status());
  EXPECT_EQ(ActiveAdapter(*model), "b");
  // First seen in module order: the embeddings carry only "b".
  EXPECT_EQ(AdapterNames(*model), (std::vector<std::string>{"b", "a"}));
  for (const auto& [k, v] : model->NamedAdapterParameters()) {
    EXPECT_EQ(v.requires_grad(), k.find(".b") != std::string::npos) << k;
    if (k.find(".b") != std::string::npos) Randomize(v, 4, 0.3);
  }
  ASSERT_OK_AND_ASSIGN(Variable yb, model->Forward(Ids()));
  EXPECT_FALSE(AllClose(yb.data(), ya.data(), kF64));
  ASSERT_OK(SetActiveAdapter(*model, "a"));
  ASSERT_OK_AND_ASSIGN(Variable ya2, model->Forward(Ids()));
  EXPECT_EQ(D(ya2.data()), D(ya.data()));
  ASSERT_OK(DisableAdapters(*model));
  ASSERT_OK_AND_ASSIGN(Variable off, model->Forward(Ids()));
  EXPECT_EQ(D(off.data()), D(base.data()));
  ASSERT_OK(DisableAdapters(*model, false));
  // Merge the active adapter: same output within rounding, unmerge restores.
  ASSERT_OK(MergeAdapter(*model));
  EXPECT_EQ(SetActiveAdapter(*model, "b").code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_OK_AND_ASSIGN(Variable merged, model->Forward(Ids()));
  EXPECT_TRUE(AllClose(merged.data(), ya.data(), {1e-10, 1e-10}));
  ASSERT_OK(UnmergeAdapter(*model));
  ASSERT_OK(DeleteAdapter(*model, "a"));
  EXPECT_EQ(AdapterNames(*model), (std::vector<std::string>{"b"}));
  EXPECT_EQ(SetActiveAdapter(*model, "a").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DeleteAdapter(*model, "a").code(), absl::StatusCode::kNotFound);
}

TEST(InjectLoraTest, BaseCheckpointsStayStrictWithAdaptersAttached) {
  Generator gen(0);
  auto model = TinyModel(/*tie=*/false, DType::kF32);
  auto fresh = TinyModel(/*tie=*/false, DType::kF32);
  LoraConfig c = Targets({"in_proj", "x_proj", "embeddings"});
  c.modules_to_save = {"norm_f"};
  ASSERT_OK(InjectLora(*model, c, gen).status());
  Randomize(model->backbone().norm_f().weight(), 5);  // the copy, not the original
  std::vector<std::string> keys, fresh_keys;
  for (const auto& [k, t] : model->StateDict()) keys.push_back(k);
  for (const auto& [k, t] : fresh->StateDict()) fresh_keys.push_back(k);
  EXPECT_EQ(keys, fresh_keys);
  // A base state dict loads strictly into the adapted model, and the adapted model's base
  // checkpoint loads strictly into a fresh one.
  ASSERT_OK(model->LoadStateDict(fresh->StateDict(), /*strict=*/true).status());
  const std::string dir = TempDir("base_ckpt");
  ASSERT_OK(mamba::SaveMamba(*model, dir));
  ASSERT_OK_AND_ASSIGN(auto loaded, mamba::LoadMamba(dir));
  const auto a = loaded->StateDict(), b = fresh->StateDict();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(D(a[i].second), D(b[i].second)) << a[i].first;
  // To(dtype) moves adapter parameters and swapped originals too.
  ASSERT_OK(model->To(DType::kF64));
  for (const auto& [k, v] : model->NamedParameters()) EXPECT_EQ(v.dtype(), DType::kF64) << k;
  for (const auto& [k, t] : model->StateDict()) EXPECT_EQ(t.dtype(), DType::kF64) << k;
}

// --- PEFT directory I/O -----------------------------------------------------------------------

TEST(PeftIoTest, SaveWritesPeftKeysAndConfig) {
  Generator gen(0);
  auto model = TinyModel(/*tie=*/false, DType::kF32);
  LoraConfig c = Targets({"in_proj", "embeddings"});
  c.r = 4;
  c.lora_alpha = 16;
  c.lora_dropout = 0.05;
  c.modules_to_save = {"lm_head"};
  c.layers_to_transform = {1};
  c.base_model_name_or_path = "state-spaces/mamba-130m-hf";
  ASSERT_OK(InjectLora(*model, c, gen).status());
  const std::string dir = TempDir("save");
  ASSERT_OK(SaveLoraAdapter(*model, c, dir));
  ASSERT_OK_AND_ASSIGN(SafetensorsContents st, ReadSafetensors(dir + "/" + kPeftWeightsFile));
  std::set<std::string> keys;
  for (const auto& [k, t] : st.tensors) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{
                      "base_model.model.backbone.layers.1.mixer.in_proj.lora_A.weight",
                      "base_model.model.backbone.layers.1.mixer.in_proj.lora_B.weight",
                      "base_model.model.lm_head.weight"}));
  EXPECT_EQ(st.metadata.at("format"), "pt");
  std::ifstream f(dir + "/" + kPeftConfigFile);
  const nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_TRUE(j["lora_alpha"].is_number_integer());
  EXPECT_EQ(j["lora_alpha"], 16);
  EXPECT_DOUBLE_EQ(j["lora_dropout"].get<double>(), 0.05);
  EXPECT_EQ(j["target_modules"], nlohmann::json({"in_proj", "embeddings"}));
  EXPECT_EQ(j["modules_to_save"], nlohmann::json({"lm_head"}));
  EXPECT_EQ(j["layers_to_transform"], nlohmann::json({1}));
  EXPECT_TRUE(j["layers_pattern"].is_null());
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["use_rslora"], false);
  EXPECT_EQ(j["fan_in_fan_out"], false);
  EXPECT_EQ(j["init_lora_weights"], true);
  EXPECT_EQ(j["inference_mode"], true);
  EXPECT_TRUE(j["revision"].is_null());
  EXPECT_EQ(j["base_model_name_or_path"], "state-spaces/mamba-130m-hf");
  EXPECT_EQ(j["peft_version"], "0.21.0");
  // The field set of PEFT 0.21's LoraConfig.to_dict() (as its save_pretrained writes it).
  std::set<std::string> fields;
  for (const auto& [k, v] : j.items()) fields.insert(k);
  EXPECT_EQ(fields,
            (std::set<std::string>{
                "alora_invocation_tokens", "alpha_pattern", "arrow_config", "auto_mapping",
                "base_model_name_or_path", "bias", "corda_config", "ensure_weight_tying",
                "eva_config", "exclude_modules", "fan_in_fan_out", "inference_mode",
                "init_lora_weights", "kasa_config", "layer_replication", "layers_pattern",
                "layers_to_transform", "loftq_config", "lora_alpha", "lora_bias", "lora_dropout",
                "lora_ga_config", "megatron_config", "megatron_core", "modules_to_save",
                "monteclora_config", "peft_type", "peft_version", "qalora_group_size", "r",
                "rank_pattern", "revision", "target_modules", "target_parameters", "task_type",
                "trainable_token_indices", "use_bdlora", "use_dora", "use_qalora", "use_rslora",
                "velora_config"}));
  // No temp files left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2);
}

TEST(PeftIoTest, SaveLoadRoundTripIsBitExact) {
  Generator gen(0);
  auto model = TinyModel(/*tie=*/true, DType::kF32);
  ASSERT_OK_AND_ASSIGN(LoraConfig c, LoraConfig::Preset("sll", 1));
  c.use_rslora = true;
  c.modules_to_save = {"norm_f"};
  c.target_regex.clear();
  ASSERT_OK(InjectLora(*model, c, gen).status());
  uint64_t seed = 100;
  for (const auto& [k, v] : PeftAdapterParameters(*model, "default")) Randomize(v, ++seed, 0.2);
  ASSERT_OK_AND_ASSIGN(Variable y, model->Forward(Ids()));
  const std::string dir = TempDir("roundtrip");
  ASSERT_OK(SaveLoraAdapter(*model, c, dir));

  auto other = TinyModel(/*tie=*/true, DType::kF32);
  ASSERT_OK_AND_ASSIGN(LoraConfig loaded, LoadLoraAdapter(*other, dir, "default", false));
  EXPECT_EQ(loaded.target_modules, c.target_modules);
  EXPECT_TRUE(loaded.use_rslora);
  EXPECT_EQ(loaded.modules_to_save, c.modules_to_save);
  const auto want = PeftAdapterParameters(*model, "default");
  const auto got = PeftAdapterParameters(*other, "default");
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(want[i].first, got[i].first);
    EXPECT_EQ(D(want[i].second.data()), D(got[i].second.data())) << want[i].first;
    EXPECT_FALSE(got[i].second.requires_grad()) << "loaded with trainable = false";
  }
  ASSERT_OK_AND_ASSIGN(Variable y2, other->Forward(Ids()));
  EXPECT_EQ(D(y2.data()), D(y.data()));
  EXPECT_EQ(CountParameters(*other).trainable, 0);
  // Loaded again under another name, trainable; an f64 model converts.
  ASSERT_OK(LoadLoraAdapter(*other, dir, "second", true).status());
  EXPECT_EQ(ActiveAdapter(*other), "second");
  EXPECT_GT(CountParameters(*other).trainable, 0);
  auto f64 = TinyModel(/*tie=*/true, DType::kF64);
  ASSERT_OK(LoadLoraAdapter(*f64, dir).status());
  for (const auto& [k, v] : PeftAdapterParameters(*f64, "default")) {
    EXPECT_EQ(v.dtype(), DType::kF64) << k;
  }
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

TEST(PeftIoTest, LoadErrors) {
  Generator gen(0);
  auto model = TinyModel(/*tie=*/true, DType::kF32);
  LoraConfig c = Targets({"in_proj"});
  ASSERT_OK(InjectLora(*model, c, gen).status());
  const std::string dir = TempDir("errors");
  ASSERT_OK(SaveLoraAdapter(*model, c, dir));
  const std::string config_path = dir + "/" + kPeftConfigFile;
  std::string good;
  {
    std::ifstream f(config_path);
    good.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  auto target = TinyModel(/*tie=*/true, DType::kF32);
  EXPECT_EQ(LoadLoraAdapter(*target, TempDir("missing_dir")).status().code(),
            absl::StatusCode::kNotFound);

  WriteText(config_path, "{\"peft_type\": \"LORA\", ");
  EXPECT_STATUS_IS(LoadLoraAdapter(*target, dir), absl::StatusCode::kInvalidArgument,
                   kPeftConfigFile);
  nlohmann::json j = nlohmann::json::parse(good);
  j["peft_type"] = "PREFIX_TUNING";
  WriteText(config_path, j.dump());
  EXPECT_STATUS_IS(LoadLoraAdapter(*target, dir), absl::StatusCode::kUnimplemented,
                   "PREFIX_TUNING");
  j = nlohmann::json::parse(good);
  j["bias"] = "lora_only";
  WriteText(config_path, j.dump());
  EXPECT_STATUS_IS(LoadLoraAdapter(*target, dir), absl::StatusCode::kUnimplemented, "lora_only");
  j = nlohmann::json::parse(good);
  j["r"] = "eight";
  WriteText(config_path, j.dump());
  EXPECT_STATUS_IS(LoadLoraAdapter(*target, dir), absl::StatusCode::kInvalidArgument, "\"r\"");

  // Weights that do not fit: r differs (shape), a key is missing, one is unexpected.
  j = nlohmann::json::parse(good);
  j["r"] = 4;
  WriteText(config_path, j.dump());
  EXPECT_STATUS_IS(LoadLoraAdapter(*target, dir), absl::StatusCode::kInvalidArgument,
                   "has shape [8, 8] but the model expects [4, 8]");
  j["r"] = 8;
  j["target_modules"] = {"in_proj", "out_proj"};
  WriteText(config_path, j.dump());
  EXPECT_STATUS_IS(LoadLoraAdapter(*target, dir), absl::StatusCode::kInvalidArgument,
                   "missing keys [base_model.model.backbone.layers.0.mixer.out_proj.lora_A.weight");
  j["target_modules"] = {"backbone.layers.0.mixer.in_proj"};
  WriteText(config_path, j.dump());
  EXPECT_STATUS_IS(LoadLoraAdapter(*target, dir), absl::StatusCode::kInvalidArgument,
                   "unexpected keys [base_model.model.backbone.layers.1.mixer.in_proj.lora_A");
  // Every failure left the model without an adapter.
  EXPECT_TRUE(target->NamedAdapterParameters().empty());
  EXPECT_EQ(SaveLoraAdapter(*target, c, TempDir("nothing")).code(), absl::StatusCode::kNotFound);
  EXPECT_STATUS_IS(ParsePeftConfig("[1, 2]", "x.json"), absl::StatusCode::kInvalidArgument,
                   "x.json");
  ASSERT_OK_AND_ASSIGN(LoraConfig regex,
                       ParsePeftConfig(R"({"peft_type": "LORA", "target_modules": ".*in_proj",
                                           "layers_to_transform": 3, "layers_pattern": "layers"})",
                                       "y.json"));
  EXPECT_EQ(regex.target_regex, ".*in_proj");
  EXPECT_EQ(regex.layers_to_transform, std::vector<int>{3});
  EXPECT_EQ(regex.layers_pattern, std::vector<std::string>{"layers"});
  EXPECT_EQ(regex.r, 8);
  for (const char* feature : {R"("use_dora": true)", R"("lora_bias": true)",
                              R"("target_parameters": ["experts.weight"])",
                              R"("trainable_token_indices": [1, 2])",
                              R"("rank_pattern": {"in_proj": 4})", R"("fan_in_fan_out": true)"}) {
    EXPECT_EQ(ParsePeftConfig(absl::StrCat(R"({"peft_type": "LORA", "target_modules": ["in_proj"], )",
                                           feature, "}"),
                              "z.json")
                  .status()
                  .code(),
              absl::StatusCode::kUnimplemented)
        << feature;
  }
  ASSERT_OK_AND_ASSIGN(LoraConfig excl,
                       ParsePeftConfig(R"({"peft_type": "LORA", "target_modules": ["in_proj"],
                                           "exclude_modules": ["x"], "lora_bias": false,
                                           "use_bdlora": null, "rank_pattern": {}})",
                                       "e.json"));
  EXPECT_EQ(excl.exclude_modules, std::vector<std::string>{"x"});
}

TEST(LoraLinearTest, Bf16AutocastOnCpuCastsFactorsAndGivesF32Gradients) {
  auto lin = MakeLinear(24, 10, true, DType::kF32);
  Generator gen(1);
  ASSERT_OK(lin->AddLoraAdapter("default", {4, 8, 0, false}, gen));
  Randomize(lin->active_lora()->B, 2, 0.3);
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({5, 24}, DType::kF32, 3));
  ASSERT_OK_AND_ASSIGN(Variable ref, lin->Forward(Variable(x)));
  AutocastGuard autocast(DType::kBF16);
  ASSERT_OK_AND_ASSIGN(Variable y, lin->Forward(Variable(x)));
  EXPECT_EQ(y.dtype(), DType::kBF16);
  EXPECT_TRUE(AllClose(y.data().To(DType::kF32).value(), ref.data(), {5e-2, 2e-2}));
  ASSERT_OK(autograd::Sum(autograd::Cast(y, DType::kF32).value()).value().Backward());
  const LoraFactors* f = lin->active_lora();
  ASSERT_TRUE(f->A.grad().defined());
  ASSERT_TRUE(f->B.grad().defined());
  EXPECT_EQ(f->A.grad().dtype(), DType::kF32);
  EXPECT_EQ(f->B.grad().dtype(), DType::kF32);
}

// --- CUDA -----------------------------------------------------------------------------------

TEST(LoraCudaTest, LinearAndEmbeddingMatchCpuInF32AndBf16Autocast) {
  LYRA_REQUIRE_GPU();
  auto lin = MakeLinear(33, 17, true, DType::kF32);
  Generator gen(1);
  ASSERT_OK(lin->AddLoraAdapter("default", {5, 10, 0, false}, gen));
  Randomize(lin->active_lora()->B, 2, 0.3);
  ASSERT_OK_AND_ASSIGN(auto emb, Embedding::Create(40, 17, gen, 3));
  ASSERT_OK(emb->AddLoraAdapter("default", {4, 8, 0, false}, gen));
  Randomize(emb->active_lora()->A, 3, 0.3);
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({3, 7, 33}, DType::kF32, 4));
  ASSERT_OK_AND_ASSIGN(Tensor ids, Tensor::FromVector<int64_t>({0, 3, 39, 7, 7, 12}, {2, 3}));
  ASSERT_OK_AND_ASSIGN(Variable cpu_lin, lin->Forward(Variable(x)));
  ASSERT_OK_AND_ASSIGN(Variable cpu_emb, emb->Forward(ids));
  ASSERT_OK(lin->To(Device::Cuda(0)));
  ASSERT_OK(emb->To(Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor xg, x.To(Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor idsg, ids.To(Device::Cuda(0)));
  {
    ASSERT_OK_AND_ASSIGN(Variable g, lin->Forward(Variable(xg)));
    EXPECT_TRUE(AllClose(g.data().To(Device::Cpu()).value(), cpu_lin.data(), {1e-4, 1e-4}));
    ASSERT_OK_AND_ASSIGN(Variable e, emb->Forward(idsg));
    EXPECT_TRUE(AllClose(e.data().To(Device::Cpu()).value(), cpu_emb.data(), {1e-5, 1e-5}));
  }
  {
    AutocastGuard autocast(DType::kBF16);
    ASSERT_OK_AND_ASSIGN(Variable g, lin->Forward(Variable(xg)));
    EXPECT_EQ(g.dtype(), DType::kBF16);
    ASSERT_OK_AND_ASSIGN(Tensor g32, g.data().To(DType::kF32));
    EXPECT_TRUE(AllClose(g32.To(Device::Cpu()).value(), cpu_lin.data(), {5e-2, 2e-2}));
    ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(autograd::Cast(g, DType::kF32).value()));
    ASSERT_OK(loss.Backward());
    const LoraFactors* f = lin->active_lora();
    ASSERT_TRUE(f->A.grad().defined());
    EXPECT_EQ(f->A.grad().dtype(), DType::kF32);
    EXPECT_EQ(f->B.grad().dtype(), DType::kF32);
    ASSERT_OK_AND_ASSIGN(Variable e, emb->Forward(idsg));
    EXPECT_EQ(e.dtype(), DType::kBF16);
    ASSERT_OK_AND_ASSIGN(Tensor e32, e.data().To(DType::kF32));
    EXPECT_TRUE(AllClose(e32.To(Device::Cpu()).value(), cpu_emb.data(), {5e-2, 2e-2}));
  }
}

TEST(LoraCudaTest, GradientsMatchCpu) {
  LYRA_REQUIRE_GPU();
  auto lin = MakeLinear(19, 11, false, DType::kF32);
  Generator gen(1);
  ASSERT_OK(lin->AddLoraAdapter("default", {3, 6, 0, false}, gen));
  Randomize(lin->active_lora()->B, 2, 0.3);
  ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({9, 19}, DType::kF32, 4));
  auto grads = [&](Device device) {
    LYRA_CHECK_OK(lin->To(device));
    lin->ZeroGrad();
    Variable y = lin->Forward(Variable(x.To(device).value())).value();
    LYRA_CHECK_OK(autograd::Sum(autograd::Square(y).value()).value().Backward());
    const LoraFactors* f = lin->active_lora();
    return std::vector<Tensor>{f->A.grad().To(Device::Cpu()).value(),
                               f->B.grad().To(Device::Cpu()).value()};
  };
  const auto cpu = grads(Device::Cpu());
  const auto gpu = grads(Device::Cuda(0));
  EXPECT_TRUE(AllClose(gpu[0], cpu[0], {1e-4, 1e-4}));
  EXPECT_TRUE(AllClose(gpu[1], cpu[1], {1e-4, 1e-4}));
}

}  // namespace
}  // namespace lyra::nn
