// CPU reference of the indexing kernels (cuda/index.h): check every index, then one strided loop.
// Gathers copy elements as bytes of their size; scatter-adds add in the output's compute type
// (f32 for f16/bf16/f32, f64 for f64) and round each sum to the output's dtype, as the CUDA
// atomics do.
#include <array>
#include <cstdint>

#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/elementwise_dispatch.h"
#include "cuda/index.h"

namespace lyra::cuda {
namespace {

template <typename Fn>
absl::Status DispatchIndex(DType dtype, Fn&& fn) {
  if (dtype == DType::kI32) return fn.template operator()<int32_t>();
  return fn.template operator()<int64_t>();  // the predicates admit only i32 and i64
}

// The first index (row-major over the index tensor) outside [0, bound), as an error.
template <typename I>
absl::Status CheckIndices(absl::string_view op, const IterShape& shape,
                          const StridedOperand& index, int64_t bound) {
  IterShape walk;
  StridedOperand walk_index;
  IndexWalk(shape, index, walk, walk_index);
  const I* data = static_cast<const I*>(walk_index.data);
  bool bad = false;
  int64_t bad_value = 0;
  ForEachStrided<1>(walk, &walk_index, [&](const std::array<int64_t, 1>& o) {
    const int64_t k = static_cast<int64_t>(data[o[0]]);
    if (!bad && (k < 0 || k >= bound)) {
      bad = true;
      bad_value = k;
    }
  });
  if (bad) return IndexOutOfRange(op, bad_value, bound);
  return absl::OkStatus();
}

template <typename T, typename I>
void Gather(const IndexGatherParams& p) {
  const StridedOperand operands[3] = {p.out, p.src, p.index};
  T* out = static_cast<T*>(p.out.data);
  const T* src = static_cast<const T*>(p.src.data);
  const I* index = static_cast<const I*>(p.index.data);
  ForEachStrided<3>(p.shape, operands, [&](const std::array<int64_t, 3>& o) {
    const int64_t k = static_cast<int64_t>(index[o[2]]);
    out[o[0]] = src[o[1] + k * p.src_index_stride];
  });
}

template <typename Out, typename Src, typename I>
void ScatterAdd(const IndexScatterAddParams& p) {
  const StridedOperand operands[3] = {p.out, p.src, p.index};
  Out* out = static_cast<Out*>(p.out.data);
  const Src* src = static_cast<const Src*>(p.src.data);
  const I* index = static_cast<const I*>(p.index.data);
  using C = ComputeType<Out>;
  ForEachStrided<3>(p.shape, operands, [&](const std::array<int64_t, 3>& o) {
    const int64_t k = static_cast<int64_t>(index[o[2]]);
    if (k == p.skip_index) return;
    Out& target = out[o[0] + k * p.out_index_stride];
    target = Store<Out>(Load(target) + static_cast<C>(Load(src[o[1]])));
  });
}

}  // namespace

absl::Status IndexGatherReference(const IndexGatherParams& p) {
  LYRA_RETURN_IF_ERROR(IndexGatherSupported(p));
  return DispatchIndex(p.index.dtype, [&]<typename I>() -> absl::Status {
    LYRA_RETURN_IF_ERROR(CheckIndices<I>(p.op, p.shape, p.index, p.index_bound));
    switch (DTypeSize(p.out.dtype)) {
      case 1: Gather<uint8_t, I>(p); break;
      case 2: Gather<uint16_t, I>(p); break;
      case 4: Gather<uint32_t, I>(p); break;
      case 8: Gather<uint64_t, I>(p); break;
    }
    return absl::OkStatus();
  });
}

absl::Status IndexScatterAddReference(const IndexScatterAddParams& p) {
  LYRA_RETURN_IF_ERROR(IndexScatterAddSupported(p));
  return DispatchIndex(p.index.dtype, [&]<typename I>() -> absl::Status {
    LYRA_RETURN_IF_ERROR(CheckIndices<I>(p.op, p.shape, p.index, p.index_bound));
    if (p.out.dtype == DType::kF32 && p.src.dtype == DType::kF16) {
      ScatterAdd<float, Float16, I>(p);
      return absl::OkStatus();
    }
    if (p.out.dtype == DType::kF32 && p.src.dtype == DType::kBF16) {
      ScatterAdd<float, BFloat16, I>(p);
      return absl::OkStatus();
    }
    return DispatchFloat(p.out.dtype, p.op, [&]<typename T>() -> absl::Status {
      ScatterAdd<T, T, I>(p);
      return absl::OkStatus();
    });
  });
}

}  // namespace lyra::cuda
