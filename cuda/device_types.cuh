// Device-side loads and stores of Lyra's storage types, using the hardware conversions for the
// 16-bit types (base/half.h's portable bit arithmetic is the host path).
#ifndef LYRA_CUDA_DEVICE_TYPES_CUH_
#define LYRA_CUDA_DEVICE_TYPES_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "base/dtype.h"

namespace lyra::cuda {

template <typename T>
__device__ __forceinline__ ComputeType<T> DLoad(T x) {
  if constexpr (std::is_same_v<T, Float16>) {
    return __half2float(__ushort_as_half(x.bits));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    return __uint_as_float(static_cast<uint32_t>(x.bits) << 16);
  } else {
    return x;
  }
}

template <typename T>
__device__ __forceinline__ T DStore(ComputeType<T> x) {
  if constexpr (std::is_same_v<T, Float16>) {
    return Float16::FromBits(__half_as_ushort(__float2half_rn(x)));
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    return BFloat16::FromBits(__bfloat16_as_ushort(__float2bfloat16_rn(x)));
  } else {
    return x;
  }
}

// Any storage type to any other, through compute types; bool is x != 0.
template <typename Out, typename In>
__device__ __forceinline__ Out DConvert(In x) {
  auto c = DLoad(x);
  if constexpr (std::is_same_v<Out, bool>) {
    return c != decltype(c)(0);
  } else {
    return DStore<Out>(static_cast<ComputeType<Out>>(c));
  }
}

// N elements of T loaded or stored with one vector instruction (N * sizeof(T) <= 16).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_DEVICE_TYPES_CUH_
