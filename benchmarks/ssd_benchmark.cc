// GPU time of the Mamba-2 SSD forward (cuda/ssd.h) at Mamba-2's training shape: B = 8, H = 24
// heads of P = 64 (one case 12 heads of P = 128), G = 1, chunk Q = 256, D per head, dt_bias with softplus, no z (as Mamba-2's
// mixer calls mamba_chunk_scan_combined), chunk_states saved for the backward; x / dt / B / C / y
// in bf16 (or f32); A, D, dt_bias and the states f32.
//
//   BM_SsdForward/f32:<0|1>/L:<L>/N:<N>/P:<P>          the chunked kernels (SsdCuda)
//   BM_SsdForwardSequential/f32:0/L:2048/N:128/P:64   version 1 (SsdSequentialCuda), the baseline
// (forward + backward: BM_SsdForwardBackward of ssd_backward_benchmark.cc)
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
//   (3 blocks per SM, 72 bytes of spills).
// The mma.sync kernels for bf16 / f16 (ssd_forward_mma_kernels.cuh), H200 2026-12-02, ms:
//                          bf16 L=2048 N=64  N=128  N=256 | N=128 L=512  L=8192 | P=128 N=128
//   mma kernels, bb5e1f5               -      0.557   -    |       -      -      |    -
//   + 16-byte passing, 3 blocks/SM     -      0.534   -    |       -      -      |    -
//   + CopyTile, hoisted ldmatrix
//     addresses, mask without tests
//     below the diagonal (26e8f81)     0.337  0.424  1.02  |       0.119  1.59   |    0.392
//   (f32 keeps the WMMA kernels: N=128 2.14, N=256 4.70.) At the reference shape that is 76
//   TFLOP/s by the count above (the forward + backward, ssd_backward_benchmark: 2.51 ms).
//   ncu per kernel (bf16, reference shape, 26e8f81): chunk state 68 us, state passing 54 us,
//   chunk output 294 us. The output kernel was instruction-bound before CopyTile (IPC 1.87,
//   ALU the busiest pipe: staging loops with divisions and 64-bit products, ldmatrix
//   addresses recomputed per load): 402 -> 298 us. Next: C Bᵀ once per group (G = 1: 24 heads
//   recompute it), wgmma, the per-chunk scalars computed once instead of per block.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "benchmarks/ssd_benchmark_problem.h"
#include "cuda/ssd.h"
#include "cuda/stream.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using bench::Fail;
using bench::SkipWithoutGpu;
using ssd_bench::ForwardBytes;
using ssd_bench::ForwardFlops;
using ssd_bench::MakeProblem;
using ssd_bench::Problem;
using ssd_bench::Report;

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

void ForwardShapes(benchmark::internal::Benchmark* b) {
  b->Args({0, 2048, 128, 64});  // the reference shape
  b->Args({0, 2048, 64, 64});
  b->Args({0, 2048, 256, 64});
  b->Args({0, 512, 128, 64});
  b->Args({0, 8192, 128, 64});
  b->Args({0, 2048, 128, 128});  // 12 heads of P = 128
  b->Args({1, 2048, 128, 64});
  b->Args({1, 2048, 256, 64});
  b->ArgNames({"f32", "L", "N", "P"})->UseManualTime()->Unit(benchmark::kMillisecond);
}

void ReferenceShape(benchmark::internal::Benchmark* b) {
  b->Args({0, 2048, 128, 64})
      ->ArgNames({"f32", "L", "N", "P"})
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_SsdForward)->Apply(ForwardShapes);
BENCHMARK(BM_SsdForwardSequential)->Apply(ReferenceShape);

}  // namespace
}  // namespace lyra
