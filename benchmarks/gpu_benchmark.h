// What every GPU benchmark here shares: event timing on cuda:0's current stream after an L2
// flush, the warm-up-then-time loop with GB/s counters, skipping without a GPU, and the
// device-to-device copy that serves as the bandwidth ceiling in the same process.
//
//   void BM_Thing(benchmark::State& state) {
//     if (bench::SkipWithoutGpu(state)) return;
//     ... make inputs, `return bench::Fail(state, status)` on error ...
//     const double ms = bench::RunTimed(state, [&] { return Thing(x); }, bytes);
//     if (ms > 0) bench::ReportCopyFraction(state, bytes, ms);
//   }
#ifndef LYRA_BENCHMARKS_GPU_BENCHMARK_H_
#define LYRA_BENCHMARKS_GPU_BENCHMARK_H_

#include <benchmark/benchmark.h>

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cuda/stream.h"

namespace lyra::bench {

inline constexpr int kWarmupLaunches = 3;
inline constexpr size_t kFlushBytes = size_t{256} << 20;  // > the H100/H200 L2 (50-60 MiB)

// Times launches on cuda:0's current stream with a pair of CUDA events, after an L2 flush.
class GpuTimer {
 public:
  static absl::StatusOr<GpuTimer> Create();
  GpuTimer(GpuTimer&& other) noexcept;
  GpuTimer& operator=(GpuTimer&&) = delete;
  ~GpuTimer();

  // Milliseconds of one `launch` on the GPU (the flush is outside the timed region).
  absl::StatusOr<float> Time(const std::function<absl::Status()>& launch);

 private:
  GpuTimer(cuda::Event start, cuda::Event stop, void* flush);
  cuda::Event start_;
  cuda::Event stop_;
  void* flush_;
  int flushes_ = 0;
};

// Marks the benchmark failed with the status's text.
void Fail(benchmark::State& state, const absl::Status& status);

// True (and the benchmark marked skipped with the reason) when there is no GPU.
bool SkipWithoutGpu(benchmark::State& state);

// Warm-up launches, then one event-timed launch per iteration (manual time). Reports bytes/s and
// a decimal "GB/s" counter from `bytes` per launch (0: none); returns the mean milliseconds, or a
// negative value after marking the benchmark failed.
double RunTimed(benchmark::State& state, const std::function<absl::Status()>& launch,
                double bytes);

// Milliseconds of a cudaMemcpyAsync device-to-device copy of `bytes` total traffic (bytes / 2
// read, bytes / 2 written), averaged over a few launches: the ceiling for a kernel moving as much.
absl::StatusOr<double> CopyMs(double bytes);

// Adds "copy_GB/s" and "copy_fraction" (the kernel's bandwidth over the copy's) counters for a
// kernel that moved `bytes` in `kernel_ms`.
void ReportCopyFraction(benchmark::State& state, double bytes, double kernel_ms);

}  // namespace lyra::bench

#endif  // LYRA_BENCHMARKS_GPU_BENCHMARK_H_
