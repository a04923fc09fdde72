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
// peak. BM_AddContiguous also times a copy moving as many bytes in the same process and reports
// `copy_fraction` = copy time / add time: 1.0 means Add runs at copy speed.
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
#include "benchmarks/gpu_benchmark.h"
#include "tensor/elementwise.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using bench::Fail;
using bench::RunTimed;
using bench::SkipWithoutGpu;

constexpr int64_t kLargeElements = int64_t{1} << 28;  // 256M
constexpr int64_t kRows = 8192;                       // M
constexpr int64_t kCols = 4096;                       // N
constexpr Device kGpu = Device::Cuda(0);

absl::Status CopyDeviceToDevice(const Tensor& dst, const Tensor& src) {
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst.data(), src.data(), src.nbytes(),
                                            cudaMemcpyDeviceToDevice, cuda::CurrentStream(0)));
  return absl::OkStatus();
}

template <typename T>
void BM_CopyDeviceToDevice(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Tensor> src = Tensor::Full({kLargeElements}, 1.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> dst = Tensor::Empty({kLargeElements}, kDTypeOf<T>, kGpu);
  for (const absl::Status& s : {src.status(), dst.status()}) {
    if (!s.ok()) return Fail(state, s);
  }
  const double bytes = 2.0 * kLargeElements * sizeof(T);
  RunTimed(state, [&] { return CopyDeviceToDevice(*dst, *src); }, bytes);
}

template <typename T>
void BM_AddContiguous(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Tensor> a = Tensor::Full({kLargeElements}, 1.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> b = Tensor::Full({kLargeElements}, 2.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> out = Tensor::Empty({kLargeElements}, kDTypeOf<T>, kGpu);
  for (const absl::Status& s : {a.status(), b.status(), out.status()}) {
    if (!s.ok()) return Fail(state, s);
  }
  const double bytes = 3.0 * kLargeElements * sizeof(T);
  const double add_ms = RunTimed(
      state, [&] { return BinaryInto(cuda::BinaryOp::kAdd, *a, *b, *out); }, bytes);
  // The ceiling: a device-to-device copy moving as many bytes, in the same process.
  if (add_ms > 0) bench::ReportCopyFraction(state, bytes, add_ms);
}

template <typename T>
void BM_AddBroadcastRow(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Tensor> a = Tensor::Full({kRows, kCols}, 1.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> b = Tensor::Full({kCols}, 2.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> out = Tensor::Empty({kRows, kCols}, kDTypeOf<T>, kGpu);
  for (const absl::Status& s : {a.status(), b.status(), out.status()}) {
    if (!s.ok()) return Fail(state, s);
  }
  const double bytes = (2.0 * kRows * kCols + kCols) * sizeof(T);
  RunTimed(state, [&] { return BinaryInto(cuda::BinaryOp::kAdd, *a, *b, *out); }, bytes);
}

template <typename T>
void BM_AddTransposed(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  absl::StatusOr<Tensor> a_storage = Tensor::Full({kCols, kRows}, 1.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> b = Tensor::Full({kRows, kCols}, 2.0, kDTypeOf<T>, kGpu);
  absl::StatusOr<Tensor> out = Tensor::Empty({kRows, kCols}, kDTypeOf<T>, kGpu);
  for (const absl::Status& s : {a_storage.status(), b.status(), out.status()}) {
    if (!s.ok()) return Fail(state, s);
  }
  absl::StatusOr<Tensor> a = a_storage->Transpose(0, 1);  // [M, N] with strides [1, M]
  if (!a.ok()) return Fail(state, a.status());
  const double bytes = 3.0 * kRows * kCols * sizeof(T);
  RunTimed(state, [&] { return BinaryInto(cuda::BinaryOp::kAdd, *a, *b, *out); }, bytes);
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
