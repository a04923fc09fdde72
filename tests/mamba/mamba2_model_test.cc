// Tests of the Mamba-2 model (mamba/mamba2_mixer.h through MambaForCausalLM with a version-2
// MambaConfig): config.json parsing in both layouts (transformers' Mamba2Config with its
// {"__float__": "Infinity"} encoding, mamba_ssm's ssm_cfg "Mamba2"), errors naming the key,
// ToHfJson round trips; checkpoint save / load in both key layouts and strict errors; the
// parameter names; generation (step decoding == the parallel forward, prefill + steps == the
// forward on the whole sequence, chunked prefill); packed sequences (seq_idx) == separate runs;
// cache shapes. All on the CPU in f64 (the SSD's CPU reference); the HF parity is in
// mamba2_hf_parity_test.cc.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/variable.h"
#include "mamba/cache.h"
#include "mamba/checkpoint.h"
#include "mamba/config.h"
#include "mamba/mamba2_mixer.h"
#include "mamba/model.h"
#include "tensor/safetensors.h"
#include "tensor/elementwise.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"
#include "tests/testing/tiny_mamba.h"

namespace lyra::mamba {
namespace {

namespace fs = std::filesystem;
using autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::TinyMamba2Config;
using ::lyra::testing::Tolerance;

constexpr Tolerance kF64Tight = {1e-12, 1e-10};

absl::StatusOr<std::unique_ptr<MambaForCausalLM>> TinyModel(const MambaConfig& c, DType dtype,
                                                            uint64_t seed = 3) {
  Generator gen(seed);
  LYRA_ASSIGN_OR_RETURN(auto model, MambaForCausalLM::Create(c, gen, dtype));
  // Move every parameter off its constant initial value (ones, log(h + 1), zeros) so that each
  // of them shapes the output.
  LYRA_RETURN_IF_ERROR(::lyra::testing::PerturbParameters(*model, /*first_seed=*/100, 0.2));
  model->Eval();
  return model;
}

absl::StatusOr<Tensor> Ids(const std::vector<int64_t>& v, int64_t B, int64_t L) {
  return Tensor::FromVector<int64_t>(v, {B, L});
}

std::vector<int64_t> SomeTokens(int64_t n, int64_t vocab) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = (i * 7 + 3) % vocab;
  return v;
}

std::string FreshDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/mamba2_model_test_" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

// --- config ------------------------------------------------------------------------------------

TEST(Mamba2ConfigTest, ParsesTransformersLayoutWithInfinity) {
  ASSERT_OK_AND_ASSIGN(MambaConfig c, MambaConfig::FromJson(R"({
      "model_type": "mamba2", "vocab_size": 37, "hidden_size": 24, "num_heads": 4,
      "head_dim": 12, "n_groups": 2, "state_size": 4, "chunk_size": 16, "conv_kernel": 3,
      "num_hidden_layers": 2, "use_bias": true, "use_conv_bias": false,
      "layer_norm_epsilon": 1e-06, "residual_in_fp32": false,
      "time_step_limit": [0.0, {"__float__": "Infinity"}], "tie_word_embeddings": false})"));
  EXPECT_EQ(c.version, 2);
  EXPECT_EQ(c.layout, CheckpointLayout::kHuggingFace);
  EXPECT_EQ(c.intermediate_size, 48);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.head_dim, 12);
  EXPECT_EQ(c.n_groups, 2);
  EXPECT_EQ(c.chunk_size, 16);
  EXPECT_EQ(c.conv_kernel, 3);
  EXPECT_TRUE(c.use_bias);
  EXPECT_FALSE(c.use_conv_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.time_step_limit_min, 0.0);
  EXPECT_TRUE(std::isinf(c.time_step_limit_max) && c.time_step_limit_max > 0);
  // transformers' gated norm: one group over all D channels, the blocks' epsilon.
  EXPECT_EQ(c.norm_group_size, 48);
  EXPECT_EQ(c.norm_epsilon, 1e-6);
}

TEST(Mamba2ConfigTest, DefaultsAreMamba2ConfigsAndLimitsAcceptStringsAndNumbers) {
  ASSERT_OK_AND_ASSIGN(MambaConfig c, MambaConfig::FromJson(R"({
      "model_type": "mamba2", "vocab_size": 100, "hidden_size": 64, "num_heads": 2,
      "num_hidden_layers": 1, "n_groups": 1, "time_step_limit": [0.01, "inf"]})"));
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.state_size, 128);
  EXPECT_EQ(c.chunk_size, 256);
  EXPECT_FALSE(c.use_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.pad_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_EQ(c.time_step_limit_min, 0.01);
  EXPECT_TRUE(std::isinf(c.time_step_limit_max));
  ASSERT_OK_AND_ASSIGN(MambaConfig d, MambaConfig::FromJson(R"({
      "model_type": "mamba2", "vocab_size": 100, "hidden_size": 64, "num_heads": 2,
      "num_hidden_layers": 1, "n_groups": 1, "time_step_limit": [0.02, 0.08]})"));
  EXPECT_EQ(d.time_step_limit_max, 0.08);
  ASSERT_OK_AND_ASSIGN(MambaConfig e, MambaConfig::FromJson(R"({
      "model_type": "mamba2", "vocab_size": 100, "hidden_size": 64, "num_heads": 2,
      "num_hidden_layers": 1, "n_groups": 1, "time_step_limit": [0, "Infinity"]})"));
  EXPECT_TRUE(std::isinf(e.time_step_limit_max));
}

TEST(Mamba2ConfigTest, ParsesMambaSsmLayout) {
  // mamba2-130m's config.json (ssm_cfg only names the layer) plus explicit keys.
  ASSERT_OK_AND_ASSIGN(MambaConfig c, MambaConfig::FromJson(R"({
      "d_model": 768, "d_intermediate": 0, "n_layer": 24, "vocab_size": 50277,
      "ssm_cfg": {"layer": "Mamba2"}, "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": true,
      "residual_in_fp32": true, "fused_add_norm": true, "pad_vocab_size_multiple": 16,
      "tie_embeddings": true})"));
  EXPECT_EQ(c.version, 2);
  EXPECT_EQ(c.layout, CheckpointLayout::kMambaSsm);
  EXPECT_EQ(c.vocab_size, 50288);
  EXPECT_EQ(c.state_size, 128);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.num_heads, 24);  // d_inner 1536 / headdim 64
  EXPECT_EQ(c.n_groups, 1);
  EXPECT_EQ(c.chunk_size, 256);
  EXPECT_EQ(c.norm_epsilon, 1e-5);
  EXPECT_TRUE(c.tie_word_embeddings);
  ASSERT_OK_AND_ASSIGN(MambaConfig g, MambaConfig::FromJson(R"({
      "d_model": 64, "n_layer": 2, "vocab_size": 32, "ssm_cfg": {"layer": "Mamba2",
      "d_state": 16, "d_conv": 3, "headdim": 16, "ngroups": 4, "chunk_size": 64,
      "dt_limit": [0.001, 0.5], "D_has_hdim": true, "bias": true, "conv_bias": false}})"));
  EXPECT_EQ(g.num_heads, 8);
  EXPECT_EQ(g.n_groups, 4);
  EXPECT_EQ(g.norm_group_size, 32);  // mamba_ssm's grouped norm: d_inner / ngroups
  EXPECT_EQ(g.time_step_limit_max, 0.5);
  EXPECT_TRUE(g.D_has_hdim);
  EXPECT_TRUE(g.use_bias);
  EXPECT_FALSE(g.use_conv_bias);
}

TEST(Mamba2ConfigTest, ErrorsNameTheKey) {
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "mamba2", "vocab_size": 10,
      "hidden_size": 8, "num_hidden_layers": 1})"),
                   absl::StatusCode::kInvalidArgument, "num_heads");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "mamba2", "vocab_size": 10,
      "hidden_size": 8, "num_heads": 3, "head_dim": 4, "n_groups": 1, "num_hidden_layers": 1})"),
                   absl::StatusCode::kInvalidArgument, "num_heads");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "mamba2", "vocab_size": 10,
      "hidden_size": 8, "num_heads": 4, "head_dim": 4, "n_groups": 3, "num_hidden_layers": 1})"),
                   absl::StatusCode::kInvalidArgument, "n_groups");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "mamba2", "vocab_size": 10,
      "hidden_size": 8, "num_heads": 4, "head_dim": 4, "n_groups": 1, "num_hidden_layers": 1,
      "time_step_limit": [0.0, "big"]})"),
                   absl::StatusCode::kInvalidArgument, "time_step_limit");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "mamba2", "vocab_size": 10,
      "hidden_size": 8, "num_heads": 4, "head_dim": 4, "n_groups": 1, "num_hidden_layers": 1,
      "time_step_limit": [0.5, 0.1]})"),
                   absl::StatusCode::kInvalidArgument, "time_step_limit");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "mamba2", "vocab_size": 10,
      "hidden_size": 8, "num_heads": 4, "head_dim": 4, "n_groups": 1, "num_hidden_layers": 1,
      "chunk_size": "x"})"),
                   absl::StatusCode::kInvalidArgument, "chunk_size");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 1, "vocab_size": 8,
      "ssm_cfg": {"layer": "Mamba2", "headdim": 5}})"),
                   absl::StatusCode::kInvalidArgument, "ssm_cfg.headdim");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 1, "vocab_size": 8,
      "ssm_cfg": {"layer": "Mamba2", "headdim": 4, "norm_before_gate": true}})"),
                   absl::StatusCode::kUnimplemented, "norm_before_gate");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 1, "vocab_size": 8,
      "ssm_cfg": {"layer": "Mamba3"}})"),
                   absl::StatusCode::kUnimplemented, "ssm_cfg.layer");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "mamba3", "vocab_size": 8})"),
                   absl::StatusCode::kInvalidArgument, "model_type");
}

TEST(Mamba2ConfigTest, ToHfJsonRoundTripsIncludingInfinity) {
  MambaConfig c = TinyMamba2Config(/*tie=*/false, /*use_bias=*/true);
  c.norm_epsilon = c.layer_norm_epsilon;
  const std::string json = c.ToHfJson();
  EXPECT_NE(json.find("\"model_type\": \"mamba2\""), std::string::npos) << json;
  EXPECT_NE(json.find("\"__float__\": \"Infinity\""), std::string::npos) << json;
  EXPECT_NE(json.find("Mamba2ForCausalLM"), std::string::npos) << json;
  ASSERT_OK_AND_ASSIGN(MambaConfig back, MambaConfig::FromJson(json));
  EXPECT_EQ(back.version, 2);
  EXPECT_EQ(back.num_heads, c.num_heads);
  EXPECT_EQ(back.head_dim, c.head_dim);
  EXPECT_EQ(back.n_groups, c.n_groups);
  EXPECT_EQ(back.state_size, c.state_size);
  EXPECT_EQ(back.chunk_size, c.chunk_size);
  EXPECT_EQ(back.use_bias, c.use_bias);
  EXPECT_EQ(back.tie_word_embeddings, c.tie_word_embeddings);
  EXPECT_TRUE(std::isinf(back.time_step_limit_max));
  c.time_step_limit_min = 0.02;
  c.time_step_limit_max = 0.08;
  ASSERT_OK_AND_ASSIGN(MambaConfig finite, MambaConfig::FromJson(c.ToHfJson()));
  EXPECT_EQ(finite.time_step_limit_min, 0.02);
  EXPECT_EQ(finite.time_step_limit_max, 0.08);
}

// --- model structure -------------------------------------------------------------------------

TEST(Mamba2ModelTest, ParameterNamesAndShapesAreTransformers) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       TinyModel(TinyMamba2Config(/*tie=*/false, /*use_bias=*/true), DType::kF32));
  std::vector<std::pair<std::string, Shape>> want = {
      {"backbone.embeddings.weight", {24, 8}},
      {"backbone.layers.0.norm.weight", {8}},
      // A module's own parameters first, then its children's (torch's named_parameters order,
      // as transformers 5.17 lists Mamba2Mixer's).
      {"backbone.layers.0.mixer.dt_bias", {4}},
      {"backbone.layers.0.mixer.A_log", {4}},
      {"backbone.layers.0.mixer.D", {4}},
      {"backbone.layers.0.mixer.conv1d.weight", {32, 1, 4}},  // conv_dim = 16 + 2 * 2 * 4
      {"backbone.layers.0.mixer.conv1d.bias", {32}},
      {"backbone.layers.0.mixer.in_proj.weight", {52, 8}},  // 16 + 32 + 4
      {"backbone.layers.0.mixer.in_proj.bias", {52}},
      {"backbone.layers.0.mixer.norm.weight", {16}},
      {"backbone.layers.0.mixer.out_proj.weight", {8, 16}},
      {"backbone.layers.0.mixer.out_proj.bias", {8}},
  };
  auto params = model->NamedParameters();
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_LT(i, params.size());
    EXPECT_EQ(params[i].first, want[i].first);
    EXPECT_EQ(params[i].second.shape(), want[i].second) << want[i].first;
  }
  EXPECT_EQ(params.back().first, "lm_head.weight");
}

TEST(Mamba2ModelTest, CacheZerosHasMamba2Shapes) {
  ASSERT_OK_AND_ASSIGN(MambaCache cache, MambaCache::Zeros(TinyMamba2Config(), 3, DType::kF64));
  ASSERT_EQ(cache.num_layers(), 2);
  EXPECT_EQ(cache.layer(0).conv_state.shape(), Shape({3, 32, 3}));
  EXPECT_EQ(cache.layer(0).ssm_state.shape(), Shape({3, 4, 4, 4}));
  EXPECT_EQ(cache.layer(0).ssm_state.dtype(), DType::kF64);
}

// --- generation --------------------------------------------------------------------------------

// Prefill of the first token, then steps, reproduce the parallel forward's logits; the cache
// after Prefill of everything equals the cache after prefill + steps. L = 21 > chunk 16.
TEST(Mamba2ModelTest, StepDecodingEqualsParallelForward) {
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(TinyMamba2Config(), DType::kF64));
  const int64_t B = 2, L = 21;
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(SomeTokens(B * L, 24), B, L));
  ASSERT_OK_AND_ASSIGN(Variable full, model->Forward(ids));
  MambaCache cache;
  ASSERT_OK_AND_ASSIGN(Tensor first, ids.Narrow(1, 0, 1));
  ASSERT_OK_AND_ASSIGN(Tensor first_c, first.Contiguous());
  ASSERT_OK_AND_ASSIGN(Tensor l0, model->Prefill(first_c, cache));
  ASSERT_OK_AND_ASSIGN(Tensor e0, full.data().Narrow(1, 0, 1));
  EXPECT_TRUE(AllClose(l0, e0, kF64Tight));
  EXPECT_EQ(cache.layer(0).ssm_state.shape(), Shape({B, 4, 4, 4}));
  EXPECT_EQ(cache.layer(0).conv_state.shape(), Shape({B, 32, 3}));
  for (int64_t t = 1; t < L; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor col, ids.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor tok, col.Contiguous());
    ASSERT_OK_AND_ASSIGN(Tensor logits, model->Step(tok, cache));
    ASSERT_OK_AND_ASSIGN(Tensor expected, full.data().Select(1, t));
    EXPECT_TRUE(AllClose(logits, expected, kF64Tight)) << "step " << t;
  }
  MambaCache whole;
  ASSERT_OK(model->Prefill(ids, whole).status());
  for (int i = 0; i < 2; ++i) {
    EXPECT_TRUE(AllClose(cache.layer(i).ssm_state, whole.layer(i).ssm_state, kF64Tight));
    EXPECT_TRUE(AllClose(cache.layer(i).conv_state, whole.layer(i).conv_state, kF64Tight));
  }
}

// Prefill(a) then Prefill(b) equals the forward over a ++ b (the SSD continues from the
// cached state, the conv from the cached inputs); then steps continue.
TEST(Mamba2ModelTest, ChunkedPrefillAndStepsEqualForwardOnWholeSequence) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       TinyModel(TinyMamba2Config(/*tie=*/false, /*use_bias=*/true), DType::kF64));
  const int64_t B = 2, L = 26;
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(SomeTokens(B * L, 24), B, L));
  ASSERT_OK_AND_ASSIGN(Variable full, model->Forward(ids));
  MambaCache cache;
  ASSERT_OK_AND_ASSIGN(Tensor a, ids.Narrow(1, 0, 18));
  ASSERT_OK_AND_ASSIGN(Tensor b, ids.Narrow(1, 18, 5));
  ASSERT_OK_AND_ASSIGN(Tensor a_c, a.Contiguous());
  ASSERT_OK_AND_ASSIGN(Tensor b_c, b.Contiguous());
  ASSERT_OK_AND_ASSIGN(Tensor la, model->Prefill(a_c, cache));
  ASSERT_OK_AND_ASSIGN(Tensor lb, model->Prefill(b_c, cache));
  ASSERT_OK_AND_ASSIGN(Tensor ea, full.data().Narrow(1, 0, 18));
  ASSERT_OK_AND_ASSIGN(Tensor eb, full.data().Narrow(1, 18, 5));
  EXPECT_TRUE(AllClose(la, ea, kF64Tight));
  EXPECT_TRUE(AllClose(lb, eb, kF64Tight));
  for (int64_t t = 23; t < L; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor col, ids.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor tok, col.Contiguous());
    ASSERT_OK_AND_ASSIGN(Tensor logits, model->Step(tok, cache));
    ASSERT_OK_AND_ASSIGN(Tensor expected, full.data().Select(1, t));
    EXPECT_TRUE(AllClose(logits, expected, kF64Tight)) << "step " << t;
  }
  EXPECT_EQ(cache.seqlen_offset(), L);
  // Greedy generation runs on top.
  ASSERT_OK_AND_ASSIGN(Tensor out, model->Generate(a_c, 4));
  EXPECT_EQ(out.shape(), Shape({B, 22}));
}

// The clamp of a finite time_step_limit is applied identically by the step update.
TEST(Mamba2ModelTest, StepEqualsForwardWithFiniteTimeStepLimit) {
  MambaConfig c = TinyMamba2Config();
  c.time_step_limit_min = 0.02;
  c.time_step_limit_max = 0.06;
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
  const int64_t B = 1, L = 9;
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(SomeTokens(B * L, 24), B, L));
  ASSERT_OK_AND_ASSIGN(Variable full, model->Forward(ids));
  MambaCache cache;
  ASSERT_OK_AND_ASSIGN(Tensor a, ids.Narrow(1, 0, 4));
  ASSERT_OK_AND_ASSIGN(Tensor a_c, a.Contiguous());
  ASSERT_OK(model->Prefill(a_c, cache).status());
  for (int64_t t = 4; t < L; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor col, ids.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor tok, col.Contiguous());
    ASSERT_OK_AND_ASSIGN(Tensor logits, model->Step(tok, cache));
    ASSERT_OK_AND_ASSIGN(Tensor expected, full.data().Select(1, t));
    EXPECT_TRUE(AllClose(logits, expected, kF64Tight)) << "step " << t;
  }
  // And the clamp changes the model.
  MambaConfig open = c;
  open.time_step_limit_min = 0;
  open.time_step_limit_max = std::numeric_limits<double>::infinity();
  ASSERT_OK_AND_ASSIGN(auto unclamped, TinyModel(open, DType::kF64));
  ASSERT_OK_AND_ASSIGN(Variable other, unclamped->Forward(ids));
  EXPECT_FALSE(AllClose(other.data(), full.data(), Tolerance{1e-6, 0}));
}

// A row packing two documents with seq_idx equals the documents run on their own (the second
// document crosses a chunk boundary: 7 + 12 = 19 > 16).
TEST(Mamba2ModelTest, PackedSeqIdxEqualsSeparateDocuments) {
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(TinyMamba2Config(), DType::kF64));
  const std::vector<int64_t> doc_a = SomeTokens(7, 24);
  std::vector<int64_t> doc_b = SomeTokens(12, 23);
  std::vector<int64_t> packed = doc_a;
  packed.insert(packed.end(), doc_b.begin(), doc_b.end());
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(packed, 1, 19));
  std::vector<int32_t> seq(19, 0);
  for (int i = 7; i < 19; ++i) seq[i] = 1;
  ASSERT_OK_AND_ASSIGN(Tensor seq_idx, Tensor::FromVector<int32_t>(seq, {1, 19}));
  ASSERT_OK_AND_ASSIGN(Variable logits, model->Forward(ids, seq_idx));
  ASSERT_OK_AND_ASSIGN(Tensor ia, Ids(doc_a, 1, 7));
  ASSERT_OK_AND_ASSIGN(Tensor ib, Ids(doc_b, 1, 12));
  ASSERT_OK_AND_ASSIGN(Variable la, model->Forward(ia));
  ASSERT_OK_AND_ASSIGN(Variable lb, model->Forward(ib));
  ASSERT_OK_AND_ASSIGN(Tensor pa, logits.data().Narrow(1, 0, 7));
  ASSERT_OK_AND_ASSIGN(Tensor pb, logits.data().Narrow(1, 7, 12));
  EXPECT_TRUE(AllClose(pa, la.data(), kF64Tight));
  EXPECT_TRUE(AllClose(pb, lb.data(), kF64Tight));
  ASSERT_OK_AND_ASSIGN(Variable mixed, model->Forward(ids));
  ASSERT_OK_AND_ASSIGN(Tensor mb, mixed.data().Narrow(1, 7, 12));
  EXPECT_FALSE(AllClose(mb, lb.data(), Tolerance{1e-6, 0}));
}

// Every parameter receives a gradient from the loss.
TEST(Mamba2ModelTest, LossReachesEveryParameter) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       TinyModel(TinyMamba2Config(/*tie=*/false, /*use_bias=*/true), DType::kF64));
  model->Train();
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(SomeTokens(2 * 9, 24), 2, 9));
  ASSERT_OK_AND_ASSIGN(Variable loss, model->Loss(ids));
  ASSERT_OK(loss.Backward());
  for (const auto& [name, p] : model->NamedParameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    ASSERT_OK_AND_ASSIGN(std::vector<double> g, p.grad().ToDoubles());
    double norm = 0;
    for (double v : g) norm += v * v;
    EXPECT_TRUE(norm > 0 && std::isfinite(norm)) << name << " " << norm;
  }
}

// --- checkpoints -------------------------------------------------------------------------------

TEST(Mamba2CheckpointTest, SaveLoadRoundTripHfLayout) {
  ASSERT_OK_AND_ASSIGN(auto model,
                       TinyModel(TinyMamba2Config(/*tie=*/false, /*use_bias=*/true), DType::kF64));
  const std::string dir = FreshDir("hf");
  ASSERT_OK(SaveMamba(*model, dir));
  ASSERT_OK_AND_ASSIGN(MambaConfig saved, MambaConfig::FromFile(dir + "/config.json"));
  EXPECT_EQ(saved.version, 2);
  ASSERT_OK_AND_ASSIGN(auto loaded, LoadMamba(dir, Device::Cpu(), DType::kF64));
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(SomeTokens(8, 24), 2, 4));
  ASSERT_OK_AND_ASSIGN(Variable a, model->Forward(ids));
  ASSERT_OK_AND_ASSIGN(Variable b, loaded->Forward(ids));
  EXPECT_TRUE(AllClose(b.data(), a.data(), Tolerance{0, 0}));
}

TEST(Mamba2CheckpointTest, LoadsMambaSsmNamesAndConfig) {
  // mamba_ssm's layout: d_model / ssm_cfg "Mamba2" config (vocab 21 padded to 24),
  // "backbone.embedding.weight", the tied lm_head.weight saved too; one group so that the
  // grouped (mamba_ssm) and whole-D (HF) norms agree.
  MambaConfig c = TinyMamba2Config();
  c.n_groups = 1;
  c.norm_group_size = 16;
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(c, DType::kF64));
  const std::string dir = FreshDir("mamba_ssm");
  WriteFile(dir + "/config.json", R"({"d_model": 8, "n_layer": 2, "vocab_size": 21,
      "ssm_cfg": {"layer": "Mamba2", "d_state": 4, "headdim": 4, "ngroups": 1,
      "chunk_size": 16}, "rms_norm": true, "residual_in_fp32": true, "fused_add_norm": true,
      "pad_vocab_size_multiple": 8, "tie_embeddings": true})");
  std::vector<std::pair<std::string, Tensor>> tensors;
  Tensor embedding;
  for (auto& [name, t] : model->StateDict()) {
    if (name == "backbone.embeddings.weight") {
      tensors.emplace_back("backbone.embedding.weight", t);
      embedding = t;
    } else {
      tensors.emplace_back(name, t);
    }
  }
  tensors.emplace_back("lm_head.weight", embedding);
  ASSERT_OK(WriteSafetensors(dir + "/model.safetensors", tensors));
  ASSERT_OK_AND_ASSIGN(auto loaded, LoadMamba(dir, Device::Cpu(), DType::kF64));
  EXPECT_EQ(loaded->config().layout, CheckpointLayout::kMambaSsm);
  EXPECT_EQ(loaded->config().version, 2);
  ASSERT_OK_AND_ASSIGN(Tensor ids, Ids(SomeTokens(8, 24), 2, 4));
  ASSERT_OK_AND_ASSIGN(Variable a, model->Forward(ids));
  ASSERT_OK_AND_ASSIGN(Variable b, loaded->Forward(ids));
  // The norm epsilon is mamba_ssm's fixed 1e-5 there, the model's 1e-5 here.
  EXPECT_TRUE(AllClose(b.data(), a.data(), Tolerance{0, 0}));
}

TEST(Mamba2CheckpointTest, WeightsThatDoNotFitTheConfig) {
  ASSERT_OK_AND_ASSIGN(auto model, TinyModel(TinyMamba2Config(), DType::kF32));
  const std::string dir = FreshDir("strict");
  ASSERT_OK(SaveMamba(*model, dir));
  // A config with another head count: the in_proj / dt_bias shapes differ.
  MambaConfig other = TinyMamba2Config();
  other.num_heads = 2;
  other.head_dim = 8;
  WriteFile(dir + "/config.json", other.ToHfJson());
  EXPECT_STATUS_IS(LoadMamba(dir), absl::StatusCode::kInvalidArgument, "backbone.layers.0.mixer");
  // A missing tensor is named.
  WriteFile(dir + "/config.json", TinyMamba2Config().ToHfJson());
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (auto& [name, t] : model->StateDict()) {
    if (name != "backbone.layers.1.mixer.A_log") tensors.emplace_back(name, t);
  }
  ASSERT_OK(WriteSafetensors(dir + "/model.safetensors", tensors));
  EXPECT_STATUS_IS(LoadMamba(dir), absl::StatusCode::kInvalidArgument,
                   "backbone.layers.1.mixer.A_log");
}

}  // namespace
}  // namespace lyra::mamba
