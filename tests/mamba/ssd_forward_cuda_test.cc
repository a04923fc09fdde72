// Kernel-level tests of the Mamba-2 SSD CUDA forward (cuda/ssd.h): SsdCuda (the chunked
// tensor-core kernels) and SsdSequentialCuda (the step-by-step baseline) against the CPU
// reference SsdReference on the same inputs, comparing y, final_state and chunk_states by
// ||gpu - ref|| / ||ref||. Covers f32 / f16 / bf16, L not a multiple of the chunk, chunks 64,
// 128, 256 (and 16, 32), G = 1, 2, P in {64, 32, 80, 128}, N in {64, 128, 16, 256}, with and without z,
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
      for (int64_t P : {64, 32, 80, 128}) {
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
