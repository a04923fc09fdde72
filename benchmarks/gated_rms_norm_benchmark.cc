// GPU bandwidth of the gated, grouped RMSNorm kernels (cuda/gated_rms_norm_kernels.cuh) through
// the tensor-level API (nn/gated_rms_norm.h): bf16 x and z, f32 weight, rows = 16384 (B * L of
// an 8 x 2048 batch), H = 1536 (mamba2-130m's d_inner), one group (S = 1536, Hugging Face's
// MambaRMSNormGated) and eight (S = 192).
//
//   BM_GatedRmsNormForward    y = T(T(x silu(z) rstd) weight), rstd per (row, group)
//   BM_GatedRmsNormBackward   dx, dz, dweight from dy, x, z, weight, rstd
//
// Bytes counted (each element read or written once; the second read of a group in each kernel
// hits L1/L2 and is not counted; the (blocks, H) dweight partials stay in L2 and are not counted):
//   forward:   rows * H * (2 [x] + 2 [z] + 2 [y]) + H * 4 [weight] + rows * G * 4 [rstd]
//   backward:  rows * H * (2 [dy] + 2 [x] + 2 [z] + 2 [dx] + 2 [dz])
//              + H * 4 [weight, dweight each] + rows * G * 4 [rstd]
// Napkin math on an H200 (4.8 TB/s HBM3e): the forward moves 151 MB, ~35 us at 90% of peak; the
// backward 252 MB, ~58 us.
//
// Each benchmark also times a device-to-device cudaMemcpyAsync that moves the same number of
// bytes and reports copy_GB/s and copy_fraction = kernel GB/s / copy GB/s.
//
// Timing (benchmarks/gpu_benchmark.h): CUDA events around each call on cuda:0's current stream
// (no host sync inside the timed region), warm-up calls first, an L2 flush before every timed
// call. The timed call includes the wrapper's output allocations (cached) and, for the backward,
// the dweight partials' scratch and the column-sum kernel. Without a GPU every benchmark reports
// an error and skips.
#include <benchmark/benchmark.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "benchmarks/norm_benchmark_util.h"
#include "nn/gated_rms_norm.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using bench::GpuFilled;
using bench::TimedAgainstCopy;

constexpr int64_t kRows = 16384;
constexpr int64_t kHidden = 1536;
constexpr double kEps = 1e-5;

struct Operands {
  Tensor x, z, weight, dy;
  nn::functional::GatedNormForwardResult forward;
};

absl::StatusOr<Operands> MakeOperands(int64_t group_size) {
  Operands o;
  LYRA_ASSIGN_OR_RETURN(o.x, GpuFilled({kRows, kHidden}, DType::kBF16, 0.5));
  LYRA_ASSIGN_OR_RETURN(o.z, GpuFilled({kRows, kHidden}, DType::kBF16, 0.75));
  LYRA_ASSIGN_OR_RETURN(o.weight, GpuFilled({kHidden}, DType::kF32, 1.0));
  LYRA_ASSIGN_OR_RETURN(o.dy, GpuFilled({kRows, kHidden}, DType::kBF16, 0.125));
  LYRA_ASSIGN_OR_RETURN(o.forward, nn::functional::GatedRmsNormForward(o.x, o.z, o.weight,
                                                                       group_size, kEps));
  return o;
}

double ForwardBytes(int64_t group_size) {
  const double rows = kRows, groups = static_cast<double>(kHidden / group_size);
  return rows * kHidden * (2 + 2 + 2) + kHidden * 4.0 + rows * groups * 4;
}

double BackwardBytes(int64_t group_size) {
  const double rows = kRows, groups = static_cast<double>(kHidden / group_size);
  return rows * kHidden * (2 + 2 + 2 + 2 + 2) + kHidden * 8.0 + rows * groups * 4;
}

void BM_GatedRmsNormForward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int64_t S = state.range(0);
  absl::StatusOr<Operands> o = MakeOperands(S);
  if (!o.ok()) return bench::Fail(state, o.status());
  TimedAgainstCopy(state, [&] {
    return nn::functional::GatedRmsNormForward(o->x, o->z, o->weight, S, kEps).status();
  }, ForwardBytes(S));
}

void BM_GatedRmsNormBackward(benchmark::State& state) {
  if (bench::SkipWithoutGpu(state)) return;
  const int64_t S = state.range(0);
  absl::StatusOr<Operands> o = MakeOperands(S);
  if (!o.ok()) return bench::Fail(state, o.status());
  TimedAgainstCopy(state, [&] {
    return nn::functional::GatedRmsNormBackward(o->dy, o->x, o->z, o->weight, o->forward.rstd, S)
        .status();
  }, BackwardBytes(S));
}

#define LYRA_GATED_NORM_BENCHMARK(fn) \
  BENCHMARK(fn)->Arg(kHidden)->Arg(kHidden / 8)->UseManualTime()->Unit(benchmark::kMicrosecond)

LYRA_GATED_NORM_BENCHMARK(BM_GatedRmsNormForward);
LYRA_GATED_NORM_BENCHMARK(BM_GatedRmsNormBackward);

}  // namespace
}  // namespace lyra
