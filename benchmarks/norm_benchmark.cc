// GPU bandwidth of the fused RMSNorm-with-residual and LayerNorm kernels (cuda/norm_kernels.cuh)
// through the tensor-level API (nn/rms_norm.h, nn/layer_norm.h), bf16 x with an f32 residual,
// rows = 16384 (B * L of a 16 x 1024 batch), H = 768 (mamba-130m) and 2048 (mamba-1.4b).
//
//   BM_RmsNormForward     y, residual_out = RMSNorm(x + residual) * weight
//   BM_RmsNormBackward    dx, dresidual, dweight from dy, dresidual_out, residual_out, rstd
//   BM_LayerNormForward / BM_LayerNormBackward   the same with mean, bias and dbias
//
// Bytes counted (each element read or written once; the second read of a row in each kernel hits
// L1/L2 and is not counted; the (blocks, H) dweight partials stay in L2 and are not counted):
//   forward:   rows * H * (2 [x] + 4 [residual] + 2 [y] + 4 [residual_out])
//              + H * 4 [weight] (+ H * 4 [bias]) + rows * 4 [rstd] (+ rows * 4 [mean])
//   backward:  rows * H * (2 [dy] + 4 [dresidual_out] + 4 [h] + 2 [dx] + 4 [dresidual])
//              + H * 4 [weight, dweight each] (+ H * 4 [dbias]) + rows * 4 [rstd] (+ mean)
// Napkin math on an H200 (4.8 TB/s HBM3e): forward at H = 2048 moves 403 MB, ~90 us at 90% of
// peak; the backward 537 MB, ~125 us.
//
// Each benchmark also times a device-to-device cudaMemcpyAsync that moves the same number of
// bytes (bytes / 2 read + bytes / 2 written) and reports copy_GB/s and copy_fraction = kernel
// GB/s / copy GB/s, the achievable ceiling measured in the same binary on the same GPU.
//
// Timing (benchmarks/gpu_benchmark.h): CUDA events around each call on cuda:0's current stream
// (no host sync inside the timed region), warm-up calls first, an L2 flush before every timed
// call. The timed call includes the tensor-level wrapper's output allocations (cached) and, for
// the backward, the dweight partials' scratch and the column-sum kernel. Without a GPU every
// benchmark reports an error and skips.
#include <benchmark/benchmark.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "benchmarks/norm_benchmark_util.h"
#include "nn/layer_norm.h"
#include "nn/rms_norm.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using bench::GpuFilled;
using bench::TimedAgainstCopy;

constexpr int64_t kRows = 16384;
constexpr double kEps = 1e-5;

// The operands of one benchmark: bf16 activations, f32 residual stream and parameters.
struct Operands {
  Tensor x, residual, weight, bias, dy, dresidual_out;
  nn::functional::NormForwardResult forward;
};

absl::StatusOr<Operands> MakeOperands(int64_t H, bool layer) {
  Operands o;
  LYRA_ASSIGN_OR_RETURN(o.x, GpuFilled({kRows, H}, DType::kBF16, 0.5));
  LYRA_ASSIGN_OR_RETURN(o.residual, GpuFilled({kRows, H}, DType::kF32, 0.25));
  LYRA_ASSIGN_OR_RETURN(o.weight, GpuFilled({H}, DType::kF32, 1.0));
  if (layer) {
    LYRA_ASSIGN_OR_RETURN(o.bias, GpuFilled({H}, DType::kF32, 0.0));
  }
  LYRA_ASSIGN_OR_RETURN(o.dy, GpuFilled({kRows, H}, DType::kBF16, 0.125));
  LYRA_ASSIGN_OR_RETURN(o.dresidual_out, GpuFilled({kRows, H}, DType::kF32, 0.0625));
  if (layer) {
    LYRA_ASSIGN_OR_RETURN(o.forward, nn::functional::LayerNormForward(o.x, o.residual, o.weight,
                                                                      o.bias, kEps, true));
  } else {
    LYRA_ASSIGN_OR_RETURN(
        o.forward, nn::functional::RmsNormForward(o.x, o.residual, o.weight, kEps, true));
  }
  return o;
}

double ForwardBytes(int64_t H, bool layer) {
  const double rows = kRows;
  return rows * H * (2 + 4 + 2 + 4) + H * 4.0 * (layer ? 2 : 1) + rows * 4.0 * (layer ? 2 : 1);
}

double BackwardBytes(int64_t H, bool layer) {
  const double rows = kRows;
  return rows * H * (2 + 4 + 4 + 2 + 4) + H * 8.0 + (layer ? H * 4.0 : 0) +
         rows * 4.0 * (layer ? 2 : 1);
}

void BM_RmsNormForward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int64_t H = state.range(0);
  absl::StatusOr<Operands> o = MakeOperands(H, false);
  if (!o.ok()) return bench::Fail(state, o.status());
  TimedAgainstCopy(state, [&] {
    return nn::functional::RmsNormForward(o->x, o->residual, o->weight, kEps, true).status();
  }, ForwardBytes(H, false));
}

void BM_RmsNormBackward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int64_t H = state.range(0);
  absl::StatusOr<Operands> o = MakeOperands(H, false);
  if (!o.ok()) return bench::Fail(state, o.status());
  TimedAgainstCopy(state, [&] {
    return nn::functional::RmsNormBackward(o->dy, o->dresidual_out, o->forward.residual_out,
                                           o->weight, o->forward.rstd, true)
        .status();
  }, BackwardBytes(H, false));
}

void BM_LayerNormForward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int64_t H = state.range(0);
  absl::StatusOr<Operands> o = MakeOperands(H, true);
  if (!o.ok()) return bench::Fail(state, o.status());
  TimedAgainstCopy(state, [&] {
    return nn::functional::LayerNormForward(o->x, o->residual, o->weight, o->bias, kEps, true)
        .status();
  }, ForwardBytes(H, true));
}

void BM_LayerNormBackward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int64_t H = state.range(0);
  absl::StatusOr<Operands> o = MakeOperands(H, true);
  if (!o.ok()) return bench::Fail(state, o.status());
  TimedAgainstCopy(state, [&] {
    return nn::functional::LayerNormBackward(o->dy, o->dresidual_out, o->forward.residual_out,
                                             o->weight, o->forward.mean, o->forward.rstd,
                                             o->bias, true)
        .status();
  }, BackwardBytes(H, true));
}

#define LYRA_NORM_BENCHMARK(fn) \
  BENCHMARK(fn)->Arg(768)->Arg(2048)->UseManualTime()->Unit(benchmark::kMicrosecond)

LYRA_NORM_BENCHMARK(BM_RmsNormForward);
LYRA_NORM_BENCHMARK(BM_RmsNormBackward);
LYRA_NORM_BENCHMARK(BM_LayerNormForward);
LYRA_NORM_BENCHMARK(BM_LayerNormBackward);

}  // namespace
}  // namespace lyra
