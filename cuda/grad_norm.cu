// The fused global-norm kernels (math, precision and the non-finite rule in cuda/grad_norm.h).
//
// GradNormKernel: one block per chunk. Each thread sums x^2 of its elements in f32 (16-byte
// loads when the tensor allows), the block combines them (f32 tree) into partials[chunk]. The
// block that takes the last ticket then sums all partials in f64 (a block-strided loop and a
// tree), writes norm and coef and resets the ticket: one launch, no second pass, no host sync.
//
// GradScaleKernel: one block per chunk; every block reads coef and returns at once when it is 1.
//
// Traffic: GradNorm reads every element once (4 bytes per f32 element); GradScale, when it
// clips, reads and writes every element once.
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/grad_norm.h"
#include "cuda/grad_norm_math.h"
#include "cuda/reduce_block.cuh"

namespace lyra::cuda {
namespace {

constexpr int kGradNormThreads = 512;
constexpr int kGradNormVector = 4;

template <typename A>
struct SumOp {
  __device__ A Identity() const { return A(0); }
  __device__ A Combine(A a, A b) const { return a + b; }
};

template <typename T>
__device__ __forceinline__ float ChunkSumOfSquares(const T* __restrict__ x, int32_t length) {
  using V = Vec<T, kGradNormVector>;
  float sum = 0;
  int32_t done = 0;
  if (reinterpret_cast<uintptr_t>(x) % sizeof(V) == 0) {
    const int32_t vectors = length / kGradNormVector;
    for (int32_t i = threadIdx.x; i < vectors; i += blockDim.x) {
      const V xv = reinterpret_cast<const V*>(x)[i];
#pragma unroll
      for (int k = 0; k < kGradNormVector; ++k) {
        const float value = DLoad(xv.v[k]);
        sum += value * value;
      }
    }
    done = vectors * kGradNormVector;
  }
  for (int32_t i = done + threadIdx.x; i < length; i += blockDim.x) {
    const float value = DLoad(x[i]);
    sum += value * value;
  }
  return sum;
}

template <typename T>
__device__ __forceinline__ void ChunkScale(T* __restrict__ x, int32_t length, float coef) {
  using V = Vec<T, kGradNormVector>;
  int32_t done = 0;
  if (reinterpret_cast<uintptr_t>(x) % sizeof(V) == 0) {
    const int32_t vectors = length / kGradNormVector;
    for (int32_t i = threadIdx.x; i < vectors; i += blockDim.x) {
      V xv = reinterpret_cast<const V*>(x)[i];
#pragma unroll
      for (int k = 0; k < kGradNormVector; ++k) xv.v[k] = DStore<T>(DLoad(xv.v[k]) * coef);
      reinterpret_cast<V*>(x)[i] = xv;
    }
    done = vectors * kGradNormVector;
  }
  for (int32_t i = done + threadIdx.x; i < length; i += blockDim.x) {
    x[i] = DStore<T>(DLoad(x[i]) * coef);
  }
}

__global__ void __launch_bounds__(kGradNormThreads)
    GradNormKernel(const GradNormTensor* __restrict__ tensors,  // (num_tensors)
                   const TensorChunk* __restrict__ chunks,      // (num_chunks) = gridDim.x
                   double max_norm,
                   float* partials,                             // (num_chunks)
                   float* __restrict__ norm,                    // (1)
                   float* __restrict__ coef,                    // (1)
                   uint32_t* ticket) {                          // (1), zero on entry
  __shared__ float float_scratch[kWarpSize];
  __shared__ double double_scratch[kWarpSize];
  __shared__ bool is_last;
  const TensorChunk chunk = chunks[blockIdx.x];
  const GradNormTensor t = tensors[chunk.tensor];
  float sum = 0;
  switch (t.dtype) {
    case DType::kF16:
      sum = ChunkSumOfSquares(static_cast<const Float16*>(t.data) + chunk.start, chunk.length);
      break;
    case DType::kBF16:
      sum = ChunkSumOfSquares(static_cast<const BFloat16*>(t.data) + chunk.start, chunk.length);
      break;
    default:
      sum = ChunkSumOfSquares(static_cast<const float*>(t.data) + chunk.start, chunk.length);
      break;
  }
  sum = BlockReduce(SumOp<float>(), sum, float_scratch);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = sum;
    __threadfence();  // the partial is visible to the last block before our ticket is
    is_last = atomicAdd(ticket, 1u) == gridDim.x - 1;
  }
  __syncthreads();
  if (!is_last) return;
  __threadfence();
  double total = 0;
  for (int32_t c = threadIdx.x; c < static_cast<int32_t>(gridDim.x); c += blockDim.x) {
    total += static_cast<double>(__ldcg(partials + c));  // L2, not a stale L1 line
  }
  total = BlockReduce(SumOp<double>(), total, double_scratch);
  if (threadIdx.x == 0) {
    const float n = static_cast<float>(sqrt(total));
    *norm = n;
    *coef = ClipCoefficient(n, max_norm);
    *ticket = 0;
  }
}

__global__ void __launch_bounds__(kGradNormThreads)
    GradScaleKernel(const GradNormTensor* __restrict__ tensors,  // (num_tensors)
                    const TensorChunk* __restrict__ chunks,      // (num_chunks) = gridDim.x
                    const float* __restrict__ coef) {            // (1)
  const float c = *coef;
  if (c == 1.0f) return;
  const TensorChunk chunk = chunks[blockIdx.x];
  const GradNormTensor t = tensors[chunk.tensor];
  switch (t.dtype) {
    case DType::kF16:
      ChunkScale(static_cast<Float16*>(t.data) + chunk.start, chunk.length, c);
      break;
    case DType::kBF16:
      ChunkScale(static_cast<BFloat16*>(t.data) + chunk.start, chunk.length, c);
      break;
    default:
      ChunkScale(static_cast<float*>(t.data) + chunk.start, chunk.length, c);
      break;
  }
}

absl::Status CheckCounts(const char* op, const GradNormTensor* tensors, int32_t num_tensors,
                         const TensorChunk* chunks, int32_t num_chunks) {
  if (num_tensors < 0 || num_chunks < 0 || (num_tensors > 0 && tensors == nullptr) ||
      (num_chunks > 0 && chunks == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": missing table (", num_tensors,
                                                   " tensors, ", num_chunks, " chunks)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status GradNormCuda(const GradNormParams& params, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CheckCounts("GradNormCuda", params.tensors, params.num_tensors,
                                   params.chunks, params.num_chunks));
  if (params.norm == nullptr || params.coef == nullptr || params.ticket == nullptr ||
      (params.num_chunks > 0 && params.partials == nullptr)) {
    return absl::InvalidArgumentError("GradNormCuda: missing norm, coef, ticket or workspace");
  }
  if (params.num_chunks == 0) {
    // No elements at all: norm 0, coef 1 (the reduction kernel needs at least one block).
    const float zero_one[2] = {0.0f, 1.0f};
    LYRA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(params.norm, &zero_one[0], sizeof(float),
                                              cudaMemcpyHostToDevice, stream));
    LYRA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(params.coef, &zero_one[1], sizeof(float),
                                              cudaMemcpyHostToDevice, stream));
    return absl::OkStatus();
  }
  GradNormKernel<<<params.num_chunks, kGradNormThreads, 0, stream>>>(
      params.tensors, params.chunks, params.max_norm, params.partials, params.norm, params.coef,
      params.ticket);
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("GradNormKernel");
  return absl::OkStatus();
}

absl::Status GradScaleCuda(const GradScaleParams& params, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CheckCounts("GradScaleCuda", params.tensors, params.num_tensors,
                                   params.chunks, params.num_chunks));
  if (params.coef == nullptr) return absl::InvalidArgumentError("GradScaleCuda: missing coef");
  if (params.num_chunks == 0) return absl::OkStatus();
  GradScaleKernel<<<params.num_chunks, kGradNormThreads, 0, stream>>>(params.tensors,
                                                                      params.chunks, params.coef);
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("GradScaleKernel");
  return absl::OkStatus();
}

}  // namespace lyra::cuda
