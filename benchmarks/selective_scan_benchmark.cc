// GPU time of the Mamba-1 selective scan (cuda/selective_scan.h) at the reference shape
// B = 8, D = 1536, N = 16, G = 1, with z, D, delta_bias and delta softplus, L in {512, 2048, 8192},
// u / delta / z / B / C in bf16 (mamba_ssm's training setting) or f32; A, D, bias f32.
//
//   BM_SelectiveScanForwardNaive/<dtype>/<L>   version 1: a thread per (b, d), global loads
//   BM_SelectiveScanForward/<dtype>/<L>        the chunked kernel (through the tensor API; it
//                                              also saves the chunk states for the backward)
//   BM_SelectiveScanBackward/<dtype>/<L>       backward from the saved chunk states
//   BM_SelectiveScanForwardBackward/<dtype>/<L> both, as in a training step
// dtype: 0 = bf16, 1 = f32.
//
// Bytes counted (E = B D L elements of e bytes, S = B N L elements of B or C, K = B D N L / 64
// f32 chunk-state elements):
//   forward:  reads u, delta, z, B, C, writes y and the chunk states: 4 E e + 2 S e + 4 K
//   backward: reads u, delta, z, dy, B, C, the chunk states, writes du, ddelta, dz, dB, dC:
//             7 E e + 4 S e + 4 K  (the per-block dB / dC partials, 2 S 4 (D / 32) written and
//             read again, are extra traffic not counted)
// At L = 2048, bf16: the forward moves 202 MB + 25 MB of chunk states: ~0.05 ms at 4.3 TB/s.
// The arithmetic is B D N L = 403M exponentials (MUFU ex2: 16 per SM per clock, 132 SMs at
// ~1.9 GHz: ~0.1 ms) and ~4 FMAs each: the forward is bound by the exponentials, not by memory;
// the backward does 2x the exponentials (it recomputes the states twice) and ~3x the FMAs.
// Reference (mamba_ssm on an H100, ../shared/reference): forward 0.48 ms, fwd+bwd 2.51 ms at
// L = 2048, bf16.
//
// Measured on an H200 (2026-12-01, this binary, median of the timed launches), ms, with the
// polynomial softplus and approximate-reciprocal sigmoid used while staging:
//                        bf16 L=512  2048   8192 |  f32 L=512  2048   8192
//   forward naive (v1)          -    6.09     -  |        -      -      -
//   forward                  0.100  0.363  1.42  |    0.082  0.298  1.16
//   backward                 0.375  1.45   5.75  |    0.365  1.41   5.56
//   forward + backward       0.467  1.80   7.16  |    0.442  1.70   6.72
// Before it (log1pf softplus, IEEE-divide sigmoid) at L = 2048: bf16 forward 0.401, backward
// 1.57, fwd+bwd 1.96; f32 0.325 / 1.52 / 1.84 ms.
// The select-free step loop at L = 2048: bf16 forward 0.438 -> 0.401, backward 1.61 -> 1.57;
// f32 forward 0.393 -> 0.325, backward 1.58 -> 1.52 ms.
// Earlier versions at bf16 L = 2048: tiles staged tile-by-tile with one shuffle reduction per
// step: forward 0.520 ms; register-staged, prefetched tiles and grouped y reductions: 0.458 ms
// (fwd+bwd 2.15); float4 reads of 4 steps and conflict-free (68-float) tile pitch: 0.438 ms
// (fwd+bwd 2.04). Both stay ~4x above the exponential floor (~0.1 ms): the step loop is bound
// by shared-memory loads of B / C (two 16-byte loads per thread and step) and latency with ~12
// warps per SM; a layout where a thread holds one state slice of several channels (B / C loaded
// once for them) is the next step.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cmath>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "cuda/selective_scan.h"
#include "cuda/stream.h"
#include "mamba/selective_scan.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using bench::Fail;
using bench::RunTimed;
using bench::SkipWithoutGpu;

constexpr int64_t kBatch = 8;    // B
constexpr int64_t kDim = 1536;   // D
constexpr int64_t kState = 16;   // N
constexpr Device kGpu = Device::Cuda(0);

struct Problem {
  mamba::SelectiveScanInputs in;
  Tensor dy;
  int64_t length = 0;
  DType dtype = DType::kBF16;
};

absl::StatusOr<Problem> MakeProblem(benchmark::State& state) {
  Problem p;
  p.dtype = state.range(0) == 0 ? DType::kBF16 : DType::kF32;
  p.length = state.range(1);
  Generator gen(1);
  const Shape bdl = {kBatch, kDim, p.length};
  LYRA_ASSIGN_OR_RETURN(p.in.u, Randn(bdl, p.dtype, kGpu, gen));
  LYRA_ASSIGN_OR_RETURN(p.in.delta, Rand(bdl, p.dtype, kGpu, gen, -1.0, 1.0));
  LYRA_ASSIGN_OR_RETURN(p.in.z, Randn(bdl, p.dtype, kGpu, gen));
  LYRA_ASSIGN_OR_RETURN(p.in.B, Randn({kBatch, 1, kState, p.length}, p.dtype, kGpu, gen));
  LYRA_ASSIGN_OR_RETURN(p.in.C, Randn({kBatch, 1, kState, p.length}, p.dtype, kGpu, gen));
  // A = -(1 .. N) per channel, the S4D-real initialisation of Mamba.
  std::vector<double> a(kDim * kState);
  for (int64_t d = 0; d < kDim; ++d) {
    for (int64_t n = 0; n < kState; ++n) a[d * kState + n] = -static_cast<double>(n + 1);
  }
  LYRA_ASSIGN_OR_RETURN(Tensor a_cpu, Tensor::FromDoubles(a, {kDim, kState}, DType::kF32));
  LYRA_ASSIGN_OR_RETURN(p.in.A, a_cpu.To(kGpu));
  LYRA_ASSIGN_OR_RETURN(p.in.D, Rand({kDim}, DType::kF32, kGpu, gen, 0.5, 1.5));
  LYRA_ASSIGN_OR_RETURN(p.in.delta_bias, Rand({kDim}, DType::kF32, kGpu, gen, -4.0, -2.0));
  LYRA_ASSIGN_OR_RETURN(p.dy, Randn(bdl, p.dtype, kGpu, gen));
  return p;
}

double ForwardBytes(const Problem& p) {
  const double e = static_cast<double>(DTypeSize(p.dtype));
  const double E = kBatch * kDim * p.length, S = kBatch * kState * p.length;
  const double K = kBatch * kDim * kState * (p.length / 64.0);
  return 4 * E * e + 2 * S * e + 4 * K;
}

double BackwardBytes(const Problem& p) {
  const double e = static_cast<double>(DTypeSize(p.dtype));
  const double E = kBatch * kDim * p.length, S = kBatch * kState * p.length;
  const double K = kBatch * kDim * kState * (p.length / 64.0);
  return 7 * E * e + 4 * S * e + 4 * K;
}

void Report(benchmark::State& state, const std::function<absl::Status()>& launch, double bytes) {
  const double ms = RunTimed(state, launch, bytes);
  if (ms > 0) {
    state.counters["ms"] = ms;
    bench::ReportCopyFraction(state, bytes, ms);
  }
}

void BM_SelectiveScanForwardNaive(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state);
  if (!p.ok()) return Fail(state, p.status());
  absl::StatusOr<Tensor> y = Tensor::Empty(p->in.u.shape(), p->dtype, kGpu);
  if (!y.ok()) return Fail(state, y.status());
  const mamba::SelectiveScanInputs& in = p->in;
  cuda::SelectiveScanParams c;
  c.batch = kBatch, c.dim = kDim, c.length = p->length, c.dstate = kState, c.groups = 1;
  c.dtype = p->dtype, c.bc_dtype = p->dtype;
  c.u = in.u.data(), c.u_stride_b = in.u.stride(0), c.u_stride_d = in.u.stride(1);
  c.u_stride_l = 1;
  c.delta = in.delta.data(), c.delta_stride_b = in.delta.stride(0);
  c.delta_stride_d = in.delta.stride(1), c.delta_stride_l = 1;
  c.z = in.z.data(), c.z_stride_b = in.z.stride(0), c.z_stride_d = in.z.stride(1);
  c.z_stride_l = 1;
  c.A = in.A.data(), c.A_stride_d = kState, c.A_stride_n = 1;
  c.B = in.B.data(), c.B_stride_b = in.B.stride(0), c.B_stride_g = in.B.stride(1);
  c.B_stride_n = in.B.stride(2), c.B_stride_l = 1;
  c.C = in.C.data(), c.C_stride_b = in.C.stride(0), c.C_stride_g = in.C.stride(1);
  c.C_stride_n = in.C.stride(2), c.C_stride_l = 1;
  c.D = in.D.data(), c.D_stride = 1;
  c.delta_bias = in.delta_bias.data(), c.delta_bias_stride = 1;
  c.y = y->data(), c.y_stride_b = y->stride(0), c.y_stride_d = y->stride(1), c.y_stride_l = 1;
  Report(state, [&] { return cuda::SelectiveScanNaiveCuda(c, cuda::CurrentStream(0)); },
         ForwardBytes(*p));
}

void BM_SelectiveScanForward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state);
  if (!p.ok()) return Fail(state, p.status());
  Report(state, [&] { return mamba::SelectiveScanForward(p->in).status(); }, ForwardBytes(*p));
}

void BM_SelectiveScanBackward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state);
  if (!p.ok()) return Fail(state, p.status());
  absl::StatusOr<mamba::SelectiveScanResult> fwd = mamba::SelectiveScanForward(p->in);
  if (!fwd.ok()) return Fail(state, fwd.status());
  Report(
      state,
      [&] {
        return mamba::SelectiveScanBackward(p->in, p->dy, Tensor(), fwd->chunk_states).status();
      },
      BackwardBytes(*p));
}

void BM_SelectiveScanForwardBackward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state);
  if (!p.ok()) return Fail(state, p.status());
  Report(
      state,
      [&]() -> absl::Status {
        LYRA_ASSIGN_OR_RETURN(mamba::SelectiveScanResult fwd, mamba::SelectiveScanForward(p->in));
        return mamba::SelectiveScanBackward(p->in, p->dy, Tensor(), fwd.chunk_states).status();
      },
      ForwardBytes(*p) + BackwardBytes(*p));
}

void Shapes(benchmark::internal::Benchmark* b) {
  for (int64_t dtype : {0, 1}) {
    for (int64_t length : {512, 2048, 8192}) b->Args({dtype, length});
  }
  b->ArgNames({"f32", "L"})->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_SelectiveScanForwardNaive)
    ->Args({0, 2048})
    ->ArgNames({"f32", "L"})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_SelectiveScanForward)->Apply(Shapes);
BENCHMARK(BM_SelectiveScanBackward)->Apply(Shapes);
BENCHMARK(BM_SelectiveScanForwardBackward)->Apply(Shapes);

}  // namespace
}  // namespace lyra
