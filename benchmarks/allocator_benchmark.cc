// Host-side cost of memory allocation (cuda/allocator.h), in ns per Allocate/Free pair.
//
//   BM_CachingAllocatorPair/bytes   CachingAllocator::Allocate + Free on a warm cache: a map
//                                   lookup and the statistics under a mutex, no CUDA call
//                                   (the `device_mallocs` counter must stay 0)
//   BM_CudaTensorEmpty/bytes        Tensor::Empty on cuda:0 and its release: the above plus
//                                   Storage and shared_ptr bookkeeping
//   BM_CudaMallocFreePair/bytes     raw cudaMalloc + cudaFree: what the cache saves
//   BM_HostAllocatePair/bytes       HostAllocate + HostFree (aligned_alloc + statistics)
//   BM_CpuTensorEmpty/bytes         Tensor::Empty on the CPU and its release
// for 1 KiB, 1 MiB and 64 MiB. Nothing here touches the memory, so the sizes only matter through
// the allocators' size classes (glibc serves 64 MiB with mmap, for instance). The GPU benchmarks
// report an error and skip without a GPU; the host ones always run.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "cuda/allocator.h"
#include "cuda/device.h"
#include "tensor/tensor.h"

namespace lyra::cuda {
namespace {

bool SkipWithoutGpu(benchmark::State& state) {
  if (HasGpu()) return false;
  state.SkipWithError(absl::StrCat("needs a GPU: ", NoGpuReason()).c_str());
  return true;
}

void BM_CachingAllocatorPair(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  const size_t bytes = static_cast<size_t>(state.range(0));
  CachingAllocator& allocator = CachingAllocator::ForDevice(0);
  absl::StatusOr<void*> warm = allocator.Allocate(bytes);  // leaves one block in the cache
  if (!warm.ok()) return state.SkipWithError(warm.status().ToString().c_str());
  allocator.Free(*warm);
  const MemoryStats before = allocator.Stats();
  for (auto _ : state) {
    absl::StatusOr<void*> p = allocator.Allocate(bytes);
    if (!p.ok()) {
      state.SkipWithError(p.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(*p);
    allocator.Free(*p);
  }
  const MemoryStats after = allocator.Stats();
  state.counters["device_mallocs"] =
      static_cast<double>(after.num_device_mallocs - before.num_device_mallocs);
}

void BM_CudaTensorEmpty(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  const int64_t bytes = state.range(0);
  CachingAllocator& allocator = CachingAllocator::ForDevice(0);
  {
    absl::StatusOr<Tensor> warm = Tensor::Empty({bytes}, DType::kBool, Device::Cuda(0));
    if (!warm.ok()) return state.SkipWithError(warm.status().ToString().c_str());
  }
  const int64_t mallocs = allocator.Stats().num_device_mallocs;
  for (auto _ : state) {
    absl::StatusOr<Tensor> t = Tensor::Empty({bytes}, DType::kBool, Device::Cuda(0));
    if (!t.ok()) {
      state.SkipWithError(t.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(t->data());
  }
  state.counters["device_mallocs"] =
      static_cast<double>(allocator.Stats().num_device_mallocs - mallocs);
}

void BM_CudaMallocFreePair(benchmark::State& state) {
  if (SkipWithoutGpu(state)) return;
  const size_t bytes = static_cast<size_t>(state.range(0));
  if (cudaSetDevice(0) != cudaSuccess) return state.SkipWithError("cudaSetDevice(0) failed");
  for (auto _ : state) {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
      state.SkipWithError("cudaMalloc failed");
      break;
    }
    benchmark::DoNotOptimize(p);
    cudaFree(p);
  }
}

void BM_HostAllocatePair(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = HostAllocate(bytes);
    if (p == nullptr) {
      state.SkipWithError("HostAllocate failed");
      break;
    }
    benchmark::DoNotOptimize(p);
    HostFree(p, bytes);
  }
}

void BM_CpuTensorEmpty(benchmark::State& state) {
  const int64_t bytes = state.range(0);
  for (auto _ : state) {
    absl::StatusOr<Tensor> t = Tensor::Empty({bytes}, DType::kBool);
    if (!t.ok()) {
      state.SkipWithError(t.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(t->data());
  }
}

// 1 KiB, 1 MiB, 64 MiB.
void Sizes(benchmark::internal::Benchmark* b) { b->Arg(1 << 10)->Arg(1 << 20)->Arg(64 << 20); }

BENCHMARK(BM_CachingAllocatorPair)->Apply(Sizes);
BENCHMARK(BM_CudaTensorEmpty)->Apply(Sizes);
BENCHMARK(BM_CudaMallocFreePair)->Apply(Sizes);
BENCHMARK(BM_HostAllocatePair)->Apply(Sizes);
BENCHMARK(BM_CpuTensorEmpty)->Apply(Sizes);

}  // namespace
}  // namespace lyra::cuda
