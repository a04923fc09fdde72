// tiny_lm: trains the tiny character-level language model (train/tiny_lm.h) and prints its
// falling loss. The README's main job until the Mamba demo takes its place.
//
//   bazel run //train:tiny_lm -- [--device=auto|cpu|cuda[:N]] [--steps=300] [--lr=0.5]
#include <cmath>
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "cuda/device.h"
#include "tensor/device.h"
#include "train/progress.h"
#include "train/tiny_lm.h"

ABSL_FLAG(std::string, device, "auto", "cpu, cuda, cuda:N, or auto (a GPU if there is one)");
ABSL_FLAG(int, steps, 300, "SGD steps");
ABSL_FLAG(int, batch_size, 256, "positions per step");
ABSL_FLAG(double, lr, 0.5, "learning rate");
ABSL_FLAG(uint64_t, seed, 1, "random seed");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  using lyra::Device;
  lyra::train::TinyLmOptions options;
  const std::string device_name = absl::GetFlag(FLAGS_device);
  if (device_name == "auto") {
    options.device = lyra::cuda::HasGpu() ? Device::Cuda(0) : Device::Cpu();
  } else {
    absl::StatusOr<Device> device = lyra::ParseDevice(device_name);
    if (!device.ok()) {
      absl::FPrintF(stderr, "tiny_lm: --device: %s\n", device.status().ToString());
      return 2;
    }
    options.device = *device;
  }
  options.steps = absl::GetFlag(FLAGS_steps);
  options.batch_size = absl::GetFlag(FLAGS_batch_size);
  options.learning_rate = absl::GetFlag(FLAGS_lr);
  options.seed = absl::GetFlag(FLAGS_seed);
  const std::string& text = lyra::train::TinyLmText();
  absl::PrintF("tiny_lm: character model on %d characters of text, device %s%s\n", text.size(),
               options.device.ToString(),
               lyra::cuda::HasGpu() ? "" : " (no GPU: " + lyra::cuda::NoGpuReason() + ")");
  std::fflush(stdout);
  lyra::train::ProgressBar bar("train", options.steps);
  int64_t tokens = 0;
  absl::StatusOr<lyra::train::TinyLmResult> result = lyra::train::TrainTinyLm(
      text, options, [&](const lyra::train::TinyLmStep& s) {
        tokens += options.batch_size;
        bar.Update(s.step + 1, tokens, absl::StrFormat("loss %.3f", s.loss));
      });
  bar.Finish();
  if (!result.ok()) {
    absl::FPrintF(stderr, "tiny_lm: %s\n", result.status().ToString());
    return 1;
  }
  absl::PrintF("vocabulary %d characters; loss over the whole text: %.3f before, %.3f after "
               "%d steps (log V = %.3f)\n",
               result->vocab_size, result->initial_loss, result->final_loss, options.steps,
               std::log(static_cast<double>(result->vocab_size)));
  return result->final_loss < result->initial_loss ? 0 : 1;
}
