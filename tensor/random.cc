// The random factories: each checks its arguments first (so a failed call leaves the generator
// as it was), allocates the contiguous result, reserves the draw's Philox blocks and runs the
// CPU reference or the CUDA kernel of cuda/random.h.
#include "tensor/random.h"

#include "base/status_macros.h"
#include "cuda/random.h"
#include "tensor/dispatch.h"

namespace lyra {

absl::StatusOr<Tensor> Rand(const Shape& shape, DType dtype, Device device, Generator& gen,
                            double lo, double hi) {
  cuda::RandParams p;
  p.dtype = dtype;
  p.lo = lo;
  p.hi = hi;
  LYRA_RETURN_IF_ERROR(cuda::RandSupported(p));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(shape, dtype, device));
  p.n = out.numel();
  p.out = out.data();
  p.seed = gen.seed();
  p.offset = gen.Advance(cuda::RandBlocks(p.n, dtype));
  LYRA_RETURN_IF_ERROR(internal::RunKernel(device, p, cuda::RandReference, cuda::RandCuda));
  return out;
}

absl::StatusOr<Tensor> Randn(const Shape& shape, DType dtype, Device device, Generator& gen,
                             double mean, double std) {
  cuda::RandnParams p;
  p.dtype = dtype;
  p.mean = mean;
  p.std = std;
  LYRA_RETURN_IF_ERROR(cuda::RandnSupported(p));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(shape, dtype, device));
  p.n = out.numel();
  p.out = out.data();
  p.seed = gen.seed();
  p.offset = gen.Advance(cuda::RandnBlocks(p.n, dtype));
  LYRA_RETURN_IF_ERROR(internal::RunKernel(device, p, cuda::RandnReference, cuda::RandnCuda));
  return out;
}

absl::StatusOr<Tensor> Bernoulli(const Shape& shape, double p, Device device, Generator& gen) {
  cuda::BernoulliParams params;
  params.p = p;
  LYRA_RETURN_IF_ERROR(cuda::BernoulliSupported(params));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(shape, DType::kBool, device));
  params.n = out.numel();
  params.out = out.data<bool>();
  params.seed = gen.seed();
  params.offset = gen.Advance(cuda::BernoulliBlocks(params.n));
  LYRA_RETURN_IF_ERROR(
      internal::RunKernel(device, params, cuda::BernoulliReference, cuda::BernoulliCuda));
  return out;
}

absl::StatusOr<Tensor> RandInt(const Shape& shape, int64_t low, int64_t high, DType dtype,
                               Device device, Generator& gen) {
  cuda::RandIntParams p;
  p.dtype = dtype;
  p.low = low;
  p.high = high;
  LYRA_RETURN_IF_ERROR(cuda::RandIntSupported(p));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(shape, dtype, device));
  p.n = out.numel();
  p.out = out.data();
  p.seed = gen.seed();
  p.offset = gen.Advance(cuda::RandIntBlocks(p.n));
  LYRA_RETURN_IF_ERROR(internal::RunKernel(device, p, cuda::RandIntReference, cuda::RandIntCuda));
  return out;
}

}  // namespace lyra
