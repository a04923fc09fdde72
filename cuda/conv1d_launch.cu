// Entry points of the causal conv1d CUDA kernels: validation (cuda/conv1d_supported.cc) and the
// dispatch on (x dtype, weight dtype) to the typed launchers of the conv1d_<dtype>.cu files.
#include "absl/strings/str_cat.h"
#include "cuda/conv1d_kernels.cuh"

namespace lyra::cuda {

LYRA_CONV1D_DECLARE_ONE(float, float)
LYRA_CONV1D_DECLARE_ONE(Float16, float)
LYRA_CONV1D_DECLARE_ONE(Float16, Float16)
LYRA_CONV1D_DECLARE_ONE(BFloat16, float)
LYRA_CONV1D_DECLARE_ONE(BFloat16, BFloat16)

namespace {

// The typed launcher of one entry point for (dtype, weight_dtype); both were validated.
#define LYRA_CONV1D_DISPATCH(name, dtype, weight_dtype, ...)                              \
  do {                                                                                     \
    const bool f32_weight = (weight_dtype) == DType::kF32;                                 \
    switch (dtype) {                                                                       \
      case DType::kF32: return name##_float_float(__VA_ARGS__);                            \
      case DType::kF16:                                                                    \
        return f32_weight ? name##_Float16_float(__VA_ARGS__)                              \
                          : name##_Float16_Float16(__VA_ARGS__);                           \
      case DType::kBF16:                                                                   \
        return f32_weight ? name##_BFloat16_float(__VA_ARGS__)                             \
                          : name##_BFloat16_BFloat16(__VA_ARGS__);                         \
      default:                                                                             \
        return absl::UnimplementedError(                                                   \
            absl::StrCat(#name, ": no CUDA kernel for ", DTypeName(dtype)));               \
    }                                                                                      \
  } while (0)

bool Empty(int64_t batch, int64_t channels, int64_t length) {
  return batch == 0 || channels == 0 || length == 0;
}

}  // namespace

absl::Status CausalConv1dCuda(const CausalConv1dParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CausalConv1dSupported(p, /*cuda=*/true));
  if (Empty(p.batch, p.channels, p.length)) {
    return absl::InvalidArgumentError("CausalConv1dCuda: every size must be positive");
  }
  LYRA_CONV1D_DISPATCH(CausalConv1dCudaTyped, p.dtype, p.weight_dtype, p, stream);
}

absl::Status CausalConv1dNaiveCuda(const CausalConv1dParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CausalConv1dSupported(p, /*cuda=*/true));
  if (Empty(p.batch, p.channels, p.length)) {
    return absl::InvalidArgumentError("CausalConv1dNaiveCuda: every size must be positive");
  }
  LYRA_CONV1D_DISPATCH(CausalConv1dNaiveCudaTyped, p.dtype, p.weight_dtype, p, stream);
}

absl::Status CausalConv1dBackwardCuda(const CausalConv1dBackwardParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CausalConv1dBackwardSupported(p, /*cuda=*/true));
  const CausalConv1dParams& f = p.forward;
  if (Empty(f.batch, f.channels, f.length)) {
    return absl::InvalidArgumentError("CausalConv1dBackwardCuda: every size must be positive");
  }
  LYRA_CONV1D_DISPATCH(CausalConv1dBackwardCudaTyped, f.dtype, f.weight_dtype, p, stream);
}

absl::Status CausalConv1dUpdateCuda(const CausalConv1dUpdateParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CausalConv1dUpdateSupported(p, /*cuda=*/true));
  if (Empty(p.batch, p.channels, 1)) {
    return absl::InvalidArgumentError("CausalConv1dUpdateCuda: every size must be positive");
  }
  LYRA_CONV1D_DISPATCH(CausalConv1dUpdateCudaTyped, p.dtype, p.weight_dtype, p, stream);
}

#undef LYRA_CONV1D_DISPATCH

}  // namespace lyra::cuda
