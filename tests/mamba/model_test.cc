// Tests of the Mamba-1 mixer, block and language model (mamba/model.h) and the inference cache
// (mamba/cache.h): the forward against an independent naive f64 transcription of transformers'
// MambaForCausalLM (slow_forward), HF's loss convention, step decoding and prefill against the
// parallel forward, packed documents, finite-difference gradients of the whole model, autocast,
// greedy generation, errors, and (with a GPU) CUDA against the CPU.
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "autograd/variable.h"
#include "mamba/cache.h"
#include "mamba/config.h"
#include "mamba/model.h"
#include "nn/autocast.h"
#include "tensor/elementwise.h"
#include "tensor/index.h"
#include "tensor/random.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"
#include "tests/testing/tiny_mamba.h"

namespace lyra::mamba {
namespace {

using autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::TinyMamba1Config;
using ::lyra::testing::Tolerance;

// A tiny model in f64 whose small parameters are perturbed away from their structured
// initialisation (zero conv bias, D = 1, ...) so that every term of the math matters.
absl::StatusOr<std::unique_ptr<MambaForCausalLM>> TinyModel(const MambaConfig& c, DType dtype,
                                                            uint64_t seed = 1) {
  Generator gen(seed);
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<MambaForCausalLM> model,
                        MambaForCausalLM::Create(c, gen, DType::kF32));
  LYRA_RETURN_IF_ERROR(
      ::lyra::testing::PerturbParameters(*model, /*first_seed=*/seed * 1000 + 1, 0.3));
  LYRA_RETURN_IF_ERROR(model->To(dtype));
  return model;
}

absl::StatusOr<Tensor> Ids(const std::vector<int64_t>& v, int64_t B, int64_t L) {
  return Tensor::FromVector<int64_t>(v, {B, L});
}

std::map<std::string, std::vector<double>> Params(const nn::Module& m) {
  std::map<std::string, std::vector<double>> out;
  for (auto& [name, t] : m.StateDict()) out[name] = t.ToDoubles().value();
  return out;
}

double Silu(double x) { return x / (1 + std::exp(-x)); }
double Softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }

// transformers' MambaForCausalLM.forward (slow path), written out in f64 loops. Returns logits
// [B, L, V] flattened.
std::vector<double> NaiveLogits(const MambaConfig& c,
                                std::map<std::string, std::vector<double>>& p,
                                const std::vector<int64_t>& ids, int64_t B, int64_t L) {
  const int64_t M = c.hidden_size, D = c.intermediate_size, N = c.state_size;
  const int64_t R = c.time_step_rank, K = c.conv_kernel, V = c.vocab_size;
  const auto& E = p["backbone.embeddings.weight"];
  std::vector<double> h(B * L * M);
  for (int64_t i = 0; i < B * L; ++i) {
    for (int64_t m = 0; m < M; ++m) h[i * M + m] = E[ids[i] * M + m];
  }
  auto rms = [&](const std::vector<double>& x, const std::vector<double>& w) {
    std::vector<double> y(x.size());
    for (int64_t i = 0; i < B * L; ++i) {
      double ss = 0;
      for (int64_t m = 0; m < M; ++m) ss += x[i * M + m] * x[i * M + m];
      const double r = 1 / std::sqrt(ss / M + c.layer_norm_epsilon);
      for (int64_t m = 0; m < M; ++m) y[i * M + m] = w[m] * (x[i * M + m] * r);
    }
    return y;
  };
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    const std::string pre = "backbone.layers." + std::to_string(layer) + ".";
    const std::vector<double> hn = rms(h, p[pre + "norm.weight"]);
    const auto& Win = p[pre + "mixer.in_proj.weight"];
    const auto& Wc = p[pre + "mixer.conv1d.weight"];
    const auto& bc = p[pre + "mixer.conv1d.bias"];
    const auto& Wx = p[pre + "mixer.x_proj.weight"];
    const auto& Wdt = p[pre + "mixer.dt_proj.weight"];
    const auto& bdt = p[pre + "mixer.dt_proj.bias"];
    const auto& Alog = p[pre + "mixer.A_log"];
    const auto& Dp = p[pre + "mixer.D"];
    const auto& Wout = p[pre + "mixer.out_proj.weight"];
    const std::vector<double>* bin = p.count(pre + "mixer.in_proj.bias")
                                         ? &p[pre + "mixer.in_proj.bias"] : nullptr;
    const std::vector<double>* bout = p.count(pre + "mixer.out_proj.bias")
                                          ? &p[pre + "mixer.out_proj.bias"] : nullptr;
    for (int64_t b = 0; b < B; ++b) {
      // xz [L, 2D]
      std::vector<double> xz(L * 2 * D);
      for (int64_t t = 0; t < L; ++t) {
        for (int64_t j = 0; j < 2 * D; ++j) {
          double s = bin ? (*bin)[j] : 0;
          for (int64_t m = 0; m < M; ++m) s += hn[(b * L + t) * M + m] * Win[j * M + m];
          xz[t * 2 * D + j] = s;
        }
      }
      // u [L, D] = silu(conv(x))
      std::vector<double> u(L * D);
      for (int64_t t = 0; t < L; ++t) {
        for (int64_t d = 0; d < D; ++d) {
          double s = bc[d];
          for (int64_t k = 0; k < K; ++k) {
            const int64_t src = t - (K - 1) + k;
            if (src >= 0) s += Wc[d * K + k] * xz[src * 2 * D + d];
          }
          u[t * D + d] = Silu(s);
        }
      }
      std::vector<double> y(L * D);
      std::vector<double> state(D * N, 0.0);
      for (int64_t t = 0; t < L; ++t) {
        std::vector<double> xdbl(R + 2 * N);
        for (int64_t i = 0; i < R + 2 * N; ++i) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += u[t * D + d] * Wx[i * D + d];
          xdbl[i] = s;
        }
        for (int64_t d = 0; d < D; ++d) {
          double pre_dt = bdt[d];
          for (int64_t r = 0; r < R; ++r) pre_dt += Wdt[d * R + r] * xdbl[r];
          const double delta = Softplus(pre_dt);
          double out = 0;
          for (int64_t n = 0; n < N; ++n) {
            const double A = -std::exp(Alog[d * N + n]);
            double& s = state[d * N + n];
            s = std::exp(delta * A) * s + delta * xdbl[R + n] * u[t * D + d];
            out += s * xdbl[R + N + n];
          }
          out += u[t * D + d] * Dp[d];
          y[t * D + d] = out * Silu(xz[t * 2 * D + D + d]);
        }
      }
      // residual + out_proj(y)
      for (int64_t t = 0; t < L; ++t) {
        for (int64_t m = 0; m < M; ++m) {
          double s = bout ? (*bout)[m] : 0;
          for (int64_t d = 0; d < D; ++d) s += y[t * D + d] * Wout[m * D + d];
          h[(b * L + t) * M + m] += s;
        }
      }
    }
  }
  const std::vector<double> hf = rms(h, p["backbone.norm_f.weight"]);
  const auto& W = c.tie_word_embeddings ? E : p["lm_head.weight"];
  std::vector<double> logits(B * L * V);
  for (int64_t i = 0; i < B * L; ++i) {
    for (int64_t v = 0; v < V; ++v) {
      double s = 0;
      for (int64_t m = 0; m < M; ++m) s += hf[i * M + m] * W[v * M + m];
      logits[i * V + v] = s;
    }
  }
  return logits;
}

const std::vector<int64_t> kIds = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7};  // B = 2, L = 7

TEST(MambaModelTest, ParameterNamesFollowHuggingFace) {
  Generator gen(0);
  ASSERT_OK_AND_ASSIGN(auto tied, MambaForCausalLM::Create(TinyMamba1Config(true, true), gen));
  std::map<std::string, Shape> shapes;
  for (auto& [name, t] : tied->StateDict()) shapes[name] = t.shape();
  EXPECT_EQ(shapes["backbone.embeddings.weight"], (Shape{16, 8}));
  EXPECT_EQ(shapes["backbone.layers.1.norm.weight"], (Shape{8}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.in_proj.weight"], (Shape{32, 8}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.in_proj.bias"], (Shape{32}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.conv1d.weight"], (Shape{16, 1, 4}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.conv1d.bias"], (Shape{16}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.x_proj.weight"], (Shape{2 + 8, 16}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.dt_proj.weight"], (Shape{16, 2}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.dt_proj.bias"], (Shape{16}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.A_log"], (Shape{16, 4}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.D"], (Shape{16}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.out_proj.weight"], (Shape{8, 16}));
  EXPECT_EQ(shapes["backbone.layers.0.mixer.out_proj.bias"], (Shape{8}));
  EXPECT_EQ(shapes["backbone.norm_f.weight"], (Shape{8}));
  EXPECT_EQ(shapes.count("lm_head.weight"), 0u);
  EXPECT_EQ(shapes.size(), 2u + 2 * 12u);

  ASSERT_OK_AND_ASSIGN(auto untied, MambaForCausalLM::Create(TinyMamba1Config(false), gen));
  std::map<std::string, Shape> s2;
  for (auto& [name, t] : untied->StateDict()) s2[name] = t.shape();
  EXPECT_EQ(s2["lm_head.weight"], (Shape{16, 8}));
  EXPECT_EQ(s2.count("backbone.layers.0.mixer.in_proj.bias"), 0u);
}

TEST(MambaModelTest, InitialisationFollowsHuggingFace) {
  Generator gen(0);
  MambaConfig c = TinyMamba1Config();
  ASSERT_OK_AND_ASSIGN(auto model, MambaForCausalLM::Create(c, gen));
  auto p = Params(*model);
  const auto& a_log = p["backbone.layers.0.mixer.A_log"];
  for (int64_t d = 0; d < 16; ++d) {
    for (int64_t n = 0; n < 4; ++n) EXPECT_NEAR(a_log[d * 4 + n], std::log(n + 1.0), 1e-6);
  }
  for (double v : p["backbone.layers.0.mixer.D"]) EXPECT_EQ(v, 1.0);
  for (double v : p["backbone.layers.0.mixer.conv1d.bias"]) EXPECT_EQ(v, 0.0);
  for (double v : p["backbone.norm_f.weight"]) EXPECT_EQ(v, 1.0);
  // softplus(dt bias) lies in [time_step_min, time_step_max].
  for (double b : p["backbone.layers.1.mixer.dt_proj.bias"]) {
    const double dt = Softplus(b);
    EXPECT_GE(dt, c.time_step_min * (1 - 1e-5));
    EXPECT_LE(dt, c.time_step_max * (1 + 1e-5));
  }
  const double bound = 1 / std::sqrt(2.0);  // R^-0.5
  for (double w : p["backbone.layers.0.mixer.dt_proj.weight"]) EXPECT_LE(std::fabs(w), bound);
}

TEST(MambaModelTest, ForwardMatchesNaiveHuggingFaceF64) {
  for (bool tie : {true, false}) {
    for (bool bias : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "tie=" << tie << " bias=" << bias);
      MambaConfig c = TinyMamba1Config(tie, bias);
      ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
      ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(kIds, 2, 7));
      ASSERT_OK_AND_ASSIGN(Variable logits, model->Forward(ids));
      EXPECT_EQ(logits.shape(), (Shape{2, 7, 16}));
      EXPECT_EQ(logits.dtype(), DType::kF64);
      auto p = Params(*model);
      std::vector<double> expected = NaiveLogits(c, p, kIds, 2, 7);
      EXPECT_TRUE(AllClose(logits.data().ToDoubles().value(), expected, Tolerance{1e-11, 1e-10}));
    }
  }
}

TEST(MambaModelTest, LossIsHuggingFaceShiftedMeanCrossEntropy) {
  MambaConfig c = TinyMamba1Config();
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(kIds, 2, 7));
  ASSERT_OK_AND_ASSIGN(Variable logits, model->Forward(ids));
  std::vector<double> lg = logits.data().ToDoubles().value();
  auto expect_loss = [&](const std::vector<int64_t>& labels) {
    double sum = 0;
    int count = 0;
    for (int64_t b = 0; b < 2; ++b) {
      for (int64_t t = 0; t + 1 < 7; ++t) {
        const int64_t target = labels[b * 7 + t + 1];
        if (target == -100) continue;
        const double* row = &lg[(b * 7 + t) * 16];
        double mx = row[0];
        for (int v = 1; v < 16; ++v) mx = std::max(mx, row[v]);
        double se = 0;
        for (int v = 0; v < 16; ++v) se += std::exp(row[v] - mx);
        sum += mx + std::log(se) - row[target];
        ++count;
      }
    }
    return sum / count;
  };
  ASSERT_OK_AND_ASSIGN(Variable loss, model->Loss(ids));
  EXPECT_EQ(loss.numel(), 1);
  EXPECT_NEAR(loss.data().Item().value(), expect_loss(kIds), 1e-12);

  std::vector<int64_t> labels = kIds;
  labels[2] = -100;
  labels[10] = -100;
  ASSERT_OK_AND_ASSIGN(Tensor lab, Ids(labels, 2, 7));
  ASSERT_OK_AND_ASSIGN(Variable masked, model->Loss(ids, lab));
  EXPECT_NEAR(masked.data().Item().value(), expect_loss(labels), 1e-12);
}

// Logits of every position from steps (starting at zero states) equal the parallel forward.
TEST(MambaModelTest, StepDecodingEqualsParallelForwardF64) {
  MambaConfig c = TinyMamba1Config();
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(kIds, 2, 7));
  ASSERT_OK_AND_ASSIGN(Variable full, model->Forward(ids));
  ASSERT_OK_AND_ASSIGN(MambaCache cache, MambaCache::Zeros(c, 2, DType::kF64));
  EXPECT_EQ(cache.layer(0).conv_state.shape(), (Shape{2, 16, 3}));
  EXPECT_EQ(cache.layer(0).ssm_state.shape(), (Shape{2, 16, 4}));
  for (int64_t t = 0; t < 7; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor col, ids.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor token, col.Contiguous());
    ASSERT_OK_AND_ASSIGN(Tensor step, model->Step(token, cache));
    EXPECT_EQ(step.shape(), (Shape{2, 16}));
    ASSERT_OK_AND_ASSIGN(Tensor expected, full.data().Select(1, t));
    EXPECT_TRUE(AllClose(step, expected, Tolerance{1e-12, 1e-10})) << "position " << t;
  }
  EXPECT_EQ(cache.seqlen_offset(), 7);
}

// Prefill of a prefix, then steps; and two chunked prefills; both equal the full forward.
TEST(MambaModelTest, PrefillThenStepsEqualsFullForwardF64) {
  MambaConfig c = TinyMamba1Config(/*tie=*/false, /*use_bias=*/true);
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(kIds, 2, 7));
  ASSERT_OK_AND_ASSIGN(Variable full, model->Forward(ids));
  // Prefixes shorter and longer than K - 1 = 3.
  for (int64_t prefix : {1, 2, 5}) {
    SCOPED_TRACE(::testing::Message() << "prefix " << prefix);
    MambaCache cache;
    ASSERT_OK_AND_ASSIGN(Tensor head, ids.Narrow(1, 0, prefix));
    ASSERT_OK_AND_ASSIGN(Tensor logits, model->Prefill(head, cache));
    ASSERT_OK_AND_ASSIGN(Tensor expected_head, full.data().Narrow(1, 0, prefix));
    EXPECT_TRUE(AllClose(logits, expected_head, Tolerance{1e-12, 1e-10}));
    EXPECT_EQ(cache.seqlen_offset(), prefix);
    for (int64_t t = prefix; t < 7; ++t) {
      ASSERT_OK_AND_ASSIGN(Tensor col, ids.Select(1, t));
      ASSERT_OK_AND_ASSIGN(Tensor token, col.Contiguous());
      ASSERT_OK_AND_ASSIGN(Tensor step, model->Step(token, cache));
      ASSERT_OK_AND_ASSIGN(Tensor expected, full.data().Select(1, t));
      EXPECT_TRUE(AllClose(step, expected, Tolerance{1e-12, 1e-10})) << "position " << t;
    }
  }
  // Chunked prefill: [0, 2) then [2, 7).
  MambaCache cache;
  ASSERT_OK_AND_ASSIGN(Tensor a, ids.Narrow(1, 0, 2));
  ASSERT_OK_AND_ASSIGN(Tensor b, ids.Narrow(1, 2, 5));
  ASSERT_OK_AND_ASSIGN(Tensor a_c, a.Contiguous());
  ASSERT_OK_AND_ASSIGN(Tensor b_c, b.Contiguous());
  ASSERT_OK(model->Prefill(a_c, cache).status());
  ASSERT_OK_AND_ASSIGN(Tensor second, model->Prefill(b_c, cache));
  ASSERT_OK_AND_ASSIGN(Tensor expected, full.data().Narrow(1, 2, 5));
  EXPECT_TRUE(AllClose(second, expected, Tolerance{1e-12, 1e-10}));
}

// A row packing two documents with seq_idx equals the documents run on their own.
TEST(MambaModelTest, PackedSeqIdxEqualsSeparateDocuments) {
  MambaConfig c = TinyMamba1Config();
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
  const std::vector<int64_t> doc_a = {3, 1, 4}, doc_b = {1, 5, 9, 2, 6};
  std::vector<int64_t> packed = doc_a;
  packed.insert(packed.end(), doc_b.begin(), doc_b.end());
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(packed, 1, 8));
  ASSERT_OK_AND_ASSIGN(Tensor seq, Tensor::FromVector<int32_t>({0, 0, 0, 1, 1, 1, 1, 1}, {1, 8}));
  ASSERT_OK_AND_ASSIGN(Variable logits, model->Forward(ids, seq));
  ASSERT_OK_AND_ASSIGN(Tensor ia, Ids(doc_a, 1, 3));
  ASSERT_OK_AND_ASSIGN(Tensor ib, Ids(doc_b, 1, 5));
  ASSERT_OK_AND_ASSIGN(Variable la, model->Forward(ia));
  ASSERT_OK_AND_ASSIGN(Variable lb, model->Forward(ib));
  ASSERT_OK_AND_ASSIGN(Tensor pa, logits.data().Narrow(1, 0, 3));
  ASSERT_OK_AND_ASSIGN(Tensor pb, logits.data().Narrow(1, 3, 5));
  EXPECT_TRUE(AllClose(pa, la.data(), Tolerance{1e-12, 1e-10}));
  EXPECT_TRUE(AllClose(pb, lb.data(), Tolerance{1e-12, 1e-10}));
  // i64 seq_idx is accepted too; without seq_idx the second document sees the first.
  ASSERT_OK_AND_ASSIGN(Tensor seq64, seq.To(DType::kI64));
  ASSERT_OK_AND_ASSIGN(Variable logits64, model->Forward(ids, seq64));
  EXPECT_TRUE(AllClose(logits64.data(), logits.data(), Tolerance{0, 0}));
  ASSERT_OK_AND_ASSIGN(Variable mixed, model->Forward(ids));
  ASSERT_OK_AND_ASSIGN(Tensor mb, mixed.data().Narrow(1, 3, 5));
  EXPECT_FALSE(AllClose(mb, lb.data(), Tolerance{1e-6, 0}));
}

// Central differences of the whole model's loss w.r.t. elements of several parameters.
TEST(MambaModelTest, LossGradientMatchesFiniteDifferencesF64) {
  MambaConfig c = TinyMamba1Config(/*tie=*/true, /*use_bias=*/true);
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64, /*seed=*/7));
  const std::vector<int64_t> v = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3};  // B = 2, L = 5
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(v, 2, 5));
  ASSERT_OK_AND_ASSIGN(Variable loss, model->Loss(ids));
  ASSERT_OK(loss.Backward());
  std::map<std::string, Variable> params;
  for (auto& [name, p] : model->NamedParameters()) params[name] = p;
  const std::vector<std::string> checked = {
      "backbone.embeddings.weight",
      "backbone.layers.0.norm.weight",
      "backbone.layers.0.mixer.in_proj.weight",
      "backbone.layers.0.mixer.in_proj.bias",
      "backbone.layers.0.mixer.conv1d.weight",
      "backbone.layers.0.mixer.conv1d.bias",
      "backbone.layers.0.mixer.x_proj.weight",
      "backbone.layers.1.mixer.dt_proj.weight",
      "backbone.layers.1.mixer.dt_proj.bias",
      "backbone.layers.1.mixer.A_log",
      "backbone.layers.1.mixer.D",
      "backbone.layers.1.mixer.out_proj.weight",
      "backbone.norm_f.weight",
  };
  autograd::NoGradGuard no_grad;
  const double eps = 1e-6;
  for (const std::string& name : checked) {
    SCOPED_TRACE(name);
    ASSERT_EQ(params.count(name), 1u);
    const Variable& p = params[name];
    ASSERT_TRUE(p.grad().defined());
    std::vector<double> analytic = p.grad().ToDoubles().value();
    double* values = p.data().data<double>();
    // At most 24 elements per parameter, spread over it.
    const int64_t n = p.numel();
    const int64_t stride = std::max<int64_t>(1, n / 24);
    for (int64_t j = 0; j < n; j += stride) {
      const double saved = values[j];
      values[j] = saved + eps;
      ASSERT_OK_AND_ASSIGN(Variable plus, model->Loss(ids));
      values[j] = saved - eps;
      ASSERT_OK_AND_ASSIGN(Variable minus, model->Loss(ids));
      values[j] = saved;
      const double numeric =
          (plus.data().Item().value() - minus.data().Item().value()) / (2 * eps);
      const double err = std::fabs(analytic[j] - numeric);
      EXPECT_TRUE(err <= 1e-8 + 1e-5 * std::fabs(numeric))
          << "element " << j << ": analytic " << analytic[j] << " vs numeric " << numeric;
    }
  }
}

TEST(MambaModelTest, AutocastBf16RunsAndIsClose) {
  MambaConfig c = TinyMamba1Config();
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(kIds, 2, 7));
  ASSERT_OK_AND_ASSIGN(Variable reference, model->Forward(ids));
  {
    nn::AutocastGuard autocast(DType::kBF16);
    ASSERT_OK_AND_ASSIGN(Variable logits, model->Forward(ids));
    EXPECT_EQ(logits.dtype(), DType::kBF16);
    EXPECT_EQ(logits.shape(), (Shape{2, 7, 16}));
    EXPECT_TRUE(AllClose(logits.data(), reference.data(), Tolerance{5e-2, 5e-2}));
    ASSERT_OK_AND_ASSIGN(Variable loss, model->Loss(ids));
    ASSERT_OK(loss.Backward());
  }
  // FP32 gradients reach the master weights, finite.
  for (auto& [name, p] : model->NamedParameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    EXPECT_EQ(p.grad().dtype(), DType::kF32) << name;
    ASSERT_OK_AND_ASSIGN(std::vector<double> grad, p.grad().ToDoubles());
    for (double g : grad) ASSERT_TRUE(std::isfinite(g)) << name;
  }
  // Prefill and steps under the same autocast region agree with the bf16 forward.
  nn::AutocastGuard autocast(DType::kBF16);
  ASSERT_OK_AND_ASSIGN(Variable bf16, model->Forward(ids));
  MambaCache cache;
  ASSERT_OK_AND_ASSIGN(Tensor head, ids.Narrow(1, 0, 4));
  ASSERT_OK_AND_ASSIGN(Tensor head_c, head.Contiguous());
  ASSERT_OK(model->Prefill(head_c, cache).status());
  EXPECT_EQ(cache.layer(0).conv_state.dtype(), DType::kBF16);
  for (int64_t t = 4; t < 7; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor col, ids.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor token, col.Contiguous());
    ASSERT_OK_AND_ASSIGN(Tensor step, model->Step(token, cache));
    ASSERT_OK_AND_ASSIGN(Tensor expected, bf16.data().Select(1, t));
    EXPECT_TRUE(AllClose(step, expected, Tolerance{3e-2, 3e-2})) << "position " << t;
  }
}

TEST(MambaModelTest, GenerateIsGreedyArgmaxOfTheForward) {
  MambaConfig c = TinyMamba1Config();
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
  ASSERT_OK_AND_ASSIGN(Tensor prompt, Ids({3, 1, 4, 1, 5, 9}, 2, 3));
  ASSERT_OK_AND_ASSIGN(Tensor out, model->Generate(prompt, 4));
  ASSERT_EQ(out.shape(), (Shape{2, 7}));
  std::vector<int64_t> got = out.ToVector<int64_t>().value();
  // Recompute greedily with full forwards.
  std::vector<std::vector<int64_t>> seqs = {{3, 1, 4}, {1, 5, 9}};
  for (int step = 0; step < 4; ++step) {
    for (auto& s : seqs) {
      ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(s, 1, static_cast<int64_t>(s.size())));
      ASSERT_OK_AND_ASSIGN(Variable logits, model->Forward(ids));
      std::vector<double> lg = logits.data().ToDoubles().value();
      const double* last = &lg[(s.size() - 1) * 16];
      int64_t best = 0;
      for (int v = 1; v < 16; ++v) {
        if (last[v] > last[best]) best = v;
      }
      s.push_back(best);
    }
  }
  for (int b = 0; b < 2; ++b) {
    for (int t = 0; t < 7; ++t) EXPECT_EQ(got[b * 7 + t], seqs[b][t]) << b << "," << t;
  }
  ASSERT_OK_AND_ASSIGN(Tensor none, model->Generate(prompt, 0));
  EXPECT_EQ(none.shape(), (Shape{2, 3}));
}

TEST(MambaModelTest, Errors) {
  MambaConfig c = TinyMamba1Config();
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
  ASSERT_OK_AND_ASSIGN(Tensor float_ids, Tensor::Zeros({2, 3}, DType::kF32));
  EXPECT_STATUS_IS(model->Forward(float_ids), absl::StatusCode::kInvalidArgument, "token ids");
  ASSERT_OK_AND_ASSIGN(Tensor flat, Tensor::Zeros({3}, DType::kI64));
  EXPECT_STATUS_IS(model->Forward(flat), absl::StatusCode::kInvalidArgument, "[B, L]");
  ASSERT_OK_AND_ASSIGN(Tensor out_of_range, Ids({0, 16, 1}, 1, 3));
  EXPECT_STATUS_IS(model->Forward(out_of_range), absl::StatusCode::kInvalidArgument, "");
  ASSERT_OK_AND_ASSIGN(Tensor one, Ids({1, 2}, 2, 1));
  EXPECT_STATUS_IS(model->Loss(one), absl::StatusCode::kInvalidArgument, "L >= 2");
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids({1, 2, 3, 4}, 2, 2));
  ASSERT_OK_AND_ASSIGN(Tensor bad_seq, Tensor::Zeros({2, 3}, DType::kI32));
  EXPECT_STATUS_IS(model->Forward(ids, bad_seq), absl::StatusCode::kInvalidArgument, "seq_idx");
  MambaCache empty;
  ASSERT_OK_AND_ASSIGN(Tensor tokens, Tensor::FromVector<int64_t>({1, 2}, {2}));
  EXPECT_STATUS_IS(model->Step(tokens, empty), absl::StatusCode::kFailedPrecondition, "Prefill");
  ASSERT_OK_AND_ASSIGN(MambaCache three, MambaCache::Zeros(c, 3, DType::kF64));
  EXPECT_STATUS_IS(model->Step(tokens, three), absl::StatusCode::kFailedPrecondition, "batch");
  EXPECT_STATUS_IS(model->Generate(ids, -1), absl::StatusCode::kInvalidArgument, "new_tokens");
  MambaConfig bad = c;
  bad.conv_kernel = 0;
  Generator gen(0);
  EXPECT_STATUS_IS(MambaForCausalLM::Create(bad, gen), absl::StatusCode::kInvalidArgument,
                   "conv_kernel");
}

// --- CUDA vs CPU --------------------------------------------------------------------------

TEST(MambaModelCudaTest, ForwardLossStepMatchCpu) {
  LYRA_REQUIRE_GPU();
  MambaConfig c = TinyMamba1Config(/*tie=*/false, /*use_bias=*/true);
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.time_step_rank = AutoTimeStepRank(64);
  c.state_size = 16;
  c.vocab_size = 40;
  ASSERT_OK_AND_ASSIGN(auto cpu, TinyModel(c, DType::kF32, 3));
  ASSERT_OK_AND_ASSIGN(auto gpu, TinyModel(c, DType::kF32, 3));
  ASSERT_OK(gpu->To(Device::Cuda()));
  std::vector<int64_t> v;
  for (int i = 0; i < 2 * 37; ++i) v.push_back((i * 7 + 3) % 40);
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(v, 2, 37));
  ASSERT_OK_AND_ASSIGN(Tensor ids_gpu, ids.To(Device::Cuda()));
  ASSERT_OK_AND_ASSIGN(Variable lc, cpu->Forward(ids));
  ASSERT_OK_AND_ASSIGN(Variable lg, gpu->Forward(ids_gpu));
  ASSERT_OK_AND_ASSIGN(Tensor lg_host, lg.data().To(Device::Cpu()));
  EXPECT_TRUE(AllClose(lg_host, lc.data(), Tolerance{2e-4, 2e-4}));

  ASSERT_OK_AND_ASSIGN(Variable loss_c, cpu->Loss(ids));
  ASSERT_OK_AND_ASSIGN(Variable loss_g, gpu->Loss(ids_gpu));
  ASSERT_OK(loss_c.Backward());
  ASSERT_OK(loss_g.Backward());
  EXPECT_NEAR(loss_g.data().To(Device::Cpu()).value().Item().value(),
              loss_c.data().Item().value(), 1e-4);
  auto cp = cpu->NamedParameters();
  auto gp = gpu->NamedParameters();
  for (size_t i = 0; i < cp.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(Tensor g, gp[i].second.grad().To(Device::Cpu()));
    EXPECT_TRUE(AllClose(g, cp[i].second.grad(), Tolerance{1e-4, 2e-3})) << cp[i].first;
  }

  // Prefill + steps on the GPU equal the GPU forward; bf16 autocast runs.
  MambaCache cache;
  ASSERT_OK_AND_ASSIGN(Tensor head, ids_gpu.Narrow(1, 0, 30));
  ASSERT_OK_AND_ASSIGN(Tensor head_c, head.Contiguous());
  ASSERT_OK(gpu->Prefill(head_c, cache).status());
  for (int64_t t = 30; t < 37; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor col, ids_gpu.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor token, col.Contiguous());
    ASSERT_OK_AND_ASSIGN(Tensor step, gpu->Step(token, cache));
    ASSERT_OK_AND_ASSIGN(Tensor step_host, step.To(Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(Tensor expected, lc.data().Select(1, t));
    EXPECT_TRUE(AllClose(step_host, expected, Tolerance{2e-4, 2e-4})) << "position " << t;
  }
  nn::AutocastGuard autocast(DType::kBF16);
  ASSERT_OK_AND_ASSIGN(Variable bf16, gpu->Forward(ids_gpu));
  ASSERT_OK_AND_ASSIGN(Tensor bf16_host, bf16.data().To(Device::Cpu()));
  // bf16 rounds every activation: compare norm-wise (elementwise, a logit near zero can differ
  // by more than its own size after a few layers of bf16 rounding).
  ASSERT_OK_AND_ASSIGN(std::vector<double> got, bf16_host.ToDoubles());
  ASSERT_OK_AND_ASSIGN(std::vector<double> want, lc.data().ToDoubles());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (got[i] - want[i]) * (got[i] - want[i]);
    norm += want[i] * want[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), 2e-2) << "bf16 logits vs f32, norm-wise";
}

}  // namespace
}  // namespace lyra::mamba
