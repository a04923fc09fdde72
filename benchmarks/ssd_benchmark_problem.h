// The problem both SSD benchmarks time (benchmarks/ssd_benchmark.cc, ssd_backward_benchmark.cc):
// Mamba-2's training shape B = 8, H = 24 heads of P = 64 (or 12 of 128), G = 1, chunk Q = 256,
// D per head, dt_bias with softplus, no z; the dtype, L, N and P from the benchmark's arguments
// (f32 flag, L, N, P).
// Inputs are random on cuda:0 (A = -exp(A_log), A_log uniform over [log 1, log 16] across heads,
// as Mamba-2 initialises it); the forward's params point at them, the backward's at gradient
// buffers allocated when asked.
#ifndef LYRA_BENCHMARKS_SSD_BENCHMARK_PROBLEM_H_
#define LYRA_BENCHMARKS_SSD_BENCHMARK_PROBLEM_H_

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "cuda/ssd.h"
#include "tensor/tensor.h"

namespace lyra::ssd_bench {

inline constexpr int64_t kBatch = 8;     // B
inline constexpr int64_t kInner = 1536;  // H P: 24 heads of 64 (or 12 of 128)
inline constexpr int64_t kGroups = 1;    // G
inline constexpr int64_t kChunk = 256;   // Q
inline constexpr Device kGpu = Device::Cuda(0);

struct Problem {
  Tensor x, dt, A, B, C, D, dt_bias, y, chunk_states, dy, dx, ddt, dA, dB, dC, dD, ddt_bias;
  int64_t length = 0, dstate = 0, heads = 0, head_dim = 0;
  DType dtype = DType::kBF16;
  cuda::SsdParams params;
};

// state.range(0): 0 = bf16, 1 = f32; range(1) = L; range(2) = N; range(3) = P (H = kInner / P).
// With `backward` also dy and the gradient buffers.
absl::StatusOr<Problem> MakeProblem(benchmark::State& state, bool backward);

// The backward's params over `p` (made with backward = true), from the forward's chunk states.
cuda::SsdBackwardParams BackwardParams(const Problem& p);

// Bytes the forward must move: 2 E e (x, y) + 2 S e (B, C) + B L H e (dt) + 4 K (chunk_states),
// and its tensor-core FLOPs per chunk Q Q (N + P) + 4 Q P N (see ssd_benchmark.cc).
double ForwardBytes(const Problem& p);
double ForwardFlops(const Problem& p);

// Times `launch` (bench::RunTimed) and adds ms, the copy fraction of `bytes` and, when flops > 0,
// TFLOP/s counters.
void Report(benchmark::State& state, const std::function<absl::Status()>& launch, double bytes,
            double flops);

}  // namespace lyra::ssd_bench

#endif  // LYRA_BENCHMARKS_SSD_BENCHMARK_PROBLEM_H_
