// CPU reference of the random kernels: the loop over Philox blocks of a draw, each block mapped
// to its elements by the functors of cuda/random_ops.h that the CUDA kernels use too.
#include <cstdint>

#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/random.h"
#include "cuda/random_ops.h"

namespace lyra::cuda {
namespace {

template <typename Fn, typename T>
void FillReference(const Fn& fn, uint64_t seed, uint64_t offset, int64_t n, T* out) {  // (n,)
  const int64_t blocks = static_cast<int64_t>(rng::BlocksFor(n, Fn::kPerBlock));
  for (int64_t b = 0; b < blocks; ++b) rng::FillFromBlock(fn, seed, offset, b, n, out);
}

}  // namespace

absl::Status RandReference(const RandParams& p) {
  LYRA_RETURN_IF_ERROR(RandSupported(p));
  return DispatchFloat(p.dtype, "Rand", [&]<typename T>() -> absl::Status {
    FillReference(rng::MakeUniformFn<T>(p.lo, p.hi), p.seed, p.offset, p.n,
                  static_cast<T*>(p.out));
    return absl::OkStatus();
  });
}

absl::Status RandnReference(const RandnParams& p) {
  LYRA_RETURN_IF_ERROR(RandnSupported(p));
  return DispatchFloat(p.dtype, "Randn", [&]<typename T>() -> absl::Status {
    FillReference(rng::MakeNormalFn<T>(p.mean, p.std), p.seed, p.offset, p.n,
                  static_cast<T*>(p.out));
    return absl::OkStatus();
  });
}

absl::Status BernoulliReference(const BernoulliParams& p) {
  LYRA_RETURN_IF_ERROR(BernoulliSupported(p));
  FillReference(rng::MakeBernoulliFn(p.p), p.seed, p.offset, p.n, p.out);
  return absl::OkStatus();
}

absl::Status RandIntReference(const RandIntParams& p) {
  LYRA_RETURN_IF_ERROR(RandIntSupported(p));
  if (p.dtype == DType::kI32) {
    FillReference(rng::MakeRandIntFn<int32_t>(p.low, p.high), p.seed, p.offset, p.n,
                  static_cast<int32_t*>(p.out));
  } else {
    FillReference(rng::MakeRandIntFn<int64_t>(p.low, p.high), p.seed, p.offset, p.n,
                  static_cast<int64_t*>(p.out));
  }
  return absl::OkStatus();
}

}  // namespace lyra::cuda
