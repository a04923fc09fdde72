// GPU time of the Mamba-2 SSD forward (cuda/ssd.h) at Mamba-2's training shape: B = 8, H = 24
// heads of P = 64, G = 1, chunk Q = 256, D per head, dt_bias with softplus, no z (as Mamba-2's
// mixer calls mamba_chunk_scan_combined), chunk_states saved for the backward; x / dt / B / C / y
// in bf16 (or f32); A, D, dt_bias and the states f32.
//
//   BM_SsdForward/f32:<0|1>/L:<L>/N:<N>          the chunked kernels (SsdCuda)
//   BM_SsdForwardSequential/f32:0/L:2048/N:128   version 1 (SsdSequentialCuda), the baseline
//   BM_SsdForwardBackward/f32:0/L:2048/N:128     SsdCuda then SsdBackwardCuda from its chunk states
//
// Napkin math (E = B L H P elements of x / y of e bytes, S = B L G N of B / C, K = B n_chunks H P N
// f32 chunk-state elements, n_chunks = L / Q):
//   bytes  = 2 E e (x, y) + 2 S e (B, C) + B L H e (dt) + 4 K (chunk_states written)
//   FLOPs  = B H n_chunks (Q² (N + P) + 4 Q P N): per chunk the causal halves of C Bᵀ
//            (Q² N / 2 multiply-adds) and of (C Bᵀ ∘ decay) X (Q² P / 2), the local state
//            X ᵀ B (Q P N) and the incoming-state term C S_inᵀ (Q N P), two FLOPs a multiply-add
// At the reference shape (L = 2048, N = 128, bf16): 50 + 50 + 8.4 + 0.8 + 50 MB = 160 MB, ~0.04 ms
// at ~4 TB/s; 32 GFLOP, ~0.05 ms at ~650 TFLOP/s of bf16 mma: neither bound is near the 0.45 ms
// target; the kernels are bound by latency, barriers and shared-memory traffic. (The state
// workspace round trip, K written by step 1, read and rewritten by step 2, read by step 3, adds
// 3 x 4 K = 150 MB not counted above.) Reference: mamba_ssm's Triton forward on an H100, 0.65 ms.
//
// Counters: ms (mean of the timed launches), GB/s and copy_fraction from the bytes above,
// TFLOP/s from the FLOPs above.
//
// Measured on an H200 (2026-12-01, --benchmark_min_time=0.1), ms:
//                          bf16 L=2048 N=64  N=128  N=256 | N=128 L=512  L=8192 | f32 N=128  N=256
//   forward, 897e443 (sync staging)    0.936  1.48   2.46  |       0.309  5.89   |    2.66   5.78
//   forward, e1fa1e8 (cp.async)        0.670  0.872  1.31  |       0.242  3.55   |    2.09   4.52
//   + diagonal-tile skip               0.688  0.905  1.37  |       0.253  3.67   |    2.15   4.59
//   + 3 blocks/SM for P <= 64 (this)   0.589  0.797  1.41  |       0.233  3.21   |    2.15   4.72
//   forward sequential (v1), bf16 L = 2048 N = 128: 13.2 ms
//   forward + backward (S3's backward in that day's working tree), bf16 L = 2048 N = 128: 4.10
// ncu at the reference shape (bf16, L = 2048, N = 128), per kernel, 897e443 -> e1fa1e8:
//   chunk states 154 -> 120 us, state passing 378 -> 65 us (the chunk loads batched 8 at a
//   time instead of one latency per chunk), chunk output 862 -> 680 us (cp.async double-buffered
//   tiles, no bank-conflicted staging stores, a warp per row in the mask / scale / epilogue
//   loops). The chunk output kernel is the gap to the 0.45 ms target: there it ran 4 warps per
//   scheduler (128 registers, ~100 KB of shared memory: 2 blocks per SM) at 7.4 cycles per
//   issued instruction; this version caps it at 85 registers with one tile buffer for P <= 64
//   (3 blocks per SM, 72 bytes of spills). Next: C Bᵀ computed once per group instead of per
//   head, fewer shared-memory round trips (the f32 C Bᵀ tile), wgmma.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "cuda/ssd.h"
#include "cuda/stream.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using bench::Fail;
using bench::RunTimed;
using bench::SkipWithoutGpu;

constexpr int64_t kBatch = 8;     // B
constexpr int64_t kHeads = 24;    // H
constexpr int64_t kHeadDim = 64;  // P
constexpr int64_t kGroups = 1;    // G
constexpr int64_t kChunk = 256;   // Q
constexpr Device kGpu = Device::Cuda(0);

struct Problem {
  Tensor x, dt, A, B, C, D, dt_bias, y, chunk_states, dy, dx, ddt, dA, dB, dC, dD, ddt_bias;
  int64_t length = 0, dstate = 0;
  DType dtype = DType::kBF16;
  cuda::SsdParams params;
};

absl::StatusOr<Problem> MakeProblem(benchmark::State& state, bool backward) {
  Problem p;
  p.dtype = state.range(0) == 0 ? DType::kBF16 : DType::kF32;
  p.length = state.range(1);
  p.dstate = state.range(2);
  const int64_t L = p.length, N = p.dstate, H = kHeads, P = kHeadDim, G = kGroups;
  const int64_t n_chunks = cuda::SsdNumChunks(L, kChunk);
  Generator gen(1);
  LYRA_ASSIGN_OR_RETURN(p.x, Randn({kBatch, L, H, P}, p.dtype, kGpu, gen));
  LYRA_ASSIGN_OR_RETURN(p.dt, Rand({kBatch, L, H}, p.dtype, kGpu, gen, -1.0, 1.0));
  LYRA_ASSIGN_OR_RETURN(p.B, Randn({kBatch, L, G, N}, p.dtype, kGpu, gen));
  LYRA_ASSIGN_OR_RETURN(p.C, Randn({kBatch, L, G, N}, p.dtype, kGpu, gen));
  // A = -exp(A_log) with A_log uniform in [log 1, log 16] (Mamba-2's initialisation).
  std::vector<double> a(H);
  for (int64_t h = 0; h < H; ++h) a[h] = -std::exp(std::log(16.0) * h / (H - 1));
  LYRA_ASSIGN_OR_RETURN(Tensor a_cpu, Tensor::FromDoubles(a, {H}, DType::kF32));
  LYRA_ASSIGN_OR_RETURN(p.A, a_cpu.To(kGpu));
  LYRA_ASSIGN_OR_RETURN(p.D, Rand({H}, DType::kF32, kGpu, gen, 0.5, 1.5));
  LYRA_ASSIGN_OR_RETURN(p.dt_bias, Rand({H}, DType::kF32, kGpu, gen, -5.0, -2.0));
  LYRA_ASSIGN_OR_RETURN(p.y, Tensor::Empty({kBatch, L, H, P}, p.dtype, kGpu));
  LYRA_ASSIGN_OR_RETURN(p.chunk_states,
                        Tensor::Empty({kBatch, n_chunks, H, P, N}, DType::kF32, kGpu));
  cuda::SsdParams& c = p.params;
  c.batch = kBatch, c.length = L, c.heads = H, c.head_dim = P, c.dstate = N, c.groups = G;
  c.chunk = kChunk, c.dt_softplus = true, c.dtype = p.dtype;
  c.x = p.x.data(), c.x_stride_b = L * H * P, c.x_stride_l = H * P, c.x_stride_h = P;
  c.x_stride_p = 1;
  c.dt = p.dt.data(), c.dt_stride_b = L * H, c.dt_stride_l = H, c.dt_stride_h = 1;
  c.A = p.A.data(), c.A_stride = 1;
  c.B = p.B.data(), c.B_stride_b = L * G * N, c.B_stride_l = G * N, c.B_stride_g = N;
  c.B_stride_n = 1;
  c.C = p.C.data(), c.C_stride_b = L * G * N, c.C_stride_l = G * N, c.C_stride_g = N;
  c.C_stride_n = 1;
  c.D = p.D.data(), c.D_stride_h = 1;
  c.dt_bias = p.dt_bias.data(), c.dt_bias_stride = 1;
  c.y = p.y.data(), c.y_stride_b = L * H * P, c.y_stride_l = H * P, c.y_stride_h = P;
  c.y_stride_p = 1;
  c.chunk_states = p.chunk_states.data();
  if (backward) {
    LYRA_ASSIGN_OR_RETURN(p.dy, Randn({kBatch, L, H, P}, p.dtype, kGpu, gen));
    LYRA_ASSIGN_OR_RETURN(p.dx, Tensor::Empty({kBatch, L, H, P}, p.dtype, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.ddt, Tensor::Empty({kBatch, L, H}, p.dtype, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.dA, Tensor::Empty({H}, DType::kF32, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.dB, Tensor::Empty({kBatch, L, G, N}, p.dtype, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.dC, Tensor::Empty({kBatch, L, G, N}, p.dtype, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.dD, Tensor::Empty({H}, DType::kF32, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.ddt_bias, Tensor::Empty({H}, DType::kF32, kGpu));
  }
  return p;
}

cuda::SsdBackwardParams BackwardParams(const Problem& p) {
  cuda::SsdBackwardParams g;
  const int64_t L = p.length, N = p.dstate, H = kHeads, P = kHeadDim, G = kGroups;
  g.forward = p.params;
  g.dy = p.dy.data(), g.dy_stride_b = L * H * P, g.dy_stride_l = H * P, g.dy_stride_h = P;
  g.dy_stride_p = 1;
  g.chunk_states = p.chunk_states.data();
  g.dx = p.dx.data(), g.dx_stride_b = L * H * P, g.dx_stride_l = H * P, g.dx_stride_h = P;
  g.dx_stride_p = 1;
  g.ddt = p.ddt.data(), g.ddt_stride_b = L * H, g.ddt_stride_l = H, g.ddt_stride_h = 1;
  g.dA = p.dA.data(), g.dA_stride = 1;
  g.dB = p.dB.data(), g.dB_stride_b = L * G * N, g.dB_stride_l = G * N, g.dB_stride_g = N;
  g.dB_stride_n = 1;
  g.dC = p.dC.data(), g.dC_stride_b = L * G * N, g.dC_stride_l = G * N, g.dC_stride_g = N;
  g.dC_stride_n = 1;
  g.dD = p.dD.data(), g.dD_stride_h = 1;
  g.ddt_bias = p.ddt_bias.data(), g.ddt_bias_stride = 1;
  return g;
}

double ForwardBytes(const Problem& p) {
  const double e = static_cast<double>(DTypeSize(p.dtype));
  const double E = static_cast<double>(kBatch * p.length * kHeads * kHeadDim);
  const double S = static_cast<double>(kBatch * p.length * kGroups * p.dstate);
  const double K = static_cast<double>(kBatch * cuda::SsdNumChunks(p.length, kChunk) * kHeads *
                                       kHeadDim * p.dstate);
  return 2 * E * e + 2 * S * e + static_cast<double>(kBatch * p.length * kHeads) * e + 4 * K;
}

double ForwardFlops(const Problem& p) {
  const double Q = kChunk, P = kHeadDim, N = static_cast<double>(p.dstate);
  const double chunks = static_cast<double>(kBatch * kHeads * cuda::SsdNumChunks(p.length, kChunk));
  return chunks * (Q * Q * (N + P) + 4 * Q * P * N);
}

void Report(benchmark::State& state, const std::function<absl::Status()>& launch, double bytes,
            double flops) {
  const double ms = RunTimed(state, launch, bytes);
  if (ms > 0) {
    state.counters["ms"] = ms;
    bench::ReportCopyFraction(state, bytes, ms);
    if (flops > 0) state.counters["TFLOP/s"] = flops / (ms * 1e9);
  }
}

void BM_SsdForward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state, /*backward=*/false);
  if (!p.ok()) return Fail(state, p.status());
  Report(state, [&] { return cuda::SsdCuda(p->params, cuda::CurrentStream(0)); },
         ForwardBytes(*p), ForwardFlops(*p));
}

void BM_SsdForwardSequential(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state, /*backward=*/false);
  if (!p.ok()) return Fail(state, p.status());
  Report(state, [&] { return cuda::SsdSequentialCuda(p->params, cuda::CurrentStream(0)); },
         ForwardBytes(*p), 0);
}

void BM_SsdForwardBackward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state, /*backward=*/true);
  if (!p.ok()) return Fail(state, p.status());
  const cuda::SsdBackwardParams g = BackwardParams(*p);
  Report(
      state,
      [&]() -> absl::Status {
        LYRA_RETURN_IF_ERROR(cuda::SsdCuda(p->params, cuda::CurrentStream(0)));
        return cuda::SsdBackwardCuda(g, cuda::CurrentStream(0));
      },
      0, 0);
}

void ForwardShapes(benchmark::internal::Benchmark* b) {
  b->Args({0, 2048, 128});  // the reference shape
  b->Args({0, 2048, 64});
  b->Args({0, 2048, 256});
  b->Args({0, 512, 128});
  b->Args({0, 8192, 128});
  b->Args({1, 2048, 128});
  b->Args({1, 2048, 256});
  b->ArgNames({"f32", "L", "N"})->UseManualTime()->Unit(benchmark::kMillisecond);
}

void ReferenceShape(benchmark::internal::Benchmark* b) {
  b->Args({0, 2048, 128})
      ->ArgNames({"f32", "L", "N"})
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_SsdForward)->Apply(ForwardShapes);
BENCHMARK(BM_SsdForwardSequential)->Apply(ReferenceShape);
BENCHMARK(BM_SsdForwardBackward)->Apply(ReferenceShape);

}  // namespace
}  // namespace lyra
