// Random tensors from a counter-based generator: the same numbers on the CPU and on CUDA.
//
//   Generator gen(/*seed=*/42);
//   LYRA_ASSIGN_OR_RETURN(Tensor w, Randn({d_in, d_out}, DType::kF32, Device::Cuda(), gen,
//                                         /*mean=*/0, /*std=*/0.02));
//   LYRA_ASSIGN_OR_RETURN(Tensor mask, Bernoulli(x.shape(), /*p=*/0.9, x.device(), gen));
//   // Checkpoint: save gen.seed() and gen.offset(); on resume gen.set_state(seed, offset).
//
// The stream is Philox4x32-10 keyed by the 64-bit seed (cuda/philox.h). A generator's offset
// counts Philox blocks of four uint32 words: a draw reserves the blocks it needs with Advance and
// element i of the result is made from block offset + i / k (k elements per block: 4 for f32,
// f16, bf16 and bool, 2 for f64 and the integers; the full table is in cuda/random.h). Element i is
// therefore a pure function of (seed, offset at the draw, i): independent of the device, of the
// launch configuration and of the tensor's shape (only its element count matters), so
//   - a saved (seed, offset) pair replays every later draw exactly (bit-exact training resume);
//   - successive draws use disjoint blocks, so they are independent;
//   - Rand, Bernoulli and RandInt are bit-identical between CPU and CUDA; Randn uses the
//     platform's logf / sinf / cosf (host libm vs CUDA, which differ by an ulp or two) and agrees
//     to ~1e-6 relative in f32 (~1e-14 in f64; within one rounding step in f16 / bf16).
// Results are new contiguous tensors. A Generator is not thread-safe; use one per thread.
#ifndef LYRA_TENSOR_RANDOM_H_
#define LYRA_TENSOR_RANDOM_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "tensor/device.h"
#include "tensor/shape.h"
#include "tensor/tensor.h"

namespace lyra {

// A seed and a counter offset (in Philox blocks) into the seed's stream.
class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}

  uint64_t seed() const { return seed_; }
  // The first block the next draw will use.
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) {
    seed_ = seed;
    offset_ = offset;
  }
  // Reserves `n` blocks and returns the offset of the first; the next draw starts after them.
  // (Ops that draw their own numbers, such as dropout, call this and then PhiloxStreamBlock.)
  // Offsets wrap modulo 2^64, far beyond any run.
  uint64_t Advance(uint64_t n) {
    const uint64_t first = offset_;
    offset_ += n;
    return first;
  }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// Uniform in [lo, hi), with as many random bits as the dtype holds (f32, f16, bf16: the top 24
// bits of one word; f64: 53 bits of two words). lo and hi are first rounded to the dtype; a value
// that would round up to hi is clamped to the largest dtype value below hi, so the range is never
// left. InvalidArgument for a non-float dtype, non-finite bounds or hi <= lo (also after rounding
// to the dtype); Unimplemented if hi - lo overflows the dtype.
absl::StatusOr<Tensor> Rand(const Shape& shape, DType dtype, Device device, Generator& gen,
                            double lo = 0, double hi = 1);

// Standard normal * std + mean, by Box-Muller on pairs of uniforms (both outputs of a pair are
// used; f16 / bf16 computed in f32 and rounded). InvalidArgument for a non-float dtype,
// non-finite mean or std, or std < 0.
absl::StatusOr<Tensor> Randn(const Shape& shape, DType dtype, Device device, Generator& gen,
                             double mean = 0, double std = 1);

// Bool tensor, each element true with probability p (to within 2^-32; exactly for 0 and 1).
// InvalidArgument unless 0 <= p <= 1.
absl::StatusOr<Tensor> Bernoulli(const Shape& shape, double p, Device device, Generator& gen);

// Integers uniform in [low, high) as i32 or i64, from 64 random bits each (bias at most
// (high - low) / 2^64). InvalidArgument for another dtype, low >= high, or bounds outside i32
// for an i32 result.
absl::StatusOr<Tensor> RandInt(const Shape& shape, int64_t low, int64_t high, DType dtype,
                               Device device, Generator& gen);

}  // namespace lyra

#endif  // LYRA_TENSOR_RANDOM_H_
