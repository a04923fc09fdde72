// CPU reference of the reductions (cuda/reduce.h): for every output (o, i), one loop over r.
// Sums accumulate in SumAccumulator<T> (f32 / f64 / i64); max compares in the compute type.
#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "cuda/reduce.h"

namespace lyra::cuda {

absl::string_view ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "Sum";
    case ReduceOp::kMean: return "Mean";
    case ReduceOp::kMax: return "Max";
    case ReduceOp::kArgmax: return "Argmax";
  }
  return "UnknownReduce";
}

DType ReduceOutputDType(ReduceOp op, DType x_dtype) {
  if (op == ReduceOp::kSum && !IsFloating(x_dtype)) return DType::kI64;
  return x_dtype;
}

absl::Status ReduceSupported(const ReduceParams& p) {
  const absl::string_view name = ReduceOpName(p.op);
  if (p.outer < 0 || p.reduced < 0 || p.inner < 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": negative size (outer ", p.outer,
                                                   ", reduced ", p.reduced, ", inner ", p.inner,
                                                   ")"));
  }
  if (p.op == ReduceOp::kMean && !IsFloating(p.x_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": needs a floating-point input, got ", DTypeName(p.x_dtype),
        " (cast it with To() first)"));
  }
  if (p.y_dtype != ReduceOutputDType(p.op, p.x_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": output dtype ", DTypeName(p.y_dtype),
                                                   " for input ", DTypeName(p.x_dtype),
                                                   ", expected ",
                                                   DTypeName(ReduceOutputDType(p.op, p.x_dtype))));
  }
  if ((p.op == ReduceOp::kMax || p.op == ReduceOp::kArgmax) && p.reduced == 0 &&
      p.outer * p.inner > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": cannot reduce over zero elements (no identity)"));
  }
  const int64_t outputs = p.outer * p.inner;
  if (outputs > 0 && (p.x == nullptr || (p.op != ReduceOp::kArgmax && p.y == nullptr) ||
                      (p.op == ReduceOp::kArgmax && p.indices == nullptr))) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": missing input or output pointer"));
  }
  if (outputs >= (int64_t{1} << 31)) {
    return absl::UnimplementedError(
        absl::StrCat(name, ": ", outputs, " outputs; at most 2^31 - 1 are supported"));
  }
  return absl::OkStatus();
}

namespace {

template <typename T>
absl::Status ReduceTyped(const ReduceParams& p) {
  using C = ComputeType<T>;
  const T* x = static_cast<const T*>(p.x);
  for (int64_t o = 0; o < p.outer; ++o) {
    for (int64_t i = 0; i < p.inner; ++i) {
      const T* col = x + o * p.x_stride_outer + i * p.x_stride_inner;
      const int64_t y_offset = o * p.y_stride_outer + i * p.y_stride_inner;
      if (p.op == ReduceOp::kSum || p.op == ReduceOp::kMean) {
        using Acc = SumAccumulator<T>;
        using Out = SumOutput<T>;
        Acc sum = 0;
        for (int64_t r = 0; r < p.reduced; ++r) {
          sum += static_cast<Acc>(Load(col[r * p.x_stride_reduced]));
        }
        if constexpr (std::is_floating_point_v<Acc>) {
          if (p.op == ReduceOp::kMean) sum *= Acc(1) / static_cast<Acc>(p.reduced);
        }
        static_cast<Out*>(p.y)[y_offset] = Store<Out>(static_cast<ComputeType<Out>>(sum));
      } else {
        C best = Load(col[0]);
        int64_t best_index = 0;
        for (int64_t r = 1; r < p.reduced; ++r) {
          const C v = Load(col[r * p.x_stride_reduced]);
          bool better = v > best;
          if constexpr (std::is_floating_point_v<C>) {
            better = better || (std::isnan(v) && !std::isnan(best));
          }
          if (better) {
            best = v;
            best_index = r;
          }
        }
        if (p.y != nullptr) static_cast<T*>(p.y)[y_offset] = Store<T>(best);
        if (p.op == ReduceOp::kArgmax) p.indices[y_offset] = best_index;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ReduceReference(const ReduceParams& p) {
  if (absl::Status s = ReduceSupported(p); !s.ok()) return s;
  return DispatchAll(p.x_dtype, ReduceOpName(p.op),
                     [&]<typename T>() -> absl::Status { return ReduceTyped<T>(p); });
}

}  // namespace lyra::cuda
