#include "benchmarks/ssd_benchmark_problem.h"

#include <cmath>
#include <vector>

#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "tensor/random.h"

namespace lyra::ssd_bench {

absl::StatusOr<Problem> MakeProblem(benchmark::State& state, bool backward) {
  Problem p;
  p.dtype = state.range(0) == 0 ? DType::kBF16 : DType::kF32;
  p.length = state.range(1);
  p.dstate = state.range(2);
  p.head_dim = state.range(3);
  p.heads = kInner / p.head_dim;
  const int64_t L = p.length, N = p.dstate, H = p.heads, P = p.head_dim, G = kGroups;
  const int64_t n_chunks = cuda::SsdNumChunks(L, kChunk);
  Generator gen(1);
  LYRA_ASSIGN_OR_RETURN(p.x, Randn({kBatch, L, H, P}, p.dtype, kGpu, gen));
  LYRA_ASSIGN_OR_RETURN(p.dt, Rand({kBatch, L, H}, p.dtype, kGpu, gen, -1.0, 1.0));
  LYRA_ASSIGN_OR_RETURN(p.B, Randn({kBatch, L, G, N}, p.dtype, kGpu, gen));
  LYRA_ASSIGN_OR_RETURN(p.C, Randn({kBatch, L, G, N}, p.dtype, kGpu, gen));
  // A = -exp(A_log) with A_log uniform in [log 1, log 16] (Mamba-2's initialisation).
  std::vector<double> a(H);
  for (int64_t h = 0; h < H; ++h) a[h] = -std::exp(std::log(16.0) * h / (H - 1));
  LYRA_ASSIGN_OR_RETURN(Tensor a_cpu, Tensor::FromDoubles(a, {H}, DType::kF32));
  LYRA_ASSIGN_OR_RETURN(p.A, a_cpu.To(kGpu));
  LYRA_ASSIGN_OR_RETURN(p.D, Rand({H}, DType::kF32, kGpu, gen, 0.5, 1.5));
  LYRA_ASSIGN_OR_RETURN(p.dt_bias, Rand({H}, DType::kF32, kGpu, gen, -5.0, -2.0));
  LYRA_ASSIGN_OR_RETURN(p.y, Tensor::Empty({kBatch, L, H, P}, p.dtype, kGpu));
  LYRA_ASSIGN_OR_RETURN(p.chunk_states,
                        Tensor::Empty({kBatch, n_chunks, H, P, N}, DType::kF32, kGpu));
  cuda::SsdParams& c = p.params;
  c.batch = kBatch, c.length = L, c.heads = H, c.head_dim = P, c.dstate = N, c.groups = G;
  c.chunk = kChunk, c.dt_softplus = true, c.dtype = p.dtype;
  c.x = p.x.data(), c.x_stride_b = L * H * P, c.x_stride_l = H * P, c.x_stride_h = P;
  c.x_stride_p = 1;
  c.dt = p.dt.data(), c.dt_stride_b = L * H, c.dt_stride_l = H, c.dt_stride_h = 1;
  c.A = p.A.data(), c.A_stride = 1;
  c.B = p.B.data(), c.B_stride_b = L * G * N, c.B_stride_l = G * N, c.B_stride_g = N;
  c.B_stride_n = 1;
  c.C = p.C.data(), c.C_stride_b = L * G * N, c.C_stride_l = G * N, c.C_stride_g = N;
  c.C_stride_n = 1;
  c.D = p.D.data(), c.D_stride_h = 1;
  c.dt_bias = p.dt_bias.data(), c.dt_bias_stride = 1;
  c.y = p.y.data(), c.y_stride_b = L * H * P, c.y_stride_l = H * P, c.y_stride_h = P;
  c.y_stride_p = 1;
  c.chunk_states = p.chunk_states.data();
  if (backward) {
    LYRA_ASSIGN_OR_RETURN(p.dy, Randn({kBatch, L, H, P}, p.dtype, kGpu, gen));
    LYRA_ASSIGN_OR_RETURN(p.dx, Tensor::Empty({kBatch, L, H, P}, p.dtype, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.ddt, Tensor::Empty({kBatch, L, H}, p.dtype, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.dA, Tensor::Empty({H}, DType::kF32, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.dB, Tensor::Empty({kBatch, L, G, N}, p.dtype, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.dC, Tensor::Empty({kBatch, L, G, N}, p.dtype, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.dD, Tensor::Empty({H}, DType::kF32, kGpu));
    LYRA_ASSIGN_OR_RETURN(p.ddt_bias, Tensor::Empty({H}, DType::kF32, kGpu));
  }
  return p;
}

cuda::SsdBackwardParams BackwardParams(const Problem& p) {
  cuda::SsdBackwardParams g;
  const int64_t L = p.length, N = p.dstate, H = p.heads, P = p.head_dim, G = kGroups;
  g.forward = p.params;
  g.dy = p.dy.data(), g.dy_stride_b = L * H * P, g.dy_stride_l = H * P, g.dy_stride_h = P;
  g.dy_stride_p = 1;
  g.chunk_states = p.chunk_states.data();
  g.dx = p.dx.data(), g.dx_stride_b = L * H * P, g.dx_stride_l = H * P, g.dx_stride_h = P;
  g.dx_stride_p = 1;
  g.ddt = p.ddt.data(), g.ddt_stride_b = L * H, g.ddt_stride_l = H, g.ddt_stride_h = 1;
  g.dA = p.dA.data(), g.dA_stride = 1;
  g.dB = p.dB.data(), g.dB_stride_b = L * G * N, g.dB_stride_l = G * N, g.dB_stride_g = N;
  g.dB_stride_n = 1;
  g.dC = p.dC.data(), g.dC_stride_b = L * G * N, g.dC_stride_l = G * N, g.dC_stride_g = N;
  g.dC_stride_n = 1;
  g.dD = p.dD.data(), g.dD_stride_h = 1;
  g.ddt_bias = p.ddt_bias.data(), g.ddt_bias_stride = 1;
  return g;
}

double ForwardBytes(const Problem& p) {
  const double e = static_cast<double>(DTypeSize(p.dtype));
  const double E = static_cast<double>(kBatch * p.length * p.heads * p.head_dim);
  const double S = static_cast<double>(kBatch * p.length * kGroups * p.dstate);
  const double K = static_cast<double>(kBatch * cuda::SsdNumChunks(p.length, kChunk) * p.heads *
                                       p.head_dim * p.dstate);
  return 2 * E * e + 2 * S * e + static_cast<double>(kBatch * p.length * p.heads) * e + 4 * K;
}

double ForwardFlops(const Problem& p) {
  const double Q = kChunk, P = static_cast<double>(p.head_dim), N = static_cast<double>(p.dstate);
  const double chunks =
      static_cast<double>(kBatch * p.heads * cuda::SsdNumChunks(p.length, kChunk));
  return chunks * (Q * Q * (N + P) + 4 * Q * P * N);
}

void Report(benchmark::State& state, const std::function<absl::Status()>& launch, double bytes,
            double flops) {
  const double ms = bench::RunTimed(state, launch, bytes);
  if (ms > 0) {
    state.counters["ms"] = ms;
    bench::ReportCopyFraction(state, bytes, ms);
    if (flops > 0) state.counters["TFLOP/s"] = flops / (ms * 1e9);
  }
}

}  // namespace lyra::ssd_bench
