// One whole training step of a Mamba-130M-shaped language model in bf16, full fine-tuning against
// SLL-LoRA, with the allocator's peak memory: the measurement of the LoRA issue ("SLL-LoRA vs
// full fine-tuning tokens/s and peak memory; the adapters' cost over the frozen forward/backward
// <= 15% of step time at r = 8"). Its PyTorch counterpart, run in the same GPU session:
//
//   benchmarks/compare/lora_train_step_torch.py   transformers' MambaForCausalLM (same shape,
//                                                 from a config) full and PEFT LoRA
//
// The step (what torch's loop does, in this order):
//   ids    random tokens [B, L] i64, uniform in [0, V) (drawn once)
//   loss   model->Loss(ids) under nn::AutocastGuard(bf16) with FP32 master weights: the fused
//          causal-LM cross-entropy (logits[:, :-1] against ids[:, 1:])
//   loss.Backward()
//   optim::ClipGradNorm(trainable, 1.0)          fused multi-tensor norm + scale
//   optim::AdamW::Step()                         fused multi-tensor, lr 1e-4, weight decay 0.01,
//                                                on the trainable parameters only
//   model->ZeroGrad()                            gradients dropped (their memory returns)
//
// Modes:
//   full      every parameter trains
//   sll_lora  nn::LoraConfig::Preset("sll") with r = 8, alpha = 16, dropout 0: adapters on
//             x_proj, embeddings, in_proj, out_proj (Mamba-1; Mamba-2: embeddings, in_proj,
//             out_proj), base frozen (the tied LM head too)
//   frozen    no adapters, every parameter frozen, but the embedding output made a leaf that
//             requires grad, so the whole backward through the 24 layers, the norms and the head
//             runs without any weight gradient (and there is no clip / AdamW: nothing trains).
//             This is the cost floor the adapters add to; it runs the same ops as
//             model->Loss (composed here from the model's public parts; checked equal to
//             model->Loss once before timing). sll_lora reports adapter_overhead =
//             (t_sll - t_frozen) / t_sll when the frozen run of the same shape ran before it
//             (registration order does that); the target is <= 0.15.
//
// Shapes. Mamba-1 130M: M = 768, 24 layers, N = 16, expand 2 (D = 1536), K = 4, R = 48, V = 50280,
// tied embeddings, no in/out_proj bias, conv bias (state-spaces/mamba-130m-hf): 129.1M parameters.
// Mamba-2 130M (version 2): M = 768, 24 layers, P = 64 (H = 24), N = 128, G = 1, Q = 256,
// V = 50280, tied: ~129M parameters. Batch 8 x 512 and 8 x 2048 (Mamba-1), 8 x 2048 (Mamba-2).
//
// FLOPs (napkin math, T = B L tokens, P = parameters, the tied embedding counted once: its matmul
// is the LM head): full fine-tuning 6 P T (forward 2 P T, backward 4 P T); frozen and sll_lora
// skip the weight gradients: 4 P T (the r = 8 adapters add < 1%). The scan / SSD and the
// elementwise work come on top.
//   Mamba-1, 8 x 512:  6 x 129.1M x 4096  = 3.17 TFLOP  (~4.2 ms at 760 TFLOP/s bf16)
//   Mamba-1, 8 x 2048: 6 x 129.1M x 16384 = 12.7 TFLOP  (~17 ms; ~1M tokens/s compute floor)
// Reference (shared/reference/h100-2026-11-23.md: H100, PyTorch 2.11 + mamba_ssm 2.3.2 kernels,
// torch.autocast bf16, fused AdamW, clip 1.0, batch 8):
//   Mamba-1 full      8 x 512:  38k-50k tokens/s, peak  5.79 GiB
//   Mamba-1 full      8 x 2048: 152k tokens/s,    peak 17.8 GiB
//   Mamba-2 full      8 x 2048: 72k tokens/s,     peak 17.8 GiB
//   HF MambaForCausalLM + PEFT LoRA r = 8 (x_proj, embeddings, in_proj) 8 x 512: 41k tokens/s,
//   peak 5.69 GiB (and with mamba_ssm's fused path those adapters did not change the output).
//
// Counters: tokens_per_s (B L / median step time), ms_per_step (median), TFLOP/s (6 P T or 4 P T
// as above), peak_GiB (CachingAllocator peak allocated bytes during one step, peaks reset before
// it; max over the timed steps: it includes the resident parameters, gradients and AdamW state,
// as torch.cuda.max_memory_allocated after reset_peak_memory_stats), peak_bytes_per_token (the
// paper's MMPT: peak / (B L)), resident_GiB (allocated before the step: weights + optimizer
// state), reserved_GiB (peak reserved), trainable_params, params.
//
// Timing: 2 warm-up steps (the first allocates the AdamW state and fills the allocator's cache),
// then 5 steps, each timed alone between CUDA events on cuda:0's current stream and synchronised
// (manual time; no L2 flush: a step moves gigabytes). ClipGradNorm copies the norm to the host
// inside the step (one synchronisation, as it returns a double). Everything runs in ~20-40 s.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "cuda/allocator.h"
#include "cuda/stream.h"
#include "mamba/block.h"
#include "mamba/config.h"
#include "mamba/model.h"
#include "nn/autocast.h"
#include "nn/cross_entropy.h"
#include "nn/functional_linear.h"
#include "nn/lora/lora.h"
#include "optim/adamw.h"
#include "optim/clip.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using autograd::Variable;

constexpr int kWarmup = 2;
constexpr int kTimed = 5;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kMaxGradNorm = 1.0;
constexpr int64_t kLoraRank = 8;
constexpr double kLoraAlpha = 16;

enum class Mode { kFull, kSllLora, kFrozen };

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kFull:
      return "full";
    case Mode::kSllLora:
      return "sll_lora";
    case Mode::kFrozen:
      return "frozen";
  }
  return "?";
}

mamba::MambaConfig Mamba130mConfig(int version) {
  mamba::MambaConfig c;
  c.version = version;
  c.hidden_size = 768;
  c.num_hidden_layers = 24;
  c.expand = 2;
  c.intermediate_size = 1536;
  c.conv_kernel = 4;
  c.use_bias = false;
  c.use_conv_bias = true;
  c.vocab_size = 50280;
  c.tie_word_embeddings = true;
  if (version == 1) {
    c.state_size = 16;
    c.time_step_rank = 48;
  } else {
    c.state_size = 128;
    c.head_dim = 64;
    c.num_heads = 1536 / 64;
    c.n_groups = 1;
    c.chunk_size = 256;
    c.norm_group_size = 1536;
  }
  return c;
}

// What one benchmark trains.
struct Setup {
  Mode mode = Mode::kFull;
  std::unique_ptr<mamba::MambaForCausalLM> model;
  Tensor ids;                          // [B, L] i64 on cuda:0
  std::vector<Variable> trainable;     // what the clip and AdamW see (empty when frozen)
  std::unique_ptr<optim::AdamW> opt;   // null when frozen
  int64_t params = 0;                  // base parameters (before adapters)
  int64_t trainable_params = 0;
};

// model->Loss(ids) with the embedding output cut from its (frozen) table and made a leaf that
// requires grad: the same ops as MambaForCausalLM::Loss for a tied model without seq_idx
// (embeddings -> blocks -> add + norm_f -> tied head -> shifted cross-entropy), so the backward
// runs through every layer while no weight receives a gradient.
absl::StatusOr<Variable> FrozenLoss(const mamba::MambaForCausalLM& model, const Tensor& ids) {
  const mamba::MambaModel& backbone = model.backbone();
  const mamba::MambaConfig& c = model.config();
  if (!c.tie_word_embeddings) {
    return absl::UnimplementedError("FrozenLoss: composed for a tied LM head only");
  }
  const int64_t B = ids.size(0), L = ids.size(1), V = c.vocab_size;
  LYRA_ASSIGN_OR_RETURN(Variable embedded, backbone.embeddings().Forward(ids));
  Variable hidden(embedded.data(), /*requires_grad=*/true);
  Variable residual;
  for (int i = 0; i < backbone.num_layers(); ++i) {
    LYRA_ASSIGN_OR_RETURN(mamba::MambaBlockOutput out,
                          backbone.layer(i).Forward(hidden, residual));
    hidden = out.hidden;
    residual = out.residual;
  }
  LYRA_ASSIGN_OR_RETURN(nn::functional::ResidualNormResult normed,
                        mamba::AddRmsNorm(backbone.norm_f(), hidden, residual,
                                          c.residual_in_fp32));
  LYRA_ASSIGN_OR_RETURN(Variable w, nn::ComputeWeight(model.lm_head_weight()));
  LYRA_ASSIGN_OR_RETURN(Variable x, nn::ComputeInput(normed.y));
  if (w.dtype() != x.dtype()) {
    LYRA_ASSIGN_OR_RETURN(w, autograd::Cast(w, x.dtype()));
  }
  LYRA_ASSIGN_OR_RETURN(Variable logits, nn::functional::Linear(x, w));
  LYRA_ASSIGN_OR_RETURN(Variable shifted, autograd::Narrow(logits, 1, 0, L - 1));
  LYRA_ASSIGN_OR_RETURN(Variable flat, autograd::Reshape(shifted, {B * (L - 1), V}));
  LYRA_ASSIGN_OR_RETURN(Tensor next, ids.Narrow(1, 1, L - 1));
  LYRA_ASSIGN_OR_RETURN(Tensor next_c, next.Contiguous());
  LYRA_ASSIGN_OR_RETURN(Tensor targets, next_c.Reshape({B * (L - 1)}));
  return nn::CrossEntropy(flat, targets, nn::kDefaultIgnoreIndex, nn::Reduction::kMean);
}

absl::StatusOr<Variable> StepLoss(const Setup& s) {
  if (s.mode == Mode::kFrozen) return FrozenLoss(*s.model, s.ids);
  return s.model->Loss(s.ids);
}

// FrozenLoss must be model->Loss: both computed once (no autograd) and compared.
absl::Status CheckFrozenLossMatches(const Setup& s) {
  autograd::NoGradGuard no_grad;
  nn::AutocastGuard autocast(DType::kBF16);
  LYRA_ASSIGN_OR_RETURN(Variable composed, FrozenLoss(*s.model, s.ids));
  LYRA_ASSIGN_OR_RETURN(Variable reference, s.model->Loss(s.ids));
  LYRA_ASSIGN_OR_RETURN(std::vector<double> a, composed.data().ToDoubles());
  LYRA_ASSIGN_OR_RETURN(std::vector<double> b, reference.data().ToDoubles());
  const double diff = std::fabs(a[0] - b[0]);
  if (!(diff <= 1e-4 * std::fabs(b[0]))) {
    return absl::InternalError(absl::StrCat("FrozenLoss ", a[0], " != model->Loss ", b[0],
                                            ": the frozen floor no longer runs the model's ops"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Setup> MakeSetup(int version, Mode mode, int64_t batch, int64_t length) {
  const Device gpu = Device::Cuda(0);
  Setup s;
  s.mode = mode;
  Generator gen(0);
  LYRA_ASSIGN_OR_RETURN(s.model, mamba::MambaForCausalLM::Create(Mamba130mConfig(version), gen,
                                                                 DType::kF32, gpu));
  s.model->Train();
  s.params = s.model->NumParameters();
  LYRA_ASSIGN_OR_RETURN(s.ids, RandInt({batch, length}, 0, s.model->config().vocab_size,
                                       DType::kI64, gpu, gen));
  if (mode == Mode::kSllLora) {
    LYRA_ASSIGN_OR_RETURN(nn::LoraConfig lora, nn::LoraConfig::Preset("sll", version));
    lora.r = kLoraRank;
    lora.lora_alpha = kLoraAlpha;
    lora.lora_dropout = 0;
    LYRA_RETURN_IF_ERROR(nn::InjectLora(*s.model, lora, gen).status());
  } else if (mode == Mode::kFrozen) {
    s.model->SetRequiresGradAll(false);
    LYRA_RETURN_IF_ERROR(CheckFrozenLossMatches(s));
  }
  optim::NamedParameters named = s.model->TrainableParameters();
  s.trainable_params = s.model->NumParameters(/*trainable_only=*/true);
  if (!named.empty()) {
    for (const auto& [name, v] : named) s.trainable.push_back(v);
    LYRA_ASSIGN_OR_RETURN(s.opt, optim::AdamW::Create(std::move(named),
                                                      {.lr = 1e-4, .weight_decay = 0.01}));
  }
  return s;
}

// One training step (see the file comment); queues work on cuda:0's current stream.
absl::Status TrainStep(Setup& s) {
  {
    nn::AutocastGuard autocast(DType::kBF16);
    LYRA_ASSIGN_OR_RETURN(Variable loss, StepLoss(s));
    LYRA_RETURN_IF_ERROR(loss.Backward());
  }
  if (s.opt != nullptr) {
    LYRA_RETURN_IF_ERROR(optim::ClipGradNorm(s.trainable, kMaxGradNorm).status());
    LYRA_RETURN_IF_ERROR(s.opt->Step());
  }
  s.model->ZeroGrad();
  return absl::OkStatus();
}

struct StepStats {
  double median_ms = 0;
  int64_t peak_allocated = 0;  // max over the timed steps
  int64_t peak_reserved = 0;
  int64_t resident = 0;        // allocated before the first timed step
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Warm-up steps, then one event-timed step per iteration of `state`, the allocator's peaks reset
// before each.
absl::StatusOr<StepStats> TimeSteps(benchmark::State& state, Setup& s) {
  for (int i = 0; i < kWarmup; ++i) LYRA_RETURN_IF_ERROR(TrainStep(s));
  LYRA_RETURN_IF_ERROR(cuda::Synchronize(0));
  cuda::CachingAllocator& allocator = cuda::CachingAllocator::ForDevice(0);
  LYRA_ASSIGN_OR_RETURN(cuda::Event start, cuda::Event::Create(0));
  LYRA_ASSIGN_OR_RETURN(cuda::Event stop, cuda::Event::Create(0));
  const cudaStream_t stream = cuda::CurrentStream(0);
  StepStats stats;
  stats.resident = allocator.Stats().allocated_bytes;
  std::vector<double> times;
  for (auto _ : state) {
    allocator.ResetPeakStats();
    LYRA_RETURN_IF_ERROR(start.Record(stream));
    LYRA_RETURN_IF_ERROR(TrainStep(s));
    LYRA_RETURN_IF_ERROR(stop.Record(stream));
    LYRA_RETURN_IF_ERROR(stop.Synchronize());
    LYRA_ASSIGN_OR_RETURN(float ms, stop.ElapsedMsSince(start));
    const cuda::MemoryStats m = allocator.Stats();
    stats.peak_allocated = std::max(stats.peak_allocated, m.peak_allocated_bytes);
    stats.peak_reserved = std::max(stats.peak_reserved, m.peak_reserved_bytes);
    times.push_back(ms);
    state.SetIterationTime(ms / 1e3);
  }
  if (times.empty()) return absl::InternalError("no timed step ran");
  stats.median_ms = Median(std::move(times));
  return stats;
}

// Median frozen step time per (version, batch, length), for sll_lora's adapter_overhead.
std::map<std::tuple<int, int64_t, int64_t>, double>& FrozenMs() {
  static auto* frozen = new std::map<std::tuple<int, int64_t, int64_t>, double>();
  return *frozen;
}

void BM_TrainStep(benchmark::State& state, int version, Mode mode) {
  if (bench::SkipWithoutGpu(state)) return;
  const int64_t batch = state.range(0), length = state.range(1);
  if (absl::Status s = cuda::CachingAllocator::ForDevice(0).EmptyCache(); !s.ok()) {
    return bench::Fail(state, s);
  }
  absl::StatusOr<Setup> setup = MakeSetup(version, mode, batch, length);
  if (!setup.ok()) return bench::Fail(state, setup.status());
  absl::StatusOr<StepStats> stats = TimeSteps(state, *setup);
  if (!stats.ok()) return bench::Fail(state, stats.status());

  const double tokens = static_cast<double>(batch * length);
  const double seconds = stats->median_ms / 1e3;
  const double flops = (mode == Mode::kFull ? 6.0 : 4.0) * setup->params * tokens;
  state.counters["tokens_per_s"] = tokens / seconds;
  state.counters["ms_per_step"] = stats->median_ms;
  state.counters["TFLOP/s"] = flops / 1e12 / seconds;
  state.counters["peak_GiB"] = stats->peak_allocated / kGiB;
  state.counters["peak_bytes_per_token"] = stats->peak_allocated / tokens;
  state.counters["resident_GiB"] = stats->resident / kGiB;
  state.counters["reserved_GiB"] = stats->peak_reserved / kGiB;
  state.counters["trainable_params"] = static_cast<double>(setup->trainable_params);
  state.counters["params"] = static_cast<double>(setup->params);

  const auto key = std::make_tuple(version, batch, length);
  std::string overhead;
  if (mode == Mode::kFrozen) FrozenMs()[key] = stats->median_ms;
  if (mode == Mode::kSllLora && FrozenMs().count(key) > 0) {
    const double fraction = (stats->median_ms - FrozenMs()[key]) / stats->median_ms;
    state.counters["adapter_overhead"] = fraction;
    overhead = absl::StrCat(", adapters ", fraction * 100, "% over frozen (target <= 15%)");
  }
  // One line in the shape of benchmarks/compare/lora_train_step_torch.py's.
  std::printf(
      "lyra mamba%d %s bf16 autocast B=%lld L=%lld: %.0f tokens/s, %.2f ms/step (median of %d), "
      "peak %.2f GiB (%.0f bytes/token), trainable %lld of %lld%s\n",
      version, ModeName(mode), static_cast<long long>(batch), static_cast<long long>(length),
      tokens / seconds, stats->median_ms, kTimed, stats->peak_allocated / kGiB,
      stats->peak_allocated / tokens, static_cast<long long>(setup->trainable_params),
      static_cast<long long>(setup->params), overhead.c_str());
  std::fflush(stdout);
}

// Frozen before sll_lora at each shape (benchmarks run in registration order), so that
// sll_lora can report its overhead over the floor.
BENCHMARK_CAPTURE(BM_TrainStep, mamba1_frozen, 1, Mode::kFrozen)
    ->Args({8, 512})
    ->Args({8, 2048})
    ->Iterations(kTimed)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TrainStep, mamba1_sll_lora, 1, Mode::kSllLora)
    ->Args({8, 512})
    ->Args({8, 2048})
    ->Iterations(kTimed)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TrainStep, mamba1_full, 1, Mode::kFull)
    ->Args({8, 512})
    ->Args({8, 2048})
    ->Iterations(kTimed)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TrainStep, mamba2_frozen, 2, Mode::kFrozen)
    ->Args({8, 2048})
    ->Iterations(kTimed)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TrainStep, mamba2_sll_lora, 2, Mode::kSllLora)
    ->Args({8, 2048})
    ->Iterations(kTimed)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_TrainStep, mamba2_full, 2, Mode::kFull)
    ->Args({8, 2048})
    ->Iterations(kTimed)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lyra
