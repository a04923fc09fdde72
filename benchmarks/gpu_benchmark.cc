#include "benchmarks/gpu_benchmark.h"

#include <cuda_runtime.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"

namespace lyra::bench {
namespace {

constexpr int kCopyLaunches = 10;

}  // namespace

absl::StatusOr<GpuTimer> GpuTimer::Create() {
  LYRA_RETURN_IF_ERROR(cuda::CheckGpu(0));
  LYRA_ASSIGN_OR_RETURN(cuda::Event start, cuda::Event::Create(0));
  LYRA_ASSIGN_OR_RETURN(cuda::Event stop, cuda::Event::Create(0));
  LYRA_ASSIGN_OR_RETURN(void* flush, cuda::CachingAllocator::ForDevice(0).Allocate(kFlushBytes));
  return GpuTimer(std::move(start), std::move(stop), flush);
}

GpuTimer::GpuTimer(cuda::Event start, cuda::Event stop, void* flush)
    : start_(std::move(start)), stop_(std::move(stop)), flush_(flush) {}

GpuTimer::GpuTimer(GpuTimer&& other) noexcept
    : start_(std::move(other.start_)), stop_(std::move(other.stop_)), flush_(other.flush_) {
  other.flush_ = nullptr;
}

GpuTimer::~GpuTimer() {
  if (flush_ != nullptr) cuda::CachingAllocator::ForDevice(0).Free(flush_);
}

absl::StatusOr<float> GpuTimer::Time(const std::function<absl::Status()>& launch) {
  const cudaStream_t stream = cuda::CurrentStream(0);
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(flush_, ++flushes_ & 0xff, kFlushBytes, stream));
  LYRA_RETURN_IF_ERROR(start_.Record(stream));
  LYRA_RETURN_IF_ERROR(launch());
  LYRA_RETURN_IF_ERROR(stop_.Record(stream));
  LYRA_RETURN_IF_ERROR(stop_.Synchronize());
  return stop_.ElapsedMsSince(start_);
}

void Fail(benchmark::State& state, const absl::Status& status) {
  state.SkipWithError(std::string(status.ToString()).c_str());
}

bool SkipWithoutGpu(benchmark::State& state) {
  if (cuda::HasGpu()) return false;
  state.SkipWithError(absl::StrCat("needs a GPU: ", cuda::NoGpuReason()).c_str());
  return true;
}

double RunTimed(benchmark::State& state, const std::function<absl::Status()>& launch,
                double bytes) {
  absl::StatusOr<GpuTimer> timer = GpuTimer::Create();
  if (!timer.ok()) {
    Fail(state, timer.status());
    return -1;
  }
  for (int i = 0; i < kWarmupLaunches; ++i) {
    if (absl::Status s = launch(); !s.ok()) {
      Fail(state, s);
      return -1;
    }
  }
  if (absl::Status s = cuda::Synchronize(0); !s.ok()) {
    Fail(state, s);
    return -1;
  }
  double total_ms = 0;
  for (auto _ : state) {
    absl::StatusOr<float> ms = timer->Time(launch);
    if (!ms.ok()) {
      Fail(state, ms.status());
      return -1;
    }
    total_ms += *ms;
    state.SetIterationTime(*ms / 1e3);
  }
  if (bytes > 0) {
    state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
    state.counters["GB/s"] =
        benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  }
  return state.iterations() > 0 ? total_ms / state.iterations() : -1;
}

absl::StatusOr<double> CopyMs(double bytes) {
  const size_t half = static_cast<size_t>(bytes / 2);
  cuda::CachingAllocator& allocator = cuda::CachingAllocator::ForDevice(0);
  LYRA_ASSIGN_OR_RETURN(void* src, allocator.Allocate(half));
  LYRA_ASSIGN_OR_RETURN(void* dst, allocator.Allocate(half));
  LYRA_ASSIGN_OR_RETURN(GpuTimer timer, GpuTimer::Create());
  const cudaStream_t stream = cuda::CurrentStream(0);
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(src, 1, half, stream));
  auto copy = [&]() -> absl::Status {
    LYRA_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(dst, src, half, cudaMemcpyDeviceToDevice, stream));
    return absl::OkStatus();
  };
  LYRA_RETURN_IF_ERROR(copy());
  double total = 0;
  for (int i = 0; i < kCopyLaunches; ++i) {
    LYRA_ASSIGN_OR_RETURN(float ms, timer.Time(copy));
    total += ms;
  }
  allocator.Free(src);
  allocator.Free(dst);
  return total / kCopyLaunches;
}

void ReportCopyFraction(benchmark::State& state, double bytes, double kernel_ms) {
  absl::StatusOr<double> copy_ms = CopyMs(bytes);
  if (!copy_ms.ok()) return Fail(state, copy_ms.status());
  state.counters["copy_GB/s"] = bytes / 1e9 / (*copy_ms / 1e3);
  state.counters["copy_fraction"] = *copy_ms / kernel_ms;
}

}  // namespace lyra::bench
