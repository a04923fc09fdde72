// Softmax / log-softmax CUDA kernels, forward and backward (cuda/softmax.h); included by the
// softmax_<dtype>.cu files.
//
// Every operand is (outer, length, inner) with its own strides. One block per row (o, i); its
// threads stride along `length`. When every operand has length-stride 1 and 16-byte aligned rows
// (the softmax over a contiguous last dim), threads move 16-byte vectors.
//
// Forward, two passes over the row:
//   1. online statistics: each thread keeps (m, s) with s = sum exp(x - m), rescaling s when a
//      larger x arrives (one exp per element); the block combines the pairs with
//      (m, s) + (m', s') = (M, s exp(m - M) + s' exp(m' - M)), M = max(m, m').
//   2. y = exp(x - m) / s, or y = x - m - log(s). The second read of the row usually hits L2.
// Backward: 1. d = sum(g * y) (softmax) or sum(g) (log_softmax); 2. dx = y (g - d), or
// dx = g - exp(y) d.
//
// Precision: f32 math and statistics for f16/bf16/f32, f64 for f64. Outputs are written (=).
// A row holding NaN or +inf gives NaN; a row of -inf gives NaN (as torch).
#ifndef LYRA_CUDA_SOFTMAX_KERNELS_CUH_
#define LYRA_CUDA_SOFTMAX_KERNELS_CUH_

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/reduce_block.cuh"
#include "cuda/softmax.h"

namespace lyra::cuda {
namespace softmax_internal {

inline constexpr int kSoftmaxMaxThreads = 512;

__device__ __forceinline__ float SExp(float x) { return expf(x); }
__device__ __forceinline__ double SExp(double x) { return exp(x); }
__device__ __forceinline__ float SLog(float x) { return logf(x); }
__device__ __forceinline__ double SLog(double x) { return log(x); }

// Sizes and strides, in elements, of one launch.
struct Geometry {
  int64_t length;
  int64_t inner;
  SoftmaxOperandStrides in, grad, out;
};

template <typename C>
struct MaxSum {
  C max;  // never NaN (NaN inputs are carried by sum)
  C sum;  // sum of exp(x - max)
};

template <typename C>
struct MaxSumOp {
  __device__ __forceinline__ MaxSum<C> Identity() const {
    return MaxSum<C>{-std::numeric_limits<C>::infinity(), C(0)};
  }
  __device__ __forceinline__ MaxSum<C> Combine(MaxSum<C> a, MaxSum<C> b) const {
    const C m = a.max > b.max ? a.max : b.max;
    if (m == -std::numeric_limits<C>::infinity()) return MaxSum<C>{m, a.sum + b.sum};
    return MaxSum<C>{m, a.sum * SExp(a.max - m) + b.sum * SExp(b.max - m)};
  }
};

template <typename C>
struct SumOp {
  __device__ __forceinline__ C Identity() const { return C(0); }
  __device__ __forceinline__ C Combine(C a, C b) const { return a + b; }
};

template <int N, typename T>
__device__ __forceinline__ Vec<T, N> LoadPack(const T* p, int64_t l, int64_t stride) {
  if constexpr (N == 1) {
    Vec<T, 1> r;
    r.v[0] = p[l * stride];
    return r;
  } else {
    return *reinterpret_cast<const Vec<T, N>*>(p + l);  // stride is 1
  }
}

template <int N, typename T>
__device__ __forceinline__ void StorePack(T* p, int64_t l, int64_t stride, const Vec<T, N>& v) {
  if constexpr (N == 1) {
    p[l * stride] = v.v[0];
  } else {
    *reinterpret_cast<Vec<T, N>*>(p + l) = v;
  }
}

// Visits [0, length) block-strided: f(std::integral_constant<int, kVec>, l) for each whole pack
// starting at l, then f(std::integral_constant<int, 1>, l) for the last length % kVec elements.
template <int kVec, typename F>
__device__ __forceinline__ void ForEachPack(int64_t length, F&& f) {
  const int64_t packs = length / kVec;
  for (int64_t v = threadIdx.x; v < packs; v += blockDim.x) {
    f(std::integral_constant<int, kVec>{}, v * kVec);
  }
  if constexpr (kVec > 1) {
    for (int64_t l = packs * kVec + threadIdx.x; l < length; l += blockDim.x) {
      f(std::integral_constant<int, 1>{}, l);
    }
  }
}

// Grid (outer * inner). in = x (outer, length, inner), out = y (outer, length, inner).
template <typename T, int kVec, bool kLog>
__global__ void __launch_bounds__(kSoftmaxMaxThreads)
    SoftmaxForwardKernel(Geometry g, const T* __restrict__ in, T* __restrict__ out) {
  using C = ComputeType<T>;
  __shared__ MaxSum<C> scratch[kWarpSize];
  const int64_t o = blockIdx.x / g.inner, i = blockIdx.x % g.inner;
  const T* x = in + o * g.in.outer + i * g.in.inner;
  T* y = out + o * g.out.outer + i * g.out.inner;
  constexpr C kNegInf = -std::numeric_limits<C>::infinity();

  C m = kNegInf, s = 0;
  ForEachPack<kVec>(g.length, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    const Vec<T, N> pack = LoadPack<N>(x, l, g.in.length);
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const C v = DLoad(pack.v[j]);
      if (v > m) {
        s = s * SExp(m - v) + C(1);
        m = v;
      } else if (m != kNegInf || v != v) {
        s += SExp(v - m);  // NaN v makes s NaN
      }
    }
  });
  const MaxSum<C> stats = BlockReduce(MaxSumOp<C>{}, MaxSum<C>{m, s}, scratch);
  // A +inf input makes exp(x - m) NaN for that element in the reference and in torch, and so
  // the whole row NaN; the online sum never forms inf - inf, so poison it here.
  const C sum = stats.max == -kNegInf ? std::numeric_limits<C>::quiet_NaN() : stats.sum;
  const C inv_sum = C(1) / sum;
  const C log_sum = SLog(sum);

  ForEachPack<kVec>(g.length, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    const Vec<T, N> pack = LoadPack<N>(x, l, g.in.length);
    Vec<T, N> result;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const C shifted = DLoad(pack.v[j]) - stats.max;
      result.v[j] = DStore<T>(kLog ? shifted - log_sum : SExp(shifted) * inv_sum);
    }
    StorePack<N>(y, l, g.out.length, result);
  });
}

// Grid (outer * inner). in = y, the forward output; grad = g; out = dx; all (outer, length, inner).
template <typename T, int kVec, bool kLog>
__global__ void __launch_bounds__(kSoftmaxMaxThreads)
    SoftmaxBackwardKernel(Geometry g, const T* __restrict__ in, const T* __restrict__ grad,
                          T* __restrict__ out) {
  using C = ComputeType<T>;
  __shared__ C scratch[kWarpSize];
  const int64_t o = blockIdx.x / g.inner, i = blockIdx.x % g.inner;
  const T* y = in + o * g.in.outer + i * g.in.inner;
  const T* dy = grad + o * g.grad.outer + i * g.grad.inner;
  T* dx = out + o * g.out.outer + i * g.out.inner;

  C d = 0;
  ForEachPack<kVec>(g.length, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    const Vec<T, N> dy_pack = LoadPack<N>(dy, l, g.grad.length);
    if constexpr (kLog) {
#pragma unroll
      for (int j = 0; j < N; ++j) d += DLoad(dy_pack.v[j]);
    } else {
      const Vec<T, N> y_pack = LoadPack<N>(y, l, g.in.length);
#pragma unroll
      for (int j = 0; j < N; ++j) d += DLoad(dy_pack.v[j]) * DLoad(y_pack.v[j]);
    }
  });
  d = BlockReduce(SumOp<C>{}, d, scratch);

  ForEachPack<kVec>(g.length, [&](auto n, int64_t l) {
    constexpr int N = decltype(n)::value;
    const Vec<T, N> y_pack = LoadPack<N>(y, l, g.in.length);
    const Vec<T, N> dy_pack = LoadPack<N>(dy, l, g.grad.length);
    Vec<T, N> result;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const C yv = DLoad(y_pack.v[j]), gv = DLoad(dy_pack.v[j]);
      result.v[j] = DStore<T>(kLog ? gv - SExp(yv) * d : yv * (gv - d));
    }
    StorePack<N>(dx, l, g.out.length, result);
  });
}

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// True if the operand's rows are contiguous and every row starts on a 16-byte boundary.
inline bool RowsVectorizable(const void* data, const SoftmaxOperandStrides& s, int64_t outer,
                             int64_t inner, size_t element_size) {
  return s.length == 1 && Aligned16(data) &&
         (outer == 1 || (s.outer * element_size) % 16 == 0) &&
         (inner == 1 || (s.inner * element_size) % 16 == 0);
}

}  // namespace softmax_internal

template <typename T>
absl::Status SoftmaxCudaTyped(const SoftmaxParams& p, cudaStream_t stream) {
  using namespace softmax_internal;
  const int64_t rows = p.outer * p.inner;
  if (rows == 0 || p.length == 0) return absl::OkStatus();
  constexpr int kVec = 16 / sizeof(T);
  const bool backward = IsSoftmaxBackward(p.op);
  const bool vectorized =
      RowsVectorizable(p.in, p.in_strides, p.outer, p.inner, sizeof(T)) &&
      RowsVectorizable(p.out, p.out_strides, p.outer, p.inner, sizeof(T)) &&
      (!backward || RowsVectorizable(p.grad, p.grad_strides, p.outer, p.inner, sizeof(T)));
  const Geometry g{p.length, p.inner, p.in_strides, p.grad_strides, p.out_strides};
  const int64_t per_thread = vectorized ? kVec : 1;
  const int threads = WarpMultiple((p.length + per_thread - 1) / per_thread, kSoftmaxMaxThreads);
  const unsigned blocks = static_cast<unsigned>(rows);
  const T* in = static_cast<const T*>(p.in);
  const T* grad = static_cast<const T*>(p.grad);
  T* out = static_cast<T*>(p.out);

  auto launch = [&]<int kV>() {
    switch (p.op) {
      case SoftmaxOp::kSoftmax:
        SoftmaxForwardKernel<T, kV, false><<<blocks, threads, 0, stream>>>(g, in, out);
        break;
      case SoftmaxOp::kLogSoftmax:
        SoftmaxForwardKernel<T, kV, true><<<blocks, threads, 0, stream>>>(g, in, out);
        break;
      case SoftmaxOp::kSoftmaxBackward:
        SoftmaxBackwardKernel<T, kV, false><<<blocks, threads, 0, stream>>>(g, in, grad, out);
        break;
      case SoftmaxOp::kLogSoftmaxBackward:
        SoftmaxBackwardKernel<T, kV, true><<<blocks, threads, 0, stream>>>(g, in, grad, out);
        break;
    }
  };
  if (vectorized) {
    launch.template operator()<kVec>();
  } else {
    launch.template operator()<1>();
  }
  LYRA_CUDA_RETURN_IF_LAUNCH_ERROR(SoftmaxOpName(p.op).data());
  return absl::OkStatus();
}

#define LYRA_SOFTMAX_INSTANTIATE(T) \
  template absl::Status SoftmaxCudaTyped<T>(const SoftmaxParams&, cudaStream_t);
#define LYRA_SOFTMAX_DECLARE(T) \
  extern template absl::Status SoftmaxCudaTyped<T>(const SoftmaxParams&, cudaStream_t);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_SOFTMAX_KERNELS_CUH_
