// Entry points of the elementwise CUDA kernels: dtype dispatch to the typed launchers compiled in
// the elementwise_<dtype>.cu files, and the where / fill kernels.
#include "absl/strings/str_cat.h"
#include "cuda/elementwise_impl.cuh"

namespace lyra::cuda {

LYRA_ELEMENTWISE_DECLARE(float)
LYRA_ELEMENTWISE_DECLARE(double)
LYRA_ELEMENTWISE_DECLARE(Float16)
LYRA_ELEMENTWISE_DECLARE(BFloat16)
LYRA_ELEMENTWISE_DECLARE(int32_t)
LYRA_ELEMENTWISE_DECLARE(int64_t)
LYRA_ELEMENTWISE_DECLARE(bool)

absl::Status UnaryCuda(const UnaryParams& p, cudaStream_t stream) {
  if (p.op == UnaryOp::kIdentity) {
    return DispatchAll(p.x.dtype, "Cast", [&]<typename In>() -> absl::Status {
      return CastCudaFrom<In>(p, stream);
    });
  }
  if (p.x.dtype != p.y.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(UnaryOpName(p.op), ": input ",
                                                   DTypeName(p.x.dtype), " but output ",
                                                   DTypeName(p.y.dtype)));
  }
  return DispatchAll(p.x.dtype, UnaryOpName(p.op), [&]<typename T>() -> absl::Status {
    return UnaryCudaTyped<T>(p, stream);
  });
}

absl::Status BinaryCuda(const BinaryParams& p, cudaStream_t stream) {
  if (p.a.dtype != p.b.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(BinaryOpName(p.op), ": operands ",
                                                   DTypeName(p.a.dtype), " and ",
                                                   DTypeName(p.b.dtype)));
  }
  return DispatchAll(p.a.dtype, BinaryOpName(p.op), [&]<typename T>() -> absl::Status {
    return BinaryCudaTyped<T>(p, stream);
  });
}

absl::Status WhereCuda(const WhereParams& p, cudaStream_t stream) {
  if (p.cond.dtype != DType::kBool) {
    return absl::InvalidArgumentError(
        absl::StrCat("Where: condition must be bool, got ", DTypeName(p.cond.dtype)));
  }
  // Where only moves bytes: dispatch on the element size.
  StridedOperand operands[4] = {p.out, p.cond, p.a, p.b};
  switch (DTypeSize(p.a.dtype)) {
    case 1: return LaunchMap<uint8_t, bool, uint8_t, uint8_t>("Where", p.shape, operands, WhereFunctor<uint8_t>{}, stream);
    case 2: return LaunchMap<uint16_t, bool, uint16_t, uint16_t>("Where", p.shape, operands, WhereFunctor<uint16_t>{}, stream);
    case 4: return LaunchMap<uint32_t, bool, uint32_t, uint32_t>("Where", p.shape, operands, WhereFunctor<uint32_t>{}, stream);
    case 8: return LaunchMap<uint64_t, bool, uint64_t, uint64_t>("Where", p.shape, operands, WhereFunctor<uint64_t>{}, stream);
  }
  return absl::InvalidArgumentError("Where: unsupported element size");
}

absl::Status FillCuda(const FillParams& p, cudaStream_t stream) {
  return DispatchAll(p.out.dtype, "Fill", [&]<typename T>() -> absl::Status {
    T value;
    if constexpr (std::is_same_v<T, bool>) {
      value = p.value != 0;
    } else {
      value = Store<T>(static_cast<ComputeType<T>>(p.value));
    }
    StridedOperand operands[1] = {p.out};
    return LaunchMap<T>("Fill", p.shape, operands, FillFunctor<T>{value}, stream);
  });
}

}  // namespace lyra::cuda
