// Host entry points of the selective-scan forward (the fast kernels are in
// selective_scan_kernels.cuh), and version 1 of the forward kernel, kept as the baseline:
// one thread per (b, d) walking L with its N states in a local array, every operand read
// straight from global memory (uncoalesced along L across the warp, B / C re-read by every
// channel). Same math and precision as the fast kernel (f32, exp through expf).
#include "cuda/selective_scan_kernels.cuh"

namespace lyra::cuda {
namespace {

template <typename T, typename TB>
__global__ void SelectiveScanNaiveKernel(const SelectiveScanParams p) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= p.batch * p.dim) return;
  const int64_t b = i / p.dim, d = i % p.dim, g = d / (p.dim / p.groups), N = p.dstate;
  const T* u = static_cast<const T*>(p.u) + b * p.u_stride_b + d * p.u_stride_d;
  const T* delta = static_cast<const T*>(p.delta) + b * p.delta_stride_b + d * p.delta_stride_d;
  const T* z = p.z != nullptr ? static_cast<const T*>(p.z) + b * p.z_stride_b + d * p.z_stride_d
                              : nullptr;
  const TB* Bg = static_cast<const TB*>(p.B) + b * p.B_stride_b + g * p.B_stride_g;
  const TB* Cg = static_cast<const TB*>(p.C) + b * p.C_stride_b + g * p.C_stride_g;
  const float* A = static_cast<const float*>(p.A) + d * p.A_stride_d;
  const float skip = p.D != nullptr ? static_cast<const float*>(p.D)[d * p.D_stride] : 0.f;
  const float bias =
      p.delta_bias != nullptr ? static_cast<const float*>(p.delta_bias)[d * p.delta_bias_stride]
                              : 0.f;
  const float* init = static_cast<const float*>(p.initial_state);
  float x[kSelectiveScanMaxState];
  for (int64_t n = 0; n < N; ++n) {
    x[n] = init != nullptr ? init[b * p.initial_state_stride_b + d * p.initial_state_stride_d +
                                  n * p.initial_state_stride_n]
                           : 0.f;
  }
  const int32_t* seq = p.seq_idx != nullptr ? p.seq_idx + b * p.seq_idx_stride_b : nullptr;
  for (int64_t t = 0; t < p.length; ++t) {
    const bool reset = seq != nullptr && t > 0 &&
                       seq[t * p.seq_idx_stride_l] != seq[(t - 1) * p.seq_idx_stride_l];
    float dl = static_cast<float>(DLoad(delta[t * p.delta_stride_l])) + bias;
    if (p.delta_softplus) dl = dl > 20.f ? dl : log1pf(expf(dl));
    const float uv = static_cast<float>(DLoad(u[t * p.u_stride_l]));
    float out = skip * uv;
    for (int64_t n = 0; n < N; ++n) {
      const float a = reset ? 0.f : expf(dl * A[n * p.A_stride_n]);
      x[n] = a * x[n] + dl * static_cast<float>(DLoad(Bg[n * p.B_stride_n + t * p.B_stride_l])) * uv;
      out += static_cast<float>(DLoad(Cg[n * p.C_stride_n + t * p.C_stride_l])) * x[n];
    }
    if (z != nullptr) {
      const float zv = static_cast<float>(DLoad(z[t * p.z_stride_l]));
      out *= zv / (1.f + expf(-zv));
    }
    if (p.y != nullptr) {
      static_cast<T*>(p.y)[b * p.y_stride_b + d * p.y_stride_d + t * p.y_stride_l] =
          DStore<T>(out);
    }
  }
  if (p.final_state != nullptr) {
    for (int64_t n = 0; n < N; ++n) {
      static_cast<float*>(p.final_state)[b * p.final_state_stride_b +
                                         d * p.final_state_stride_d +
                                         n * p.final_state_stride_n] = x[n];
    }
  }
}

template <typename T, typename TB>
absl::Status NaiveTyped(const SelectiveScanParams& p, cudaStream_t stream) {
  constexpr int kThreads = 128;
  const int64_t rows = p.batch * p.dim;
  SelectiveScanNaiveKernel<T, TB>
      <<<static_cast<unsigned>((rows + kThreads - 1) / kThreads), kThreads, 0, stream>>>(p);
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("SelectiveScanNaiveKernel");
  return absl::OkStatus();
}

}  // namespace

absl::Status SelectiveScanCuda(const SelectiveScanParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SelectiveScanSupported(p, /*cuda=*/true));
  if (p.batch == 0 || p.dim == 0 || p.length == 0) return absl::OkStatus();
  return DispatchScanDType(p.dtype, "SelectiveScanCuda", [&]<typename T>() {
    return SelectiveScanForwardFor(T(), p, stream);
  });
}

absl::Status SelectiveScanNaiveCuda(const SelectiveScanParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SelectiveScanSupported(p, /*cuda=*/true));
  if (p.batch == 0 || p.dim == 0 || p.length == 0) return absl::OkStatus();
  return DispatchScanDType(p.dtype, "SelectiveScanNaiveCuda", [&]<typename T>() {
    if (p.bc_dtype == DType::kF32) return NaiveTyped<T, float>(p, stream);
    return NaiveTyped<T, T>(p, stream);
  });
}

}  // namespace lyra::cuda
