// GPU bandwidth of the elementwise kernels (cuda/elementwise_kernels.cuh) through the tensor API.
//
//   BM_CopyDeviceToDevice<T>   cudaMemcpyAsync of n * sizeof(T) bytes: the ceiling
//   BM_AddContiguous<T>        out = a + b, all contiguous (the 16-byte vector kernel)
//   BM_AddBroadcastRow<T>      out[M, N] = a[M, N] + b[N]   (the strided kernel, stride-0 rows)
//   BM_AddTransposed<T>        out[M, N] = a^T + b, a stored as [N, M]   (strided reads)
// for T = f32 and bf16, n = 2^28 (256M) elements, M x N = 8192 x 4096.
//
// Bytes counted (each element read or written once; nothing survives in L2 at these sizes):
//   copy:       2 * n * sizeof(T)               (read + write)
//   add:        3 * n * sizeof(T)               (two reads, one write)
//   broadcast:  (2 * M * N + N) * sizeof(T)
//   transposed: 3 * M * N * sizeof(T)
// Napkin math on an H200 (HBM3e, 4.8 TB/s peak): the f32 add moves 3 GiB, so ~0.7 ms at 90% of
// peak. BM_AddContiguous also times the copy of the same bytes in the same process and reports
// `copy_fraction` = (add bytes / add time) / (copy bytes / copy time): 1.0 means Add runs at copy
// speed.
//
// Timing: CUDA events around each launch on cuda:0's current stream (no host sync inside the
// timed region), warm-up launches first, and a 256 MiB memset before every timed launch so that
// no operand starts in L2. Without a GPU every benchmark reports an error and skips.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "tensor/elementwise.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

constexpr int64_t kLargeElements = int64_t{1} << 28;  // 256M
constexpr int64_t kRows = 8192;                       // M
constexpr int64_t kCols = 4096;                       // N
constexpr int kWarmupLaunches = 3;
constexpr size_t kFlushBytes = size_t{256} << 20;     // > the H200's 60 MiB L2
constexpr int kCopyReferenceLaunches = 10;
constexpr Device kGpu = Device::Cuda(0);

// Times launches on cuda:0's current stream with a pair of CUDA events, after an L2 flush.
class GpuTimer {
 public:
  static absl::StatusOr<GpuTimer> Create() {
    LYRA_RETURN_IF_ERROR(cuda::CheckGpu(0));
    LYRA_ASSIGN_OR_RETURN(cuda::Event start, cuda::Event::Create(0));
    LYRA_ASSIGN_OR_RETURN(cuda::Event stop, cuda::Event::Create(0));
    LYRA_ASSIGN_OR_RETURN(void* flush, cuda::CachingAllocator::ForDevice(0).Allocate(kFlushBytes));
    return GpuTimer(std::move(start), std::move(stop), flush);
  }
  GpuTimer(GpuTimer&& other) noexcept
      : start_(std::move(other.start_)), stop_(std::move(other.stop_)), flush_(other.flush_) {
    other.flush_ = nullptr;
  }
  GpuTimer& operator=(GpuTimer&&) = delete;
  ~GpuTimer() {
    if (flush_ != nullptr) cuda::CachingAllocator::ForDevice(0).Free(flush_);
  }

  // Milliseconds of one `launch` on the GPU.
  absl::StatusOr<float> Time(const std::function<absl::Status()>& launch) {
    const cudaStream_t stream = cuda::CurrentStream(0);
    LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(flush_, ++flushes_ & 0xff, kFlushBytes, stream));
    LYRA_RETURN_IF_ERROR(start_.Record(stream));
    LYRA_RETURN_IF_ERROR(launch());
    LYRA_RETURN_IF_ERROR(stop_.Record(stream));
    LYRA_RETURN_IF_ERROR(stop_.Synchronize());
    return stop_.ElapsedMsSince(start_);
  }

 private:
  GpuTimer(cuda::Event start, cuda::Event stop, void* flush)
      : start_(std::move(start)), stop_(std::move(stop)), flush_(flush) {}
  cuda::Event start_;
  cuda::Event stop_;
  void* flush_;
  int flushes_ = 0;
};

void Fail(benchmark::State& state, const absl::Status& status) {
  state.SkipWithError(std::string(status.ToString()).c_str());
}

// True (and the benchmark marked skipped) when there is no GPU.
bool SkipWithoutGpu(benchmark::State& state) {
  if (cuda::HasGpu()) return false;
  state.SkipWithError(absl::StrCat("needs a GPU: ", cuda::NoGpuReason()).c_str());
  return true;
}

// The benchmark loop: warm-up, then one event-timed launch per iteration. Reports bytes/s
// (binary prefixes) and GB/s (decimal) from `bytes` per launch; returns the mean milliseconds,
// or a negative value after reporting an error.
double RunTimed(benchmark::State& state, GpuTimer& timer,
                const std::function<absl::Status()>& launch, double bytes) {
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
    absl::StatusOr<float> ms = timer.Time(launch);
    if (!ms.ok()) {
      Fail(state, ms.status());
      return -1;
    }
    total_ms += *ms;
    state.SetIterationTime(*ms / 1e3);
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
  state.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  return state.iterations() > 0 ? total_ms / state.iterations() : -1;
}

absl::Status CopyDeviceToDevice(const Tensor& dst, const Tensor& src) {
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(),
                                            cudaMemcpyDeviceToDevice, cuda::CurrentStream(0)));
  return absl::OkStatus();
}

template <typename T>
void BM_CopyDeviceToDevice(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<GpuTimer> timer = GpuTimer::Create();
  absl::StatusOr<Tensor> src = Tensor::Full({kLargeElements}, 1.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> dst = Tensor::Empty({kLargeElements}, kDTypeOf<T>, kGpu);
  for (const absl::Status& s : {timer.status(), src.status(), dst.status()}) {
    if (!s.ok()) return Fail(state, s);
  }
  const double bytes = 2.0 * kLargeElements * sizeof(T);
  RunTimed(state, *timer, [&] { return CopyDeviceToDevice(*dst, *src); }, bytes);
}

template <typename T>
void BM_AddContiguous(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<GpuTimer> timer = GpuTimer::Create();
  absl::StatusOr<Tensor> a = Tensor::Full({kLargeElements}, 1.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> b = Tensor::Full({kLargeElements}, 2.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> out = Tensor::Empty({kLargeElements}, kDTypeOf<T>, kGpu);
  for (const absl::Status& s : {timer.status(), a.status(), b.status(), out.status()}) {
    if (!s.ok()) return Fail(state, s);
  }
  const double bytes = 3.0 * kLargeElements * sizeof(T);
  const double add_ms = RunTimed(
      state, *timer, [&] { return BinaryInto(cuda::BinaryOp::kAdd, *a, *b, *out); }, bytes);
  if (add_ms <= 0) return;
  // The ceiling, measured on the same buffers: copy a into out.
  double copy_ms = 0;
  for (int i = 0; i < kCopyReferenceLaunches; ++i) {
    absl::StatusOr<float> ms = timer->Time([&] { return CopyDeviceToDevice(*out, *a); });
    if (!ms.ok()) return Fail(state, ms.status());
    copy_ms += *ms / kCopyReferenceLaunches;
  }
  const double copy_bytes = 2.0 * kLargeElements * sizeof(T);
  state.counters["copy_GB/s"] = copy_bytes / 1e9 / (copy_ms / 1e3);
  state.counters["copy_fraction"] = (bytes / add_ms) / (copy_bytes / copy_ms);
}

template <typename T>
void BM_AddBroadcastRow(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<GpuTimer> timer = GpuTimer::Create();
  absl::StatusOr<Tensor> a = Tensor::Full({kRows, kCols}, 1.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> b = Tensor::Full({kCols}, 2.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> out = Tensor::Empty({kRows, kCols}, kDTypeOf<T>, kGpu);
  for (const absl::Status& s : {timer.status(), a.status(), b.status(), out.status()}) {
    if (!s.ok()) return Fail(state, s);
  }
  const double bytes = (2.0 * kRows * kCols + kCols) * sizeof(T);
  RunTimed(state, *timer, [&] { return BinaryInto(cuda::BinaryOp::kAdd, *a, *b, *out); }, bytes);
}

template <typename T>
void BM_AddTransposed(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<GpuTimer> timer = GpuTimer::Create();
  absl::StatusOr<Tensor> a_storage = Tensor::Full({kCols, kRows}, 1.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> b = Tensor::Full({kRows, kCols}, 2.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> out = Tensor::Empty({kRows, kCols}, kDTypeOf<T>, kGpu);
  for (const absl::Status& s : {timer.status(), a_storage.status(), b.status(), out.status()}) {
    if (!s.ok()) return Fail(state, s);
  }
  absl::StatusOr<Tensor> a = a_storage->Transpose(0, 1);  // [M, N] with strides [1, M]
  if (!a.ok()) return Fail(state, a.status());
  const double bytes = 3.0 * kRows * kCols * sizeof(T);
  RunTimed(state, *timer, [&] { return BinaryInto(cuda::BinaryOp::kAdd, *a, *b, *out); }, bytes);
}

#define LYRA_GPU_BENCHMARK(fn, T) \
  BENCHMARK_TEMPLATE(fn, T)->UseManualTime()->Unit(benchmark::kMicrosecond)

LYRA_GPU_BENCHMARK(BM_CopyDeviceToDevice, float);
LYRA_GPU_BENCHMARK(BM_AddContiguous, float);
LYRA_GPU_BENCHMARK(BM_CopyDeviceToDevice, BFloat16);
LYRA_GPU_BENCHMARK(BM_AddContiguous, BFloat16);
LYRA_GPU_BENCHMARK(BM_AddBroadcastRow, float);
LYRA_GPU_BENCHMARK(BM_AddBroadcastRow, BFloat16);
LYRA_GPU_BENCHMARK(BM_AddTransposed, float);
LYRA_GPU_BENCHMARK(BM_AddTransposed, BFloat16);

}  // namespace
}  // namespace lyra
