// GPU time of the Mamba-2 SSD backward (cuda/ssd.h) at Mamba-2's training shape: B = 8, H = 24
// heads of P = 64 (one case 12 heads of P = 128), G = 1, chunk Q = 256, D per head, dt_bias with
// softplus, no z; x / dt / B / C / dy and the gradients in bf16 (or f32); A, D, dt_bias and the
// states f32. The forward's chunk_states are passed to the backward (the chunked backward uses
// them when its own chunk length equals the forward's, else recomputes the states at its 64-step
// chunks).
//
//   BM_SsdBackward/f32:<0|1>/L:<L>/N:<N>/P:<P>          the chunked kernels (SsdBackwardCuda)
//   BM_SsdBackwardSequential/f32:0/L:512/N:128/P:64     version 1 (SsdBackwardSequentialCuda)
//   BM_SsdForwardBackward/f32:<0|1>/L:<L>/N:<N>/P:<P>   SsdCuda then SsdBackwardCuda
//
// Napkin math (E = B L H P elements of x of e bytes, S = B L G N of B / C, T = B L H of dt,
// K = B (L / 64) H P N f32 state elements at the backward's chunk q = 64):
//   bytes: reads x, dy, dt, B, C; writes dx, ddt, dB, dC: 4 E e + 2 T e + 4 S e. Not counted:
//     the f32 state workspaces (S_loc and dS_loc written, read and rewritten by the passing,
//     read by the chunk kernel: ~6 x 4 K) and the per-head dB / dC partials (2 x B L H N f32
//     written and read again).
//   FLOPs (as the kernels compute them, 2 per multiply-add, per chunk of q = 64):
//     chunk-local states 2 q P N (dS_loc) + 2 q P N (S_loc, when recomputed); chunk kernel
//     C Bᵀ 2 q² N, dOut Xᵀ 2 q² P, Mᵀ dOut 2 q² P, B dS_outᵀ 2 q N P, dB 2 q² N + 2 q P N,
//     dC 2 q² N + 2 q P N, C S_inᵀ 2 q N P.
// At the reference shape (L = 2048, N = 128, bf16): 101 + 1 + 4 MB = 106 MB (~0.03 ms at
// 4 TB/s) plus ~1.2 GB of f32 workspace traffic (~0.3 ms); ~64 GFLOP (~0.1 ms at ~650 TFLOP/s
// of bf16 mma). Reference: mamba_ssm's Triton kernels on an H100, 4.08 ms forward + backward.
//
// Counters: ms (mean of the timed launches), GB/s and copy_fraction from the bytes above,
// TFLOP/s from the FLOPs above.
//
// Measured on an H200 (2026-12, commit 722e068: the first chunked version, before the staging
// and reduction fixes of the next commit, which has not run on a GPU yet), ms; the forward is
// S2's SsdCuda as it stood then:
//                         bf16 N=64  N=128  N=256 | L=512  L=8192 (N=128) | f32 N=64 N=128 N=256
//   backward                   5.73   8.80   15.6 |  2.09   35.4          |    7.07  16.2  28.8
//   forward + backward         6.63   10.3   18.1 |  2.39   41.2          |    8.75  18.8  34.6
//   sequential backward (v1), bf16 L=512 N=128: 16.2
// That version achieved ~7 TFLOP/s: far from both bounds. Suspected causes (not measured): the
// dA / dD / ddt_bias reduction summed B x chunks x P terms in one thread, and the staging loops
// waited on one scalar global load at a time with one block (8 warps) per SM.
// H200 2026-12-02 (commit 060bb21 / 96d6cab; the forward is the mma.sync one, 0.424 ms), ms:
//                         bf16 N=64  N=128  N=256 | L=512  L=8192 (N=128) | P=128 | f32 N=128
//   backward                   1.51   2.08   3.80 |  0.609  8.20          |  1.82 |  4.75
//   forward + backward         1.85   2.51   4.81 |  0.726  9.80          |  2.21 |  6.89
// ncu per kernel at the reference shape (bf16): ChunkLocal 351 us, StatePass 265 us (804 MB at
// ~3 TB/s), ChunkBackward 1420 us (grouped blocks, 16 warps; 1848 us with 8 warps, IPC 1.28,
// 2 warps per scheduler: latency-bound at one block per SM), parameter reduction 28 us. Steps
// of this round: grouped chunk blocks (no per-head dB / dC partials: -400 MB written and read,
// no dB / dC reduce kernel) 3.18 -> 3.02; 16-byte state passing with both directions in
// parallel 706 -> 265 us; 16 warps in the chunk kernel 1848 -> 1420 us. Next: the state
// workspaces at q = 64 are 4x the forward's (201 MB each, written, passed and read again);
// a backward at the forward's chunk (flash-style, mma.sync like the forward) would remove that
// traffic and the recomputation of the states.
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
using ssd_bench::BackwardParams;
using ssd_bench::ForwardBytes;
using ssd_bench::ForwardFlops;
using ssd_bench::MakeProblem;
using ssd_bench::Problem;
using ssd_bench::Report;

using ssd_bench::kBatch;
using ssd_bench::kGroups;

constexpr int64_t kBackwardChunk = 64;  // q of the chunked backward

double BackwardBytes(const Problem& p) {
  const double e = static_cast<double>(DTypeSize(p.dtype));
  const double E = static_cast<double>(kBatch * p.length * p.heads * p.head_dim);
  const double S = static_cast<double>(kBatch * p.length * kGroups * p.dstate);
  const double T = static_cast<double>(kBatch * p.length * p.heads);
  return 4 * E * e + 2 * T * e + 4 * S * e;
}

double BackwardFlops(const Problem& p) {
  const double q = kBackwardChunk, P = static_cast<double>(p.head_dim), N = static_cast<double>(p.dstate);
  const double chunks =
      static_cast<double>(kBatch * p.heads * cuda::SsdNumChunks(p.length, kBackwardChunk));
  return chunks * (2 * 2 * q * P * N + 2 * q * q * N * 3 + 2 * q * q * P * 2 + 2 * q * P * N * 4);
}

void BM_SsdBackward(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state, /*backward=*/true);
  if (!p.ok()) return Fail(state, p.status());
  absl::Status fwd = cuda::SsdCuda(p->params, cuda::CurrentStream(0));
  if (!fwd.ok()) return Fail(state, fwd);
  const cuda::SsdBackwardParams g = BackwardParams(*p);
  Report(state, [&] { return cuda::SsdBackwardCuda(g, cuda::CurrentStream(0)); },
         BackwardBytes(*p), BackwardFlops(*p));
}

void BM_SsdBackwardSequential(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Problem> p = MakeProblem(state, /*backward=*/true);
  if (!p.ok()) return Fail(state, p.status());
  absl::Status fwd = cuda::SsdCuda(p->params, cuda::CurrentStream(0));
  if (!fwd.ok()) return Fail(state, fwd);
  const cuda::SsdBackwardParams g = BackwardParams(*p);
  Report(state, [&] { return cuda::SsdBackwardSequentialCuda(g, cuda::CurrentStream(0)); },
         BackwardBytes(*p), 0);
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
      ForwardBytes(*p) + BackwardBytes(*p), ForwardFlops(*p) + BackwardFlops(*p));
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->Args({0, 2048, 128, 64});  // the reference shape
  b->Args({0, 2048, 64, 64});
  b->Args({0, 2048, 256, 64});
  b->Args({0, 512, 128, 64});
  b->Args({0, 8192, 128, 64});
  b->Args({0, 2048, 128, 128});  // 12 heads of P = 128
  b->Args({1, 2048, 128, 64});
  b->Args({1, 2048, 64, 64});
  b->Args({1, 2048, 256, 64});
  b->ArgNames({"f32", "L", "N", "P"})->UseManualTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_SsdBackward)->Apply(Shapes);
BENCHMARK(BM_SsdForwardBackward)->Apply(Shapes);
BENCHMARK(BM_SsdBackwardSequential)
    ->Args({0, 512, 128, 64})
    ->ArgNames({"f32", "L", "N", "P"})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace lyra
