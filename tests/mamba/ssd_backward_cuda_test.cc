// Kernel-level tests of the Mamba-2 SSD CUDA backward (cuda/ssd.h): SsdBackwardCuda (the chunked
// tensor-core kernels, or the sequential kernel for shapes outside their fast path) and
// SsdBackwardSequentialCuda (one block per (b, h) stepping the adjoint recurrence) against the
// CPU reference SsdBackwardReference on the same inputs, comparing every gradient (dx, ddt, dA,
// dB, dC, dD, dz, ddt_bias, dinitial_state) by ||gpu - ref|| / ||ref||. Covers f32 / f16 / bf16,
// L not a multiple of the chunk, chunks 64 and 256 (and 16, 32), G = 1, 2, P in {64, 32, 80, 128},
// N in {64, 128, 16, 256}, with and without z, D per head and per head dim, dt_bias and
// softplus, initial state and dfinal_state, seq_idx resets (random and on chunk boundaries), the
// dt clamp, chunk_states given by the forward or null (recomputed), determinism, the Mamba-2
// benchmark shape, and shapes large enough for the grouped chunk blocks. Gradients are poisoned
// (NaN) before each run so that unwritten elements fail.
// The argument checks run without a GPU.
#include <cmath>
#include <cstdint>
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
#include "tests/mamba/ssd_cuda_testing.h"
#include "tests/testing/testing.h"

namespace lyra::cuda {
namespace {

using ::lyra::testing::RandomTensor;

using ssd_testing::Config;
using ssd_testing::Describe;
using ssd_testing::DMode;
using ssd_testing::Doubles;
using ssd_testing::MakeOutputs;
using ssd_testing::MakeParams;
using ssd_testing::MakeProblem;
using ssd_testing::NormRelError;
using ssd_testing::Outputs;
using ssd_testing::Problem;
using ssd_testing::SeqMode;
using ssd_testing::ToDevice;

// The backward's configuration: the forward's plus its own two switches.
std::string DescribeBackward(const Config& c) {
  return absl::StrCat(Describe(c), " dfinal=", c.has_dfinal, " chunk_states=", c.give_chunk_states);
}

// The upstream gradients and the gradients of one run (poisoned with NaN), on one device.
struct Grads {
  Tensor dy, dfinal;                                  // inputs
  Tensor dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinit;  // outputs
};

absl::StatusOr<Grads> MakeGrads(const Config& c, const Problem& pr, Device device, uint64_t seed) {
  Grads g;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t Bt = c.batch, L = c.length, H = c.heads, P = c.head_dim, N = c.dstate;
  LYRA_ASSIGN_OR_RETURN(g.dy, RandomTensor({Bt, L, H, P}, c.dtype, seed + 11));
  if (c.has_dfinal) {
    LYRA_ASSIGN_OR_RETURN(g.dfinal, RandomTensor({Bt, H, P, N}, DType::kF32, seed + 12));
  }
  LYRA_ASSIGN_OR_RETURN(g.dy, g.dy.To(device));
  if (g.dfinal.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dfinal, g.dfinal.To(device));
  }
  LYRA_ASSIGN_OR_RETURN(g.dx, Tensor::Full({Bt, L, H, P}, nan, c.dtype, device));
  LYRA_ASSIGN_OR_RETURN(g.ddt, Tensor::Full({Bt, L, H}, nan, c.dtype, device));
  LYRA_ASSIGN_OR_RETURN(g.dA, Tensor::Full({H}, nan, DType::kF32, device));
  LYRA_ASSIGN_OR_RETURN(g.dB, Tensor::Full({Bt, L, c.groups, N}, nan, c.dtype, device));
  LYRA_ASSIGN_OR_RETURN(g.dC, Tensor::Full({Bt, L, c.groups, N}, nan, c.dtype, device));
  if (pr.D.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dD, Tensor::Full(pr.D.shape(), nan, DType::kF32, device));
  }
  if (pr.z.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dz, Tensor::Full({Bt, L, H, P}, nan, c.dtype, device));
  }
  if (pr.dt_bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.ddt_bias, Tensor::Full({H}, nan, DType::kF32, device));
  }
  LYRA_ASSIGN_OR_RETURN(g.dinit, Tensor::Full({Bt, H, P, N}, nan, DType::kF32, device));
  return g;
}

// SsdBackwardParams over contiguous tensors; `chunk_states` may be undefined.
SsdBackwardParams MakeBackwardParams(const Config& c, const Problem& pr, const Outputs& o,
                                     const Grads& g, const Tensor& chunk_states) {
  SsdBackwardParams bp;
  bp.forward = MakeParams(c, pr, o);
  bp.forward.y = nullptr, bp.forward.final_state = nullptr, bp.forward.chunk_states = nullptr;
  const int64_t L = c.length, H = c.heads, P = c.head_dim, N = c.dstate, G = c.groups;
  bp.dy = g.dy.data(), bp.dy_stride_b = L * H * P, bp.dy_stride_l = H * P, bp.dy_stride_h = P;
  bp.dy_stride_p = 1;
  if (g.dfinal.defined()) {
    bp.dfinal_state = g.dfinal.data();
    bp.dfinal_state_stride_b = H * P * N, bp.dfinal_state_stride_h = P * N;
    bp.dfinal_state_stride_p = N, bp.dfinal_state_stride_n = 1;
  }
  if (chunk_states.defined()) bp.chunk_states = chunk_states.data();
  bp.dx = g.dx.data(), bp.dx_stride_b = L * H * P, bp.dx_stride_l = H * P, bp.dx_stride_h = P;
  bp.dx_stride_p = 1;
  bp.ddt = g.ddt.data(), bp.ddt_stride_b = L * H, bp.ddt_stride_l = H, bp.ddt_stride_h = 1;
  bp.dA = g.dA.data(), bp.dA_stride = 1;
  bp.dB = g.dB.data(), bp.dB_stride_b = L * G * N, bp.dB_stride_l = G * N, bp.dB_stride_g = N;
  bp.dB_stride_n = 1;
  bp.dC = g.dC.data(), bp.dC_stride_b = L * G * N, bp.dC_stride_l = G * N, bp.dC_stride_g = N;
  bp.dC_stride_n = 1;
  if (g.dD.defined()) {
    bp.dD = g.dD.data(), bp.dD_stride_h = c.d_mode == DMode::kPerHeadDim ? P : 1;
    bp.dD_stride_p = 1;
  }
  if (g.dz.defined()) {
    bp.dz = g.dz.data(), bp.dz_stride_b = L * H * P, bp.dz_stride_l = H * P, bp.dz_stride_h = P;
    bp.dz_stride_p = 1;
  }
  if (g.ddt_bias.defined()) bp.ddt_bias = g.ddt_bias.data(), bp.ddt_bias_stride = 1;
  bp.dinitial_state = g.dinit.data();
  bp.dinitial_state_stride_b = H * P * N, bp.dinitial_state_stride_h = P * N;
  bp.dinitial_state_stride_p = N, bp.dinitial_state_stride_n = 1;
  return bp;
}

// The one table of tolerances (norm-relative, per gradient) of the CUDA backward against the CPU
// reference on the same inputs. f32: TF32-split products and other summation orders; f16 / bf16:
// tensor-core operands (x, dy, B, C, the states and the decay-weighted Q x Q forms) rounded to the
// 16-bit type, and 16-bit outputs; the reductions (dA, dD, ddt_bias) see the same roundings summed.
double TolFor(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 2e-4;
    case DType::kF16: return 1.5e-2;
    default: return 3e-2;  // bf16
  }
}

enum class Kernel { kChunked, kSequential };

#define EXPECT_GRAD_NEAR(name, tol)                                  \
  do {                                                               \
    if (ref.name.defined()) EXPECT_NEAR_NORM(out.name, ref.name, tol); \
  } while (0)

void CheckAgainstReference(const Config& c, uint64_t seed, Kernel kernel = Kernel::kChunked) {
  SCOPED_TRACE(DescribeBackward(c) + (kernel == Kernel::kSequential ? " [sequential]" : " [chunked]"));
  const Device gpu = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(Problem cpu, MakeProblem(c, seed));
  ASSERT_OK_AND_ASSIGN(Problem dev, ToDevice(cpu, gpu));
  // The forward's chunk_states (CPU reference, then copied) for the backward to start from.
  ASSERT_OK_AND_ASSIGN(Outputs fwd, MakeOutputs(c, Device::Cpu()));
  ASSERT_OK(SsdReference(MakeParams(c, cpu, fwd)));
  Tensor chunk_states;
  if (c.give_chunk_states) {
    ASSERT_OK_AND_ASSIGN(chunk_states, fwd.chunk_states.To(gpu));
  }
  ASSERT_OK_AND_ASSIGN(Grads out, MakeGrads(c, dev, gpu, seed));
  ASSERT_OK_AND_ASSIGN(Grads ref, MakeGrads(c, cpu, Device::Cpu(), seed));
  ASSERT_OK_AND_ASSIGN(Outputs unused_cpu, MakeOutputs(c, Device::Cpu()));
  ASSERT_OK_AND_ASSIGN(Outputs unused_gpu, MakeOutputs(c, gpu));
  ASSERT_OK(SsdBackwardReference(MakeBackwardParams(c, cpu, unused_cpu, ref, Tensor())));
  const SsdBackwardParams bp = MakeBackwardParams(c, dev, unused_gpu, out, chunk_states);
  if (kernel == Kernel::kChunked) {
    ASSERT_OK(SsdBackwardCuda(bp, CurrentStream(0)));
  } else {
    ASSERT_OK(SsdBackwardSequentialCuda(bp, CurrentStream(0)));
  }
  const double tol = TolFor(c.dtype);
  EXPECT_GRAD_NEAR(dx, tol);
  EXPECT_GRAD_NEAR(ddt, tol);
  EXPECT_GRAD_NEAR(dA, tol);
  EXPECT_GRAD_NEAR(dB, tol);
  EXPECT_GRAD_NEAR(dC, tol);
  EXPECT_GRAD_NEAR(dD, tol);
  EXPECT_GRAD_NEAR(dz, tol);
  EXPECT_GRAD_NEAR(ddt_bias, tol);
  EXPECT_GRAD_NEAR(dinit, tol);
}

// ---------------------------------------------------------------------------------------------
// Without a GPU: the launchers reject what the predicate rejects before touching the device.

TEST(SsdBackwardCudaTest, RejectsUnsupportedArguments) {
  Config c;
  c.batch = 1, c.length = 8, c.heads = 2, c.head_dim = 4, c.dstate = 4;
  ASSERT_OK_AND_ASSIGN(Problem cpu, MakeProblem(c, 1));
  ASSERT_OK_AND_ASSIGN(Outputs o, MakeOutputs(c, Device::Cpu()));
  ASSERT_OK_AND_ASSIGN(Grads g, MakeGrads(c, cpu, Device::Cpu(), 1));
  const SsdBackwardParams p = MakeBackwardParams(c, cpu, o, g, Tensor());
  for (auto launch : {&SsdBackwardCuda, &SsdBackwardSequentialCuda}) {
    SsdBackwardParams bad = p;
    bad.forward.chunk = 100;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kInvalidArgument, "chunk");
    bad = p;
    bad.forward.dtype = DType::kF64;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kUnimplemented, "f64");
    bad = p;
    bad.forward.dstate = kSsdMaxDim + 1;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kUnimplemented, "N");
    bad = p;
    bad.forward.groups = 3;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kInvalidArgument, "G");
    bad = p;
    bad.dx_stride_p = 2;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kUnimplemented, "unit stride");
    bad = p;
    bad.dB = nullptr;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kInvalidArgument, "required");
    bad = p;
    bad.dinitial_state_stride_h = 3;
    EXPECT_STATUS_IS(launch(bad, nullptr), absl::StatusCode::kUnimplemented, "contiguous");
    // Empty problems are accepted and do nothing.
    bad = p;
    bad.forward.length = 0;
    EXPECT_OK(launch(bad, nullptr));
  }
}

// ---------------------------------------------------------------------------------------------
// On a GPU

TEST(SsdBackwardCudaTest, GridMatchesReference) {
  LYRA_REQUIRE_GPU();
  int index = 0;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t chunk : {64, 256}) {
      for (int64_t P : {64, 32, 128}) {
        for (int64_t N : {64, 128, 16}) {
          ++index;
          Config c;
          c.name = "grid";
          c.dtype = dtype, c.chunk = chunk, c.head_dim = P, c.dstate = N;
          c.groups = index % 2 == 0 ? 2 : 1;
          c.heads = 2 * c.groups;
          c.batch = 1 + index % 2;
          c.length = chunk * (1 + index % 2) + (index % 4 == 0 ? 0 : 17 + index % 5);
          c.has_z = index % 3 == 0;
          c.d_mode = static_cast<DMode>(index % 3);
          c.has_bias = index % 5 != 1;
          c.softplus = index % 7 != 3;
          c.has_init = index % 2 == 1;
          c.has_dfinal = index % 3 != 1;
          c.give_chunk_states = index % 4 != 2;
          c.seq = static_cast<SeqMode>(index % 3);
          if (index % 11 == 4) c.dt_min = 0.01, c.dt_max = 0.05;
          CheckAgainstReference(c, 100 + 31 * index);
        }
      }
    }
  }
}

TEST(SsdBackwardCudaTest, FlagsOneAtATime) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    Config base;
    base.name = "flags";
    base.dtype = dtype, base.length = 300, base.chunk = 64, base.heads = 4, base.groups = 2;
    base.head_dim = 64, base.dstate = 128;
    CheckAgainstReference(base, 1);
    Config c = base;
    c.has_z = true;
    CheckAgainstReference(c, 2);
    c = base, c.d_mode = DMode::kNone;
    CheckAgainstReference(c, 3);
    c = base, c.d_mode = DMode::kPerHeadDim;
    CheckAgainstReference(c, 4);
    c = base, c.has_init = true, c.has_dfinal = true;
    CheckAgainstReference(c, 5);
    c = base, c.seq = SeqMode::kRandom;
    CheckAgainstReference(c, 6);
    c = base, c.seq = SeqMode::kChunkBoundary, c.has_init = true, c.has_dfinal = true;
    CheckAgainstReference(c, 7);
    c = base, c.dt_min = 0.02, c.dt_max = 0.04;
    CheckAgainstReference(c, 8);
    c = base, c.softplus = false, c.has_bias = false;
    CheckAgainstReference(c, 9);
    c = base, c.chunk = 16, c.length = 70, c.give_chunk_states = false;
    CheckAgainstReference(c, 10);
    c = base, c.chunk = 32, c.length = 33, c.head_dim = 8, c.dstate = 8;
    CheckAgainstReference(c, 11);
    c = base, c.length = 1, c.has_init = true, c.has_z = true, c.has_dfinal = true;
    CheckAgainstReference(c, 12);
    c = base, c.chunk = 256, c.give_chunk_states = false, c.has_init = true;
    CheckAgainstReference(c, 13);
    c = base, c.head_dim = 80, c.dstate = 256, c.has_z = true;  // outside the fast path
    CheckAgainstReference(c, 14);
  }
}

TEST(SsdBackwardCudaTest, SequentialKernelMatchesReference) {
  LYRA_REQUIRE_GPU();
  int index = 0;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t N : {16, 64, 256}) {
      ++index;
      Config c;
      c.name = "sequential";
      c.dtype = dtype, c.dstate = N, c.head_dim = index % 2 ? 32 : 80, c.groups = 2;
      c.length = 150, c.chunk = 64, c.has_z = index % 2 == 0, c.has_init = true;
      c.has_dfinal = index % 2 == 1, c.give_chunk_states = index % 3 != 0;
      c.seq = static_cast<SeqMode>(index % 3), c.d_mode = static_cast<DMode>(index % 3);
      CheckAgainstReference(c, 200 + index, Kernel::kSequential);
    }
  }
}

// Mamba-2 2.7B-like heads (P = 64, N = 128, chunk 256) at the benchmark's per-head shape
// (L = 2048), fewer heads to keep the CPU reference quick.
TEST(SsdBackwardCudaTest, Mamba2BenchmarkShape) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kBF16, DType::kF32}) {
    Config c;
    c.name = "mamba2 benchmark shape";
    c.dtype = dtype, c.batch = 2, c.length = 2048, c.heads = 4, c.head_dim = 64, c.dstate = 128;
    c.chunk = 256;
    CheckAgainstReference(c, 300);
    c.name = "mamba2, packed, z, d_state 256";
    c.dstate = 256, c.has_z = true, c.seq = SeqMode::kRandom, c.has_init = true, c.length = 1000;
    c.has_dfinal = true;
    CheckAgainstReference(c, 301);
  }
}

// Enough (batch, chunk, group) blocks to fill the device (B * L / 64 * G >= 132 multiprocessors of
// an H100 / H200): the chunk kernel walks the heads of a group in one block and writes dB and dC
// itself (ws.grouped in ssd_backward_kernels.cuh) instead of per-head partials.
TEST(SsdBackwardCudaTest, GroupedBlocksMatchReference) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kBF16, DType::kF32, DType::kF16}) {
    Config c;
    c.name = "grouped blocks, one group";
    c.dtype = dtype, c.batch = 5, c.length = 2048, c.heads = 4, c.head_dim = 64, c.dstate = 128;
    c.chunk = 256, c.has_dfinal = true;
    CheckAgainstReference(c, 400);
    c.name = "grouped blocks, two groups, z, packed, P 128";
    c.batch = 3, c.groups = 2, c.has_z = true, c.seq = SeqMode::kRandom, c.has_init = true;
    c.head_dim = 128, c.length = 2000, c.give_chunk_states = false;
    CheckAgainstReference(c, 401);
  }
}

TEST(SsdBackwardCudaTest, IsDeterministic) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.dtype = DType::kBF16, c.length = 777, c.chunk = 256, c.heads = 4, c.groups = 1;
  c.dstate = 128, c.has_init = true, c.seq = SeqMode::kRandom, c.has_z = true;
  const Device gpu = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(Problem cpu, MakeProblem(c, 9));
  ASSERT_OK_AND_ASSIGN(Problem dev, ToDevice(cpu, gpu));
  ASSERT_OK_AND_ASSIGN(Outputs o, MakeOutputs(c, gpu));
  ASSERT_OK_AND_ASSIGN(Grads a, MakeGrads(c, dev, gpu, 9));
  ASSERT_OK_AND_ASSIGN(Grads b, MakeGrads(c, dev, gpu, 9));
  ASSERT_OK(SsdBackwardCuda(MakeBackwardParams(c, dev, o, a, Tensor()), CurrentStream(0)));
  ASSERT_OK(SsdBackwardCuda(MakeBackwardParams(c, dev, o, b, Tensor()), CurrentStream(0)));
  for (auto member : {&Grads::dx, &Grads::ddt, &Grads::dA, &Grads::dB, &Grads::dC, &Grads::dD,
                      &Grads::dz, &Grads::ddt_bias, &Grads::dinit}) {
    EXPECT_TRUE(::lyra::testing::AllClose(a.*member, b.*member, {0, 0}));
  }
}

}  // namespace
}  // namespace lyra::cuda
