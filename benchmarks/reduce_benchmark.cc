// GPU bandwidth of the reduction, softmax and cumsum kernels (cuda/reduce_kernels.cuh,
// cuda/softmax_kernels.cuh, cuda/cumsum.cu) through the tensor API, for f32 and bf16.
//
//   BM_Copy              Clone of an M x N tensor: the bandwidth ceiling (read + write)
//   BM_SumLastDim        [M, N] -> [M]   row kernel, 16-byte vector loads
//   BM_SumFirstDim       [M, N] -> [N]   column kernel (coalesced along N), split over M
//   BM_SumTransposed     [N, M] stored, viewed as [M, N], summed over dim 0: the folding reads
//                        it in place as a column reduction (no transposing copy)
//   BM_SumAll            [M * N] -> []   split row kernel + combining pass
//   BM_ArgmaxLastDim     [B, V] -> [B]   greedy decoding over a vocabulary
//   BM_Softmax           [B, V] along V  (also BM_LogSoftmax)
//   BM_SoftmaxBackward   [B, V] along V
//   BM_CumsumLastDim     [M, N] along N  block scan per row
//   BM_CumsumFirstDim    [M, N] along M  one thread per column
// with M x N = 8192 x 4096 and B x V = 1024 x 50280 (the GPT-NeoX vocabulary of Mamba).
//
// Bytes counted (the algorithmic minimum: each input element read once, each output written once;
// softmax's second read of a row mostly hits L2 and is not counted):
//   copy:            2 * M * N * sizeof(T)
//   sum:             (M * N + outputs) * sizeof(T)
//   argmax:          B * V * sizeof(T) + B * (sizeof(T) + 8)
//   softmax:         2 * B * V * sizeof(T);  backward: 3 * B * V * sizeof(T)
//   cumsum:          2 * M * N * sizeof(T)
// Napkin math on an H200 (4.8 TB/s HBM3e): a bf16 [1024, 50280] softmax moves 206 MB, ~50 us at
// 90% of peak; a f32 [8192, 4096] sum reads 134 MB, ~31 us.
//
// Timing: CUDA events around each call on cuda:0's current stream (no host sync inside the timed
// region), warm-up calls first, and a 256 MiB memset before every timed call so that no operand
// starts in L2. Without a GPU every benchmark reports an error and skips.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <functional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "benchmarks/gpu_benchmark.h"
#include "tensor/reduce.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using bench::Fail;
using bench::RunTimed;
using bench::SkipWithoutGpu;

constexpr int64_t kRows = 8192;      // M
constexpr int64_t kCols = 4096;      // N
constexpr int64_t kBatch = 1024;     // B
constexpr int64_t kVocab = 50280;    // V
constexpr Device kGpu = Device::Cuda(0);

// A GPU tensor of `shape` and `dtype`, every element 0.25 (the kernels' speed does not depend
// on the values).
absl::StatusOr<Tensor> GpuInput(const Shape& shape, DType dtype) {
  LYRA_ASSIGN_OR_RETURN(Tensor x, Tensor::Empty(shape, dtype, kGpu));
  LYRA_RETURN_IF_ERROR(x.Fill(0.25));
  return x;
}

// Declares `const Tensor var` from GpuInput, or fails the benchmark.
#define LYRA_BENCH_INPUT(var, shape, dtype)                   \
  absl::StatusOr<Tensor> var##_or = GpuInput(shape, dtype);   \
  if (!var##_or.ok()) return Fail(state, var##_or.status());  \
  const Tensor var = *var##_or

void BM_Copy(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kRows, kCols}), dtype);
  RunTimed(state, [&] { return x.Clone().status(); },
           2.0 * kRows * kCols * DTypeSize(dtype));
}

void BM_SumLastDim(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kRows, kCols}), dtype);
  RunTimed(state, [&] { return Sum(x, {1}).status(); },
           (1.0 * kRows * kCols + kRows) * DTypeSize(dtype));
}

void BM_SumFirstDim(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kRows, kCols}), dtype);
  RunTimed(state, [&] { return Sum(x, {0}).status(); },
           (1.0 * kRows * kCols + kCols) * DTypeSize(dtype));
}

void BM_SumTransposed(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(stored, (Shape{kCols, kRows}), dtype);
  absl::StatusOr<Tensor> x = stored.Transpose(0, 1);  // [M, N], strides (1, M)
  if (!x.ok()) return Fail(state, x.status());
  RunTimed(state, [&] { return Sum(*x, {0}).status(); },
           (1.0 * kRows * kCols + kCols) * DTypeSize(dtype));
}

void BM_SumAll(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kRows * kCols}), dtype);
  RunTimed(state, [&] { return Sum(x).status(); }, 1.0 * kRows * kCols * DTypeSize(dtype));
}

void BM_ArgmaxLastDim(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kBatch, kVocab}), dtype);
  RunTimed(state, [&] { return MaxAlong(x, -1).status(); },
           1.0 * kBatch * kVocab * DTypeSize(dtype) + kBatch * (DTypeSize(dtype) + 8.0));
}

void BM_Softmax(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kBatch, kVocab}), dtype);
  RunTimed(state, [&] { return Softmax(x, -1).status(); },
           2.0 * kBatch * kVocab * DTypeSize(dtype));
}

void BM_LogSoftmax(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kBatch, kVocab}), dtype);
  RunTimed(state, [&] { return LogSoftmax(x, -1).status(); },
           2.0 * kBatch * kVocab * DTypeSize(dtype));
}

void BM_SoftmaxBackward(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(y, (Shape{kBatch, kVocab}), dtype);
  LYRA_BENCH_INPUT(g, (Shape{kBatch, kVocab}), dtype);
  RunTimed(state, [&] { return SoftmaxBackward(y, g, -1).status(); },
           3.0 * kBatch * kVocab * DTypeSize(dtype));
}

void BM_CumsumLastDim(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kRows, kCols}), dtype);
  RunTimed(state, [&] { return Cumsum(x, 1).status(); },
           2.0 * kRows * kCols * DTypeSize(dtype));
}

void BM_CumsumFirstDim(benchmark::State& state, DType dtype) {
  if (SkipWithoutGpu(state)) return;
  LYRA_BENCH_INPUT(x, (Shape{kRows, kCols}), dtype);
  RunTimed(state, [&] { return Cumsum(x, 0).status(); },
           2.0 * kRows * kCols * DTypeSize(dtype));
}

#define LYRA_REDUCE_BENCHMARK(fn)                                                          \
  BENCHMARK_CAPTURE(fn, f32, DType::kF32)->UseManualTime()->Unit(benchmark::kMicrosecond); \
  BENCHMARK_CAPTURE(fn, bf16, DType::kBF16)->UseManualTime()->Unit(benchmark::kMicrosecond)

LYRA_REDUCE_BENCHMARK(BM_Copy);
LYRA_REDUCE_BENCHMARK(BM_SumLastDim);
LYRA_REDUCE_BENCHMARK(BM_SumFirstDim);
LYRA_REDUCE_BENCHMARK(BM_SumTransposed);
LYRA_REDUCE_BENCHMARK(BM_SumAll);
LYRA_REDUCE_BENCHMARK(BM_ArgmaxLastDim);
LYRA_REDUCE_BENCHMARK(BM_Softmax);
LYRA_REDUCE_BENCHMARK(BM_LogSoftmax);
LYRA_REDUCE_BENCHMARK(BM_SoftmaxBackward);
LYRA_REDUCE_BENCHMARK(BM_CumsumLastDim);
LYRA_REDUCE_BENCHMARK(BM_CumsumFirstDim);

}  // namespace
}  // namespace lyra
