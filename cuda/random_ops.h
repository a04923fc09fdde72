// The maps from Philox blocks to numbers, shared by the CPU reference (random_reference.cc) and
// the CUDA kernels (random.cu): one definition, so the two produce the same elements. The table
// and the formulas are documented in cuda/random.h.
//
// Each distribution is a functor with `kPerBlock` (elements made from one Philox block) and
//   void operator()(const PhiloxBlock& block, T (&out)[kPerBlock]) const
// where T is the output's storage type. Its constants (bounds rounded to the dtype, thresholds)
// are computed once on the host by the Make* functions below, after the op's predicate passed.
#ifndef LYRA_CUDA_RANDOM_OPS_H_
#define LYRA_CUDA_RANDOM_OPS_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "base/dtype.h"
#include "base/half.h"
#include "cuda/philox.h"

namespace lyra::cuda::rng {

inline constexpr float kTwoPiF = 6.283185307179586476925f;
inline constexpr double kTwoPi = 6.283185307179586476925;
// Bits of a uniform: the float and double significands.
inline constexpr int kFloatBits = 24;
inline constexpr int kDoubleBits = 53;
inline constexpr float kFloatUlp = 0x1p-24f;  // 2^-kFloatBits
inline constexpr double kDoubleUlp = 0x1p-53;  // 2^-kDoubleBits

// [0, 1 - 2^-24] from the top 24 bits of a word (exact: an integer below 2^24 times 2^-24).
LYRA_HOST_DEVICE inline float UnitFloat(uint32_t w) {
  return static_cast<float>(w >> (32 - kFloatBits)) * kFloatUlp;
}
// [2^-24, 1]: the same plus one ulp, so that log() is finite.
LYRA_HOST_DEVICE inline float UnitFloatNonzero(uint32_t w) {
  return static_cast<float>((w >> (32 - kFloatBits)) + 1u) * kFloatUlp;
}
// The top 53 bits of the 64-bit (hi, lo).
LYRA_HOST_DEVICE inline uint64_t Bits53(uint32_t hi, uint32_t lo) {
  return ((static_cast<uint64_t>(hi) << 32) | lo) >> (64 - kDoubleBits);
}
LYRA_HOST_DEVICE inline double UnitDouble(uint32_t hi, uint32_t lo) {
  return static_cast<double>(Bits53(hi, lo)) * kDoubleUlp;
}
LYRA_HOST_DEVICE inline double UnitDoubleNonzero(uint32_t hi, uint32_t lo) {
  return static_cast<double>(Bits53(hi, lo) + 1u) * kDoubleUlp;
}

// floor(a * b / 2^64).
LYRA_HOST_DEVICE inline uint64_t MulHi64(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
}

// --- Distributions ------------------------------------------------------------------------

template <typename T>
struct UniformFn {
  using C = ComputeType<T>;
  static constexpr int kPerBlock = std::is_same_v<T, double> ? 2 : 4;
  C lo;     // lo rounded to T
  C scale;  // (hi rounded to T) - lo, in C
  C top;    // the largest T below hi rounded to T

  LYRA_HOST_DEVICE void operator()(const PhiloxBlock& b, T (&out)[kPerBlock]) const {
    if constexpr (std::is_same_v<T, double>) {
      for (int k = 0; k < kPerBlock; ++k) {
        const double u = UnitDouble(b.v[2 * k], b.v[2 * k + 1]);
        out[k] = fmin(fma(u, scale, lo), top);
      }
    } else {
      for (int k = 0; k < kPerBlock; ++k) {
        // Clamping in f32 at a value representable in T keeps the rounding to T below hi.
        out[k] = Store<T>(fminf(fmaf(UnitFloat(b.v[k]), scale, lo), top));
      }
    }
  }
};

template <typename T>
struct NormalFn {
  using C = ComputeType<T>;
  static constexpr int kPerBlock = std::is_same_v<T, double> ? 2 : 4;
  C mean;
  C std;

  LYRA_HOST_DEVICE void operator()(const PhiloxBlock& b, T (&out)[kPerBlock]) const {
    if constexpr (std::is_same_v<T, double>) {
      const double u1 = UnitDoubleNonzero(b.v[0], b.v[1]);
      const double u2 = UnitDouble(b.v[2], b.v[3]);
      const double r = sqrt(-2.0 * log(u1));
      const double theta = kTwoPi * u2;
      out[0] = fma(r * cos(theta), std, mean);
      out[1] = fma(r * sin(theta), std, mean);
    } else {
      for (int q = 0; q < 2; ++q) {
        const float u1 = UnitFloatNonzero(b.v[2 * q]);
        const float u2 = UnitFloat(b.v[2 * q + 1]);
        const float r = sqrtf(-2.0f * logf(u1));
        const float theta = kTwoPiF * u2;
        out[2 * q] = Store<T>(fmaf(r * cosf(theta), std, mean));
        out[2 * q + 1] = Store<T>(fmaf(r * sinf(theta), std, mean));
      }
    }
  }
};

struct BernoulliFn {
  static constexpr int kPerBlock = 4;
  uint64_t threshold;  // floor(p * 2^32), in [0, 2^32]

  LYRA_HOST_DEVICE void operator()(const PhiloxBlock& b, bool (&out)[kPerBlock]) const {
    for (int k = 0; k < kPerBlock; ++k) out[k] = static_cast<uint64_t>(b.v[k]) < threshold;
  }
};

template <typename T>
struct RandIntFn {
  static constexpr int kPerBlock = 2;
  uint64_t low;    // low as uint64 (two's complement)
  uint64_t range;  // high - low, modulo 2^64; > 0

  LYRA_HOST_DEVICE void operator()(const PhiloxBlock& b, T (&out)[kPerBlock]) const {
    for (int k = 0; k < kPerBlock; ++k) {
      const uint64_t x = (static_cast<uint64_t>(b.v[2 * k]) << 32) | b.v[2 * k + 1];
      out[k] = static_cast<T>(static_cast<int64_t>(low + MulHi64(x, range)));
    }
  }
};

// Elements [b * kPerBlock, min(n, (b + 1) * kPerBlock)) of the draw of (seed, offset): the one
// loop body of the CPU reference and of the CUDA kernel.
template <typename Fn, typename T>
LYRA_HOST_DEVICE inline void FillFromBlock(const Fn& fn, uint64_t seed, uint64_t offset,
                                           int64_t b, int64_t n, T* out) {
  T values[Fn::kPerBlock];
  fn(PhiloxStreamBlock(seed, offset + static_cast<uint64_t>(b)), values);
  const int64_t first = b * Fn::kPerBlock;
  const int64_t count = n - first < Fn::kPerBlock ? n - first : Fn::kPerBlock;
  for (int64_t k = 0; k < count; ++k) out[first + k] = values[k];
}

// Blocks for n elements at kPerBlock per block.
inline uint64_t BlocksFor(int64_t n, int per_block) {
  return n <= 0 ? 0 : (static_cast<uint64_t>(n) + per_block - 1) / per_block;
}

// --- Host-side constants ------------------------------------------------------------------

// x rounded to T (16-bit types through f32), in T's compute type.
template <typename T>
ComputeType<T> RoundTo(double x) {
  if constexpr (std::is_same_v<T, double>) {
    return x;
  } else {
    return Load(Store<T>(static_cast<float>(x)));
  }
}

// The largest finite T strictly below the T value x (x finite), in T's compute type.
template <typename T>
ComputeType<T> PreviousBelow(ComputeType<T> x) {
  if constexpr (std::is_same_v<T, double>) {
    return std::nextafter(x, -std::numeric_limits<double>::infinity());
  } else if constexpr (std::is_same_v<T, float>) {
    return std::nextafterf(x, -std::numeric_limits<float>::infinity());
  } else {
    // 16-bit sign-magnitude: one step towards -inf.
    const uint16_t bits = Store<T>(x).bits;
    const bool negative = (bits & 0x8000u) != 0;
    const bool zero = (bits & 0x7fffu) == 0;
    uint16_t prev;
    if (zero) {
      prev = 0x8001u;  // the negative subnormal closest to 0
    } else if (negative) {
      prev = static_cast<uint16_t>(bits + 1);
    } else {
      prev = static_cast<uint16_t>(bits - 1);
    }
    return Load(T::FromBits(prev));
  }
}

template <typename T>
UniformFn<T> MakeUniformFn(double lo, double hi) {
  UniformFn<T> fn;
  fn.lo = RoundTo<T>(lo);
  const ComputeType<T> hi_t = RoundTo<T>(hi);
  fn.scale = hi_t - fn.lo;
  fn.top = PreviousBelow<T>(hi_t);
  return fn;
}

template <typename T>
NormalFn<T> MakeNormalFn(double mean, double std) {
  return NormalFn<T>{static_cast<ComputeType<T>>(mean), static_cast<ComputeType<T>>(std)};
}

inline BernoulliFn MakeBernoulliFn(double p) {
  return BernoulliFn{static_cast<uint64_t>(p * 4294967296.0)};  // exact product; p in [0, 1]
}

template <typename T>
RandIntFn<T> MakeRandIntFn(int64_t low, int64_t high) {
  return RandIntFn<T>{static_cast<uint64_t>(low),
                      static_cast<uint64_t>(high) - static_cast<uint64_t>(low)};
}

}  // namespace lyra::cuda::rng

#endif  // LYRA_CUDA_RANDOM_OPS_H_
