// Host entry points of the Mamba-2 SSD forward (cuda/ssd.h; the chunked kernels are in
// ssd_forward_kernels.cuh, whose dtype-independent state-passing step is defined here), and
// version 1 of the forward, kept as the benchmark's baseline (SsdSequentialCuda): the recurrence
// of cuda/ssd.h stepped one time step at a time.
//
//   grid (ceil(P / 4), H, B), 128 threads: warp w owns head-dim row p = 4 blockIdx.x + w of
//   head h, lane i the states n = i, i + 32, ... (N <= 256: at most 8 per lane, in registers).
//   Per step: dt' and a = exp(dt' A) (0 at a reset), S[p, n] = a S[p, n] + dt' x[p] B[n],
//   out[p] = sum_n S[p, n] C[n] (a warp shuffle reduction) + D x[p], y = out * silu(z).
// Every operand comes straight from global memory (L2 serves the re-reads of B, C and dt by
// the P rows). Precision: f32 state and arithmetic, expf; outputs rounded once. chunk_states
// (entry c = the state before step c Q, before its reset) and final_state as in cuda/ssd.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/ssd.h"
#include "cuda/ssd_common.cuh"
#include "cuda/ssd_forward_kernels.cuh"

namespace lyra::cuda {
namespace {

constexpr int kSeqRowsPerBlock = 4;  // warps per block, one head-dim row each
constexpr int kSeqStatesPerLane = kSsdMaxDim / 32;

template <typename T>
__global__ void __launch_bounds__(32 * kSeqRowsPerBlock) SsdSequentialKernel(const SsdParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t pr = blockIdx.x * static_cast<int64_t>(kSeqRowsPerBlock) + threadIdx.x / 32;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  if (pr >= p.head_dim) return;  // whole warps leave: the shuffles below stay full-warp
  const int64_t H = p.heads, P = p.head_dim, N = p.dstate, L = p.length, Q = p.chunk;
  const int64_t g = h / (H / p.groups), n_chunks = (L + Q - 1) / Q;
  const T* x = static_cast<const T*>(p.x) + b * p.x_stride_b + h * p.x_stride_h + pr * p.x_stride_p;
  const T* dt = static_cast<const T*>(p.dt) + b * p.dt_stride_b + h * p.dt_stride_h;
  const T* Bg = static_cast<const T*>(p.B) + b * p.B_stride_b + g * p.B_stride_g;
  const T* Cg = static_cast<const T*>(p.C) + b * p.C_stride_b + g * p.C_stride_g;
  const T* z = p.z != nullptr ? static_cast<const T*>(p.z) + b * p.z_stride_b +
                                    h * p.z_stride_h + pr * p.z_stride_p
                              : nullptr;
  T* y = static_cast<T*>(p.y) + b * p.y_stride_b + h * p.y_stride_h + pr * p.y_stride_p;
  const int32_t* seq = p.seq_idx != nullptr ? p.seq_idx + b * p.seq_idx_stride_b : nullptr;
  const float A = static_cast<const float*>(p.A)[h * p.A_stride];
  const float bias =
      p.dt_bias != nullptr ? static_cast<const float*>(p.dt_bias)[h * p.dt_bias_stride] : 0.f;
  const float skip =
      p.D == nullptr ? 0.f
                     : static_cast<const float*>(p.D)[h * p.D_stride_h +
                                                      (p.D_per_head_dim ? pr * p.D_stride_p : 0)];
  const float dt_min = static_cast<float>(p.dt_min), dt_max = static_cast<float>(p.dt_max);
  const float* init = static_cast<const float*>(p.initial_state);
  float S[kSeqStatesPerLane];
#pragma unroll
  for (int i = 0; i < kSeqStatesPerLane; ++i) {
    const int64_t n = lane + 32 * i;
    S[i] = (init != nullptr && n < N)
               ? init[b * p.initial_state_stride_b + h * p.initial_state_stride_h +
                      pr * p.initial_state_stride_p + n * p.initial_state_stride_n]
               : 0.f;
  }
  float* chunk_states = static_cast<float*>(p.chunk_states);
  for (int64_t t = 0; t < L; ++t) {
    if (chunk_states != nullptr && t % Q == 0) {
      float* cs = chunk_states + (((b * n_chunks + t / Q) * H + h) * P + pr) * N;
#pragma unroll
      for (int i = 0; i < kSeqStatesPerLane; ++i) {
        if (lane + 32 * i < N) cs[lane + 32 * i] = S[i];
      }
    }
    const bool reset =
        seq != nullptr && t > 0 && seq[t * p.seq_idx_stride_l] != seq[(t - 1) * p.seq_idx_stride_l];
    const float d = ssd::DtPrime(static_cast<float>(DLoad(dt[t * p.dt_stride_l])), bias,
                                 p.dt_softplus, dt_min, dt_max);
    const float a = reset ? 0.f : expf(d * A);
    const float xv = static_cast<float>(DLoad(x[t * p.x_stride_l]));
    const float dx = d * xv;
    float part = 0.f;
#pragma unroll
    for (int i = 0; i < kSeqStatesPerLane; ++i) {
      const int64_t n = lane + 32 * i;
      if (n < N) {
        const float bv = static_cast<float>(DLoad(Bg[t * p.B_stride_l + n * p.B_stride_n]));
        const float cv = static_cast<float>(DLoad(Cg[t * p.C_stride_l + n * p.C_stride_n]));
        S[i] = fmaf(a, S[i], dx * bv);
        part = fmaf(S[i], cv, part);
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o /= 2) part += __shfl_xor_sync(0xffffffffu, part, o);
    if (lane == 0) {
      float out = fmaf(skip, xv, part);
      if (z != nullptr) {
        const float zv = static_cast<float>(DLoad(z[t * p.z_stride_l]));
        out *= zv / (1.f + expf(-zv));
      }
      y[t * p.y_stride_l] = DStore<T>(out);
    }
  }
  if (p.final_state != nullptr) {
    float* fs = static_cast<float*>(p.final_state);
#pragma unroll
    for (int i = 0; i < kSeqStatesPerLane; ++i) {
      const int64_t n = lane + 32 * i;
      if (n < N) {
        fs[b * p.final_state_stride_b + h * p.final_state_stride_h + pr * p.final_state_stride_p +
           n * p.final_state_stride_n] = S[i];
      }
    }
  }
}

template <typename T>
absl::Status SequentialTyped(const SsdParams& p, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((p.head_dim + kSeqRowsPerBlock - 1) / kSeqRowsPerBlock),
                  static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  SsdSequentialKernel<T><<<grid, 32 * kSeqRowsPerBlock, 0, stream>>>(p);
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("SsdSequentialKernel");
  return absl::OkStatus();
}

// fn<T>() for the storage type of x (f32, f16, bf16).
template <typename Fn>
absl::Status DispatchSsdDType(DType dtype, absl::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::kF32: return fn.template operator()<float>();
    case DType::kF16: return fn.template operator()<Float16>();
    case DType::kBF16: return fn.template operator()<BFloat16>();
    default:
      return absl::UnimplementedError(absl::StrCat(op, ": no CUDA kernel for ", DTypeName(dtype)));
  }
}

// Grid dimensions y and z are limited to 65535.
absl::Status CheckGrid(const SsdParams& p, absl::string_view op) {
  if (p.heads > 65535 || p.batch > 65535 || p.batch * p.heads > 65535) {
    return absl::UnimplementedError(absl::StrCat(op, ": B H = ", p.batch * p.heads,
                                                 " (B = ", p.batch, ", H = ", p.heads,
                                                 ") exceeds the CUDA grid limit 65535"));
  }
  return absl::OkStatus();
}

}  // namespace

namespace ssd {

namespace {

// Step 2 of the chunked forward (ssd_forward_kernels.cuh): a thread per state element (p, n) of
// (b, h) walks the chunks, in place over the state workspace (B, n_chunks, H, P, N): local
// states in, entering states (chunk_states) out; the last passed state is final_state. With
// `states16` the entering states are also written rounded to bf16 (or f16), in the same layout:
// the operand the 16-bit output kernel stages (ssd_forward_mma_kernels.cuh).
template <int kVec>
__global__ void __launch_bounds__(kThreads)
    SsdStatePassingKernel(const SsdParams p, float* states, const float* chunk_decay,
                          void* states16, bool bf16) {
  const int64_t H = p.heads, P = p.head_dim, N = p.dstate, PN = P * N;
  const int64_t n_chunks = (p.length + p.chunk - 1) / p.chunk;
  // Elements e .. e + kVec - 1 (one row n .. n + kVec - 1 of the state: N % kVec == 0).
  const int64_t e = (blockIdx.x * static_cast<int64_t>(kThreads) + threadIdx.x) * kVec;
  if (e >= PN) return;
  const int64_t b = blockIdx.y / H, h = blockIdx.y % H, pr = e / N, n = e % N;
  const float* init = static_cast<const float*>(p.initial_state);
  float s[kVec];
#pragma unroll
  for (int v = 0; v < kVec; ++v) {
    s[v] = init != nullptr ? init[b * p.initial_state_stride_b + h * p.initial_state_stride_h +
                                  pr * p.initial_state_stride_p +
                                  (n + v) * p.initial_state_stride_n]
                           : 0.f;
  }
  const int64_t base = (b * n_chunks * H + h) * PN + e;
  float* st = states + base;
  const float* decay = chunk_decay + b * n_chunks * H + h;
  const int64_t step = H * PN;
  // Chunks in batches: the batch's loads are all issued before its stores (one memory latency
  // per batch instead of one per chunk: a store may alias the next load for the compiler).
  constexpr int kBatch = 8;
  for (int64_t c0 = 0; c0 < n_chunks; c0 += kBatch) {
    float local[kBatch][kVec], dec[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      const bool in = c0 + j < n_chunks;
      if constexpr (kVec == 4) {
        const float4 v4 = in ? *reinterpret_cast<const float4*>(st + (c0 + j) * step)
                             : make_float4(0.f, 0.f, 0.f, 0.f);
        local[j][0] = v4.x, local[j][1] = v4.y, local[j][2] = v4.z, local[j][3] = v4.w;
      } else {
        local[j][0] = in ? st[(c0 + j) * step] : 0.f;
      }
      dec[j] = in ? decay[(c0 + j) * H] : 0.f;
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      if (c0 + j < n_chunks) {
        const int64_t at = (c0 + j) * step;
        if constexpr (kVec == 4) {
          *reinterpret_cast<float4*>(st + at) = make_float4(s[0], s[1], s[2], s[3]);
        } else {
          st[at] = s[0];
        }
        if (states16 != nullptr) {
          unsigned short bits[kVec];
#pragma unroll
          for (int v = 0; v < kVec; ++v) {
            bits[v] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(s[v]))
                           : __half_as_ushort(__float2half_rn(s[v]));
          }
          unsigned short* d16 = static_cast<unsigned short*>(states16) + base + at;
          if constexpr (kVec == 4) {
            *reinterpret_cast<uint2*>(d16) =
                make_uint2(bits[0] | (static_cast<unsigned>(bits[1]) << 16),
                           bits[2] | (static_cast<unsigned>(bits[3]) << 16));
          } else {
            d16[0] = bits[0];
          }
        }
#pragma unroll
        for (int v = 0; v < kVec; ++v) s[v] = fmaf(dec[j], s[v], local[j][v]);
      }
    }
  }
  if (p.final_state != nullptr) {
    float* fs = static_cast<float*>(p.final_state);
#pragma unroll
    for (int v = 0; v < kVec; ++v) {
      fs[b * p.final_state_stride_b + h * p.final_state_stride_h + pr * p.final_state_stride_p +
         (n + v) * p.final_state_stride_n] = s[v];
    }
  }
}

}  // namespace

absl::Status LaunchStatePassing(const SsdParams& p, float* states, const float* chunk_decay,
                                void* states16, bool bf16, cudaStream_t stream) {
  // Four elements per thread (16-byte loads and stores) where the layout allows.
  const bool vec4 = p.dstate % 4 == 0 && reinterpret_cast<uintptr_t>(states) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(states16) % 8 == 0;
  const int64_t per_thread = vec4 ? 4 : 1;
  const dim3 grid(
      static_cast<unsigned>((p.head_dim * p.dstate / per_thread + kThreads - 1) / kThreads),
      static_cast<unsigned>(p.batch * p.heads));
  if (vec4) {
    SsdStatePassingKernel<4><<<grid, kThreads, 0, stream>>>(p, states, chunk_decay, states16, bf16);
  } else {
    SsdStatePassingKernel<1><<<grid, kThreads, 0, stream>>>(p, states, chunk_decay, states16, bf16);
  }
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("SsdStatePassingKernel");
  return absl::OkStatus();
}

}  // namespace ssd

absl::Status SsdCuda(const SsdParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SsdSupported(p, /*cuda=*/true));
  if (p.batch == 0 || p.length == 0 || p.heads == 0 || p.head_dim == 0) return absl::OkStatus();
  LYRA_RETURN_IF_ERROR(CheckGrid(p, "SsdCuda"));
  return DispatchSsdDType(p.dtype, "SsdCuda", [&]<typename T>() {
    return SsdForwardFor(T(), p, stream);
  });
}

absl::Status SsdSequentialCuda(const SsdParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(SsdSupported(p, /*cuda=*/true));
  if (p.batch == 0 || p.length == 0 || p.heads == 0 || p.head_dim == 0) return absl::OkStatus();
  LYRA_RETURN_IF_ERROR(CheckGrid(p, "SsdSequentialCuda"));
  return DispatchSsdDType(p.dtype, "SsdSequentialCuda", [&]<typename T>() {
    return SequentialTyped<T>(p, stream);
  });
}

}  // namespace lyra::cuda
