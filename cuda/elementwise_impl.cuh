// Typed launchers of the elementwise ops; each elementwise_*.cu instantiates them for a few
// dtypes so that nvcc compiles the families in parallel.
#ifndef LYRA_CUDA_ELEMENTWISE_IMPL_CUH_
#define LYRA_CUDA_ELEMENTWISE_IMPL_CUH_

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "cuda/elementwise.h"
#include "cuda/elementwise_dispatch.h"
#include "cuda/elementwise_kernels.cuh"

namespace lyra::cuda {

template <typename T>
absl::Status UnaryCudaTyped(const UnaryParams& p, cudaStream_t stream) {
  return DispatchUnaryOp(p.op, [&]<UnaryOp kOp>() -> absl::Status {
    using C = ComputeType<T>;
    if constexpr (!ew::UnarySupports<kOp, C>()) {
      return absl::InvalidArgumentError(absl::StrCat(UnaryOpName(kOp), " does not support dtype ",
                                                     DTypeName(kDTypeOf<T>)));
    } else {
      StridedOperand operands[2] = {p.y, p.x};
      UnaryFunctor<kOp, T> f{static_cast<C>(p.alpha), static_cast<C>(p.beta)};
      return LaunchMap<T, T>("UnaryMap", p.shape, operands, f, stream);
    }
  });
}

template <typename In>
absl::Status CastCudaFrom(const UnaryParams& p, cudaStream_t stream) {
  return DispatchAll(p.y.dtype, "Cast", [&]<typename Out>() -> absl::Status {
    StridedOperand operands[2] = {p.y, p.x};
    return LaunchMap<Out, In>("CastMap", p.shape, operands, CastFunctor<Out, In>{}, stream);
  });
}

template <typename T>
absl::Status BinaryCudaTyped(const BinaryParams& p, cudaStream_t stream) {
  return DispatchBinaryOp(p.op, [&]<BinaryOp kOp>() -> absl::Status {
    using C = ComputeType<T>;
    if constexpr (!ew::BinarySupports<kOp, C>()) {
      return absl::InvalidArgumentError(absl::StrCat(
          BinaryOpName(kOp), " does not support dtype ", DTypeName(kDTypeOf<T>)));
    } else {
      using F = BinaryFunctor<kOp, T>;
      using Out = typename F::Out;
      if (p.out.dtype != kDTypeOf<Out>) {
        return absl::InvalidArgumentError(absl::StrCat(BinaryOpName(kOp), ": output dtype ",
                                                       DTypeName(p.out.dtype), ", expected ",
                                                       DTypeName(kDTypeOf<Out>)));
      }
      StridedOperand operands[3] = {p.out, p.a, p.b};
      return LaunchMap<Out, T, T>("BinaryMap", p.shape, operands, F{static_cast<C>(p.alpha)},
                                  stream);
    }
  });
}

// Declared here, instantiated in the elementwise_*.cu files.
#define LYRA_ELEMENTWISE_INSTANTIATE(T)                                                   \
  template absl::Status UnaryCudaTyped<T>(const UnaryParams&, cudaStream_t);              \
  template absl::Status CastCudaFrom<T>(const UnaryParams&, cudaStream_t);                \
  template absl::Status BinaryCudaTyped<T>(const BinaryParams&, cudaStream_t);

#define LYRA_ELEMENTWISE_DECLARE(T)                                                       \
  extern template absl::Status UnaryCudaTyped<T>(const UnaryParams&, cudaStream_t);       \
  extern template absl::Status CastCudaFrom<T>(const UnaryParams&, cudaStream_t);         \
  extern template absl::Status BinaryCudaTyped<T>(const BinaryParams&, cudaStream_t);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_ELEMENTWISE_IMPL_CUH_
