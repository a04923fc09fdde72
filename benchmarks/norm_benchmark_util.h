// What the norm benchmarks (benchmarks/norm_benchmark.cc, benchmarks/gated_rms_norm_benchmark.cc)
// share: constant-filled operands on cuda:0 and the timed run reported against a copy of the same
// traffic.
#ifndef LYRA_BENCHMARKS_NORM_BENCHMARK_UTIL_H_
#define LYRA_BENCHMARKS_NORM_BENCHMARK_UTIL_H_

#include <benchmark/benchmark.h>

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace lyra::bench {

// A `shape` tensor of `dtype` on cuda:0 with every element `value` (the values do not change a
// norm kernel's traffic; constants keep the setup cheap).
inline absl::StatusOr<Tensor> GpuFilled(const Shape& shape, DType dtype, double value) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(shape, dtype, Device::Cuda(0)));
  LYRA_RETURN_IF_ERROR(t.Fill(value));
  return t;
}

// RunTimed(launch, bytes), then the copy_GB/s and copy_fraction counters when it succeeded.
inline void TimedAgainstCopy(benchmark::State& state, const std::function<absl::Status()>& launch,
                             double bytes) {
  const double ms = RunTimed(state, launch, bytes);
  if (ms > 0) ReportCopyFraction(state, bytes, ms);
}

}  // namespace lyra::bench

#endif  // LYRA_BENCHMARKS_NORM_BENCHMARK_UTIL_H_
