// Writes an AdamW trajectory for benchmarks/compare/adamw_torch.py to replay in PyTorch:
//
//   bazel run //benchmarks/compare:adamw_trajectory -- --out=/tmp/adamw_trajectory.safetensors
//   python3 benchmarks/compare/adamw_torch.py /tmp/adamw_trajectory.safetensors
//
// Three parameters ([768, 768], [3072], [50280, 8]; ~1M elements) start from Randn * 0.02
// (Philox seed 1) and take kSteps AdamW steps (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight
// decay 0.01) on cuda:0 if there is a GPU, else on the CPU. To keep the file small (~12 MiB) the
// gradients are not stored one by one: the file holds a pool of kPoolSize gradient sets (Randn
// from Philox seed 2, rounded to bf16) and one f64 scale per step; the gradient of step t is
//   f32(pool[t % kPoolSize]) * f32(scale[t])
// (one f32 multiply, exactly reproducible in torch). Tensors written:
//   "init.<name>" f32, "pool.<k>.<name>" bf16, "scale" f64 [kSteps], "final.<name>" f32,
// with the hyper-parameters and the device in the metadata.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "cuda/device.h"
#include "optim/adamw.h"
#include "tensor/elementwise.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

constexpr int kSteps = 100;
constexpr int kPoolSize = 2;
constexpr double kLr = 1e-3;
constexpr double kWeightDecay = 0.01;

absl::Status Run(const std::string& out_path) {
  const Device device = cuda::HasGpu() ? Device::Cuda(0) : Device::Cpu();
  const std::vector<std::pair<std::string, Shape>> shapes = {
      {"w768x768", {768, 768}}, {"b3072", {3072}}, {"emb50280x8", {50280, 8}}};
  Generator init_gen(1), grad_gen(2);
  optim::NamedTensors file;
  optim::NamedParameters params;
  for (const auto& [name, shape] : shapes) {
    LYRA_ASSIGN_OR_RETURN(Tensor p, Randn(shape, DType::kF32, device, init_gen, 0, 0.02));
    LYRA_ASSIGN_OR_RETURN(Tensor init, p.Clone());
    file.emplace_back("init." + name, init);
    params.emplace_back(name, autograd::Variable(p, /*requires_grad=*/true));
  }
  std::vector<std::vector<Tensor>> pool(kPoolSize);  // f32 copies of the bf16 pool
  for (int k = 0; k < kPoolSize; ++k) {
    for (const auto& [name, shape] : shapes) {
      LYRA_ASSIGN_OR_RETURN(Tensor g, Randn(shape, DType::kBF16, device, grad_gen));
      file.emplace_back(absl::StrCat("pool.", k, ".", name), g);
      LYRA_ASSIGN_OR_RETURN(Tensor g32, g.To(DType::kF32));
      pool[k].push_back(g32);
    }
  }
  std::vector<double> scales(kSteps);
  for (int t = 0; t < kSteps; ++t) {
    scales[t] = std::sin(0.37 * t + 0.1) * (1.0 + t / 50.0) * 1e-2;
  }
  LYRA_ASSIGN_OR_RETURN(Tensor scale_tensor, Tensor::FromVector(scales, {kSteps}));
  file.emplace_back("scale", scale_tensor);

  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<optim::AdamW> opt,
                        optim::AdamW::Create(params, {.lr = kLr, .weight_decay = kWeightDecay}));
  for (int t = 0; t < kSteps; ++t) {
    for (size_t i = 0; i < params.size(); ++i) {
      LYRA_ASSIGN_OR_RETURN(Tensor g, MulScalar(pool[t % kPoolSize][i], scales[t]));
      LYRA_RETURN_IF_ERROR(params[i].second.set_grad(g));
    }
    LYRA_RETURN_IF_ERROR(opt->Step());
  }
  for (const auto& [name, p] : params) file.emplace_back("final." + name, p.data());
  const std::map<std::string, std::string> metadata = {
      {"optimizer", "AdamW"},
      {"lr", absl::StrCat(kLr)},
      {"betas", absl::StrCat(opt->options().beta1, ",", opt->options().beta2)},
      {"eps", absl::StrCat(opt->options().eps)},
      {"weight_decay", absl::StrCat(kWeightDecay)},
      {"steps", absl::StrCat(kSteps)},
      {"pool_size", absl::StrCat(kPoolSize)},
      {"device", device.ToString()},
      {"grad_rule", "grad[t] = f32(pool[t % pool_size]) * f32(scale[t])"}};
  LYRA_RETURN_IF_ERROR(WriteSafetensors(out_path, file, metadata));
  std::printf("wrote %s (%d AdamW steps on %s)\n", out_path.c_str(), kSteps,
              device.ToString().c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace lyra

int main(int argc, char** argv) {
  std::string out;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--out=", 6) == 0) out = argv[i] + 6;
  }
  if (out.empty()) {
    std::fprintf(stderr, "usage: %s --out=FILE.safetensors\n", argv[0]);
    return 2;
  }
  const absl::Status status = lyra::Run(out);
  if (!status.ok()) {
    std::fprintf(stderr, "adamw_trajectory: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
