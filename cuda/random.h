// Random-number kernels: fill a contiguous buffer of n elements from a Philox4x32-10 stream
// (cuda/philox.h), identically on the CPU and on CUDA.
//
// A draw reads the stream of `seed` from Philox block `offset` on: element i is made from block
// offset + i / k, where k elements come out of one block (four uint32 words):
//
//   op         dtype           words per element          k    element(s) of one block w0..w3
//   Rand       f32, f16, bf16  1                          4    u(w0), u(w1), u(w2), u(w3)
//   Rand       f64             2                          2    u(w0, w1), u(w2, w3)
//   Randn      f32, f16, bf16  1 (2 per Box-Muller pair)  4    BM(w0, w1), BM(w2, w3)
//   Randn      f64             2 (4 per pair)             2    BM(w0 w1, w2 w3)
//   Bernoulli  bool            1                          4    w < p * 2^32
//   RandInt    i32, i64        2                          2    low + ((w0 w1) * range) >> 64
//
// so element i is a pure function of (seed, offset, i), never of the launch configuration. The
// draw uses blocks [offset, offset + *Blocks(n)) and the caller advances its generator by that.
//
// Uniform [lo, hi): f32 takes the top 24 bits of a word, u = (w >> 8) * 2^-24 in [0, 1 - 2^-24],
// and returns min(fmaf(u, hi - lo, lo), largest float < hi); f64 takes 53 bits of two words the
// same way with fma. f16 / bf16 round lo and hi to the dtype (through f32), compute in f32 as
// above with the clamp at the largest dtype value < hi, then round to nearest even: the result is
// always in [lo, hi) of the dtype. The arithmetic is the same exact integer and correctly
// rounded float operations (multiply by a power of two, fma, min, round-to-nearest-even) on host
// and device, so Rand, Bernoulli and RandInt are bit-identical across CPU and CUDA.
//
// Normal: Box-Muller on a pair of uniforms u1 in (0, 1] (the same 24 / 53 bits plus one ulp) and
// u2 in [0, 1): r = sqrt(-2 log u1), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2), both used; the
// output is fma(z, std, mean), in f32 for f32 / f16 / bf16 and in f64 for f64. log, sin and cos
// come from the host libm on the CPU and from CUDA's math library on the GPU, which may differ in
// the last ulp or two: Randn agrees across devices to ~1e-6 relative in f32 (1e-14 in f64, and
// to one rounding step of the 16-bit dtypes), not bit for bit.
//
// Bernoulli: true iff the word w < floor(p * 2^32), i.e. with probability p to within 2^-32
// (exactly for p = 0 and p = 1).
//
// RandInt: range = high - low (as uint64, so any int64 bounds work); the 64-bit x of two words
// maps to low + floor(x * range / 2^64), bias at most range / 2^64 per value.
//
// All outputs are written (=), contiguous, n elements starting at `out`.
#ifndef LYRA_CUDA_RANDOM_H_
#define LYRA_CUDA_RANDOM_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"

namespace lyra::cuda {

struct RandParams {
  int64_t n = 0;
  void* out = nullptr;  // (n,) contiguous, `dtype`
  DType dtype = DType::kF32;
  uint64_t seed = 0;
  uint64_t offset = 0;  // first Philox block of the draw
  double lo = 0;
  double hi = 1;
};

struct RandnParams {
  int64_t n = 0;
  void* out = nullptr;  // (n,) contiguous, `dtype`
  DType dtype = DType::kF32;
  uint64_t seed = 0;
  uint64_t offset = 0;
  double mean = 0;
  double std = 1;
};

struct BernoulliParams {
  int64_t n = 0;
  bool* out = nullptr;  // (n,) contiguous
  uint64_t seed = 0;
  uint64_t offset = 0;
  double p = 0.5;
};

struct RandIntParams {
  int64_t n = 0;
  void* out = nullptr;  // (n,) contiguous, `dtype`
  DType dtype = DType::kI64;  // or kI32
  uint64_t seed = 0;
  uint64_t offset = 0;
  int64_t low = 0;   // inclusive
  int64_t high = 1;  // exclusive
};

// Philox blocks a draw of n >= 0 elements uses (ceil(n / k) with k from the table above).
uint64_t RandBlocks(int64_t n, DType dtype);
uint64_t RandnBlocks(int64_t n, DType dtype);
uint64_t BernoulliBlocks(int64_t n);
uint64_t RandIntBlocks(int64_t n);

// The "is this supported" predicates: OK, or InvalidArgument naming the op and the argument at
// fault (n < 0; a dtype the op does not make; lo, hi, mean, std not finite; hi <= lo, also after
// rounding to the dtype; std < 0; p outside [0, 1] or NaN; low >= high; bounds outside i32), or
// Unimplemented for a range hi - lo that overflows the dtype. They do not look at `out`.
absl::Status RandSupported(const RandParams& params);
absl::Status RandnSupported(const RandnParams& params);
absl::Status BernoulliSupported(const BernoulliParams& params);
absl::Status RandIntSupported(const RandIntParams& params);

absl::Status RandReference(const RandParams& params);
absl::Status RandnReference(const RandnParams& params);
absl::Status BernoulliReference(const BernoulliParams& params);
absl::Status RandIntReference(const RandIntParams& params);

absl::Status RandCuda(const RandParams& params, cudaStream_t stream);
absl::Status RandnCuda(const RandnParams& params, cudaStream_t stream);
absl::Status BernoulliCuda(const BernoulliParams& params, cudaStream_t stream);
absl::Status RandIntCuda(const RandIntParams& params, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_RANDOM_H_
