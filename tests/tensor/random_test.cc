// Philox random factories: the Philox4x32-10 known-answer vectors, the exact element formulas,
// determinism and replay through (seed, offset), moments and ranges of every distribution, bad
// arguments, and CUDA against the CPU reference (bit-identical except Randn, within tolerance).
#include "tensor/random.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "cuda/philox.h"
#include "cuda/random.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;

constexpr DType kFloatDTypes[] = {DType::kF32, DType::kF64, DType::kF16, DType::kBF16};

std::vector<double> Values(const Tensor& t) {
  absl::StatusOr<std::vector<double>> v = t.ToDoubles();
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::vector<double>();
}

// The tensor's bytes in row-major order, from any device.
std::vector<uint8_t> Bytes(const Tensor& t) {
  absl::StatusOr<Tensor> cpu = t.To(Device::Cpu());
  EXPECT_TRUE(cpu.ok()) << cpu.status();
  if (!cpu.ok()) return {};
  absl::StatusOr<Tensor> c = cpu->Contiguous();
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return {};
  std::vector<uint8_t> bytes(c->nbytes());
  if (!bytes.empty()) std::memcpy(bytes.data(), c->data(), bytes.size());
  return bytes;
}

struct Moments {
  double mean;
  double variance;
};

Moments SampleMoments(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  const double mean = sum / v.size();
  double sq = 0;
  for (double x : v) sq += (x - mean) * (x - mean);
  return {mean, sq / (v.size() - 1)};
}

// Mean and variance within 5 standard errors of the distribution's: se(mean) = sigma / sqrt(n),
// se(variance) = sqrt((mu4 - sigma^4) / n) with mu4 the fourth central moment.
void ExpectMoments(const std::vector<double>& v, double mean, double variance, double mu4,
                   const std::string& what) {
  const double n = static_cast<double>(v.size());
  const Moments m = SampleMoments(v);
  const double se_mean = std::sqrt(variance / n);
  const double se_var = std::sqrt((mu4 - variance * variance) / n);
  EXPECT_TRUE(std::fabs(m.mean - mean) <= 5 * se_mean)
      << what << ": mean " << m.mean << ", expected " << mean << " +- " << 5 * se_mean;
  EXPECT_TRUE(std::fabs(m.variance - variance) <= 5 * se_var)
      << what << ": variance " << m.variance << ", expected " << variance << " +- " << 5 * se_var;
}

// --- The Philox core ----------------------------------------------------------------------

// Random123's kat_vectors for philox4x32_10.
TEST(PhiloxTest, KnownAnswerVectors) {
  struct Kat {
    cuda::PhiloxCounter counter;
    cuda::PhiloxKey key;
    uint32_t expected[4];
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, {{0, 0}}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
       {{0xffffffff, 0xffffffff}},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
       {{0xa4093822, 0x299f31d0}},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const Kat& kat : kats) {
    const cuda::PhiloxBlock out = cuda::Philox4x32(kat.counter, kat.key);
    for (int i = 0; i < 4; ++i) {
      EXPECT_EQ(out.v[i], kat.expected[i]) << "word " << i << " of counter " << std::hex
                                           << kat.counter.v[0] << " key " << kat.key.v[0];
    }
  }
}

TEST(PhiloxTest, StreamBlockIsCounterLowHighAndSeedKey) {
  const uint64_t seed = 0x0123456789abcdefull;
  const uint64_t block = 0xfedcba9876543210ull;
  const cuda::PhiloxBlock a = cuda::PhiloxStreamBlock(seed, block);
  const cuda::PhiloxBlock b =
      cuda::Philox4x32({{0x76543210u, 0xfedcba98u, 0u, 0u}}, {{0x89abcdefu, 0x01234567u}});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(a.v[i], b.v[i]);
  EXPECT_EQ(cuda::PhiloxStreamBlock(0, 0).v[0], 0x6627e8d5u);
}

// --- Generator ----------------------------------------------------------------------------

TEST(GeneratorTest, StateAndAdvance) {
  Generator gen(7);
  EXPECT_EQ(gen.seed(), 7u);
  EXPECT_EQ(gen.offset(), 0u);
  EXPECT_EQ(gen.Advance(3), 0u);
  EXPECT_EQ(gen.Advance(5), 3u);
  EXPECT_EQ(gen.offset(), 8u);
  gen.set_state(11, 100);
  EXPECT_EQ(gen.seed(), 11u);
  EXPECT_EQ(gen.Advance(0), 100u);
  EXPECT_EQ(gen.offset(), 100u);
  EXPECT_EQ(Generator().seed(), 0u);
}

TEST(GeneratorTest, DrawsAdvanceByTheirBlocks) {
  Generator gen(1);
  ASSERT_OK_AND_ASSIGN(Tensor a, Rand({5}, DType::kF32, Device::Cpu(), gen));
  EXPECT_EQ(gen.offset(), 2u);  // 5 words -> 2 blocks of 4
  ASSERT_OK_AND_ASSIGN(Tensor b, Rand({5}, DType::kF64, Device::Cpu(), gen));
  EXPECT_EQ(gen.offset(), 5u);  // 10 words -> 3 blocks
  ASSERT_OK_AND_ASSIGN(Tensor c, Randn({3, 3}, DType::kBF16, Device::Cpu(), gen));
  EXPECT_EQ(gen.offset(), 8u);
  ASSERT_OK_AND_ASSIGN(Tensor d, Randn({3}, DType::kF64, Device::Cpu(), gen));
  EXPECT_EQ(gen.offset(), 10u);
  ASSERT_OK_AND_ASSIGN(Tensor e, Bernoulli({9}, 0.5, Device::Cpu(), gen));
  EXPECT_EQ(gen.offset(), 13u);
  ASSERT_OK_AND_ASSIGN(Tensor f, RandInt({3}, 0, 10, DType::kI32, Device::Cpu(), gen));
  EXPECT_EQ(gen.offset(), 15u);
  ASSERT_OK_AND_ASSIGN(Tensor g, Rand({0, 4}, DType::kF32, Device::Cpu(), gen));
  EXPECT_EQ(g.numel(), 0);
  EXPECT_EQ(gen.offset(), 15u);
}

// --- Exact formulas (CPU) -----------------------------------------------------------------

TEST(RandTest, ElementsFollowTheDocumentedFormulas) {
  const uint64_t seed = 0xdeadbeefcafef00dull, offset = 0xfffffffeull;  // crosses 2^32 blocks
  Generator gen(seed);
  gen.set_state(seed, offset);
  const int64_t n = 23;
  ASSERT_OK_AND_ASSIGN(Tensor f32, Rand({n}, DType::kF32, Device::Cpu(), gen));
  ASSERT_OK_AND_ASSIGN(std::vector<float> vf, f32.ToVector<float>());
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t w = cuda::PhiloxStreamBlock(seed, offset + i / 4).v[i % 4];
    EXPECT_EQ(vf[i], static_cast<float>(w >> 8) * 0x1p-24f) << i;
  }
  const uint64_t offset64 = gen.offset();
  ASSERT_OK_AND_ASSIGN(Tensor f64, Rand({n}, DType::kF64, Device::Cpu(), gen));
  ASSERT_OK_AND_ASSIGN(std::vector<double> vd, f64.ToVector<double>());
  for (int64_t i = 0; i < n; ++i) {
    const cuda::PhiloxBlock b = cuda::PhiloxStreamBlock(seed, offset64 + i / 2);
    const uint64_t x = (uint64_t{b.v[2 * (i % 2)]} << 32) | b.v[2 * (i % 2) + 1];
    EXPECT_EQ(vd[i], static_cast<double>(x >> 11) * 0x1p-53) << i;
  }
  const uint64_t offset_mask = gen.offset();
  ASSERT_OK_AND_ASSIGN(Tensor mask, Bernoulli({n}, 0.25, Device::Cpu(), gen));
  ASSERT_OK_AND_ASSIGN(std::vector<bool> vm, mask.ToVector<bool>());
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t w = cuda::PhiloxStreamBlock(seed, offset_mask + i / 4).v[i % 4];
    EXPECT_EQ(vm[i], w < 0x40000000u) << i;
  }
  const uint64_t offset_int = gen.offset();
  ASSERT_OK_AND_ASSIGN(Tensor ints, RandInt({n}, -5, 1000, DType::kI64, Device::Cpu(), gen));
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> vi, ints.ToVector<int64_t>());
  for (int64_t i = 0; i < n; ++i) {
    const cuda::PhiloxBlock b = cuda::PhiloxStreamBlock(seed, offset_int + i / 2);
    const uint64_t x = (uint64_t{b.v[2 * (i % 2)]} << 32) | b.v[2 * (i % 2) + 1];
    const int64_t expected =
        -5 + static_cast<int64_t>((static_cast<unsigned __int128>(x) * 1005) >> 64);
    EXPECT_EQ(vi[i], expected) << i;
  }
}

TEST(RandTest, UsesTheDtypeSignificandBits) {
  Generator gen(3);
  ASSERT_OK_AND_ASSIGN(Tensor f32, Rand({4096}, DType::kF32, Device::Cpu(), gen));
  ASSERT_OK_AND_ASSIGN(Tensor f64, Rand({4096}, DType::kF64, Device::Cpu(), gen));
  bool f64_uses_more_than_32_bits = false;
  for (double x : Values(f32)) {
    const double scaled = x * 0x1p24;
    EXPECT_EQ(scaled, std::floor(scaled));
  }
  for (double x : Values(f64)) {
    const double scaled = x * 0x1p53;
    EXPECT_EQ(scaled, std::floor(scaled));
    if (x * 0x1p32 != std::floor(x * 0x1p32)) f64_uses_more_than_32_bits = true;
  }
  EXPECT_TRUE(f64_uses_more_than_32_bits);
}

// --- Determinism --------------------------------------------------------------------------

TEST(RandTest, SameStateSameNumbersAdvanceDiffers) {
  for (DType dtype : kFloatDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    Generator a(42), b(42);
    ASSERT_OK_AND_ASSIGN(Tensor a1, Rand({7, 9}, dtype, Device::Cpu(), a));
    ASSERT_OK_AND_ASSIGN(Tensor b1, Rand({7, 9}, dtype, Device::Cpu(), b));
    EXPECT_EQ(Bytes(a1), Bytes(b1));
    ASSERT_OK_AND_ASSIGN(Tensor a2, Rand({7, 9}, dtype, Device::Cpu(), a));
    EXPECT_NE(Bytes(a1), Bytes(a2));
    Generator c(43);
    ASSERT_OK_AND_ASSIGN(Tensor c1, Rand({7, 9}, dtype, Device::Cpu(), c));
    EXPECT_NE(Bytes(a1), Bytes(c1));
  }
}

TEST(RandTest, SetStateReplaysEveryFactory) {
  Generator gen(2024);
  ASSERT_OK_AND_ASSIGN(Tensor warmup, Randn({10}, DType::kF32, Device::Cpu(), gen));
  const uint64_t seed = gen.seed(), offset = gen.offset();  // a "checkpoint"
  auto draw_all = [&](Generator& g) -> std::vector<std::vector<uint8_t>> {
    std::vector<std::vector<uint8_t>> out;
    for (DType dtype : kFloatDTypes) {
      auto r = Rand({13}, dtype, Device::Cpu(), g, -2, 5);
      auto n = Randn({13}, dtype, Device::Cpu(), g, 1, 3);
      EXPECT_TRUE(r.ok() && n.ok());
      if (!r.ok() || !n.ok()) return out;
      out.push_back(Bytes(*r));
      out.push_back(Bytes(*n));
    }
    auto m = Bernoulli({13}, 0.3, Device::Cpu(), g);
    auto i = RandInt({13}, -100, 100, DType::kI32, Device::Cpu(), g);
    EXPECT_TRUE(m.ok() && i.ok());
    if (m.ok() && i.ok()) {
      out.push_back(Bytes(*m));
      out.push_back(Bytes(*i));
    }
    return out;
  };
  const std::vector<std::vector<uint8_t>> first = draw_all(gen);
  const uint64_t end = gen.offset();
  Generator resumed(999);
  resumed.set_state(seed, offset);
  EXPECT_EQ(draw_all(resumed), first);
  EXPECT_EQ(resumed.offset(), end);
}

TEST(RandTest, ElementsDependOnlyOnIndexNotShape) {
  Generator a(5), b(5), c(5);
  ASSERT_OK_AND_ASSIGN(Tensor matrix, Randn({3, 5}, DType::kF32, Device::Cpu(), a));
  ASSERT_OK_AND_ASSIGN(Tensor flat, Randn({15}, DType::kF32, Device::Cpu(), b));
  ASSERT_OK_AND_ASSIGN(Tensor prefix, Randn({6}, DType::kF32, Device::Cpu(), c));
  EXPECT_EQ(Bytes(matrix), Bytes(flat));
  const std::vector<double> full = Values(flat), head = Values(prefix);
  EXPECT_EQ(std::vector<double>(full.begin(), full.begin() + 6), head);
}

TEST(RandTest, FailedDrawLeavesGeneratorUnchanged) {
  Generator gen(1);
  gen.set_state(1, 17);
  EXPECT_FALSE(Rand({4}, DType::kF32, Device::Cpu(), gen, 1, 0).ok());
  EXPECT_FALSE(Bernoulli({-1}, 0.5, Device::Cpu(), gen).ok());
  EXPECT_EQ(gen.offset(), 17u);
}

// --- Distributions (CPU) ------------------------------------------------------------------

constexpr int64_t kSamples = 1000000;

TEST(RandTest, UniformMoments) {
  const double lo = -2, hi = 3, w = hi - lo;
  for (DType dtype : kFloatDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    Generator gen(11);
    ASSERT_OK_AND_ASSIGN(Tensor t, Rand({kSamples}, dtype, Device::Cpu(), gen, lo, hi));
    ExpectMoments(Values(t), (lo + hi) / 2, w * w / 12, std::pow(w, 4) / 80,
                  std::string("Rand ") + std::string(DTypeName(dtype)));
  }
}

TEST(RandTest, NormalMoments) {
  const double mean = 1.5, std = 2;
  for (DType dtype : kFloatDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    Generator gen(12);
    ASSERT_OK_AND_ASSIGN(Tensor t, Randn({kSamples}, dtype, Device::Cpu(), gen, mean, std));
    const std::vector<double> v = Values(t);
    for (double x : v) ASSERT_TRUE(std::isfinite(x));
    ExpectMoments(v, mean, std * std, 3 * std::pow(std, 4),
                  std::string("Randn ") + std::string(DTypeName(dtype)));
  }
}

TEST(RandTest, NormalTailsAndPairs) {
  // Standard normal: P(|z| > 1) = 0.3173, P(|z| > 2) = 0.0455. Both outputs of a Box-Muller
  // pair are used, and they are uncorrelated.
  Generator gen(13);
  ASSERT_OK_AND_ASSIGN(Tensor t, Randn({kSamples}, DType::kF64, Device::Cpu(), gen));
  const std::vector<double> v = Values(t);
  double beyond1 = 0, beyond2 = 0, pair_product = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    beyond1 += std::fabs(v[i]) > 1;
    beyond2 += std::fabs(v[i]) > 2;
    if (i % 2 == 0) pair_product += v[i] * v[i + 1];
  }
  const double n = static_cast<double>(v.size());
  EXPECT_NEAR(beyond1 / n, 0.31731, 5 * std::sqrt(0.31731 * 0.68269 / n));
  EXPECT_NEAR(beyond2 / n, 0.04550, 5 * std::sqrt(0.0455 * 0.9545 / n));
  EXPECT_NEAR(pair_product / (n / 2), 0.0, 5 / std::sqrt(n / 2));
}

TEST(RandTest, RangeIsNeverLeft) {
  struct Case {
    double lo, hi;
  };
  // Bounds representable in every dtype; [0, 1) puts many f32 values just below 1 that would
  // round to 1 in f16 / bf16.
  const Case cases[] = {{0, 1}, {-1, 1}, {-3.5, -0.25}, {100, 104}};
  for (DType dtype : kFloatDTypes) {
    for (const Case& c : cases) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " [", c.lo, ", ", c.hi, ")"));
      Generator gen(21);
      ASSERT_OK_AND_ASSIGN(Tensor t, Rand({kSamples / 4}, dtype, Device::Cpu(), gen, c.lo, c.hi));
      double min = c.hi, max = c.lo;
      for (double x : Values(t)) {
        ASSERT_TRUE(x >= c.lo && x < c.hi) << x;
        min = std::min(min, x);
        max = std::max(max, x);
      }
      // Both ends are reached (to within bf16's spacing: 0.5 at 100).
      EXPECT_LT(min, c.lo + 0.01 * (c.hi - c.lo));
      EXPECT_GT(max, c.hi - 0.2 * (c.hi - c.lo));
    }
  }
}

TEST(RandTest, RangeNarrowerThanOneUlpGivesLo) {
  struct Case {
    DType dtype;
    double hi;  // 1 + one ulp of the dtype at 1
  };
  const Case cases[] = {{DType::kF32, 1 + 0x1p-23},
                        {DType::kF16, 1 + 0x1p-10},
                        {DType::kBF16, 1 + 0x1p-7},
                        {DType::kF64, 1 + 0x1p-52}};
  for (const Case& c : cases) {
    SCOPED_TRACE(DTypeName(c.dtype));
    Generator gen(22);
    ASSERT_OK_AND_ASSIGN(Tensor t, Rand({1001}, c.dtype, Device::Cpu(), gen, 1, c.hi));
    for (double x : Values(t)) ASSERT_EQ(x, 1.0);
  }
}

TEST(BernoulliTest, Frequency) {
  for (double p : {0.1, 0.5, 0.9}) {
    SCOPED_TRACE(p);
    Generator gen(31);
    ASSERT_OK_AND_ASSIGN(Tensor t, Bernoulli({1000, 1000}, p, Device::Cpu(), gen));
    EXPECT_EQ(t.dtype(), DType::kBool);
    ASSERT_OK_AND_ASSIGN(std::vector<bool> v, t.ToVector<bool>());
    double count = 0;
    for (bool b : v) count += b;
    const double n = static_cast<double>(v.size());
    EXPECT_NEAR(count / n, p, 5 * std::sqrt(p * (1 - p) / n));
  }
  Generator gen(32);
  ASSERT_OK_AND_ASSIGN(Tensor never, Bernoulli({1001}, 0, Device::Cpu(), gen));
  ASSERT_OK_AND_ASSIGN(Tensor always, Bernoulli({1001}, 1, Device::Cpu(), gen));
  for (double x : Values(never)) ASSERT_EQ(x, 0);
  for (double x : Values(always)) ASSERT_EQ(x, 1);
}

TEST(RandIntTest, RangeAndUniformity) {
  const int64_t low = -3, high = 7, k = high - low;
  for (DType dtype : {DType::kI32, DType::kI64}) {
    SCOPED_TRACE(DTypeName(dtype));
    Generator gen(41);
    ASSERT_OK_AND_ASSIGN(Tensor t, RandInt({kSamples}, low, high, dtype, Device::Cpu(), gen));
    EXPECT_EQ(t.dtype(), dtype);
    std::vector<double> counts(k, 0);
    for (double x : Values(t)) {
      ASSERT_TRUE(x >= low && x < high && x == std::floor(x)) << x;
      counts[static_cast<int>(x - low)] += 1;
    }
    // Chi-square with k - 1 = 9 degrees of freedom: P(chi2 > 40) < 1e-5.
    const double expected = static_cast<double>(kSamples) / k;
    double chi2 = 0;
    for (double c : counts) chi2 += (c - expected) * (c - expected) / expected;
    EXPECT_LT(chi2, 40.0);
  }
}

TEST(RandIntTest, ExtremeBounds) {
  Generator gen(42);
  constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
  constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
  ASSERT_OK_AND_ASSIGN(Tensor wide, RandInt({10000}, kI64Min, kI64Max, DType::kI64,
                                            Device::Cpu(), gen));
  ASSERT_OK_AND_ASSIGN(std::vector<int64_t> w, wide.ToVector<int64_t>());
  int negative = 0;
  for (int64_t x : w) {
    EXPECT_LT(x, kI64Max);
    negative += x < 0;
  }
  EXPECT_NEAR(negative, 5000, 5 * 50);
  ASSERT_OK_AND_ASSIGN(Tensor full_i32,
                       RandInt({10000}, std::numeric_limits<int32_t>::min(),
                               int64_t{1} << 31, DType::kI32, Device::Cpu(), gen));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> f, full_i32.ToVector<int32_t>());
  negative = 0;
  for (int32_t x : f) negative += x < 0;
  EXPECT_NEAR(negative, 5000, 5 * 50);
  ASSERT_OK_AND_ASSIGN(Tensor single, RandInt({99}, 12, 13, DType::kI32, Device::Cpu(), gen));
  for (double x : Values(single)) ASSERT_EQ(x, 12);
}

// --- Bad arguments ------------------------------------------------------------------------

TEST(RandTest, BadArguments) {
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  Generator gen(0);
  const Device cpu = Device::Cpu();
  EXPECT_STATUS_IS(Rand({4}, DType::kF32, cpu, gen, 1, 1), kInvalid, "greater than lo");
  EXPECT_STATUS_IS(Rand({4}, DType::kF32, cpu, gen, 2, 1), kInvalid, "greater than lo");
  EXPECT_STATUS_IS(Rand({4}, DType::kF32, cpu, gen, 0, NAN), kInvalid, "finite");
  EXPECT_STATUS_IS(Rand({4}, DType::kF32, cpu, gen, -INFINITY, 0), kInvalid, "finite");
  EXPECT_STATUS_IS(Rand({4}, DType::kI32, cpu, gen), kInvalid, "floating-point");
  EXPECT_STATUS_IS(Rand({4}, DType::kBool, cpu, gen), kInvalid, "floating-point");
  EXPECT_STATUS_IS(Rand({4}, DType::kBF16, cpu, gen, 1, 1.001), kInvalid, "empty in bf16");
  EXPECT_STATUS_IS(Rand({4}, DType::kF16, cpu, gen, 0, 1e6), kInvalid, "overflows f16");
  EXPECT_STATUS_IS(Rand({4}, DType::kF32, cpu, gen, -3e38, 3e38), absl::StatusCode::kUnimplemented,
                   "overflows f32");
  EXPECT_STATUS_IS(Rand({-1}, DType::kF32, cpu, gen), kInvalid, "");
  EXPECT_STATUS_IS(Randn({4}, DType::kI64, cpu, gen), kInvalid, "floating-point");
  EXPECT_STATUS_IS(Randn({4}, DType::kF32, cpu, gen, 0, -1), kInvalid, "std (-1)");
  EXPECT_STATUS_IS(Randn({4}, DType::kF32, cpu, gen, NAN, 1), kInvalid, "finite");
  EXPECT_STATUS_IS(Bernoulli({4}, 1.5, cpu, gen), kInvalid, "p (1.5) must be in [0, 1]");
  EXPECT_STATUS_IS(Bernoulli({4}, -0.1, cpu, gen), kInvalid, "[0, 1]");
  EXPECT_STATUS_IS(Bernoulli({4}, NAN, cpu, gen), kInvalid, "[0, 1]");
  EXPECT_STATUS_IS(RandInt({4}, 5, 5, DType::kI64, cpu, gen), kInvalid, "less than high");
  EXPECT_STATUS_IS(RandInt({4}, 6, 5, DType::kI32, cpu, gen), kInvalid, "less than high");
  EXPECT_STATUS_IS(RandInt({4}, 0, 10, DType::kF32, cpu, gen), kInvalid, "i32 or i64");
  EXPECT_STATUS_IS(RandInt({4}, 0, int64_t{1} << 32, DType::kI32, cpu, gen), kInvalid,
                   "does not fit i32");
  EXPECT_STATUS_IS(RandInt({4}, -(int64_t{1} << 31) - 1, 0, DType::kI32, cpu, gen), kInvalid,
                   "does not fit i32");
  // The predicates reject what the factories reject, for direct kernel callers.
  cuda::RandParams p;
  p.n = -1;
  EXPECT_STATUS_IS(cuda::RandSupported(p), kInvalid, "negative element count");
  EXPECT_EQ(gen.offset(), 0u);
}

// --- CUDA against the CPU reference -------------------------------------------------------

// Sizes around the 4-per-block and 256-thread granularity, and one past a CTA-grid multiple.
const int64_t kGpuSizes[] = {1, 2, 3, 4, 5, 7, 255, 1023, 1025, 4097, (1 << 20) + 3};

// The same draw from the same state on both devices; also checks both generators end alike.
template <typename Factory>
void ExpectGpuMatchesCpu(Factory factory, bool bit_identical, testing::Tolerance tol) {
  for (int64_t n : kGpuSizes) {
    for (uint64_t offset : {uint64_t{0}, uint64_t{12345}, uint64_t{0xfffffffd}}) {
      SCOPED_TRACE(absl::StrCat("n=", n, " offset=", offset));
      Generator cpu_gen(77), gpu_gen(77);
      cpu_gen.set_state(77, offset);
      gpu_gen.set_state(77, offset);
      absl::StatusOr<Tensor> cpu = factory(n, Device::Cpu(), cpu_gen);
      absl::StatusOr<Tensor> gpu = factory(n, Device::Cuda(0), gpu_gen);
      ASSERT_TRUE(cpu.ok()) << cpu.status();
      ASSERT_TRUE(gpu.ok()) << gpu.status();
      EXPECT_EQ(gpu->device(), Device::Cuda(0));
      EXPECT_EQ(cpu_gen.offset(), gpu_gen.offset());
      if (bit_identical) {
        ASSERT_EQ(Bytes(*gpu), Bytes(*cpu));
      } else {
        ASSERT_TRUE(AllClose(*gpu, *cpu, tol));
      }
    }
  }
}

TEST(RandCudaTest, RandBitIdenticalToCpu) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : kFloatDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    ExpectGpuMatchesCpu(
        [&](int64_t n, Device d, Generator& g) { return Rand({n}, dtype, d, g, -1.5, 2.5); },
        true, {});
    ExpectGpuMatchesCpu(
        [&](int64_t n, Device d, Generator& g) { return Rand({n}, dtype, d, g); }, true, {});
  }
}

TEST(RandCudaTest, RandnMatchesCpuWithinUlps) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : kFloatDTypes) {
    SCOPED_TRACE(DTypeName(dtype));
    ExpectGpuMatchesCpu(
        [&](int64_t n, Device d, Generator& g) { return Randn({n}, dtype, d, g, 0.5, 2); },
        false, DefaultTolerance(dtype));
  }
}

TEST(RandCudaTest, BernoulliBitIdenticalToCpu) {
  LYRA_REQUIRE_GPU();
  for (double p : {0.0, 0.1, 0.5, 1.0}) {
    SCOPED_TRACE(p);
    ExpectGpuMatchesCpu(
        [&](int64_t n, Device d, Generator& g) { return Bernoulli({n}, p, d, g); }, true, {});
  }
}

TEST(RandCudaTest, RandIntBitIdenticalToCpu) {
  LYRA_REQUIRE_GPU();
  ExpectGpuMatchesCpu(
      [](int64_t n, Device d, Generator& g) { return RandInt({n}, -7, 50280, DType::kI32, d, g); },
      true, {});
  ExpectGpuMatchesCpu(
      [](int64_t n, Device d, Generator& g) {
        return RandInt({n}, std::numeric_limits<int64_t>::min(),
                       std::numeric_limits<int64_t>::max(), DType::kI64, d, g);
      },
      true, {});
}

TEST(RandCudaTest, ShapedAndEmptyDraws) {
  LYRA_REQUIRE_GPU();
  Generator cpu_gen(8), gpu_gen(8);
  ASSERT_OK_AND_ASSIGN(Tensor cpu, Rand({3, 7, 5}, DType::kBF16, Device::Cpu(), cpu_gen));
  ASSERT_OK_AND_ASSIGN(Tensor gpu, Rand({3, 7, 5}, DType::kBF16, Device::Cuda(0), gpu_gen));
  EXPECT_EQ(gpu.shape(), (Shape{3, 7, 5}));
  EXPECT_EQ(Bytes(gpu), Bytes(cpu));
  ASSERT_OK_AND_ASSIGN(Tensor empty, Randn({0}, DType::kF32, Device::Cuda(0), gpu_gen));
  EXPECT_EQ(empty.numel(), 0);
  EXPECT_EQ(gpu_gen.offset(), cpu_gen.offset());
  EXPECT_STATUS_IS(Rand({4}, DType::kF32, Device::Cuda(0), gpu_gen, 1, 0),
                   absl::StatusCode::kInvalidArgument, "greater than lo");
}

}  // namespace
}  // namespace lyra
