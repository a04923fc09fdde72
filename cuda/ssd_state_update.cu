// One generation step of the Mamba-2 SSD (cuda/ssd.h, SsdStateUpdateParams), per (b, h) with
// group g = h / (H / G) and for every head-dim row p:
//   dt'      = clamp(softplus(dt[b, h] + dt_bias[h]), dt_min, dt_max)    a = exp(dt' A[h])
//   S[p, n]  = a S[p, n] + dt' x[b, h, p] B[b, g, n]                      (state, in place: =)
//   y[b,h,p] = (sum_n C[b, g, n] S[p, n] + D x[b, h, p]) * silu(z[b, h, p])    (=)
// Shapes: state (B, H, P, N) contiguous f32; x, z, y (B, H, P) unit stride along P; dt (B, H);
// B, C (B, G, N) unit stride along N; A, dt_bias (H), D (H) or (H, P) f32.
// One warp per (b, h, p) row: lane j owns states j, j + 32, ... (coalesced along N); the y
// partials are summed by xor shuffles. f32 arithmetic, 16-bit inputs widened on load and y
// rounded once. Tiny work (B H P N elements), bound by launch latency.
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/ssd.h"

namespace lyra::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;  // SsdStateUpdateSupported assumes 8 (grid limit)

// torch.nn.functional.softplus (beta 1, threshold 20).
__device__ __forceinline__ float Softplus(float v) { return v > 20.f ? v : log1pf(expf(v)); }

template <typename T>
__global__ void SsdStateUpdateKernel(const SsdStateUpdateParams p) {
  const int64_t row = blockIdx.x * static_cast<int64_t>(kRowsPerBlock) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= p.batch * p.heads * p.head_dim) return;  // whole warps leave together
  const int64_t i = row % p.head_dim, bh = row / p.head_dim;
  const int64_t h = bh % p.heads, b = bh / p.heads, g = h / (p.heads / p.groups);
  const float x =
      static_cast<float>(DLoad(static_cast<const T*>(p.x)[b * p.x_stride_b + h * p.x_stride_h +
                                                         i * p.x_stride_p]));
  float dt = static_cast<float>(
      DLoad(static_cast<const T*>(p.dt)[b * p.dt_stride_b + h * p.dt_stride_h]));
  if (p.dt_bias != nullptr) dt += static_cast<const float*>(p.dt_bias)[h * p.dt_bias_stride];
  if (p.dt_softplus) dt = Softplus(dt);
  dt = fminf(fmaxf(dt, static_cast<float>(p.dt_min)), static_cast<float>(p.dt_max));
  const float a = expf(dt * static_cast<const float*>(p.A)[h * p.A_stride]);
  const T* Bp = static_cast<const T*>(p.B) + b * p.B_stride_b + g * p.B_stride_g;  // (N)
  const T* Cp = static_cast<const T*>(p.C) + b * p.C_stride_b + g * p.C_stride_g;  // (N)
  float* state = static_cast<float*>(p.state) + b * p.state_stride_b + h * p.state_stride_h +
                 i * p.state_stride_p;  // (N)
  const float dtx = dt * x;
  float yp = 0.f;
  for (int64_t n = lane; n < p.dstate; n += 32) {
    const float s = a * state[n] + dtx * static_cast<float>(DLoad(Bp[n]));
    state[n] = s;
    yp += static_cast<float>(DLoad(Cp[n])) * s;
  }
#pragma unroll
  for (int o = 16; o > 0; o /= 2) yp += __shfl_xor_sync(0xffffffffu, yp, o);
  if (lane == 0) {
    float out = yp;
    if (p.D != nullptr) {
      const float* D = static_cast<const float*>(p.D);
      out += D[h * p.D_stride_h + (p.D_per_head_dim ? i * p.D_stride_p : 0)] * x;
    }
    if (p.z != nullptr) {
      const float z = static_cast<float>(DLoad(
          static_cast<const T*>(p.z)[b * p.z_stride_b + h * p.z_stride_h + i * p.z_stride_p]));
      out *= z / (1.f + expf(-z));
    }
    static_cast<T*>(p.y)[b * p.y_stride_b + h * p.y_stride_h + i * p.y_stride_p] =
        DStore<T>(out);
  }
}

}  // namespace

absl::Status SsdStateUpdateCuda(const SsdStateUpdateParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SsdStateUpdateSupported(p, /*cuda=*/true));
  if (p.batch == 0 || p.heads == 0 || p.head_dim == 0) return absl::OkStatus();
  const int64_t rows = p.batch * p.heads * p.head_dim;
  const unsigned grid = static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  switch (p.dtype) {
    case DType::kF32:
      SsdStateUpdateKernel<float><<<grid, kThreads, 0, stream>>>(p);
      break;
    case DType::kF16:
      SsdStateUpdateKernel<Float16><<<grid, kThreads, 0, stream>>>(p);
      break;
    case DType::kBF16:
      SsdStateUpdateKernel<BFloat16><<<grid, kThreads, 0, stream>>>(p);
      break;
    default:
      return absl::UnimplementedError(
          absl::StrCat("SsdStateUpdateCuda: dtype ", DTypeName(p.dtype), " is not supported"));
  }
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("SsdStateUpdateKernel");
  return absl::OkStatus();
}

}  // namespace lyra::cuda
