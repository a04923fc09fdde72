// Inclusive prefix sum along one axis (cuda/cumsum.h).
//
// x and y are (outer, length, inner) with their own strides. Two kernels, chosen by layout:
//   CumsumColumnKernel (inner > 1): one thread per column (o, i) walks `length` sequentially.
//     Neighbouring threads own neighbouring inner columns, so each step of the walk is one
//     coalesced load and store per warp when the inner stride is 1. Simple and exact in order
//     (the same summation order as the CPU reference).
//   CumsumRowKernel (inner == 1, a scan along the contiguous last dim, where one thread per row
//     would be uncoalesced and serial): one block per row scans it in tiles of blockDim
//     elements: a warp-shuffle inclusive scan, a scan of the warp totals in shared memory, and a
//     running carry from tile to tile. Summation order differs from the reference (a tree within
//     a tile), so f32 results match it to rounding.
// reverse = true walks from the end: y[l] = sum_{k >= l} x[k].
//
// Precision: accumulates in SumAccumulator<T> (f32 for f16/bf16/f32, f64, i64 for integers and
// bool); y is written (=) in SumOutput<T> (T for floats, i64 otherwise).
#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/cuda_check.h"
#include "cuda/cumsum.h"
#include "cuda/device_types.cuh"
#include "cuda/reduce.h"
#include "cuda/reduce_block.cuh"

namespace lyra::cuda {
namespace {

inline constexpr int kColumnThreads = 256;
inline constexpr int kRowThreads = 512;

struct Geometry {
  int64_t length;
  int64_t inner;
  int64_t columns;  // outer * inner
  int64_t x_stride_outer, x_stride_length, x_stride_inner;
  int64_t y_stride_outer, y_stride_length, y_stride_inner;
};

// Grid covers outer * inner threads, one per column.
template <typename T>
__global__ void __launch_bounds__(kColumnThreads)
    CumsumColumnKernel(Geometry g, bool reverse, const T* __restrict__ x,  // (outer, length, inner)
                       SumOutput<T>* __restrict__ y) {                    // (outer, length, inner)
  using Acc = SumAccumulator<T>;
  using Out = SumOutput<T>;
  const int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (column >= g.columns) return;
  const int64_t o = column / g.inner, i = column % g.inner;
  const T* x_col = x + o * g.x_stride_outer + i * g.x_stride_inner;
  Out* y_col = y + o * g.y_stride_outer + i * g.y_stride_inner;
  Acc sum = 0;
  for (int64_t step = 0; step < g.length; ++step) {
    const int64_t l = reverse ? g.length - 1 - step : step;
    sum += static_cast<Acc>(DLoad(x_col[l * g.x_stride_length]));
    y_col[l * g.y_stride_length] = DStore<Out>(static_cast<ComputeType<Out>>(sum));
  }
}

// Grid (outer), one block per row; blockDim is a multiple of 32.
template <typename T>
__global__ void __launch_bounds__(kRowThreads)
    CumsumRowKernel(Geometry g, bool reverse, const T* __restrict__ x,  // (outer, length)
                    SumOutput<T>* __restrict__ y) {                     // (outer, length)
  using Acc = SumAccumulator<T>;
  using Out = SumOutput<T>;
  __shared__ Acc warp_totals[kWarpSize];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int num_warps = blockDim.x / kWarpSize;
  const T* x_row = x + static_cast<int64_t>(blockIdx.x) * g.x_stride_outer;
  Out* y_row = y + static_cast<int64_t>(blockIdx.x) * g.y_stride_outer;

  Acc carry = 0;  // sum of all earlier tiles
  for (int64_t tile = 0; tile < g.length; tile += blockDim.x) {
    const int64_t step = tile + threadIdx.x;
    const int64_t l = reverse ? g.length - 1 - step : step;
    Acc v = step < g.length ? static_cast<Acc>(DLoad(x_row[l * g.x_stride_length])) : Acc(0);
#pragma unroll
    for (int delta = 1; delta < kWarpSize; delta <<= 1) {
      const Acc up = ShflUp(v, delta);
      if (lane >= delta) v += up;
    }
    if (lane == kWarpSize - 1) warp_totals[warp] = v;
    __syncthreads();
    if (warp == 0) {
      Acc t = lane < num_warps ? warp_totals[lane] : Acc(0);
#pragma unroll
      for (int delta = 1; delta < kWarpSize; delta <<= 1) {
        const Acc up = ShflUp(t, delta);
        if (lane >= delta) t += up;
      }
      warp_totals[lane] = t;  // inclusive scan of the warp totals
    }
    __syncthreads();
    const Acc prefix = carry + (warp > 0 ? warp_totals[warp - 1] : Acc(0));
    if (step < g.length) {
      y_row[l * g.y_stride_length] = DStore<Out>(static_cast<ComputeType<Out>>(v + prefix));
    }
    carry += warp_totals[num_warps - 1];
    __syncthreads();  // warp_totals is rewritten by the next tile
  }
}

template <typename T>
absl::Status CumsumCudaTyped(const CumsumParams& p, cudaStream_t stream) {
  const int64_t columns = p.outer * p.inner;
  if (columns == 0 || p.length == 0) return absl::OkStatus();
  const Geometry g{p.length,         p.inner,          columns,
                   p.x_stride_outer, p.x_stride_length, p.x_stride_inner,
                   p.y_stride_outer, p.y_stride_length, p.y_stride_inner};
  const T* x = static_cast<const T*>(p.x);
  SumOutput<T>* y = static_cast<SumOutput<T>*>(p.y);
  if (p.inner == 1) {
    const int threads = WarpMultiple(p.length, kRowThreads);
    CumsumRowKernel<T><<<static_cast<unsigned>(p.outer), threads, 0, stream>>>(g, p.reverse, x,
                                                                                y);
    LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("CumsumRowKernel");
  } else {
    const unsigned blocks = static_cast<unsigned>((columns + kColumnThreads - 1) / kColumnThreads);
    CumsumColumnKernel<T><<<blocks, kColumnThreads, 0, stream>>>(g, p.reverse, x, y);
    LYRA_CUDA_RETURN_IF_LAUNCH_ERROR("CumsumColumnKernel");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CumsumCuda(const CumsumParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CumsumSupported(p));
  return DispatchAll(p.x_dtype, "Cumsum", [&]<typename T>() -> absl::Status {
    return CumsumCudaTyped<T>(p, stream);
  });
}

}  // namespace lyra::cuda
