// The fused multi-tensor AdamW kernel: math, layouts and precision in cuda/adamw.h.
//
// One block per chunk of the chunk table (cuda/multi_tensor.h). Thread 0 reads the chunk's tensor
// step counter t - 1 and derives the f32 scalars of step t in f64 (cuda/adamw_math.h); the block
// then updates its elements, 4 per thread per iteration with 16-byte loads and stores of p, m, v
// (and 8- or 16-byte gradient loads) when the tensor's pointers allow it, one at a time otherwise
// and for the tail. The last block of a tensor to finish (an atomic ticket per tensor) stores t
// into the counter and resets the ticket, so one launch does the whole step and leaves the
// scratch tickets zero for the next. Compiled with --fmad=false: every operation rounds exactly
// as AdamWReference's.
//
// Traffic: 16 bytes read (p, m, v f32 and an f32 gradient) and 12 written per element.
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "cuda/adamw.h"
#include "cuda/adamw_math.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"

namespace lyra::cuda {
namespace {

constexpr int kAdamWThreads = 512;
constexpr int kAdamWVector = 4;  // elements per vector access

template <typename G>
__device__ __forceinline__ void AdamWChunk(const AdamWScalars& s, const AdamWTensor& t,
                                           int64_t start, int32_t length) {
  float* __restrict__ p = t.param + start;             // (length)
  const G* __restrict__ g = static_cast<const G*>(t.grad) + start;  // (length)
  float* __restrict__ m = t.exp_avg + start;           // (length)
  float* __restrict__ v = t.exp_avg_sq + start;        // (length)
  using F4 = Vec<float, kAdamWVector>;
  using G4 = Vec<G, kAdamWVector>;
  const bool vectorized =
      ((reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(m) |
        reinterpret_cast<uintptr_t>(v)) % sizeof(F4) == 0) &&
      reinterpret_cast<uintptr_t>(g) % sizeof(G4) == 0;
  int32_t done = 0;
  if (vectorized) {
    const int32_t vectors = length / kAdamWVector;
    for (int32_t i = threadIdx.x; i < vectors; i += blockDim.x) {
      F4 pv = reinterpret_cast<const F4*>(p)[i];
      F4 mv = reinterpret_cast<const F4*>(m)[i];
      F4 vv = reinterpret_cast<const F4*>(v)[i];
      const G4 gv = reinterpret_cast<const G4*>(g)[i];
#pragma unroll
      for (int k = 0; k < kAdamWVector; ++k) {
        AdamWElement(s, DLoad(gv.v[k]), pv.v[k], mv.v[k], vv.v[k]);
      }
      reinterpret_cast<F4*>(p)[i] = pv;
      reinterpret_cast<F4*>(m)[i] = mv;
      reinterpret_cast<F4*>(v)[i] = vv;
    }
    done = vectors * kAdamWVector;
  }
  for (int32_t i = done + threadIdx.x; i < length; i += blockDim.x) {
    AdamWElement(s, DLoad(g[i]), p[i], m[i], v[i]);
  }
}

__global__ void __launch_bounds__(kAdamWThreads)
    AdamWKernel(const AdamWTensor* __restrict__ tensors,     // (num_tensors)
                const TensorChunk* __restrict__ chunks,      // (num_chunks) = gridDim.x
                const AdamWHyperParams* __restrict__ hyper,  // (num_groups)
                int32_t* __restrict__ tickets) {             // (num_tensors), zero on entry
  __shared__ AdamWScalars scalars;
  __shared__ int64_t step;
  const TensorChunk chunk = chunks[blockIdx.x];
  const AdamWTensor t = tensors[chunk.tensor];
  if (threadIdx.x == 0) {
    step = *t.step + 1;
    scalars = MakeAdamWScalars(hyper[t.group], step);
  }
  __syncthreads();
  const AdamWScalars s = scalars;
  switch (t.grad_dtype) {
    case DType::kF16: AdamWChunk<Float16>(s, t, chunk.start, chunk.length); break;
    case DType::kBF16: AdamWChunk<BFloat16>(s, t, chunk.start, chunk.length); break;
    default: AdamWChunk<float>(s, t, chunk.start, chunk.length); break;
  }
  // Every block of this tensor read the counter (above) before taking its ticket, so the last
  // ticket holder may advance it.
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(&tickets[chunk.tensor], 1) == t.num_chunks - 1) {
      *t.step = step;
      tickets[chunk.tensor] = 0;
    }
  }
}

}  // namespace

absl::Status AdamWCuda(const AdamWParams& params, cudaStream_t stream) {
  if (params.num_tensors < 0 || params.num_chunks < 0 || params.num_groups < 0 ||
      (params.num_tensors > 0 && (params.tensors == nullptr || params.tickets == nullptr)) ||
      (params.num_chunks > 0 && params.chunks == nullptr) ||
      (params.num_groups > 0 && params.hyper == nullptr)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AdamWCuda: missing table (", params.num_tensors, " tensors, ", params.num_chunks,
        " chunks, ", params.num_groups, " groups)"));
  }
  if (params.num_chunks == 0) return absl::OkStatus();
  AdamWKernel<<<params.num_chunks, kAdamWThreads, 0, stream>>>(params.tensors, params.chunks,
                                                               params.hyper, params.tickets);
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("AdamWKernel");
  return absl::OkStatus();
}

}  // namespace lyra::cuda
