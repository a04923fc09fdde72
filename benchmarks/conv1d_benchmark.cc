// GPU bandwidth of the causal depthwise conv1d (cuda/conv1d.h) at a Mamba-1 370m-like size:
// B = 8, D = 1536, L = 2048, K = 4, bf16 activations, f32 weights and bias, SiLU, for x stored
// channel-first ([B, D, L], Mamba-1) and channel-last (a [B, L, D] buffer transposed, Mamba-2).
//
//   BM_CausalConv1dForwardNaive/<layout>     version 1: a thread per output, global loads
//   BM_CausalConv1dForward/<layout>          the tiled kernel (through the tensor API)
//   BM_CausalConv1dBackward/<layout>         backward: dx, dweight, dbias (recomputing SiLU)
//   BM_CausalConv1dForwardBackward/<layout>  forward then backward, as in a training step
//
// Bytes counted, N = B * D * L elements of 2 bytes (the weights, 1536 * 5 * 4 bytes, and the
// backward's dweight partials, a few MB, are left out):
//   forward:          2 * N * 2   (read x, write y)                 = 100.7 MB
//   backward:         3 * N * 2   (read x and dy, write dx)         = 151.0 MB
//   forward+backward: 5 * N * 2                                     = 251.7 MB
// Napkin math on an H200 (4.8 TB/s peak, ~4 TB/s for a copy): the forward is ~25 us at copy
// speed, forward+backward ~63 us. The FLOPs (2 K + SiLU per output) are negligible, so every
// benchmark reports `copy_fraction`: its GB/s over a device-to-device copy of the same bytes
// timed in this binary (1.0 = copy speed).
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "cuda/conv1d.h"
#include "cuda/stream.h"
#include "nn/conv1d.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using bench::Fail;
using bench::RunTimed;
using bench::SkipWithoutGpu;

constexpr int64_t kBatch = 8;       // B
constexpr int64_t kChannels = 1536;  // D
constexpr int64_t kLength = 2048;   // L
constexpr int64_t kWidth = 4;       // K
constexpr DType kDType = DType::kBF16;
constexpr Device kGpu = Device::Cuda(0);
constexpr double kElements = static_cast<double>(kBatch * kChannels * kLength);
constexpr double kElementBytes = 2;

enum Layout : int { kChannelFirst = 0, kChannelLast = 1 };

struct Problem {
  Tensor x;       // [B, D, L] in the layout
  Tensor dy;      // [B, D, L] in the layout
  Tensor weight;  // [D, 1, K] f32
  Tensor bias;    // [D] f32
};

// A [B, D, L] bf16 tensor of standard normals in `layout`.
absl::StatusOr<Tensor> Sequence(Layout layout, Generator& gen) {
  if (layout == kChannelFirst) return Randn({kBatch, kChannels, kLength}, kDType, kGpu, gen);
  LYRA_ASSIGN_OR_RETURN(Tensor t, Randn({kBatch, kLength, kChannels}, kDType, kGpu, gen));
  return t.Transpose(1, 2);
}

absl::StatusOr<Problem> MakeProblem(Layout layout) {
  Generator gen(1);
  Problem p;
  LYRA_ASSIGN_OR_RETURN(p.x, Sequence(layout, gen));
  LYRA_ASSIGN_OR_RETURN(p.dy, Sequence(layout, gen));
  LYRA_ASSIGN_OR_RETURN(p.weight, Rand({kChannels, 1, kWidth}, DType::kF32, kGpu, gen, -0.5, 0.5));
  LYRA_ASSIGN_OR_RETURN(p.bias, Rand({kChannels}, DType::kF32, kGpu, gen, -0.5, 0.5));
  return p;
}

// The naive kernel's parameters for `p` writing `y` (same layout as x).
cuda::CausalConv1dParams NaiveParams(const Problem& p, const Tensor& y) {
  cuda::CausalConv1dParams c;
  c.batch = kBatch;
  c.channels = kChannels;
  c.length = kLength;
  c.width = kWidth;
  c.silu = true;
  c.x = p.x.data();
  c.dtype = kDType;
  c.x_stride_b = p.x.stride(0);
  c.x_stride_d = p.x.stride(1);
  c.x_stride_l = p.x.stride(2);
  c.weight = p.weight.data();
  c.weight_dtype = DType::kF32;
  c.weight_stride_d = p.weight.stride(0);
  c.weight_stride_k = p.weight.stride(2);
  c.bias = p.bias.data();
  c.bias_stride = p.bias.stride(0);
  c.y = y.data();
  c.y_stride_b = y.stride(0);
  c.y_stride_d = y.stride(1);
  c.y_stride_l = y.stride(2);
  return c;
}

void Report(benchmark::State& state, const std::function<absl::Status()>& launch,
            double bytes) {
  const double ms = RunTimed(state, launch, bytes);
  if (ms > 0) bench::ReportCopyFraction(state, bytes, ms);
}

void BM_CausalConv1dForwardNaive(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  const Layout layout = static_cast<Layout>(state.range(0));
  absl::StatusOr<Problem> p = MakeProblem(layout);
  if (!p.ok()) return Fail(state, p.status());
  Generator gen(2);
  absl::StatusOr<Tensor> y = Sequence(layout, gen);  // the output, in x's layout
  if (!y.ok()) return Fail(state, y.status());
  const cuda::CausalConv1dParams params = NaiveParams(*p, *y);
  Report(state, [&] { return cuda::CausalConv1dNaiveCuda(params, cuda::CurrentStream(0)); },
         2 * kElements * kElementBytes);
}

void BM_CausalConv1dForward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(static_cast<Layout>(state.range(0)));
  if (!p.ok()) return Fail(state, p.status());
  Report(
      state,
      [&]() -> absl::Status {
        return CausalConv1d(p->x, p->weight, p->bias, Conv1dActivation::kSilu).status();
      },
      2 * kElements * kElementBytes);
}

void BM_CausalConv1dBackward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(static_cast<Layout>(state.range(0)));
  if (!p.ok()) return Fail(state, p.status());
  Report(
      state,
      [&]() -> absl::Status {
        return CausalConv1dBackward(p->x, p->weight, p->bias, p->dy, Conv1dActivation::kSilu)
            .status();
      },
      3 * kElements * kElementBytes);
}

void BM_CausalConv1dForwardBackward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(static_cast<Layout>(state.range(0)));
  if (!p.ok()) return Fail(state, p.status());
  Report(
      state,
      [&]() -> absl::Status {
        LYRA_RETURN_IF_ERROR(
            CausalConv1d(p->x, p->weight, p->bias, Conv1dActivation::kSilu).status());
        return CausalConv1dBackward(p->x, p->weight, p->bias, p->dy, Conv1dActivation::kSilu)
            .status();
      },
      5 * kElements * kElementBytes);
}

#define LYRA_CONV1D_BENCHMARK(fn)                                                     \
  BENCHMARK(fn)                                                                       \
      ->ArgName("channel_last")                                                       \
      ->Arg(kChannelFirst)                                                            \
      ->Arg(kChannelLast)                                                             \
      ->UseManualTime()                                                               \
      ->Unit(benchmark::kMicrosecond)

LYRA_CONV1D_BENCHMARK(BM_CausalConv1dForwardNaive);
LYRA_CONV1D_BENCHMARK(BM_CausalConv1dForward);
LYRA_CONV1D_BENCHMARK(BM_CausalConv1dBackward);
LYRA_CONV1D_BENCHMARK(BM_CausalConv1dForwardBackward);

}  // namespace
}  // namespace lyra
