// Kernel-level tests of the Mamba-2 SSD CUDA forward (cuda/ssd.h): SsdCuda (the chunked
// tensor-core kernels) and SsdSequentialCuda (the step-by-step baseline) against the CPU
// reference SsdReference on the same inputs, comparing y, final_state and chunk_states by
// ||gpu - ref|| / ||ref||. Covers f32 / f16 / bf16, L not a multiple of the chunk, chunks 64,
// 128, 256 (and 16, 32), G = 1, 2, P in {64, 32, 80}, N in {64, 128, 16, 256}, with and without z,
// D per head and per head dim, dt_bias and softplus, initial state, seq_idx resets (random and on
// a chunk boundary), the dt clamp, and the Mamba-2 benchmark shape. Outputs are poisoned (NaN)
// before each run so that unwritten elements fail. The argument checks run without a GPU.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "cuda/device.h"
#include "cuda/ssd.h"
#include "cuda/stream.h"
#include "gtest/gtest.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"

namespace lyra::cuda {
namespace {

using ::lyra::testing::RandomTensor;

enum class DMode { kNone, kPerHead, kPerHeadDim };
enum class SeqMode { kNone, kRandom, kChunkBoundary };

struct Config {
  std::string name;
  int64_t batch = 2, length = 100, heads = 4, head_dim = 64, dstate = 64, groups = 1;
  int64_t chunk = 64;
  DType dtype = DType::kF32;
  bool has_z = false, has_bias = true, softplus = true, has_init = false;
  DMode d_mode = DMode::kPerHead;
  SeqMode seq = SeqMode::kNone;
  double dt_min = 0.0, dt_max = std::numeric_limits<double>::infinity();
};

std::string Describe(const Config& c) {
  return absl::StrCat(c.name, " ", DTypeName(c.dtype), " B=", c.batch, " L=", c.length,
                      " H=", c.heads, " P=", c.head_dim, " N=", c.dstate, " G=", c.groups,
                      " Q=", c.chunk, " z=", c.has_z, " bias=", c.has_bias, " softplus=",
                      c.softplus, " init=", c.has_init, " D=", static_cast<int>(c.d_mode),
                      " seq=", static_cast<int>(c.seq), " clamp=[", c.dt_min, ", ", c.dt_max, "]");
}

// seq_idx (B, L): random documents (a new one with probability 1/40 per step), or with
// kChunkBoundary documents starting exactly at t = chunk and t = 3 chunk (and at t = 5).
absl::StatusOr<Tensor> MakeSeqIdx(const Config& c, uint64_t seed) {
  std::vector<int32_t> v(c.batch * c.length);
  uint64_t state = seed * 2654435761u + 7;
  for (int64_t b = 0; b < c.batch; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < c.length; ++t) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      bool start = false;
      if (c.seq == SeqMode::kRandom) start = t > 0 && (state >> 33) % 40 == 0;
      if (c.seq == SeqMode::kChunkBoundary) {
        start = t == c.chunk || t == 3 * c.chunk || (b == 1 && t == 5);
      }
      if (start) ++doc;
      v[b * c.length + t] = doc;
    }
  }
  return Tensor::FromVector(v, {c.batch, c.length});
}

// The tensors of one problem on one device, contiguous.
struct Problem {
  Tensor x, dt, A, B, C, D, z, dt_bias, initial_state, seq_idx;
};

absl::StatusOr<Problem> MakeProblem(const Config& c, uint64_t seed) {
  Problem pr;
  const int64_t Bt = c.batch, L = c.length, H = c.heads, P = c.head_dim, N = c.dstate;
  LYRA_ASSIGN_OR_RETURN(pr.x, RandomTensor({Bt, L, H, P}, c.dtype, seed + 1));
  // Raw dt around Mamba-2's initialisation: softplus(dt + bias) in ~[0.001, 0.1]; without
  // softplus dt itself is used: keep it positive.
  LYRA_ASSIGN_OR_RETURN(pr.dt, RandomTensor({Bt, L, H}, c.dtype, seed + 2,
                                            c.softplus ? -1.0 : 0.001, c.softplus ? 1.0 : 0.1));
  std::vector<double> a(H);
  // A = -exp(a_log), a_log spread over [0, 2.7] across the heads.
  for (int64_t h = 0; h < H; ++h) a[h] = -std::exp(2.7 * h / std::max<int64_t>(H - 1, 1));
  LYRA_ASSIGN_OR_RETURN(pr.A, Tensor::FromDoubles(a, {H}, DType::kF32));
  LYRA_ASSIGN_OR_RETURN(pr.B, RandomTensor({Bt, L, c.groups, N}, c.dtype, seed + 3));
  LYRA_ASSIGN_OR_RETURN(pr.C, RandomTensor({Bt, L, c.groups, N}, c.dtype, seed + 4));
  if (c.d_mode == DMode::kPerHead) {
    LYRA_ASSIGN_OR_RETURN(pr.D, RandomTensor({H}, DType::kF32, seed + 5, 0.5, 1.5));
  } else if (c.d_mode == DMode::kPerHeadDim) {
    LYRA_ASSIGN_OR_RETURN(pr.D, RandomTensor({H, P}, DType::kF32, seed + 5, 0.5, 1.5));
  }
  if (c.has_z) {
    LYRA_ASSIGN_OR_RETURN(pr.z, RandomTensor({Bt, L, H, P}, c.dtype, seed + 6, -2.0, 2.0));
  }
  if (c.has_bias) {
    const double lo = c.softplus ? -5.0 : 0.0, hi = c.softplus ? -2.0 : 0.01;
    LYRA_ASSIGN_OR_RETURN(pr.dt_bias, RandomTensor({H}, DType::kF32, seed + 7, lo, hi));
  }
  if (c.has_init) {
    LYRA_ASSIGN_OR_RETURN(pr.initial_state, RandomTensor({Bt, H, P, N}, DType::kF32, seed + 8));
  }
  if (c.seq != SeqMode::kNone) {
    LYRA_ASSIGN_OR_RETURN(pr.seq_idx, MakeSeqIdx(c, seed + 9));
  }
  return pr;
}

absl::StatusOr<Problem> ToDevice(const Problem& in, Device device) {
  Problem out = in;
  for (Tensor* t : {&out.x, &out.dt, &out.A, &out.B, &out.C, &out.D, &out.z, &out.dt_bias,
                    &out.initial_state, &out.seq_idx}) {
    if (t->defined()) {
      LYRA_ASSIGN_OR_RETURN(*t, t->To(device));
    }
  }
  return out;
}

// Outputs of one run: y (B, L, H, P), final_state (B, H, P, N), chunk_states (B, nc, H, P, N).
struct Outputs {
  Tensor y, final_state, chunk_states;
};

absl::StatusOr<Outputs> MakeOutputs(const Config& c, Device device) {
  Outputs o;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t nc = SsdNumChunks(c.length, c.chunk);
  LYRA_ASSIGN_OR_RETURN(o.y, Tensor::Full({c.batch, c.length, c.heads, c.head_dim}, nan,
                                          c.dtype, device));
  LYRA_ASSIGN_OR_RETURN(o.final_state, Tensor::Full({c.batch, c.heads, c.head_dim, c.dstate},
                                                    nan, DType::kF32, device));
  LYRA_ASSIGN_OR_RETURN(o.chunk_states,
                        Tensor::Full({c.batch, nc, c.heads, c.head_dim, c.dstate}, nan,
                                     DType::kF32, device));
  return o;
}

// SsdParams over contiguous tensors.
SsdParams MakeParams(const Config& c, const Problem& pr, const Outputs& o) {
  SsdParams p;
  const int64_t L = c.length, H = c.heads, P = c.head_dim, N = c.dstate, G = c.groups;
  p.batch = c.batch, p.length = L, p.heads = H, p.head_dim = P, p.dstate = N, p.groups = G;
  p.chunk = c.chunk, p.dt_softplus = c.softplus, p.dt_min = c.dt_min, p.dt_max = c.dt_max;
  p.dtype = c.dtype;
  p.x = pr.x.data(), p.x_stride_b = L * H * P, p.x_stride_l = H * P, p.x_stride_h = P;
  p.x_stride_p = 1;
  p.dt = pr.dt.data(), p.dt_stride_b = L * H, p.dt_stride_l = H, p.dt_stride_h = 1;
  p.A = pr.A.data(), p.A_stride = 1;
  p.B = pr.B.data(), p.B_stride_b = L * G * N, p.B_stride_l = G * N, p.B_stride_g = N;
  p.B_stride_n = 1;
  p.C = pr.C.data(), p.C_stride_b = L * G * N, p.C_stride_l = G * N, p.C_stride_g = N;
  p.C_stride_n = 1;
  if (pr.D.defined()) {
    p.D = pr.D.data(), p.D_per_head_dim = c.d_mode == DMode::kPerHeadDim;
    p.D_stride_h = p.D_per_head_dim ? P : 1, p.D_stride_p = 1;
  }
  if (pr.z.defined()) {
    p.z = pr.z.data(), p.z_stride_b = L * H * P, p.z_stride_l = H * P, p.z_stride_h = P;
    p.z_stride_p = 1;
  }
  if (pr.dt_bias.defined()) p.dt_bias = pr.dt_bias.data(), p.dt_bias_stride = 1;
  if (pr.initial_state.defined()) {
    p.initial_state = pr.initial_state.data();
    p.initial_state_stride_b = H * P * N, p.initial_state_stride_h = P * N;
    p.initial_state_stride_p = N, p.initial_state_stride_n = 1;
  }
  if (pr.seq_idx.defined()) {
    p.seq_idx = pr.seq_idx.data<int32_t>(), p.seq_idx_stride_b = L, p.seq_idx_stride_l = 1;
  }
  p.y = o.y.data(), p.y_stride_b = L * H * P, p.y_stride_l = H * P, p.y_stride_h = P;
  p.y_stride_p = 1;
  p.final_state = o.final_state.data();
  p.final_state_stride_b = H * P * N, p.final_state_stride_h = P * N;
  p.final_state_stride_p = N, p.final_state_stride_n = 1;
  p.chunk_states = o.chunk_states.data();
  return p;
}

std::vector<double> Doubles(const Tensor& t) {
  absl::StatusOr<Tensor> cpu = t.To(Device::Cpu());
  EXPECT_TRUE(cpu.ok()) << cpu.status();
  if (!cpu.ok()) return {};
  absl::StatusOr<std::vector<double>> v = cpu->ToDoubles();
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::vector<double>();
}

// ||a - b|| / ||b|| (+inf on a non-finite value or a size mismatch).
double NormRelError(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> a = Doubles(actual), b = Doubles(expected);
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

#define EXPECT_NEAR_NORM(actual, expected, tol)                                  \
  do {                                                                           \
    const double err_ = NormRelError((actual), (expected));                      \
    EXPECT_TRUE(err_ <= (tol)) << #actual << " rel. error " << err_ << " > " << (tol); \
  } while (0)

// The one table of tolerances (norm-relative) of the CUDA forward against the CPU reference on
// the same inputs. f32: TF32-split products (near f32) and other summation orders; f16 / bf16:
// the tensor-core operands (C Bᵀ ∘ decay, the states, x dt' decay) rounded to the 16-bit type.
struct Tolerances {
  double y, states;
};
Tolerances TolFor(DType dtype) {
  switch (dtype) {
    case DType::kF32: return {1e-4, 1e-4};
    case DType::kF16: return {1e-2, 1e-2};
    default: return {2e-2, 2e-2};  // bf16
  }
}

enum class Kernel { kChunked, kSequential };

void CheckAgainstReference(const Config& c, uint64_t seed, Kernel kernel = Kernel::kChunked) {
  SCOPED_TRACE(Describe(c) + (kernel == Kernel::kSequential ? " [sequential]" : " [chunked]"));
  const Device gpu = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(Problem cpu, MakeProblem(c, seed));
  ASSERT_OK_AND_ASSIGN(Problem dev, ToDevice(cpu, gpu));
  ASSERT_OK_AND_ASSIGN(Outputs ref, MakeOutputs(c, Device::Cpu()));
  ASSERT_OK_AND_ASSIGN(Outputs out, MakeOutputs(c, gpu));
  ASSERT_OK(SsdReference(MakeParams(c, cpu, ref)));
  const SsdParams p = MakeParams(c, dev, out);
  if (kernel == Kernel::kChunked) {
    ASSERT_OK(SsdCuda(p, CurrentStream(0)));
  } else {
    ASSERT_OK(SsdSequentialCuda(p, CurrentStream(0)));
  }
  const Tolerances tol = TolFor(c.dtype);
  // The errors are printed, pass or fail, to show the margins.
  std::printf("  %s%s: y %.2e final_state %.2e chunk_states %.2e\n", Describe(c).c_str(),
              kernel == Kernel::kSequential ? " [sequential]" : "", NormRelError(out.y, ref.y),
              NormRelError(out.final_state, ref.final_state),
              NormRelError(out.chunk_states, ref.chunk_states));
  EXPECT_NEAR_NORM(out.y, ref.y, tol.y);
  EXPECT_NEAR_NORM(out.final_state, ref.final_state, tol.states);
  EXPECT_NEAR_NORM(out.chunk_states, ref.chunk_states, tol.states);
}

// ---------------------------------------------------------------------------------------------
// Without a GPU: the launchers reject what the predicate rejects before touching the device.

TEST(SsdForwardCudaTest, RejectsUnsupportedArguments) {
  Config c;
  c.batch = 1, c.length = 8, c.heads = 2, c.head_dim = 4, c.dstate = 4;
  ASSERT_OK_AND_ASSIGN(Problem cpu, MakeProblem(c, 1));
  ASSERT_OK_AND_ASSIGN(Outputs o, MakeOutputs(c, Device::Cpu()));
  SsdParams p = MakeParams(c, cpu, o);
  for (auto launch : {&SsdCuda, &SsdSequentialCuda}) {
    SsdParams bad = p;
    bad.chunk = 100;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kInvalidArgument, "chunk");
    bad = p;
    bad.dtype = DType::kF64;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kUnimplemented, "f64");
    bad = p;
    bad.head_dim = kSsdMaxDim + 1;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kUnimplemented, "P");
    bad = p;
    bad.groups = 3;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kInvalidArgument, "G");
    bad = p;
    bad.x_stride_p = 2;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kUnimplemented, "unit stride");
    bad = p;
    bad.x = nullptr;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kInvalidArgument, "required");
    // Empty problems are accepted and do nothing.
    bad = p;
    bad.length = 0;
    EXPECT_OK(launch(bad, nullptr));
  }
}

// ---------------------------------------------------------------------------------------------
// On a GPU

TEST(SsdForwardCudaTest, GridMatchesReference) {
  LYRA_REQUIRE_GPU();
  int index = 0;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t chunk : {64, 128, 256}) {
      for (int64_t P : {64, 32, 80}) {
        for (int64_t N : {64, 128, 16, 256}) {
          ++index;
          Config c;
          c.name = "grid";
          c.dtype = dtype, c.chunk = chunk, c.head_dim = P, c.dstate = N;
          c.groups = index % 2 == 0 ? 2 : 1;
          c.heads = 2 * c.groups;
          c.batch = 1 + index % 2;
          c.length = chunk * (1 + index % 3) + (index % 4 == 0 ? 0 : 17 + index % 5);
          c.has_z = index % 3 == 0;
          c.d_mode = static_cast<DMode>(index % 3);
          c.has_bias = index % 5 != 1;
          c.softplus = index % 7 != 3;
          c.has_init = index % 2 == 1;
          c.seq = static_cast<SeqMode>(index % 3);
          if (index % 11 == 4) c.dt_min = 0.01, c.dt_max = 0.05;
          CheckAgainstReference(c, 100 + 31 * index);
        }
      }
    }
  }
}

TEST(SsdForwardCudaTest, FlagsOneAtATime) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    Config base;
    base.name = "flags";
    base.dtype = dtype, base.length = 300, base.chunk = 128, base.heads = 4, base.groups = 2;
    base.head_dim = 64, base.dstate = 128;
    CheckAgainstReference(base, 1);
    Config c = base;
    c.has_z = true;
    CheckAgainstReference(c, 2);
    c = base, c.d_mode = DMode::kNone;
    CheckAgainstReference(c, 3);
    c = base, c.d_mode = DMode::kPerHeadDim;
    CheckAgainstReference(c, 4);
    c = base, c.has_init = true;
    CheckAgainstReference(c, 5);
    c = base, c.seq = SeqMode::kRandom;
    CheckAgainstReference(c, 6);
    c = base, c.seq = SeqMode::kChunkBoundary, c.has_init = true;
    CheckAgainstReference(c, 7);
    c = base, c.dt_min = 0.02, c.dt_max = 0.04;
    CheckAgainstReference(c, 8);
    c = base, c.softplus = false, c.has_bias = false;
    CheckAgainstReference(c, 9);
    c = base, c.chunk = 16, c.length = 70;
    CheckAgainstReference(c, 10);
    c = base, c.chunk = 32, c.length = 33, c.head_dim = 8, c.dstate = 8;
    CheckAgainstReference(c, 11);
    c = base, c.length = 1, c.has_init = true, c.has_z = true;
    CheckAgainstReference(c, 12);
  }
}

TEST(SsdForwardCudaTest, SequentialKernelMatchesReference) {
  LYRA_REQUIRE_GPU();
  int index = 0;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t N : {16, 64, 256}) {
      ++index;
      Config c;
      c.name = "sequential";
      c.dtype = dtype, c.dstate = N, c.head_dim = index % 2 ? 32 : 80, c.groups = 2;
      c.length = 150, c.chunk = 64, c.has_z = index % 2 == 0, c.has_init = true;
      c.seq = static_cast<SeqMode>(index % 3), c.d_mode = static_cast<DMode>(index % 3);
      CheckAgainstReference(c, 200 + index, Kernel::kSequential);
    }
  }
}

// Mamba-2 2.7B-like heads (P = 64, N = 128, chunk 256) at the benchmark's per-head shape
// (L = 2048), fewer heads to keep the CPU reference quick; bf16 compared norm-wise.
TEST(SsdForwardCudaTest, Mamba2BenchmarkShape) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    Config c;
    c.name = "mamba2 benchmark shape";
    c.dtype = dtype, c.batch = 2, c.length = 2048, c.heads = 4, c.head_dim = 64, c.dstate = 128;
    c.chunk = 256;
    CheckAgainstReference(c, 300);
    c.name = "mamba2, packed, z, d_state 256";
    c.dstate = 256, c.has_z = true, c.seq = SeqMode::kRandom, c.has_init = true, c.length = 1000;
    CheckAgainstReference(c, 301);
  }
}

TEST(SsdForwardCudaTest, IsDeterministic) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.dtype = DType::kBF16, c.length = 777, c.chunk = 256, c.heads = 4, c.dstate = 128;
  c.has_init = true, c.seq = SeqMode::kRandom;
  ASSERT_OK_AND_ASSIGN(Problem cpu, MakeProblem(c, 9));
  ASSERT_OK_AND_ASSIGN(Problem dev, ToDevice(cpu, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Outputs a, MakeOutputs(c, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Outputs b, MakeOutputs(c, Device::Cuda(0)));
  ASSERT_OK(SsdCuda(MakeParams(c, dev, a), CurrentStream(0)));
  ASSERT_OK(SsdCuda(MakeParams(c, dev, b), CurrentStream(0)));
  EXPECT_TRUE(::lyra::testing::AllClose(a.y, b.y, {0, 0}));
  EXPECT_TRUE(::lyra::testing::AllClose(a.final_state, b.final_state, {0, 0}));
  EXPECT_TRUE(::lyra::testing::AllClose(a.chunk_states, b.chunk_states, {0, 0}));
}

// Without chunk_states and final_state (optional outputs) the result is the same.
TEST(SsdForwardCudaTest, OptionalOutputs) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.dtype = DType::kF32, c.length = 200, c.chunk = 64, c.has_init = true;
  ASSERT_OK_AND_ASSIGN(Problem cpu, MakeProblem(c, 10));
  ASSERT_OK_AND_ASSIGN(Problem dev, ToDevice(cpu, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Outputs a, MakeOutputs(c, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Outputs b, MakeOutputs(c, Device::Cuda(0)));
  ASSERT_OK(SsdCuda(MakeParams(c, dev, a), CurrentStream(0)));
  SsdParams p = MakeParams(c, dev, b);
  p.chunk_states = nullptr, p.final_state = nullptr;
  ASSERT_OK(SsdCuda(p, CurrentStream(0)));
  EXPECT_TRUE(::lyra::testing::AllClose(a.y, b.y, {0, 0}));
}

}  // namespace
}  // namespace lyra::cuda
