// End-to-end proof of the foundation: a tiny language model trained with autograd and plain SGD
// learns (its loss falls well below the uniform log V), on the CPU and on CUDA.
#include "train/tiny_lm.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/testing/testing.h"

namespace lyra::train {
namespace {

void ExpectLearns(Device device) {
  TinyLmOptions options;
  options.device = device;
  options.steps = 300;
  ASSERT_OK_AND_ASSIGN(TinyLmResult r, TrainTinyLm(TinyLmText(), options));
  const double uniform = std::log(static_cast<double>(r.vocab_size));
  // Initialisation is near uniform; 300 steps get within reach of the text's bigram entropy
  // (about 2.4 nats for this text): the bound fails if gradients or updates are wrong.
  EXPECT_NEAR(r.initial_loss, uniform, 1.0);
  EXPECT_LT(r.final_loss, 2.6) << "initial " << r.initial_loss;
  EXPECT_LT(r.final_loss, r.initial_loss - 0.8);
  ASSERT_EQ(r.losses.size(), 300u);
}

TEST(TinyLmTest, LearnsOnCpu) { ExpectLearns(Device::Cpu()); }

TEST(TinyLmTest, LearnsOnCuda) {
  LYRA_REQUIRE_GPU();
  ExpectLearns(Device::Cuda(0));
}

TEST(TinyLmTest, SameSeedSameLossesOnCpuAndCuda) {
  LYRA_REQUIRE_GPU();
  TinyLmOptions options;
  options.steps = 20;
  ASSERT_OK_AND_ASSIGN(TinyLmResult cpu, TrainTinyLm(TinyLmText(), options));
  options.device = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(TinyLmResult gpu, TrainTinyLm(TinyLmText(), options));
  for (size_t i = 0; i < cpu.losses.size(); ++i) {
    EXPECT_NEAR(gpu.losses[i], cpu.losses[i], 1e-3 * (1 + i)) << "step " << i;
  }
}

TEST(TinyLmTest, BadOptionsAreErrors) {
  TinyLmOptions options;
  options.learning_rate = 0;
  EXPECT_STATUS_IS(TrainTinyLm(TinyLmText(), options), absl::StatusCode::kInvalidArgument,
                   "learning rate");
  EXPECT_STATUS_IS(TrainTinyLm("a", TinyLmOptions()), absl::StatusCode::kInvalidArgument,
                   "two characters");
}

}  // namespace
}  // namespace lyra::train
