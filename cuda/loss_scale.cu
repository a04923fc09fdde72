// CUDA kernels of the loss scaler (math, layouts and precision in cuda/loss_scale.h).
//
// UnscaleAndCheckKernel: one launch over every gradient. The grid has one block per chunk of
// kUnscaleChunkElements elements, chunks numbered tensor after tensor; the table entry of a
// tensor holds its first chunk, so block b finds its tensor by binary search (the table is a few
// hundred entries, read through the L1/L2 cache). Each block unscales its chunk in place (=) with
// 16-byte vectors when the tensor is 16-byte aligned (chunk starts are multiples of the vector
// width, so every chunk of an aligned tensor is aligned), ORs its "non-finite seen" bits with
// __syncthreads_or and one thread sets *found_inf = 1. Blocks race only to store the same 1.
//
// Bytes: read n * sizeof(T) and write n * sizeof(T) (read only when the factor is 1), plus the
// table: memory-bound at copy speed for large gradients.
//
// UpdateScaleKernel: a single thread applies UpdateScaleStep to the four device values.
#include <cstdint>
#include <vector>

#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/loss_scale.h"

namespace lyra::cuda {
namespace {

constexpr int kUnscaleThreads = 256;
constexpr int kVectorBytes = 16;
static_assert(kUnscaleChunkElements % (kVectorBytes / 2) == 0,
              "chunks must start on a vector boundary for every dtype");

// One tensor as the kernel sees it.
struct UnscaleEntry {
  void* data;           // (numel,) dense
  int64_t numel;
  int64_t first_chunk;  // chunks [first_chunk, first_chunk + ceil(numel / chunk)) are this one's
  DType dtype;
  bool aligned;         // data is 16-byte aligned: vector path
};

// The entry whose chunk range holds `chunk`: the last one with first_chunk <= chunk.
__device__ __forceinline__ int FindEntry(const UnscaleEntry* entries, int num_entries,
                                         int64_t chunk) {
  int lo = 0;
  int hi = num_entries - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (__ldg(&entries[mid].first_chunk) <= chunk) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// Unscales elements [begin, end) of `data` in place; true if this thread saw a non-finite value.
template <typename T>
__device__ __forceinline__ bool UnscaleChunk(T* data, int64_t begin, int64_t end, bool aligned,
                                             float factor) {  // data: (numel,)
  using C = ComputeType<T>;
  constexpr int kWidth = kVectorBytes / sizeof(T);
  const C f = static_cast<C>(factor);
  const bool write = factor != 1.0f;
  bool found = false;
  int64_t scalar_begin = begin;
  if (aligned) {
    using V = Vec<T, kWidth>;
    const int64_t num_vectors = (end - begin) / kWidth;
    V* vectors = reinterpret_cast<V*>(data + begin);
    for (int64_t i = threadIdx.x; i < num_vectors; i += blockDim.x) {
      V v = vectors[i];
#pragma unroll
      for (int j = 0; j < kWidth; ++j) {
        const C x = DLoad(v.v[j]);
        found |= !IsFiniteValue(x);
        v.v[j] = DStore<T>(x * f);
      }
      if (write) vectors[i] = v;
    }
    scalar_begin = begin + num_vectors * kWidth;
  }
  for (int64_t i = scalar_begin + threadIdx.x; i < end; i += blockDim.x) {
    const C x = DLoad(data[i]);
    found |= !IsFiniteValue(x);
    if (write) data[i] = DStore<T>(x * f);
  }
  return found;
}

__global__ void __launch_bounds__(kUnscaleThreads)
    UnscaleAndCheckKernel(const UnscaleEntry* entries,  // (num_entries,)
                          int num_entries,
                          const float* scale,           // ()
                          float* found_inf) {           // ()
  const int64_t chunk = blockIdx.x;
  const UnscaleEntry entry = entries[FindEntry(entries, num_entries, chunk)];
  const int64_t begin = (chunk - entry.first_chunk) * kUnscaleChunkElements;
  const int64_t chunk_end = begin + kUnscaleChunkElements;
  const int64_t end = chunk_end < entry.numel ? chunk_end : entry.numel;
  const float factor = InverseScale(*scale);
  bool found = false;
  switch (entry.dtype) {
    case DType::kF32:
      found = UnscaleChunk(static_cast<float*>(entry.data), begin, end, entry.aligned, factor);
      break;
    case DType::kF16:
      found = UnscaleChunk(static_cast<Float16*>(entry.data), begin, end, entry.aligned, factor);
      break;
    case DType::kBF16:
      found = UnscaleChunk(static_cast<BFloat16*>(entry.data), begin, end, entry.aligned, factor);
      break;
    case DType::kF64:
      found = UnscaleChunk(static_cast<double*>(entry.data), begin, end, entry.aligned, factor);
      break;
    default:
      break;  // rejected by UnscaleSupported on the host
  }
  if (__syncthreads_or(found) && threadIdx.x == 0) *found_inf = 1.0f;
}

__global__ void UpdateScaleKernel(UpdateScaleParams p) {
  float scale = *p.scale;
  int64_t growth_tracker = *p.growth_tracker;
  int64_t num_skipped = *p.num_skipped;
  UpdateScaleStep(*p.found_inf, p.growth_factor, p.backoff_factor, p.growth_interval, scale,
                  growth_tracker, num_skipped);
  *p.scale = scale;
  *p.growth_tracker = growth_tracker;
  *p.num_skipped = num_skipped;
}

}  // namespace

absl::Status UnscaleAndCheckCuda(const UnscaleParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(UnscaleSupported(p));
  std::vector<UnscaleEntry> entries;
  entries.reserve(p.num_tensors);
  int64_t chunks = 0;
  for (int64_t k = 0; k < p.num_tensors; ++k) {
    const UnscaleTensor& t = p.tensors[k];
    if (t.numel == 0) continue;  // no chunks: keeps first_chunk strictly increasing
    const bool aligned = reinterpret_cast<uintptr_t>(t.data) % kVectorBytes == 0;
    entries.push_back(UnscaleEntry{t.data, t.numel, chunks, t.dtype, aligned});
    chunks += (t.numel + kUnscaleChunkElements - 1) / kUnscaleChunkElements;
  }
  if (chunks == 0) return absl::OkStatus();

  // The table goes to a block of the caching allocator. A pageable-memory cudaMemcpyAsync has
  // staged the bytes when it returns, and the block is reused only by work queued after this
  // kernel on the same stream, so both can be released right after the launch.
  int device = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  CachingAllocator& allocator = CachingAllocator::ForDevice(device);
  const size_t table_bytes = entries.size() * sizeof(UnscaleEntry);
  LYRA_ASSIGN_OR_RETURN(void* table, allocator.Allocate(table_bytes));
  const cudaError_t copied =
      cudaMemcpyAsync(table, entries.data(), table_bytes, cudaMemcpyHostToDevice, stream);
  if (copied != cudaSuccess) {
    allocator.Free(table);
    return CudaStatus(copied, "cudaMemcpyAsync(unscale table)", __FILE__, __LINE__);
  }
  UnscaleAndCheckKernel<<<static_cast<unsigned>(chunks), kUnscaleThreads, 0, stream>>>(
      static_cast<const UnscaleEntry*>(table), static_cast<int>(entries.size()), p.scale,
      p.found_inf);
  const absl::Status launched = LastLaunchStatus("UnscaleAndCheckKernel", __FILE__, __LINE__);
  allocator.Free(table);
  return launched;
}

absl::Status UpdateScaleCuda(const UpdateScaleParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(UpdateScaleSupported(p));
  UpdateScaleKernel<<<1, 1, 0, stream>>>(p);
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("UpdateScaleKernel");
  return absl::OkStatus();
}

}  // namespace lyra::cuda
