// Tests of MambaConfig (mamba/config.h): the Hugging Face and mamba_ssm config.json layouts
// (the values of state-spaces/mamba-130m-hf and state-spaces/mamba-130m), every error, and the
// ToHfJson round trip.
#include "mamba/config.h"

#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/testing/testing.h"

namespace lyra::mamba {
namespace {

// state-spaces/mamba-130m-hf's config.json.
constexpr char kHf130m[] = R"({
  "architectures": ["MambaForCausalLM"],
  "bos_token_id": 0,
  "conv_kernel": 4,
  "eos_token_id": 0,
  "expand": 2,
  "fused_add_norm": true,
  "hidden_act": "silu",
  "hidden_size": 768,
  "initializer_range": 0.1,
  "intermediate_size": 1536,
  "layer_norm_epsilon": 1e-05,
  "model_type": "mamba",
  "n_layer": 24,
  "num_hidden_layers": 24,
  "pad_token_id": 0,
  "pad_vocab_size_multiple": 8,
  "rescale_prenorm_residual": false,
  "residual_in_fp32": true,
  "rms_norm": true,
  "state_size": 16,
  "time_step_floor": 0.0001,
  "time_step_init_scheme": "random",
  "time_step_max": 0.1,
  "time_step_min": 0.001,
  "time_step_rank": 48,
  "time_step_scale": 1.0,
  "torch_dtype": "float32",
  "transformers_version": "4.39.0.dev0",
  "use_bias": false,
  "use_cache": true,
  "use_conv_bias": true,
  "vocab_size": 50280
})";

// state-spaces/mamba-130m's (mamba_ssm) config.json.
constexpr char kSsm130m[] = R"({
  "d_model": 768,
  "n_layer": 24,
  "vocab_size": 50277,
  "ssm_cfg": {},
  "rms_norm": true,
  "residual_in_fp32": true,
  "fused_add_norm": true,
  "pad_vocab_size_multiple": 8
})";

TEST(MambaConfigTest, ParsesHuggingFace130m) {
  ASSERT_OK_AND_ASSIGN(MambaConfig c, MambaConfig::FromJson(kHf130m, "mamba-130m-hf/config.json"));
  EXPECT_EQ(c.layout, CheckpointLayout::kHuggingFace);
  EXPECT_EQ(c.vocab_size, 50280);
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.state_size, 16);
  EXPECT_EQ(c.num_hidden_layers, 24);
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
  EXPECT_EQ(c.expand, 2);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.conv_kernel, 4);
  EXPECT_FALSE(c.use_bias);
  EXPECT_TRUE(c.use_conv_bias);
  EXPECT_EQ(c.hidden_act, "silu");
  EXPECT_TRUE(c.residual_in_fp32);
  EXPECT_EQ(c.time_step_rank, 48);
  EXPECT_DOUBLE_EQ(c.time_step_min, 0.001);
  EXPECT_DOUBLE_EQ(c.time_step_max, 0.1);
  EXPECT_DOUBLE_EQ(c.time_step_floor, 1e-4);
  EXPECT_EQ(c.time_step_init_scheme, "random");
  EXPECT_TRUE(c.tie_word_embeddings);  // absent: HF's default
  EXPECT_EQ(c.pad_vocab_size_multiple, 8);
}

TEST(MambaConfigTest, HuggingFaceDefaultsAndAutoRank) {
  ASSERT_OK_AND_ASSIGN(
      MambaConfig c,
      MambaConfig::FromJson(R"({"model_type": "mamba", "vocab_size": 100, "hidden_size": 40,
                                "state_size": 8, "num_hidden_layers": 3, "expand": 3,
                                "time_step_rank": "auto", "tie_word_embeddings": false,
                                "use_mambapy": true})"));
  EXPECT_EQ(c.time_step_rank, 3);  // ceil(40 / 16)
  EXPECT_EQ(c.intermediate_size, 120);
  EXPECT_TRUE(c.use_bias);  // transformers' default
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.vocab_size, 100);  // HF does not pad
  EXPECT_EQ(AutoTimeStepRank(768), 48);
  EXPECT_EQ(AutoTimeStepRank(2560), 160);
  EXPECT_EQ(AutoTimeStepRank(17), 2);
}

TEST(MambaConfigTest, ParsesMambaSsm130m) {
  ASSERT_OK_AND_ASSIGN(MambaConfig c, MambaConfig::FromJson(kSsm130m, "mamba-130m/config.json"));
  EXPECT_EQ(c.layout, CheckpointLayout::kMambaSsm);
  EXPECT_EQ(c.vocab_size, 50280);  // 50277 padded to a multiple of 8
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.num_hidden_layers, 24);
  EXPECT_EQ(c.state_size, 16);
  EXPECT_EQ(c.conv_kernel, 4);
  EXPECT_EQ(c.intermediate_size, 1536);
  EXPECT_EQ(c.time_step_rank, 48);
  EXPECT_FALSE(c.use_bias);
  EXPECT_TRUE(c.use_conv_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_TRUE(c.residual_in_fp32);
  EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
}

TEST(MambaConfigTest, ParsesMambaSsmCfg) {
  ASSERT_OK_AND_ASSIGN(
      MambaConfig c,
      MambaConfig::FromJson(R"({"d_model": 64, "n_layer": 2, "vocab_size": 1000,
          "pad_vocab_size_multiple": 16, "tie_embeddings": false, "residual_in_fp32": false,
          "ssm_cfg": {"layer": "Mamba1", "d_state": 8, "d_conv": 3, "expand": 4, "dt_rank": 7,
                      "dt_min": 0.002, "dt_max": 0.2, "dt_init": "constant", "dt_scale": 2.0,
                      "dt_init_floor": 0.001, "conv_bias": false, "bias": true,
                      "use_fast_path": true}})"));
  EXPECT_EQ(c.vocab_size, 1008);
  EXPECT_EQ(c.state_size, 8);
  EXPECT_EQ(c.conv_kernel, 3);
  EXPECT_EQ(c.expand, 4);
  EXPECT_EQ(c.intermediate_size, 256);
  EXPECT_EQ(c.time_step_rank, 7);
  EXPECT_DOUBLE_EQ(c.time_step_min, 0.002);
  EXPECT_DOUBLE_EQ(c.time_step_max, 0.2);
  EXPECT_EQ(c.time_step_init_scheme, "constant");
  EXPECT_DOUBLE_EQ(c.time_step_scale, 2.0);
  EXPECT_DOUBLE_EQ(c.time_step_floor, 0.001);
  EXPECT_FALSE(c.use_conv_bias);
  EXPECT_TRUE(c.use_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.residual_in_fp32);
}

TEST(MambaConfigTest, HfJsonRoundTrip) {
  for (const char* text : {kHf130m, kSsm130m}) {
    ASSERT_OK_AND_ASSIGN(MambaConfig c, MambaConfig::FromJson(text));
    c.tie_word_embeddings = false;
    c.rescale_prenorm_residual = true;
    ASSERT_OK_AND_ASSIGN(MambaConfig back, MambaConfig::FromJson(c.ToHfJson(), "round trip"));
    EXPECT_EQ(back.layout, CheckpointLayout::kHuggingFace);
    EXPECT_EQ(back.vocab_size, c.vocab_size);
    EXPECT_EQ(back.hidden_size, c.hidden_size);
    EXPECT_EQ(back.state_size, c.state_size);
    EXPECT_EQ(back.num_hidden_layers, c.num_hidden_layers);
    EXPECT_EQ(back.intermediate_size, c.intermediate_size);
    EXPECT_EQ(back.conv_kernel, c.conv_kernel);
    EXPECT_EQ(back.use_bias, c.use_bias);
    EXPECT_EQ(back.use_conv_bias, c.use_conv_bias);
    EXPECT_EQ(back.time_step_rank, c.time_step_rank);
    EXPECT_EQ(back.layer_norm_epsilon, c.layer_norm_epsilon);
    EXPECT_EQ(back.time_step_min, c.time_step_min);
    EXPECT_EQ(back.time_step_max, c.time_step_max);
    EXPECT_EQ(back.time_step_floor, c.time_step_floor);
    EXPECT_EQ(back.residual_in_fp32, c.residual_in_fp32);
    EXPECT_EQ(back.tie_word_embeddings, false);
    EXPECT_EQ(back.rescale_prenorm_residual, true);
    EXPECT_EQ(back.pad_vocab_size_multiple, c.pad_vocab_size_multiple);
  }
}

TEST(MambaConfigTest, FromFile) {
  const std::string path = ::testing::TempDir() + "/mamba_config_test.json";
  {
    std::ofstream out(path);
    out << kHf130m;
  }
  ASSERT_OK_AND_ASSIGN(MambaConfig c, MambaConfig::FromFile(path));
  EXPECT_EQ(c.hidden_size, 768);
  std::remove(path.c_str());
  EXPECT_STATUS_IS(MambaConfig::FromFile(path), absl::StatusCode::kNotFound, path);
}

TEST(MambaConfigTest, Errors) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  const auto kUnimplemented = absl::StatusCode::kUnimplemented;
  EXPECT_STATUS_IS(MambaConfig::FromJson("{not json", "a/config.json"), kInvalid,
                   "a/config.json is not valid JSON");
  EXPECT_STATUS_IS(MambaConfig::FromJson("[1, 2]", "b.json"), kInvalid, "not a JSON object");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "jamba", "hidden_size": 8})", "c.json"),
                   kInvalid, "\"model_type\" in c.json is \"jamba\"");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": 3})", "c.json"), kInvalid,
                   "\"model_type\" in c.json must be a string");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"vocab_size": 3})", "d.json"), kInvalid,
                   "neither \"model_type\"");
  // Missing required keys.
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"model_type": "mamba", "vocab_size": 10,
                                             "state_size": 4, "num_hidden_layers": 1})",
                                         "e.json"),
                   kInvalid, "required key \"hidden_size\" is missing in e.json");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "vocab_size": 10})", "f.json"),
                   kInvalid, "required key \"n_layer\" is missing in f.json");
  // Wrong types.
  const std::string base =
      R"("model_type": "mamba", "vocab_size": 10, "state_size": 4, "num_hidden_layers": 1)";
  EXPECT_STATUS_IS(MambaConfig::FromJson("{" + base + R"(, "hidden_size": "8"})", "g.json"),
                   kInvalid, "\"hidden_size\" in g.json must be an integer");
  EXPECT_STATUS_IS(MambaConfig::FromJson("{" + base + R"(, "hidden_size": 8.5})", "g.json"),
                   kInvalid, "\"hidden_size\" in g.json must be an integer");
  EXPECT_STATUS_IS(
      MambaConfig::FromJson("{" + base + R"(, "hidden_size": 8, "use_bias": "no"})", "h.json"),
      kInvalid, "\"use_bias\" in h.json must be a boolean");
  EXPECT_STATUS_IS(
      MambaConfig::FromJson("{" + base + R"(, "hidden_size": 8, "time_step_rank": "big"})",
                            "h.json"),
      kInvalid, "\"time_step_rank\" in h.json must be an integer or \"auto\"");
  EXPECT_STATUS_IS(
      MambaConfig::FromJson("{" + base + R"(, "hidden_size": 8, "layer_norm_epsilon": "x"})",
                            "h.json"),
      kInvalid, "\"layer_norm_epsilon\" in h.json must be a number");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 1, "vocab_size": 10,
                                             "ssm_cfg": {"d_state": "16"}})",
                                         "i.json"),
                   kInvalid, "\"ssm_cfg.d_state\" in i.json must be an integer");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 1, "vocab_size": 10,
                                             "ssm_cfg": []})",
                                         "i.json"),
                   kInvalid, "\"ssm_cfg\" in i.json must be an object");
  // Values out of range.
  EXPECT_STATUS_IS(
      MambaConfig::FromJson("{" + base + R"(, "hidden_size": 8, "conv_kernel": 0})", "j.json"),
      kInvalid, "conv_kernel must be in [1, 8], got 0 (in j.json)");
  EXPECT_STATUS_IS(
      MambaConfig::FromJson("{" + base + R"(, "hidden_size": 0})", "j.json"), kInvalid,
      "hidden_size must be >= 1");
  EXPECT_STATUS_IS(MambaConfig::FromJson("{" + base +
                                             R"(, "hidden_size": 8, "time_step_min": 0.5,
                                                "time_step_max": 0.1})",
                                         "j.json"),
                   kInvalid, "time_step_min");
  EXPECT_STATUS_IS(MambaConfig::FromJson("{" + base +
                                             R"(, "hidden_size": 8,
                                                "time_step_init_scheme": "uniform"})",
                                         "j.json"),
                   kInvalid, "time_step_init_scheme");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 1, "vocab_size": 10,
                                             "pad_vocab_size_multiple": 0})",
                                         "k.json"),
                   kInvalid, "pad_vocab_size_multiple");
  // Valid but unsupported.
  EXPECT_STATUS_IS(
      MambaConfig::FromJson("{" + base + R"(, "hidden_size": 8, "hidden_act": "gelu"})"),
      kUnimplemented, "hidden_act \"gelu\"");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 1, "vocab_size": 10,
                                             "ssm_cfg": {"layer": "Mamba3"}})",
                                         "l.json"),
                   kUnimplemented, "\"Mamba3\"");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 1, "vocab_size": 10,
                                             "d_intermediate": 32})"),
                   kUnimplemented, "d_intermediate");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 2, "vocab_size": 10,
                                             "attn_layer_idx": [1]})"),
                   kUnimplemented, "attn_layer_idx");
  EXPECT_STATUS_IS(MambaConfig::FromJson(R"({"d_model": 8, "n_layer": 2, "vocab_size": 10,
                                             "rms_norm": false})"),
                   kUnimplemented, "rms_norm");
}

}  // namespace
}  // namespace lyra::mamba
