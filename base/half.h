// 16-bit floating-point storage types for host code: IEEE binary16 (`Float16`) and bfloat16
// (`BFloat16`). Both are a uint16_t with exact conversions to and from float (round to nearest
// even, NaN kept NaN). They have the same layout as CUDA's __half and __nv_bfloat16, so a tensor's
// bytes are read by either; kernels use the CUDA types and their intrinsics.
#ifndef LYRA_BASE_HALF_H_
#define LYRA_BASE_HALF_H_

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LYRA_HOST_DEVICE __host__ __device__
#else
#define LYRA_HOST_DEVICE
#endif

namespace lyra {

namespace half_internal {

LYRA_HOST_DEVICE inline uint32_t FloatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

LYRA_HOST_DEVICE inline float BitsFloat(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace half_internal

struct BFloat16 {
  uint16_t bits = 0;

  BFloat16() = default;
  LYRA_HOST_DEVICE explicit BFloat16(float f) : bits(FromFloat(f)) {}
  LYRA_HOST_DEVICE explicit operator float() const { return ToFloat(bits); }

  LYRA_HOST_DEVICE static BFloat16 FromBits(uint16_t b) {
    BFloat16 x;
    x.bits = b;
    return x;
  }
  LYRA_HOST_DEVICE static uint16_t FromFloat(float f) {
    uint32_t u = half_internal::FloatBits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // NaN
    // Round to nearest even: add 0x7fff plus the lowest kept bit, then truncate.
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<uint16_t>(u >> 16);
  }
  LYRA_HOST_DEVICE static float ToFloat(uint16_t b) {
    return half_internal::BitsFloat(static_cast<uint32_t>(b) << 16);
  }
};

struct Float16 {
  uint16_t bits = 0;

  Float16() = default;
  LYRA_HOST_DEVICE explicit Float16(float f) : bits(FromFloat(f)) {}
  LYRA_HOST_DEVICE explicit operator float() const { return ToFloat(bits); }

  LYRA_HOST_DEVICE static Float16 FromBits(uint16_t b) {
    Float16 x;
    x.bits = b;
    return x;
  }

  // float -> binary16, round to nearest even; overflow gives ±inf, tiny values subnormals or ±0.
  LYRA_HOST_DEVICE static uint16_t FromFloat(float f) {
    uint32_t u = half_internal::FloatBits(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
    if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
    if (abs < 0x38800000u) {
      // Subnormal half (or zero): value = m * 2^-24. Scale by 2^24 via float add trick.
      // Adding 0.5f aligns the mantissa so that the float adder rounds to nearest even.
      float af = half_internal::BitsFloat(abs) + 0.5f;
      return static_cast<uint16_t>(sign | (half_internal::FloatBits(af) - 0x3f000000u));
    }
    // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits.
    uint32_t mant_odd = (abs >> 13) & 1u;
    abs += 0xc8000fffu + mant_odd;  // (15 - 127) << 23, plus rounding bias
    return static_cast<uint16_t>(sign | (abs >> 13));
  }

  LYRA_HOST_DEVICE static float ToFloat(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t out;
    if (exp == 0x1f) {
      out = sign | 0x7f800000u | (mant << 13);  // inf or NaN
    } else if (exp == 0) {
      if (mant == 0) {
        out = sign;
      } else {
        // Subnormal: value = mant * 2^-24.
        float f = static_cast<float>(mant) * 5.9604644775390625e-8f;
        out = sign | half_internal::FloatBits(f);
      }
    } else {
      out = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    return half_internal::BitsFloat(out);
  }
};

static_assert(sizeof(BFloat16) == 2 && sizeof(Float16) == 2);

}  // namespace lyra

#endif  // LYRA_BASE_HALF_H_
