// CUDA kernels of the random factories (math, layouts and precision in cuda/random.h).
//
// One thread makes one Philox block at a time (grid-stride loop over the blocks of the draw) and
// writes the block's kPerBlock elements to the contiguous output (=). Which thread makes which
// block never changes a value: element i depends only on (seed, offset, i), so any grid size
// gives the same numbers as the CPU reference, which runs the same rng::FillFromBlock.
//
// Precision: uniforms, Bernoulli and integers are exact integer / correctly rounded float
// arithmetic; Box-Muller runs in f32 (f64 for f64) with CUDA's logf / sinf / cosf (1-2 ulp).
#include <algorithm>
#include <cstdint>

#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/cuda_check.h"
#include "cuda/random.h"
#include "cuda/random_ops.h"

namespace lyra::cuda {
namespace {

constexpr int kRandomThreads = 256;
// Enough CTAs to fill any current GPU several times; beyond that threads loop.
constexpr int64_t kRandomMaxCtas = 8192;

template <typename Fn, typename T>
__global__ void PhiloxFillKernel(Fn fn, uint64_t seed, uint64_t offset, int64_t n,
                                 int64_t blocks, T* out) {  // out: (n,)
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += stride) {
    rng::FillFromBlock(fn, seed, offset, b, n, out);
  }
}

template <typename Fn, typename T>
absl::Status LaunchFill(const char* name, const Fn& fn, uint64_t seed, uint64_t offset, int64_t n,
                        T* out, cudaStream_t stream) {
  const int64_t blocks = static_cast<int64_t>(rng::BlocksFor(n, Fn::kPerBlock));
  if (blocks == 0) return absl::OkStatus();
  const int64_t ctas = std::min<int64_t>((blocks + kRandomThreads - 1) / kRandomThreads,
                                         kRandomMaxCtas);
  PhiloxFillKernel<<<static_cast<unsigned>(ctas), kRandomThreads, 0, stream>>>(fn, seed, offset,
                                                                               n, blocks, out);
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR(name);
  return absl::OkStatus();
}

}  // namespace

absl::Status RandCuda(const RandParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(RandSupported(p));
  return DispatchFloat(p.dtype, "Rand", [&]<typename T>() -> absl::Status {
    return LaunchFill("RandKernel", rng::MakeUniformFn<T>(p.lo, p.hi), p.seed, p.offset, p.n,
                      static_cast<T*>(p.out), stream);
  });
}

absl::Status RandnCuda(const RandnParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(RandnSupported(p));
  return DispatchFloat(p.dtype, "Randn", [&]<typename T>() -> absl::Status {
    return LaunchFill("RandnKernel", rng::MakeNormalFn<T>(p.mean, p.std), p.seed, p.offset, p.n,
                      static_cast<T*>(p.out), stream);
  });
}

absl::Status BernoulliCuda(const BernoulliParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(BernoulliSupported(p));
  return LaunchFill("BernoulliKernel", rng::MakeBernoulliFn(p.p), p.seed, p.offset, p.n, p.out,
                    stream);
}

absl::Status RandIntCuda(const RandIntParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(RandIntSupported(p));
  if (p.dtype == DType::kI32) {
    return LaunchFill("RandIntKernel", rng::MakeRandIntFn<int32_t>(p.low, p.high), p.seed,
                      p.offset, p.n, static_cast<int32_t*>(p.out), stream);
  }
  return LaunchFill("RandIntKernel", rng::MakeRandIntFn<int64_t>(p.low, p.high), p.seed, p.offset,
                    p.n, static_cast<int64_t*>(p.out), stream);
}

}  // namespace lyra::cuda
