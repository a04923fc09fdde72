// GPU time, bandwidth and memory of the fused cross-entropy (cuda/cross_entropy_kernels.cuh,
// nn/cross_entropy.h), bf16 logits [N, V] = [16384, 50280] (the GPT-NeoX vocabulary of Mamba):
//
//   BM_CrossEntropyKernelForward          the row kernel alone (kForward): loss and lse per row
//   BM_CrossEntropyKernelForwardBackward  the kForward kernel, then the kBackward kernel
//   BM_CrossEntropyForward                nn::CrossEntropyForward: target check (its one host
//                                         sync is inside the timed region), kernel, sum
//   BM_CrossEntropyTrainStep              nn::CrossEntropy + Backward through autograd
//   BM_CrossEntropyComposed               autograd::CrossEntropy (log_softmax + gather + sum):
//                                         the version-1 baseline, forward + backward
//   BM_LinearCrossEntropy/chunk           nn::LinearCrossEntropy forward + backward at
//                                         N = 16384, H = 768, V = 50280, bf16, chunk rows
//   BM_MatmulThenCrossEntropy             autograd::Matmul(h, Wᵀ) + nn::CrossEntropy, forward +
//                                         backward: the unchunked composition
//
// Bytes counted (the algorithmic minimum of the logits traffic; targets, lse and losses are
// N-sized and not counted):
//   forward:             N * V * 2               (read the logits once)
//   forward + backward:  3 * N * V * 2           (forward read; backward read + dlogits write)
// FLOPs of the linear variants: 6 * N * V * H (logits, dhidden and dW products, 2 each).
// Napkin math on an H200 (4.8 TB/s HBM3e, ~990 dense bf16 TFLOP/s): the forward moves 1.65 GB,
// ~0.38 ms at 90% of peak; forward + backward 4.9 GB, ~1.1 ms; the linear variants do 3.8e12
// FLOPs, ~5 ms at 75% of peak, so chunking costs only the extra kernel passes. Memory: Matmul +
// CrossEntropy holds the [N, V] bf16 logits and their gradient (2 x 1.65 GB); the chunked version
// holds chunk x V (0.41 GB at 4096 rows) plus the V x H dW sums.
//
// Every benchmark reports GB/s (or TFLOP/s) and copy_fraction (bandwidth over a device-to-device
// copy of as many bytes, timed in the same process); the autograd ones also report peak_MiB, the
// allocator's peak above what was live before one untimed call. Timing: CUDA events on cuda:0's
// current stream after an L2 flush, warm-up first (benchmarks/gpu_benchmark.h). Without a GPU
// every benchmark reports an error and skips.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/ops.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "cuda/allocator.h"
#include "cuda/cross_entropy.h"
#include "cuda/stream.h"
#include "nn/cross_entropy.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using autograd::Variable;

constexpr int64_t kTokens = 16384;  // N
constexpr int64_t kVocab = 50280;   // V
constexpr int64_t kHidden = 768;    // H
constexpr DType kDType = DType::kBF16;
constexpr Device kGpu = Device::Cuda(0);
constexpr double kLogitsBytes = static_cast<double>(kTokens) * kVocab * 2;
constexpr double kLinearFlops = 6.0 * kTokens * kVocab * kHidden;

// Standard-normal bf16 logits (or any shape) on cuda:0, and targets in [0, V).
absl::StatusOr<Tensor> GpuRandn(const Shape& shape, uint64_t seed, double std = 1) {
  Generator gen(seed);
  return Randn(shape, kDType, kGpu, gen, 0, std);
}
absl::StatusOr<Tensor> GpuTargets(uint64_t seed) {
  Generator gen(seed);
  return RandInt({kTokens}, 0, kVocab, DType::kI64, kGpu, gen);
}

// Declares `const Tensor var` from a StatusOr expression, or fails the benchmark.
#define LYRA_BENCH_TENSOR(var, expr)                                 \
  absl::StatusOr<Tensor> var##_or = (expr);                          \
  if (!var##_or.ok()) return bench::Fail(state, var##_or.status()); \
  const Tensor var = *var##_or

// Peak allocated device bytes above the live ones during one call of `fn` (synchronized).
absl::StatusOr<double> PeakMiB(const std::function<absl::Status()>& fn) {
  cuda::CachingAllocator& allocator = cuda::CachingAllocator::ForDevice(0);
  LYRA_RETURN_IF_ERROR(cuda::Synchronize(0));
  const int64_t base = allocator.Stats().allocated_bytes;
  allocator.ResetPeakStats();
  LYRA_RETURN_IF_ERROR(fn());
  LYRA_RETURN_IF_ERROR(cuda::Synchronize(0));
  return static_cast<double>(allocator.Stats().peak_allocated_bytes - base) / (1 << 20);
}

// Times `fn` with bytes (for GB/s and copy_fraction) and optional FLOPs, after measuring its
// peak memory when `measure_peak`.
void TimeAndReport(benchmark::State& state, const std::function<absl::Status()>& fn,
                   double bytes, double flops, bool measure_peak) {
  if (measure_peak) {
    absl::StatusOr<double> peak = PeakMiB(fn);
    if (!peak.ok()) return bench::Fail(state, peak.status());
    state.counters["peak_MiB"] = *peak;
  }
  const double ms = bench::RunTimed(state, fn, bytes);
  if (ms <= 0) return;
  if (bytes > 0) bench::ReportCopyFraction(state, bytes, ms);
  if (flops > 0) state.counters["TFLOP/s"] = flops / (ms * 1e-3) * 1e-12;
}

// The row kernels' params over contiguous logits [N, V] and targets [N].
cuda::CrossEntropyParams KernelParams(cuda::CrossEntropyOp op, const Tensor& logits,
                                      const Tensor& targets) {
  cuda::CrossEntropyParams p;
  p.op = op;
  p.dtype = logits.dtype();
  p.target_dtype = targets.dtype();
  p.rows = logits.size(0);
  p.vocab = logits.size(1);
  p.logits = logits.data();
  p.logits_row_stride = logits.stride(0);
  p.targets = targets.data();
  p.targets_stride = targets.stride(0);
  return p;
}

void BM_CrossEntropyKernelForward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  LYRA_BENCH_TENSOR(logits, GpuRandn({kTokens, kVocab}, 1));
  LYRA_BENCH_TENSOR(targets, GpuTargets(2));
  LYRA_BENCH_TENSOR(loss, Tensor::Empty({kTokens}, DType::kF32, kGpu));
  LYRA_BENCH_TENSOR(lse, Tensor::Empty({kTokens}, DType::kF32, kGpu));
  cuda::CrossEntropyParams p = KernelParams(cuda::CrossEntropyOp::kForward, logits, targets);
  p.loss = loss.data();
  p.lse = lse.data();
  TimeAndReport(
      state, [&] { return cuda::CrossEntropyCuda(p, cuda::CurrentStream(0)); }, kLogitsBytes,
      0, false);
}

void BM_CrossEntropyKernelForwardBackward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  LYRA_BENCH_TENSOR(logits, GpuRandn({kTokens, kVocab}, 3));
  LYRA_BENCH_TENSOR(targets, GpuTargets(4));
  LYRA_BENCH_TENSOR(loss, Tensor::Empty({kTokens}, DType::kF32, kGpu));
  LYRA_BENCH_TENSOR(lse, Tensor::Empty({kTokens}, DType::kF32, kGpu));
  LYRA_BENCH_TENSOR(g, Tensor::Scalar(1, kDType, kGpu));
  LYRA_BENCH_TENSOR(dlogits, Tensor::Empty({kTokens, kVocab}, kDType, kGpu));
  cuda::CrossEntropyParams fwd = KernelParams(cuda::CrossEntropyOp::kForward, logits, targets);
  fwd.loss = loss.data();
  fwd.lse = lse.data();
  cuda::CrossEntropyParams bwd = KernelParams(cuda::CrossEntropyOp::kBackward, logits, targets);
  bwd.lse = lse.data();
  bwd.grad_loss = g.data();
  bwd.grad_scale = 1.0 / kTokens;
  bwd.dlogits = dlogits.data();
  bwd.dlogits_row_stride = kVocab;
  TimeAndReport(
      state,
      [&]() -> absl::Status {
        LYRA_RETURN_IF_ERROR(cuda::CrossEntropyCuda(fwd, cuda::CurrentStream(0)));
        return cuda::CrossEntropyCuda(bwd, cuda::CurrentStream(0));
      },
      3 * kLogitsBytes, 0, false);
}

void BM_CrossEntropyForward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  LYRA_BENCH_TENSOR(logits, GpuRandn({kTokens, kVocab}, 5));
  LYRA_BENCH_TENSOR(targets, GpuTargets(6));
  TimeAndReport(
      state, [&] { return nn::CrossEntropyForward(logits, targets).status(); }, kLogitsBytes, 0,
      true);
}

void BM_CrossEntropyTrainStep(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  LYRA_BENCH_TENSOR(logits, GpuRandn({kTokens, kVocab}, 7));
  LYRA_BENCH_TENSOR(targets, GpuTargets(8));
  TimeAndReport(
      state,
      [&]() -> absl::Status {
        Variable x(logits, true);
        LYRA_ASSIGN_OR_RETURN(Variable loss, nn::CrossEntropy(x, targets));
        return loss.Backward();
      },
      3 * kLogitsBytes, 0, true);
}

void BM_CrossEntropyComposed(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  LYRA_BENCH_TENSOR(logits, GpuRandn({kTokens, kVocab}, 9));
  LYRA_BENCH_TENSOR(targets, GpuTargets(10));
  TimeAndReport(
      state,
      [&]() -> absl::Status {
        Variable x(logits, true);
        LYRA_ASSIGN_OR_RETURN(Variable loss, autograd::CrossEntropy(x, targets));
        return loss.Backward();
      },
      3 * kLogitsBytes, 0, true);
}

// hidden [N, H] and the LM head [V, H] at the scale of a trained model's activations.
struct LinearInputs {
  Tensor hidden, weight, targets;
};
absl::StatusOr<LinearInputs> MakeLinearInputs() {
  LinearInputs in;
  LYRA_ASSIGN_OR_RETURN(in.hidden, GpuRandn({kTokens, kHidden}, 11));
  LYRA_ASSIGN_OR_RETURN(in.weight, GpuRandn({kVocab, kHidden}, 12, 0.02));
  LYRA_ASSIGN_OR_RETURN(in.targets, GpuTargets(13));
  return in;
}

void BM_LinearCrossEntropy(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int64_t chunk = state.range(0);
  absl::StatusOr<LinearInputs> in = MakeLinearInputs();
  if (!in.ok()) return bench::Fail(state, in.status());
  TimeAndReport(
      state,
      [&]() -> absl::Status {
        Variable h(in->hidden, true), w(in->weight, true);
        LYRA_ASSIGN_OR_RETURN(Variable loss,
                              nn::LinearCrossEntropy(h, w, in->targets, nn::kDefaultIgnoreIndex,
                                                     nn::Reduction::kMean, chunk));
        return loss.Backward();
      },
      0, kLinearFlops, true);
}

void BM_MatmulThenCrossEntropy(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  absl::StatusOr<LinearInputs> in = MakeLinearInputs();
  if (!in.ok()) return bench::Fail(state, in.status());
  TimeAndReport(
      state,
      [&]() -> absl::Status {
        Variable h(in->hidden, true), w(in->weight, true);
        LYRA_ASSIGN_OR_RETURN(Variable w_t, autograd::Transpose(w, 0, 1));
        LYRA_ASSIGN_OR_RETURN(Variable logits, autograd::Matmul(h, w_t));
        LYRA_ASSIGN_OR_RETURN(Variable loss, nn::CrossEntropy(logits, in->targets));
        return loss.Backward();
      },
      0, kLinearFlops, true);
}

#define LYRA_CE_BENCHMARK(fn) BENCHMARK(fn)->UseManualTime()->Unit(benchmark::kMicrosecond)

LYRA_CE_BENCHMARK(BM_CrossEntropyKernelForward);
LYRA_CE_BENCHMARK(BM_CrossEntropyKernelForwardBackward);
LYRA_CE_BENCHMARK(BM_CrossEntropyForward);
LYRA_CE_BENCHMARK(BM_CrossEntropyTrainStep);
LYRA_CE_BENCHMARK(BM_CrossEntropyComposed);
LYRA_CE_BENCHMARK(BM_LinearCrossEntropy)->Arg(1024)->Arg(4096)->Arg(8192);
LYRA_CE_BENCHMARK(BM_MatmulThenCrossEntropy);

}  // namespace
}  // namespace lyra
