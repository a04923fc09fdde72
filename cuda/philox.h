// Philox4x32-10, the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel random
// numbers: as easy as 1, 2, 3" (SC 2011), with one definition for host and device code.
//
// A Philox block maps a 128-bit counter and a 64-bit key to 128 random bits (four uint32 words)
// through ten rounds of
//
//   (hi0, lo0) = M0 * c0        (hi1, lo1) = M1 * c2          (32x32 -> 64-bit products)
//   c' = { hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0 }
//   k  += { W0, W1 }            (the key is bumped between rounds, not before the first)
//
// with M0 = 0xD2511F53, M1 = 0xCD9E8D57 and the Weyl increments W0 = 0x9E3779B9 (golden ratio),
// W1 = 0xBB67AE85 (sqrt(3) - 1). Every output block is a pure function of (counter, key): any
// thread on any device can produce any part of the stream, which is what makes CPU and CUDA draws
// bit-identical and a (seed, offset) pair enough to replay a stream.
//
// Lyra's streams: the key is the generator's 64-bit seed {lo32(seed), hi32(seed)} and block b of
// the stream has counter {lo32(b), hi32(b), 0, 0} (PhiloxStreamBlock).
#ifndef LYRA_CUDA_PHILOX_H_
#define LYRA_CUDA_PHILOX_H_

#include <cstdint>

#include "base/half.h"  // LYRA_HOST_DEVICE

namespace lyra::cuda {

inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;
inline constexpr int kPhiloxRounds = 10;
// 32-bit words per Philox block: the unit Lyra's generator offsets count in.
inline constexpr int kPhiloxWordsPerBlock = 4;

struct PhiloxCounter {
  uint32_t v[4];
};
struct PhiloxKey {
  uint32_t v[2];
};
struct PhiloxBlock {
  uint32_t v[4];
};

// One round: two 32x32 -> 64-bit multiplies, the high halves mixed with the other words and the
// key. (A 64-bit product of two uint32 compiles to mul.wide.u32 on the GPU.)
LYRA_HOST_DEVICE inline PhiloxCounter PhiloxRound(PhiloxCounter c, PhiloxKey k) {
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c.v[0];
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c.v[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  PhiloxCounter out;
  out.v[0] = hi1 ^ c.v[1] ^ k.v[0];
  out.v[1] = lo1;
  out.v[2] = hi0 ^ c.v[3] ^ k.v[1];
  out.v[3] = lo0;
  return out;
}

// Philox4x32-10 of (counter, key).
LYRA_HOST_DEVICE inline PhiloxBlock Philox4x32(PhiloxCounter counter, PhiloxKey key) {
  counter = PhiloxRound(counter, key);
  for (int r = 1; r < kPhiloxRounds; ++r) {
    key.v[0] += kPhiloxW0;
    key.v[1] += kPhiloxW1;
    counter = PhiloxRound(counter, key);
  }
  PhiloxBlock out;
  for (int i = 0; i < 4; ++i) out.v[i] = counter.v[i];
  return out;
}

// Block `block` of the stream of `seed`: words 4 * block .. 4 * block + 3 of that stream.
LYRA_HOST_DEVICE inline PhiloxBlock PhiloxStreamBlock(uint64_t seed, uint64_t block) {
  PhiloxCounter c = {{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u}};
  PhiloxKey k = {{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  return Philox4x32(c, k);
}

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_PHILOX_H_
