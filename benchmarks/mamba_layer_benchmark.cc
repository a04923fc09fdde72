// GPU time of one 130M-shaped Mamba-1 or Mamba-2 layer forward and forward + backward, in bf16
// under nn::AutocastGuard with FP32 master weights and an FP32 input, as a training step runs
// it:
//   version 1: mamba::MambaMixer (in_proj, causal conv + SiLU, x_proj, dt_proj, selective scan
//              with z / D / dt bias + softplus, out_proj; the fused inner path)
//   version 2: mamba::Mamba2Mixer (in_proj, conv + SiLU over x/B/C, SSD with D / dt bias +
//              softplus, gated RMSNorm, out_proj; the fused Mamba2Inner path)
// Their PyTorch counterparts, run in the same GPU session:
//
//   benchmarks/compare/mamba_layer_torch.py   transformers' MambaMixer at the same shape and
//                                             precision (pure-PyTorch path: mamba_ssm is not
//                                             installed on the GPU machine)
//   benchmarks/compare/ssd_torch.py           transformers' Mamba2Mixer (last line)
//
// Shapes: Mamba-1 M = 768, D = 1536, N = 16, K = 4, R = 48 (no in/out_proj bias, conv bias: the
// state-spaces/mamba-130m-hf layout); Mamba-2 M = 768, D = 1536, H = 24, P = 64, N = 128, G = 1,
// chunk 256, K = 4 (mamba2-130m); B = 8, L = 2048.
//
//   BM_MambaLayerForward/V/B/L           under NoGradGuard
//   BM_MambaLayerForwardBackward/V/B/L   forward, then backward of a random bf16 dy [B, L, M]:
//                                        gradients of the input and of every parameter
// The forward+backward benchmark also prints one summary line with both medians, in the shape
// of the PyTorch script's line (a forward not run, e.g. filtered out, shows as -1).
//
// FLOPs counted (the matmuls, T = B L tokens): Mamba-1 in_proj 2 T M 2D, x_proj 2 T D (R + 2N),
// dt_proj 2 T R D, out_proj 2 T D M: 2 T (4 M D + D (R + 2N) + R D) = 122 GFLOP forward at this
// shape (~0.15 ms at ~790 TFLOP/s bf16); Mamba-2 in_proj 2 T M (2D + 2GN + H), out_proj
// 2 T D M = 103 GFLOP, plus the SSD's ~27 GFLOP (see ssd_benchmark.cc); the backward does twice
// that. The scan's 403M exponentials
// (B D N L; ~0.1 ms, see selective_scan_benchmark.cc) and the elementwise traffic come on top.
// Timing: CUDA events on cuda:0's current stream after an L2 flush (bench::GpuTimer), 2 warm-up
// launches, then 10 timed ones (the PyTorch script does not flush L2: at these sizes — 50 MB
// of input alone — the flush changes little, and only ever in PyTorch's favour).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "cuda/stream.h"
#include "mamba/config.h"
#include "mamba/mamba2_mixer.h"
#include "mamba/mixer.h"
#include "nn/autocast.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using autograd::Variable;

constexpr int kWarmup = 2;
constexpr int kTimed = 10;

mamba::MambaConfig Mamba130mConfig() {
  mamba::MambaConfig c;
  c.hidden_size = 768;
  c.state_size = 16;
  c.expand = 2;
  c.intermediate_size = 1536;
  c.conv_kernel = 4;
  c.time_step_rank = 48;
  c.use_bias = false;
  c.use_conv_bias = true;
  c.num_hidden_layers = 24;
  c.vocab_size = 50280;
  return c;
}

mamba::MambaConfig Mamba2_130mConfig() {
  mamba::MambaConfig c = Mamba130mConfig();
  c.version = 2;
  c.state_size = 128;
  c.head_dim = 64;
  c.num_heads = 24;
  c.n_groups = 1;
  c.chunk_size = 256;
  c.use_conv_bias = true;
  return c;
}

// Matmul FLOPs of one forward (see the header comment).
double ForwardFlops(const mamba::MambaConfig& c, int64_t tokens) {
  const double M = c.hidden_size, D = c.intermediate_size, N = c.state_size,
               R = c.time_step_rank;
  if (c.version == 2) {
    return 2.0 * tokens * M * (2 * D + 2 * c.n_groups * N + c.num_heads) + 2.0 * tokens * D * M;
  }
  return 2.0 * tokens * (4 * M * D + D * (R + 2 * N) + R * D);
}

struct Layer {
  mamba::MambaConfig config;
  std::unique_ptr<mamba::SequenceMixer> mixer;
  Variable x;  // [B, L, M] f32, requires grad
  Tensor dy;   // [B, L, M] in the output's dtype
};

absl::StatusOr<Layer> MakeLayer(int version, int64_t batch, int64_t length) {
  Layer layer;
  layer.config = version == 2 ? Mamba2_130mConfig() : Mamba130mConfig();
  LYRA_RETURN_IF_ERROR(layer.config.Validate());
  const Device gpu = Device::Cuda(0);
  Generator gen(0);
  if (version == 2) {
    LYRA_ASSIGN_OR_RETURN(layer.mixer,
                          mamba::Mamba2Mixer::Create(layer.config, gen, DType::kF32, gpu));
  } else {
    LYRA_ASSIGN_OR_RETURN(layer.mixer,
                          mamba::MambaMixer::Create(layer.config, gen, DType::kF32, gpu));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor x,
                        Randn({batch, length, layer.config.hidden_size}, DType::kF32, gpu, gen));
  layer.x = Variable(x, /*requires_grad=*/true);
  LYRA_ASSIGN_OR_RETURN(layer.dy, Randn({batch, length, layer.config.hidden_size},
                                        DType::kBF16, gpu, gen));
  return layer;
}

// Times `launch` kWarmup + kTimed times; one iteration of `state` per timed launch. Returns the
// median milliseconds, or a negative value after marking the benchmark failed.
double TimeMedian(benchmark::State& state, const std::function<absl::Status()>& launch) {
  auto fail = [&](const absl::Status& status) {
    bench::Fail(state, status);
    return -1.0;
  };
  absl::StatusOr<bench::GpuTimer> timer = bench::GpuTimer::Create();
  if (!timer.ok()) return fail(timer.status());
  for (int i = 0; i < kWarmup; ++i) {
    if (absl::Status s = launch(); !s.ok()) return fail(s);
  }
  if (absl::Status s = cuda::Synchronize(0); !s.ok()) return fail(s);
  std::vector<double> times;
  for (auto _ : state) {
    absl::StatusOr<float> ms = timer->Time(launch);
    if (!ms.ok()) return fail(ms.status());
    times.push_back(*ms);
    state.SetIterationTime(*ms / 1e3);
  }
  if (times.empty()) return -1;
  std::sort(times.begin(), times.end());
  const size_t n = times.size();
  return n % 2 == 1 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
}

// The forward's median per version, printed with the forward+backward's in one line (benchmarks
// run in registration order: the forwards first).
double g_forward_ms[3] = {-1, -1, -1};

void Report(benchmark::State& state, double ms, double flops) {
  if (ms <= 0) return;
  state.counters["median_ms"] = ms;
  state.counters["matmul_TFLOP/s"] = flops / 1e12 / (ms / 1e3);
}

// One line in the shape of benchmarks/compare/mamba_layer_torch.py's.
void PrintSummary(const Layer& layer, double forward_ms, double forward_backward_ms) {
  const mamba::MambaConfig& c = layer.config;
  if (c.version == 2) {
    std::printf(
        "lyra Mamba2Mixer [fused inner path] bf16 autocast B=%lld L=%lld M=%lld D=%lld H=%lld "
        "P=%lld N=%lld G=%lld chunk=%lld: forward %.3f ms, forward+backward %.3f ms (median of "
        "%d)\n",
        static_cast<long long>(layer.x.size(0)), static_cast<long long>(layer.x.size(1)),
        static_cast<long long>(c.hidden_size), static_cast<long long>(c.intermediate_size),
        static_cast<long long>(c.num_heads), static_cast<long long>(c.head_dim),
        static_cast<long long>(c.state_size), static_cast<long long>(c.n_groups),
        static_cast<long long>(c.chunk_size), forward_ms, forward_backward_ms, kTimed);
    std::fflush(stdout);
    return;
  }
  std::printf(
      "lyra MambaMixer [fused inner path] bf16 autocast B=%lld L=%lld M=%lld D=%lld N=%lld "
      "K=%lld R=%lld: forward %.3f ms, forward+backward %.3f ms (median of %d)\n",
      static_cast<long long>(layer.x.size(0)), static_cast<long long>(layer.x.size(1)),
      static_cast<long long>(c.hidden_size), static_cast<long long>(c.intermediate_size),
      static_cast<long long>(c.state_size), static_cast<long long>(c.conv_kernel),
      static_cast<long long>(c.time_step_rank), forward_ms, forward_backward_ms, kTimed);
  std::fflush(stdout);
}

void BM_MambaLayerForward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int version = static_cast<int>(state.range(0));
  absl::StatusOr<Layer> layer = MakeLayer(version, state.range(1), state.range(2));
  if (!layer.ok()) return bench::Fail(state, layer.status());
  auto forward = [&]() -> absl::Status {
    autograd::NoGradGuard no_grad;
    nn::AutocastGuard autocast(DType::kBF16);
    LYRA_ASSIGN_OR_RETURN(Variable y, layer->mixer->Forward(layer->x));
    return absl::OkStatus();
  };
  const double ms = TimeMedian(state, forward);
  Report(state, ms, ForwardFlops(layer->config, layer->x.size(0) * layer->x.size(1)));
  g_forward_ms[version] = ms;
}

void BM_MambaLayerForwardBackward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int version = static_cast<int>(state.range(0));
  absl::StatusOr<Layer> layer = MakeLayer(version, state.range(1), state.range(2));
  if (!layer.ok()) return bench::Fail(state, layer.status());
  auto forward_backward = [&]() -> absl::Status {
    layer->mixer->ZeroGrad();
    layer->x.ZeroGrad();
    Variable y;
    {
      nn::AutocastGuard autocast(DType::kBF16);
      LYRA_ASSIGN_OR_RETURN(y, layer->mixer->Forward(layer->x));
    }
    if (y.dtype() != layer->dy.dtype()) {
      LYRA_ASSIGN_OR_RETURN(layer->dy, layer->dy.To(y.dtype()));
    }
    return y.Backward(layer->dy);
  };
  const double ms = TimeMedian(state, forward_backward);
  Report(state, ms, 3 * ForwardFlops(layer->config, layer->x.size(0) * layer->x.size(1)));
  if (ms > 0) PrintSummary(*layer, g_forward_ms[version], ms);
}

BENCHMARK(BM_MambaLayerForward)
    ->ArgNames({"V", "B", "L"})
    ->Args({1, 8, 2048})
    ->Args({2, 8, 2048})
    ->Iterations(kTimed)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MambaLayerForwardBackward)
    ->ArgNames({"V", "B", "L"})
    ->Args({1, 8, 2048})
    ->Args({2, 8, 2048})
    ->Iterations(kTimed)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lyra
