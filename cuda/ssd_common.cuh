// Device helpers shared by the Mamba-2 SSD kernels (math and layouts in cuda/ssd.h): dt', the
// per-chunk scalars (dt', the cumulative decay and the segment counter of every position of a
// chunk), block scans, tiles staged into shared memory, and the tensor-core step behind every
// product of the chunked algorithm.
//
// Per chunk c of (b, h), positions l = 0 .. Q - 1 (time t0 + l, t0 = c Q):
//   dt[l]  = dt'_{t0 + l}                           (0 where t0 + l >= L: padding adds nothing)
//   cum[l] = sum_{j <= l} dt[j] A[h]                (f32, inclusive: the log of a_{t0} .. a_l)
//   seg[l] = number of resets at t0 .. t0 + l       (a reset at t: t > 0, seq[t] != seq[t - 1])
// Two positions s <= l of a chunk interact iff seg[s] == seg[l], with the decay
// exp(cum[l] - cum[s]); the state entering the chunk reaches l iff seg[l] == 0 (decay
// exp(cum[l])); the chunk-local state sums the positions with seg[s] == seg[Q - 1].
//
// Tensor cores: WMMA 16x16x16 tiles of bf16 / f16 with f32 accumulation; f32 operands use
// 16x16x8 TF32 tiles in the split form a b ~ a_hi b_hi + a_hi b_lo + a_lo b_hi (a_hi the TF32
// rounding of a, a_lo the TF32 rounding of a - a_hi), which keeps the products near f32 accuracy.
#ifndef LYRA_CUDA_SSD_COMMON_CUH_
#define LYRA_CUDA_SSD_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "base/dtype.h"
#include "cuda/device_types.cuh"
#include "cuda/ssd.h"

namespace lyra::cuda::ssd {

namespace wmma = ::nvcuda::wmma;

// softplus with torch's threshold (beta 1, threshold 20), as the references.
__device__ __forceinline__ float Softplus(float v) { return v > 20.f ? v : log1pf(expf(v)); }

// dt' = clamp(softplus(raw + bias), dt_min, dt_max) (softplus optional).
__device__ __forceinline__ float DtPrime(float raw, float bias, bool softplus, float dt_min,
                                         float dt_max) {
  float v = raw + bias;
  if (softplus) v = Softplus(v);
  return fminf(fmaxf(v, dt_min), dt_max);
}

// The shared-memory element type of the tensor-core operands for a storage type T, and the K
// depth of one WMMA step.
template <typename T>
struct MmaType;
template <>
struct MmaType<BFloat16> {
  using Elem = __nv_bfloat16;
  using Frag = __nv_bfloat16;
  static constexpr int kK = 16;
  static constexpr int kPad = 8;  // row padding in elements (16 bytes: rows 16-byte aligned)
};
template <>
struct MmaType<Float16> {
  using Elem = __half;
  using Frag = __half;
  static constexpr int kK = 16;
  static constexpr int kPad = 8;
};
template <>
struct MmaType<float> {
  using Elem = float;
  using Frag = wmma::precision::tf32;
  static constexpr int kK = 8;
  static constexpr int kPad = 4;
};

template <typename E>
__device__ __forceinline__ E ToElem(float v) {
  if constexpr (std::is_same_v<E, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else if constexpr (std::is_same_v<E, __half>) {
    return __float2half_rn(v);
  } else {
    return v;
  }
}

template <typename E>
__device__ __forceinline__ float FromElem(E v) {
  if constexpr (std::is_same_v<E, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<E, __half>) {
    return __half2float(v);
  } else {
    return v;
  }
}

// One 16x16 output tile's worth of operands: A (16 x K) and B (K x 16) fragments, and the f32
// accumulator. Load* read a 16 x kK slice from shared memory (ld in elements, 32-byte aligned
// pointers); for f32 the split TF32 parts are formed once per load.
template <typename T, typename LayoutA, typename LayoutB>
struct Mma {
  using Ty = MmaType<T>;
  using E = typename Ty::Elem;
  static constexpr int kK = Ty::kK;
  static constexpr bool kSplit = std::is_same_v<T, float>;
  using FragA = wmma::fragment<wmma::matrix_a, 16, 16, kK, typename Ty::Frag, LayoutA>;
  using FragB = wmma::fragment<wmma::matrix_b, 16, 16, kK, typename Ty::Frag, LayoutB>;
  using Acc = wmma::fragment<wmma::accumulator, 16, 16, kK, float>;

  struct A {
    FragA hi, lo;
  };
  struct B {
    FragB hi, lo;
  };

  template <typename F>
  __device__ __forceinline__ static void Split(F& hi, F& lo) {
    if constexpr (kSplit) {
#pragma unroll
      for (int i = 0; i < hi.num_elements; ++i) {
        const float v = hi.x[i];
        const float h = wmma::__float_to_tf32(v);
        hi.x[i] = h;
        lo.x[i] = wmma::__float_to_tf32(v - h);
      }
    }
  }
  __device__ __forceinline__ static void LoadA(A& a, const E* ptr, int ld) {
    wmma::load_matrix_sync(a.hi, ptr, ld);
    Split(a.hi, a.lo);
  }
  __device__ __forceinline__ static void LoadB(B& b, const E* ptr, int ld) {
    wmma::load_matrix_sync(b.hi, ptr, ld);
    Split(b.hi, b.lo);
  }
  // acc += a b
  __device__ __forceinline__ static void Step(Acc& acc, const A& a, const B& b) {
    if constexpr (kSplit) {
      wmma::mma_sync(acc, a.lo, b.hi, acc);
      wmma::mma_sync(acc, a.hi, b.lo, acc);
    }
    wmma::mma_sync(acc, a.hi, b.hi, acc);
  }
};

// Inclusive block-wide scan of one value per thread (blockDim.x a multiple of 32, at most 1024
// threads); `scratch` holds 32 values. Every thread must call it. Ends with a barrier.
template <typename V>
__device__ __forceinline__ V BlockInclusiveScan(V v, V* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
#pragma unroll
  for (int o = 1; o < 32; o *= 2) {
    const V u = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += u;
  }
  if (lane == 31) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    V w = lane < warps ? scratch[lane] : V(0);
#pragma unroll
    for (int o = 1; o < 32; o *= 2) {
      const V u = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += u;
    }
    if (lane < warps) scratch[lane] = w;  // inclusive totals of warps 0 .. lane
  }
  __syncthreads();
  if (warp > 0) v += scratch[warp - 1];
  __syncthreads();
  return v;
}

// The per-chunk scalars of (b, h, chunk c) described at the top, into shared memory: s_dt,
// s_cum (Q floats each) and s_seg (Q ints). Each thread takes ceil(Q / blockDim.x) consecutive
// positions. `scratch` is 32 floats + 32 ints of shared memory. Every thread must call it; ends
// with a barrier (the scalars are then visible to the block).
template <typename T>
__device__ void LoadChunkScalars(const SsdParams& p, int64_t b, int64_t h, int64_t c, int q,
                                 float* s_dt, float* s_cum, int* s_seg, float* scratch_f,
                                 int* scratch_i) {
  const int64_t t0 = c * q;
  const T* dt = static_cast<const T*>(p.dt) + b * p.dt_stride_b + h * p.dt_stride_h;
  const float A = static_cast<const float*>(p.A)[h * p.A_stride];
  const float bias =
      p.dt_bias != nullptr ? static_cast<const float*>(p.dt_bias)[h * p.dt_bias_stride] : 0.f;
  const float dt_min = static_cast<float>(p.dt_min), dt_max = static_cast<float>(p.dt_max);
  const int32_t* seq = p.seq_idx != nullptr ? p.seq_idx + b * p.seq_idx_stride_b : nullptr;
  const int per = (q + blockDim.x - 1) / blockDim.x;
  const int l_begin = threadIdx.x * per;
  float run = 0.f;
  int resets = 0;
  // First pass: the thread's own positions (values kept in shared memory), then the scan of the
  // per-thread totals, then the offsets added.
  for (int j = 0; j < per; ++j) {
    const int l = l_begin + j;
    if (l >= q) break;
    const int64_t t = t0 + l;
    float d = 0.f;
    int r = 0;
    if (t < p.length) {
      d = DtPrime(static_cast<float>(DLoad(dt[t * p.dt_stride_l])), bias, p.dt_softplus, dt_min,
                  dt_max);
      if (seq != nullptr && t > 0) {
        r = seq[t * p.seq_idx_stride_l] != seq[(t - 1) * p.seq_idx_stride_l];
      }
    }
    s_dt[l] = d;
    run += d * A;
    resets += r;
    s_cum[l] = run;
    s_seg[l] = resets;
  }
  const float run_incl = BlockInclusiveScan<float>(run, scratch_f);
  const int resets_incl = BlockInclusiveScan<int>(resets, scratch_i);
  const float run_off = run_incl - run;
  const int resets_off = resets_incl - resets;
  for (int j = 0; j < per; ++j) {
    const int l = l_begin + j;
    if (l >= q) break;
    s_cum[l] += run_off;
    s_seg[l] += resets_off;
  }
  __syncthreads();
}

// Rows [0, rows) x columns [0, cols) of a row-major global operand (unit column stride, rows
// `row_stride` apart) into shared memory s[r * pitch + col] as E, times scale(r); zeros for
// r >= rows_valid or col >= cols_valid. 16-byte global loads where the layout allows.
template <typename T, typename E, typename F>
__device__ __forceinline__ void StageTile(E* s, int pitch, const T* g, int64_t row_stride,
                                          int rows, int rows_valid, int cols, int cols_valid,
                                          F scale) {
  constexpr int kVec = 16 / sizeof(T);
  const bool vec = reinterpret_cast<uintptr_t>(g) % 16 == 0 && row_stride % kVec == 0 &&
                   cols % kVec == 0;
  if (vec) {
    const int per_row = cols / kVec;
    for (int i = threadIdx.x; i < rows * per_row; i += blockDim.x) {
      const int r = i / per_row, col = (i % per_row) * kVec;
      Vec<T, kVec> v;
      const bool row_ok = r < rows_valid;
      if (row_ok && col + kVec <= cols_valid) {
        v = *reinterpret_cast<const Vec<T, kVec>*>(g + r * row_stride + col);
      } else {
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          v.v[j] = (row_ok && col + j < cols_valid) ? g[r * row_stride + col + j] : DStore<T>(0.f);
        }
      }
      const float f = row_ok ? scale(r) : 0.f;
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        s[r * pitch + col + j] = ToElem<E>(static_cast<float>(DLoad(v.v[j])) * f);
      }
    }
  } else {
    for (int i = threadIdx.x; i < rows * cols; i += blockDim.x) {
      const int r = i / cols, col = i % cols;
      const float v = (r < rows_valid && col < cols_valid)
                          ? static_cast<float>(DLoad(g[r * row_stride + col])) * scale(r)
                          : 0.f;
      s[r * pitch + col] = ToElem<E>(v);
    }
  }
}

struct NoScale {
  __device__ __forceinline__ float operator()(int) const { return 1.f; }
};

// 16 bytes global -> shared without passing through registers (sm_80+); `valid` false writes
// zeros (source size 0: nothing is read from `gmem`, which must still be a valid address).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// Waits until at most kPending committed groups of this thread are still in flight. (The
// "memory" clobbers keep the compiler from moving shared-memory accesses across these.)
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// StageTile without a scale for an element type of T's size (the bits are copied as they are):
// 16-byte asynchronous copies where the layout allows (the caller commits, waits and then
// synchronizes the block before reading), else the synchronous path.
template <typename T, typename E>
__device__ __forceinline__ void StageTileAsync(E* s, int pitch, const T* g, int64_t row_stride,
                                               int rows, int rows_valid, int cols,
                                               int cols_valid) {
  static_assert(sizeof(T) == sizeof(E), "a raw copy needs the same element size");
  constexpr int kVec = 16 / sizeof(T);
  const bool vec = reinterpret_cast<uintptr_t>(g) % 16 == 0 && row_stride % kVec == 0 &&
                   cols % kVec == 0;
  if (!vec) {
    StageTile<T, E>(s, pitch, g, row_stride, rows, rows_valid, cols, cols_valid, NoScale());
    return;
  }
  const int per_row = cols / kVec;
  for (int i = threadIdx.x; i < rows * per_row; i += blockDim.x) {
    const int r = i / per_row, col = (i % per_row) * kVec;
    E* dst = s + r * pitch + col;
    if (r >= rows_valid || col >= cols_valid) {
      CpAsync16(dst, g, false);
    } else if (col + kVec <= cols_valid) {
      CpAsync16(dst, g + r * row_stride + col, true);
    } else {
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const bool in = col + j < cols_valid;
        dst[j] = ToElem<E>(in ? static_cast<float>(DLoad(g[r * row_stride + col + j])) : 0.f);
      }
    }
  }
}

// Offsets into one dynamic shared-memory block, each 128-byte aligned.
struct SmemCarve {
  size_t bytes = 0;
  __host__ __device__ size_t Take(size_t n) {
    const size_t at = bytes;
    bytes = (bytes + n + 127) / 128 * 128;
    return at;
  }
};

inline __host__ __device__ int RoundUp16(int64_t v) { return static_cast<int>((v + 15) / 16 * 16); }

}  // namespace lyra::cuda::ssd

#endif  // LYRA_CUDA_SSD_COMMON_CUH_
