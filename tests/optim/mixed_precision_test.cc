// The paper's fine-tuning recipe end to end on a small LM-like model
//   embedding -> RMSNorm -> Linear (LM head) -> fused cross-entropy
// trained with AdamW (decoupled weight decay, no decay for norms/biases), grad clipping at 1.0,
// FP32 master weights, in FP32, BF16 (autocast) and FP16 (autocast + dynamic loss scaling).
// All three reach the same loss within a stated tolerance; FP16 survives overflow by skipping.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "nn/autocast.h"
#include "nn/cross_entropy.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/module.h"
#include "nn/rms_norm.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "optim/loss_scaler.h"
#include "optim/optimizer.h"
#include "optim/precision.h"
#include "tensor/elementwise.h"
#include "tensor/random.h"
#include "tests/testing/testing.h"

namespace lyra::optim {
namespace {

constexpr int64_t kVocab = 64;
constexpr int64_t kHidden = 64;
constexpr int64_t kBatch = 256;
constexpr int kSteps = 150;

// target = (5 * id + 3) mod V: a deterministic map the model can learn exactly.
class TinyModel : public nn::Module {
 public:
  static absl::StatusOr<std::unique_ptr<TinyModel>> Create(Device device) {
    Generator gen(7);
    auto m = std::unique_ptr<TinyModel>(new TinyModel());
    LYRA_ASSIGN_OR_RETURN(auto emb, nn::Embedding::Create(kVocab, kHidden, gen));
    LYRA_ASSIGN_OR_RETURN(auto norm, nn::RMSNorm::Create(kHidden));
    LYRA_ASSIGN_OR_RETURN(auto head, nn::Linear::Create(kHidden, kVocab, true, gen));
    m->embedding_ = m->RegisterModule("embedding", std::move(emb));
    m->norm_ = m->RegisterModule("norm", std::move(norm));
    m->head_ = m->RegisterModule("lm_head", std::move(head));
    LYRA_RETURN_IF_ERROR(m->To(device));
    return m;
  }

  absl::StatusOr<autograd::Variable> Loss(const Tensor& ids, const Tensor& targets) const {
    LYRA_ASSIGN_OR_RETURN(autograd::Variable h, embedding_->Forward(ids));
    LYRA_ASSIGN_OR_RETURN(h, norm_->Forward(h));
    LYRA_ASSIGN_OR_RETURN(autograd::Variable logits, head_->Forward(h));
    return nn::CrossEntropy(logits, targets);
  }

 private:
  TinyModel() : Module("TinyModel") {}
  nn::Embedding* embedding_ = nullptr;
  nn::RMSNorm* norm_ = nullptr;
  nn::Linear* head_ = nullptr;
};

struct RunResult {
  double first_loss = 0;
  double final_loss = 0;
  int64_t skipped = 0;
  bool masters_f32 = true;
};

absl::StatusOr<RunResult> Train(Precision precision, Device device) {
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<TinyModel> model, TinyModel::Create(device));
  LYRA_ASSIGN_OR_RETURN(std::vector<ParamGroup> groups, DecayGroups(*model, {.weight_decay = 0.01}));
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<AdamW> opt, AdamW::Create(std::move(groups), {.lr = 1e-2}));
  const PrecisionRecipe recipe = RecipeFor(precision);
  LYRA_ASSIGN_OR_RETURN(DynamicLossScaler scaler, MakeLossScaler(recipe, device));
  std::vector<autograd::Variable> params = model->Parameters();
  Generator data(11);
  RunResult result;
  for (int step = 0; step < kSteps; ++step) {
    LYRA_ASSIGN_OR_RETURN(Tensor ids, RandInt({kBatch}, 0, kVocab, DType::kI64, device, data));
    LYRA_ASSIGN_OR_RETURN(Tensor targets, MulScalar(ids, 5));
    LYRA_ASSIGN_OR_RETURN(targets, AddScalar(targets, 3));
    LYRA_ASSIGN_OR_RETURN(std::vector<int64_t> t, targets.ToVector<int64_t>());
    for (int64_t& v : t) v %= kVocab;
    LYRA_ASSIGN_OR_RETURN(targets, Tensor::FromVector<int64_t>(t, {kBatch}, device));
    double loss_value = 0;
    {
      nn::AutocastGuard autocast(recipe.compute_dtype);
      LYRA_ASSIGN_OR_RETURN(autograd::Variable loss, model->Loss(ids, targets));
      LYRA_ASSIGN_OR_RETURN(loss_value, loss.data().Item());
      LYRA_ASSIGN_OR_RETURN(autograd::Variable scaled, scaler.Scale(loss));
      LYRA_RETURN_IF_ERROR(scaled.Backward());
    }
    LYRA_ASSIGN_OR_RETURN(bool ran, scaler.StepIfFinite(params, [&]() -> absl::Status {
      LYRA_RETURN_IF_ERROR(ClipGradNorm(params, 1.0).status());
      return opt->Step();
    }));
    (void)ran;
    opt->ZeroGrad();
    if (step == 0) result.first_loss = loss_value;
    result.final_loss = loss_value;
  }
  LYRA_ASSIGN_OR_RETURN(result.skipped, scaler.num_skipped_steps());
  for (const autograd::Variable& p : params) result.masters_f32 &= p.dtype() == DType::kF32;
  return result;
}

// FP32 reaches a low loss; the 16-bit runs land within this of it (absolute nats).
constexpr double kPrecisionTolerance = 0.1;

void ExpectRecipeWorks(Device device) {
  ASSERT_OK_AND_ASSIGN(RunResult fp32, Train(Precision::kFp32, device));
  EXPECT_NEAR(fp32.first_loss, std::log(kVocab), 1.0);
  EXPECT_LT(fp32.final_loss, 0.3) << "fp32 did not learn the map";
  EXPECT_EQ(fp32.skipped, 0);
  std::printf("%s fp32: loss %.4f -> %.4f\n", device.ToString().c_str(), fp32.first_loss,
              fp32.final_loss);
  for (Precision p : {Precision::kBf16, Precision::kFp16}) {
    ASSERT_OK_AND_ASSIGN(RunResult r, Train(p, device));
    std::printf("%s %s: loss %.4f -> %.4f, %lld skipped steps\n", device.ToString().c_str(),
                std::string(PrecisionName(p)).c_str(), r.first_loss, r.final_loss,
                static_cast<long long>(r.skipped));
    EXPECT_TRUE(r.masters_f32);
    EXPECT_NEAR(r.final_loss, fp32.final_loss, kPrecisionTolerance)
        << PrecisionName(p) << " on " << device.ToString();
    // FP16 starts at scale 2^16 and may skip a few overflowing steps while backing off; BF16
    // never scales.
    if (p == Precision::kBf16) { EXPECT_EQ(r.skipped, 0); }
    EXPECT_LT(r.skipped, 20) << PrecisionName(p);
  }
}

TEST(MixedPrecisionTest, Fp32Bf16Fp16ReachTheSameLossOnCpu) { ExpectRecipeWorks(Device::Cpu()); }

TEST(MixedPrecisionTest, Fp32Bf16Fp16ReachTheSameLossOnCuda) {
  LYRA_REQUIRE_GPU();
  ExpectRecipeWorks(Device::Cuda(0));
}

}  // namespace
}  // namespace lyra::optim
