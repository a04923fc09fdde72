// The reduction CUDA kernels (cuda/reduce.h); included by the reduce_<dtype>.cu files, one per
// input dtype family so that nvcc compiles them in parallel.
//
// x is (outer, reduced, inner) with any strides, y and indices are (outer, inner). Two kernels:
//
//   ReduceRowKernel: one block per output row r = (o, i) and split s; its threads stride along
//     `reduced`. Used when the reduced axis has the smallest stride (a last-dim reduction, or any
//     reduction whose `inner` is tiny). When x_stride_reduced == 1 and the rows are 16-byte
//     aligned, each thread loads 16-byte vectors (8 bf16 / 4 f32 / 2 f64).
//   ReduceColumnKernel: a block of 32 x 8 threads covers 32 consecutive `inner` columns of one
//     `outer`; lanes read consecutive inner elements (coalesced when x_stride_inner == 1) and the
//     8 thread rows stride along `reduced`; no transposing copy.
//
// Few outputs over many elements (e.g. a full sum to a scalar) would leave most SMs idle, so both
// kernels can split `reduced` into `splits` chunks: each block writes its partial accumulator to
// a workspace (outputs x splits, Acc), and a second ReduceRowKernel pass combines the partials.
//
// Precision: sums in SumAccumulator<T> (f32 / f64 / i64), max in the compute type. Every output
// element is written (=) exactly once, by the last pass.
#ifndef LYRA_CUDA_REDUCE_KERNELS_CUH_
#define LYRA_CUDA_REDUCE_KERNELS_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device_types.cuh"
#include "cuda/reduce.h"
#include "cuda/reduce_block.cuh"

namespace lyra::cuda {
namespace reduce_internal {

inline constexpr int kRowThreads = 256;
inline constexpr int kColumnThreadsX = kWarpSize;  // inner columns per block
inline constexpr int kColumnThreadsY = 8;          // threads striding along `reduced`
// Below this many inner columns the column kernel would leave most lanes idle; use rows.
inline constexpr int64_t kMinColumnInner = 8;
// A split reduction aims for this many resident blocks per SM.
inline constexpr int kTargetBlocksPerSm = 4;
// Each thread of a split block should still load at least this many elements (or vectors).
inline constexpr int64_t kMinLoadsPerThread = 8;
inline constexpr int64_t kMaxGridY = 65535;

// --- Ops: Acc Identity(), Acc Element(C x, int64_t r), Acc Combine(Acc, Acc), Write(...) ----

template <typename T>
struct SumOp {
  using Acc = SumAccumulator<T>;
  using Out = SumOutput<T>;
  Acc scale;  // 1, or 1 / reduced for the mean
  __device__ __forceinline__ Acc Identity() const { return Acc(0); }
  __device__ __forceinline__ Acc Element(ComputeType<T> x, int64_t) const {
    return static_cast<Acc>(x);
  }
  __device__ __forceinline__ Acc Combine(Acc a, Acc b) const { return a + b; }
  __device__ __forceinline__ void Write(Acc acc, Out* y, int64_t*, int64_t offset) const {
    y[offset] = DStore<Out>(static_cast<ComputeType<Out>>(acc * scale));
  }
};

template <typename C>
__device__ __forceinline__ bool IsNan(C v) {
  if constexpr (std::is_floating_point_v<C>) {
    return v != v;
  } else {
    return false;
  }
}

template <typename C>
__device__ __forceinline__ C Lowest() {
  if constexpr (std::is_floating_point_v<C>) {
    return -std::numeric_limits<C>::infinity();
  } else {
    return std::numeric_limits<C>::lowest();
  }
}

template <typename T>
struct MaxOp {
  using C = ComputeType<T>;
  using Acc = C;
  using Out = T;
  __device__ __forceinline__ Acc Identity() const { return Lowest<C>(); }
  __device__ __forceinline__ Acc Element(C x, int64_t) const { return x; }
  __device__ __forceinline__ Acc Combine(Acc a, Acc b) const {
    if (IsNan(a)) return a;
    if (IsNan(b)) return b;
    return b > a ? b : a;
  }
  __device__ __forceinline__ void Write(Acc acc, Out* y, int64_t*, int64_t offset) const {
    y[offset] = DStore<T>(acc);
  }
};

template <typename C>
struct ArgPair {
  C value;
  int64_t index;
};

// Max with the smallest index on ties; NaN beats every number. Combine is associative and
// commutative, so the tree order does not change the result.
template <typename T>
struct ArgmaxOp {
  using C = ComputeType<T>;
  using Acc = ArgPair<C>;
  using Out = T;
  __device__ __forceinline__ Acc Identity() const {
    return Acc{Lowest<C>(), std::numeric_limits<int64_t>::max()};
  }
  __device__ __forceinline__ Acc Element(C x, int64_t r) const { return Acc{x, r}; }
  __device__ __forceinline__ Acc Combine(Acc a, Acc b) const {
    const bool a_nan = IsNan(a.value), b_nan = IsNan(b.value);
    if (a_nan != b_nan) return a_nan ? a : b;
    if (!a_nan) {
      if (a.value > b.value) return a;
      if (b.value > a.value) return b;
    }
    return a.index <= b.index ? a : b;
  }
  __device__ __forceinline__ void Write(Acc acc, Out* y, int64_t* indices, int64_t offset) const {
    if (y != nullptr) y[offset] = DStore<T>(acc.value);
    indices[offset] = acc.index;
  }
};

// Strides and sizes of one pass, in elements of that pass's input.
struct Geometry {
  int64_t inner;
  int64_t reduced;
  int64_t chunk;  // elements of `reduced` per split
  int64_t x_stride_outer, x_stride_reduced, x_stride_inner;
  int64_t y_stride_outer, y_stride_inner;
};

// --- Kernels ----------------------------------------------------------------------------

// Grid (outer * inner, splits). In is T (first pass) or Op::Acc (kPartialIn: combining the
// partials of a split pass, whose rows are contiguous). Writes y / indices, or partial when it is
// not null: partial[row * splits + split], (outer * inner, splits).
template <typename In, typename Op, int kVec, bool kPartialIn>
__global__ void __launch_bounds__(kRowThreads)
    ReduceRowKernel(Geometry g, Op op, const In* __restrict__ x,  // (outer, reduced, inner)
                    typename Op::Out* __restrict__ y,             // (outer, inner)
                    int64_t* __restrict__ indices,                // (outer, inner)
                    typename Op::Acc* __restrict__ partial) {     // (outer * inner, splits)
  using Acc = typename Op::Acc;
  __shared__ Acc scratch[kWarpSize];
  const int64_t row = blockIdx.x;
  const int64_t o = row / g.inner, i = row % g.inner;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * g.chunk;
  const int64_t end = min(g.reduced, begin + g.chunk);
  const In* x_row = x + o * g.x_stride_outer + i * g.x_stride_inner;

  Acc acc = op.Identity();
  if constexpr (kPartialIn) {
    for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
      acc = op.Combine(acc, x_row[r]);
    }
  } else if constexpr (kVec > 1) {
    // begin is a multiple of kVec (chunk is), and x_row is 16-byte aligned.
    const Vec<In, kVec>* v_row = reinterpret_cast<const Vec<In, kVec>*>(x_row);
    const int64_t v_end = end / kVec;
    for (int64_t v = begin / kVec + threadIdx.x; v < v_end; v += blockDim.x) {
      const Vec<In, kVec> pack = v_row[v];
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        acc = op.Combine(acc, op.Element(DLoad(pack.v[j]), v * kVec + j));
      }
    }
    for (int64_t r = v_end * kVec + threadIdx.x; r < end; r += blockDim.x) {
      acc = op.Combine(acc, op.Element(DLoad(x_row[r]), r));
    }
  } else {
    for (int64_t r = begin + threadIdx.x; r < end; r += blockDim.x) {
      acc = op.Combine(acc, op.Element(DLoad(x_row[r * g.x_stride_reduced]), r));
    }
  }
  acc = BlockReduce(op, acc, scratch);
  if (threadIdx.x == 0) {
    if (partial != nullptr) {
      partial[row * gridDim.y + blockIdx.y] = acc;
    } else {
      op.Write(acc, y, indices, o * g.y_stride_outer + i * g.y_stride_inner);
    }
  }
}

// Grid (outer * inner_tiles, splits), block (kColumnThreadsX, kColumnThreadsY). Thread (tx, ty)
// owns column i = tile * 32 + tx and reads r = begin + ty, begin + ty + 8, ...; the 8 partial
// values of a column are combined through shared memory.
template <typename T, typename Op>
__global__ void __launch_bounds__(kColumnThreadsX * kColumnThreadsY)
    ReduceColumnKernel(Geometry g, int64_t inner_tiles, Op op,
                       const T* __restrict__ x,                      // (outer, reduced, inner)
                       typename Op::Out* __restrict__ y,             // (outer, inner)
                       int64_t* __restrict__ indices,                // (outer, inner)
                       typename Op::Acc* __restrict__ partial) {     // (outer * inner, splits)
  using Acc = typename Op::Acc;
  __shared__ Acc column_acc[kColumnThreadsY][kColumnThreadsX];
  const int64_t o = blockIdx.x / inner_tiles;
  const int64_t i = (blockIdx.x % inner_tiles) * kColumnThreadsX + threadIdx.x;
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * g.chunk;
  const int64_t end = min(g.reduced, begin + g.chunk);

  Acc acc = op.Identity();
  if (i < g.inner) {
    const T* x_col = x + o * g.x_stride_outer + i * g.x_stride_inner;
    for (int64_t r = begin + threadIdx.y; r < end; r += kColumnThreadsY) {
      acc = op.Combine(acc, op.Element(DLoad(x_col[r * g.x_stride_reduced]), r));
    }
  }
  column_acc[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && i < g.inner) {
#pragma unroll
    for (int k = 1; k < kColumnThreadsY; ++k) acc = op.Combine(acc, column_acc[k][threadIdx.x]);
    const int64_t row = o * g.inner + i;
    if (partial != nullptr) {
      partial[row * gridDim.y + blockIdx.y] = acc;
    } else {
      op.Write(acc, y, indices, o * g.y_stride_outer + i * g.y_stride_inner);
    }
  }
}

// --- Launcher ---------------------------------------------------------------------------

inline bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

inline absl::StatusOr<int> MultiprocessorCount() {
  int device = 0, sms = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// Splits of `reduced` so that `blocks` blocks grow to about `target` blocks, each split still
// worth `min_per_split` elements; 1 when the grid is already large enough.
inline int64_t ChooseSplits(int64_t blocks, int64_t target, int64_t reduced,
                            int64_t min_per_split) {
  if (blocks >= target || reduced < 2 * min_per_split) return 1;
  const int64_t want = (target + blocks - 1) / blocks;
  return std::clamp<int64_t>(std::min(want, reduced / min_per_split), 1, kMaxGridY);
}

// One pass (or a split pass plus the combining pass) of `op` over p.
template <typename T, typename Op>
absl::Status LaunchReduce(const ReduceParams& p, const Op& op, cudaStream_t stream) {
  using Acc = typename Op::Acc;
  using Out = typename Op::Out;
  const int64_t rows = p.outer * p.inner;
  if (rows == 0) return absl::OkStatus();
  const T* x = static_cast<const T*>(p.x);
  Out* y = static_cast<Out*>(p.y);
  LYRA_ASSIGN_OR_RETURN(const int sms, MultiprocessorCount());
  const int64_t target_blocks = int64_t{sms} * kTargetBlocksPerSm;

  Geometry g;
  g.inner = p.inner;
  g.reduced = p.reduced;
  g.chunk = p.reduced;  // one split unless chosen below
  g.x_stride_outer = p.x_stride_outer;
  g.x_stride_reduced = p.x_stride_reduced;
  g.x_stride_inner = p.x_stride_inner;
  g.y_stride_outer = p.y_stride_outer;
  g.y_stride_inner = p.y_stride_inner;
  const bool use_rows = p.inner < kMinColumnInner ||
                        std::llabs(p.x_stride_reduced) <= std::llabs(p.x_stride_inner);
  constexpr int kVec = 16 / sizeof(T);  // 16-byte loads
  const bool vectorized = use_rows && kVec > 1 && p.x_stride_reduced == 1 && Aligned16(x) &&
                          (p.outer == 1 || (p.x_stride_outer * sizeof(T)) % 16 == 0) &&
                          (p.inner == 1 || (p.x_stride_inner * sizeof(T)) % 16 == 0);

  int64_t splits = 1;
  int64_t inner_tiles = 0;
  if (use_rows) {
    const int64_t per_element = vectorized ? kVec : 1;
    splits = ChooseSplits(rows, target_blocks, p.reduced,
                          kRowThreads * per_element * kMinLoadsPerThread);
    g.chunk = (p.reduced + splits - 1) / splits;
    g.chunk = (g.chunk + per_element - 1) / per_element * per_element;
  } else {
    inner_tiles = (p.inner + kColumnThreadsX - 1) / kColumnThreadsX;
    splits = ChooseSplits(p.outer * inner_tiles, target_blocks, p.reduced,
                          kColumnThreadsY * kMinLoadsPerThread);
    g.chunk = (p.reduced + splits - 1) / splits;
  }
  if (g.chunk > 0) splits = (p.reduced + g.chunk - 1) / g.chunk;
  splits = std::max<int64_t>(splits, 1);

  Acc* partial = nullptr;
  void* workspace = nullptr;
  CachingAllocator* allocator = nullptr;
  if (splits > 1) {
    int device = 0;
    LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
    allocator = &CachingAllocator::ForDevice(device);
    LYRA_ASSIGN_OR_RETURN(workspace, allocator->Allocate(rows * splits * sizeof(Acc)));
    partial = static_cast<Acc*>(workspace);
  }

  const dim3 grid_rows(static_cast<unsigned>(rows), static_cast<unsigned>(splits));
  if (use_rows) {
    const int64_t per_thread = vectorized ? kVec : 1;
    const int threads = WarpMultiple((g.chunk + per_thread - 1) / per_thread, kRowThreads);
    if (vectorized) {
      ReduceRowKernel<T, Op, kVec, false><<<grid_rows, threads, 0, stream>>>(g, op, x, y,
                                                                             p.indices, partial);
    } else {
      ReduceRowKernel<T, Op, 1, false><<<grid_rows, threads, 0, stream>>>(g, op, x, y, p.indices,
                                                                          partial);
    }
  } else {
    const dim3 grid(static_cast<unsigned>(p.outer * inner_tiles), static_cast<unsigned>(splits));
    const dim3 block(kColumnThreadsX, kColumnThreadsY);
    ReduceColumnKernel<T, Op><<<grid, block, 0, stream>>>(g, inner_tiles, op, x, y, p.indices,
                                                          partial);
  }
  absl::Status status = LastLaunchStatus(ReduceOpName(p.op).data(), __FILE__, __LINE__);

  if (status.ok() && splits > 1) {
    // Combine the partials: row r's are contiguous at partial + r * splits.
    Geometry combine = g;
    combine.reduced = splits;
    combine.chunk = splits;
    combine.x_stride_outer = p.inner * splits;
    combine.x_stride_reduced = 1;
    combine.x_stride_inner = splits;
    ReduceRowKernel<Acc, Op, 1, true><<<dim3(static_cast<unsigned>(rows), 1),
                                        WarpMultiple(splits, kRowThreads), 0, stream>>>(
        combine, op, partial, y, p.indices, nullptr);
    status.Update(LastLaunchStatus("ReduceCombinePartials", __FILE__, __LINE__));
  }
  // Stream order makes the immediate free safe: the next user of the block runs after us.
  if (workspace != nullptr) allocator->Free(workspace);
  return status;
}

}  // namespace reduce_internal

// Dispatch on the op for input storage type T; instantiated in reduce_<dtype>.cu.
template <typename T>
absl::Status ReduceCudaTyped(const ReduceParams& p, cudaStream_t stream) {
  using namespace reduce_internal;
  switch (p.op) {
    case ReduceOp::kSum:
      return LaunchReduce<T>(p, SumOp<T>{SumAccumulator<T>(1)}, stream);
    case ReduceOp::kMean:
      if constexpr (std::is_floating_point_v<ComputeType<T>>) {
        using Acc = SumAccumulator<T>;
        return LaunchReduce<T>(p, SumOp<T>{Acc(1) / static_cast<Acc>(p.reduced)}, stream);
      } else {
        return ReduceSupported(p);  // InvalidArgument: Mean of an integer dtype
      }
    case ReduceOp::kMax:
      return LaunchReduce<T>(p, MaxOp<T>{}, stream);
    case ReduceOp::kArgmax:
      return LaunchReduce<T>(p, ArgmaxOp<T>{}, stream);
  }
  return absl::InvalidArgumentError("Reduce: unknown op");
}

#define LYRA_REDUCE_INSTANTIATE(T) \
  template absl::Status ReduceCudaTyped<T>(const ReduceParams&, cudaStream_t);
#define LYRA_REDUCE_DECLARE(T) \
  extern template absl::Status ReduceCudaTyped<T>(const ReduceParams&, cudaStream_t);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_REDUCE_KERNELS_CUH_
