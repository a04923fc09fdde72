// Tensor-level reductions, softmax and cumsum: dim checks, output allocation, and the folding of
// an n-d problem into the (outer, reduced, inner) form of the kernels in cuda/reduce.h,
// cuda/softmax.h and cuda/cumsum.h.
//
// Folding: size-1 dims are dropped and neighbouring dims of the same kind (both reduced or both
// kept) are merged when they are contiguous with each other in every operand. If what is left is
// [kept][reduced][kept] (each part optional), the kernels read the input in place with its own
// strides. The dims are tried in their own order and sorted by decreasing input stride (which
// folds, e.g., a transposed input reduced over a dim in the middle). Anything else (reduced dims
// that are not neighbours, kept dims that do not merge) is first copied: the reduce permutes the
// kept dims before the reduced ones, softmax and cumsum take a contiguous copy.
#include "tensor/reduce.h"

#include <algorithm>
#include <array>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "cuda/cumsum.h"
#include "cuda/reduce.h"
#include "cuda/softmax.h"
#include "tensor/dispatch.h"

namespace lyra {
namespace {

constexpr int kMaxOperands = 3;

// One dim of the iteration space: its size, the stride of each operand, reduced or kept.
struct Axis {
  int64_t size;
  std::array<int64_t, kMaxOperands> strides;
  bool reduced;
};

// The (outer, reduced, inner) form: strides[k] = {outer, reduced, inner} strides of operand k.
struct Folded {
  int64_t outer = 1;
  int64_t reduced = 1;
  int64_t inner = 1;
  std::array<std::array<int64_t, 3>, kMaxOperands> strides = {};
};

std::optional<Folded> FoldInOrder(const std::vector<Axis>& axes, int num_operands) {
  std::vector<Axis> merged;
  for (const Axis& a : axes) {
    if (a.size == 1) continue;
    if (!merged.empty()) {
      Axis& prev = merged.back();
      bool contiguous = prev.reduced == a.reduced;
      for (int k = 0; k < num_operands; ++k) {
        contiguous = contiguous && prev.strides[k] == a.strides[k] * a.size;
      }
      if (contiguous) {
        prev.size *= a.size;
        prev.strides = a.strides;
        continue;
      }
    }
    merged.push_back(a);
  }
  Folded f;
  bool used[3] = {false, false, false};
  bool seen_reduced = false;
  for (const Axis& a : merged) {
    const int slot = a.reduced ? 1 : (seen_reduced ? 2 : 0);
    if (used[slot]) return std::nullopt;
    used[slot] = true;
    seen_reduced = seen_reduced || a.reduced;
    (slot == 0 ? f.outer : slot == 1 ? f.reduced : f.inner) = a.size;
    for (int k = 0; k < num_operands; ++k) f.strides[k][slot] = a.strides[k];
  }
  return f;
}

enum class AxisOrder { kOwnFirst, kSortedFirst };

// Tries the dims in their own order and sorted by decreasing stride of operand 0, in the order
// asked for. Sorting puts the input's smallest stride innermost, which lets a reduction read a
// transposed input coalesced (its output is small); softmax and cumsum write an output as large
// as the input, contiguous in the dims' own order, so they try that order first.
std::optional<Folded> Fold(std::vector<Axis> axes, int num_operands, AxisOrder order) {
  std::vector<Axis> sorted = axes;
  std::stable_sort(sorted.begin(), sorted.end(), [](const Axis& a, const Axis& b) {
    return a.strides[0] > b.strides[0];
  });
  const std::vector<Axis>& first = order == AxisOrder::kOwnFirst ? axes : sorted;
  const std::vector<Axis>& second = order == AxisOrder::kOwnFirst ? sorted : axes;
  if (std::optional<Folded> f = FoldInOrder(first, num_operands)) return f;
  return FoldInOrder(second, num_operands);
}

// Maps `dim` to [0, rank) naming the op and tensor; a 0-d tensor accepts 0 and -1 (returns 0).
absl::StatusOr<int> CheckedDim(int dim, const Tensor& x, absl::string_view op) {
  const int rank = std::max(x.dim(), 1);
  if (dim < -rank || dim >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": dimension ", dim,
                                                   " is out of range for ", x.Describe()));
  }
  return dim < 0 ? dim + rank : dim;
}

// Which dims of x are reduced: all of them for empty `dims`.
absl::StatusOr<std::vector<bool>> ReducedMask(const Tensor& x, const std::vector<int>& dims,
                                              absl::string_view op) {
  std::vector<bool> mask(x.dim(), dims.empty());
  std::vector<bool> seen(std::max(x.dim(), 1), false);
  for (int dim : dims) {
    LYRA_ASSIGN_OR_RETURN(int d, CheckedDim(dim, x, op));
    if (seen[d]) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": dimension ", dim, " repeated in [",
                                                     absl::StrJoin(dims, ", "), "] for ",
                                                     x.Describe()));
    }
    seen[d] = true;
    if (d < x.dim()) mask[d] = true;
  }
  return mask;
}

Shape ReducedShape(const Shape& shape, const std::vector<bool>& mask, bool keepdim) {
  Shape out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (!mask[d]) {
      out.push_back(shape[d]);
    } else if (keepdim) {
      out.push_back(1);
    }
  }
  return out;
}

// Axes of x (operand 0) and of a contiguous output over x's kept dims (operand 1, stride 0 on
// reduced dims).
std::vector<Axis> ReduceAxes(const Tensor& x, const std::vector<bool>& mask) {
  std::vector<Axis> axes(x.dim());
  int64_t y_stride = 1;
  for (int d = x.dim() - 1; d >= 0; --d) {
    axes[d].size = x.size(d);
    axes[d].reduced = mask[d];
    axes[d].strides = {x.stride(d), mask[d] ? 0 : y_stride, 0};
    if (!mask[d]) y_stride *= x.size(d);
  }
  return axes;
}

struct ReduceOutputs {
  Tensor values;
  Tensor indices;  // kArgmax only
};

absl::StatusOr<ReduceOutputs> RunReduce(cuda::ReduceOp op, const Tensor& x,
                                        const std::vector<bool>& mask, bool keepdim) {
  const absl::string_view name = cuda::ReduceOpName(op);
  if (op == cuda::ReduceOp::kMean && !IsFloating(x.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": needs a floating-point tensor, got ", x.Describe(), " (cast it with To())"));
  }
  const Shape out_shape = ReducedShape(x.shape(), mask, keepdim);
  ReduceOutputs out;
  LYRA_ASSIGN_OR_RETURN(
      out.values, Tensor::Empty(out_shape, cuda::ReduceOutputDType(op, x.dtype()), x.device()));
  if (op == cuda::ReduceOp::kArgmax) {
    LYRA_ASSIGN_OR_RETURN(out.indices, Tensor::Empty(out_shape, DType::kI64, x.device()));
  }
  if (x.numel() == 0) {
    if (out.values.numel() == 0) return out;
    switch (op) {
      case cuda::ReduceOp::kSum:
        LYRA_RETURN_IF_ERROR(out.values.Fill(0));
        return out;
      case cuda::ReduceOp::kMean:
        LYRA_RETURN_IF_ERROR(out.values.Fill(std::numeric_limits<double>::quiet_NaN()));
        return out;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            name, ": cannot reduce over zero elements of ", x.Describe(), " (no identity)"));
    }
  }

  Tensor src = x;
  std::vector<bool> src_mask = mask;
  std::optional<Folded> folded = Fold(ReduceAxes(src, src_mask), 2, AxisOrder::kSortedFirst);
  if (!folded) {
    std::vector<int> perm;
    for (int d = 0; d < x.dim(); ++d) {
      if (!mask[d]) perm.push_back(d);
    }
    for (int d = 0; d < x.dim(); ++d) {
      if (mask[d]) perm.push_back(d);
    }
    LYRA_ASSIGN_OR_RETURN(Tensor permuted, x.Permute(perm));
    LYRA_ASSIGN_OR_RETURN(src, permuted.Contiguous());
    for (int d = 0; d < x.dim(); ++d) src_mask[d] = mask[perm[d]];
    folded = Fold(ReduceAxes(src, src_mask), 2, AxisOrder::kSortedFirst);
    LYRA_CHECK(folded.has_value()) << "a contiguous [kept, reduced] tensor must fold";
  }

  cuda::ReduceParams p;
  p.op = op;
  p.outer = folded->outer;
  p.reduced = folded->reduced;
  p.inner = folded->inner;
  p.x = src.data();
  p.x_dtype = src.dtype();
  p.x_stride_outer = folded->strides[0][0];
  p.x_stride_reduced = folded->strides[0][1];
  p.x_stride_inner = folded->strides[0][2];
  p.y = out.values.data();
  p.y_dtype = out.values.dtype();
  p.y_stride_outer = folded->strides[1][0];
  p.y_stride_inner = folded->strides[1][2];
  if (op == cuda::ReduceOp::kArgmax) p.indices = out.indices.data<int64_t>();
  LYRA_RETURN_IF_ERROR(
      internal::RunKernel(x.device(), p, cuda::ReduceReference, cuda::ReduceCuda));
  return out;
}

absl::StatusOr<Tensor> ReduceDims(cuda::ReduceOp op, const Tensor& x, const std::vector<int>& dims,
                                  bool keepdim) {
  const absl::string_view name = cuda::ReduceOpName(op);
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(name, {&x}));
  LYRA_ASSIGN_OR_RETURN(std::vector<bool> mask, ReducedMask(x, dims, name));
  LYRA_ASSIGN_OR_RETURN(ReduceOutputs out, RunReduce(op, x, mask, keepdim));
  return out.values;
}

absl::StatusOr<ReduceOutputs> ArgmaxAlong(const Tensor& x, int dim, bool keepdim,
                                          absl::string_view name) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(name, {&x}));
  LYRA_ASSIGN_OR_RETURN(int d, CheckedDim(dim, x, name));
  std::vector<bool> mask(x.dim(), false);
  if (d < x.dim()) mask[d] = true;
  return RunReduce(cuda::ReduceOp::kArgmax, x, mask, keepdim);
}

// Softmax and cumsum fold (outer, length, inner) around one dim, over `operands` (all of x's
// shape). Non-folding inputs are replaced by contiguous copies, which always fold.
absl::StatusOr<Folded> FoldAroundDim(std::vector<Tensor>& operands, int dim) {
  auto axes_of = [&]() {
    const Tensor& x = operands[0];
    std::vector<Axis> axes(x.dim());
    for (int d = 0; d < x.dim(); ++d) {
      axes[d].size = x.size(d);
      axes[d].reduced = d == dim;
      axes[d].strides = {0, 0, 0};
      for (size_t k = 0; k < operands.size(); ++k) axes[d].strides[k] = operands[k].stride(d);
    }
    return axes;
  };
  const int n = static_cast<int>(operands.size());
  if (std::optional<Folded> f = Fold(axes_of(), n, AxisOrder::kOwnFirst)) return *f;
  for (Tensor& t : operands) {
    LYRA_ASSIGN_OR_RETURN(t, t.Contiguous());
  }
  std::optional<Folded> f = Fold(axes_of(), n, AxisOrder::kOwnFirst);
  LYRA_CHECK(f.has_value()) << "contiguous operands of one shape must fold";
  return *f;
}

cuda::SoftmaxOperandStrides StridesOf(const Folded& f, int k) {
  return cuda::SoftmaxOperandStrides{f.strides[k][0], f.strides[k][1], f.strides[k][2]};
}

absl::StatusOr<Tensor> RunSoftmax(cuda::SoftmaxOp op, const Tensor& in, const Tensor* grad,
                                  int dim) {
  const absl::string_view name = cuda::SoftmaxOpName(op);
  if (grad == nullptr) {
    LYRA_RETURN_IF_ERROR(internal::CheckDefined(name, {&in}));
  } else {
    LYRA_RETURN_IF_ERROR(internal::CommonDevice(name, {&in, grad}).status());
    if (grad->shape() != in.shape() || grad->dtype() != in.dtype()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": gradient ", grad->Describe(),
                                                     " does not match output ", in.Describe()));
    }
  }
  if (!IsFloating(in.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": needs a floating-point tensor, got ", in.Describe()));
  }
  LYRA_ASSIGN_OR_RETURN(int d, CheckedDim(dim, in, name));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(in.shape(), in.dtype(), in.device()));
  if (in.numel() == 0) return out;
  std::vector<Tensor> operands = {in, out};
  if (grad != nullptr) operands.push_back(*grad);
  LYRA_ASSIGN_OR_RETURN(Folded f, FoldAroundDim(operands, d));
  LYRA_CHECK(operands[1].data() == out.data()) << "the fresh output is contiguous";

  cuda::SoftmaxParams p;
  p.op = op;
  p.dtype = in.dtype();
  p.outer = f.outer;
  p.length = f.reduced;
  p.inner = f.inner;
  p.in = operands[0].data();
  p.in_strides = StridesOf(f, 0);
  p.out = out.data();
  p.out_strides = StridesOf(f, 1);
  if (grad != nullptr) {
    p.grad = operands[2].data();
    p.grad_strides = StridesOf(f, 2);
  }
  LYRA_RETURN_IF_ERROR(
      internal::RunKernel(in.device(), p, cuda::SoftmaxReference, cuda::SoftmaxCuda));
  return out;
}

}  // namespace

absl::StatusOr<Tensor> Sum(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return ReduceDims(cuda::ReduceOp::kSum, x, dims, keepdim);
}

absl::StatusOr<Tensor> Mean(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return ReduceDims(cuda::ReduceOp::kMean, x, dims, keepdim);
}

absl::StatusOr<Tensor> Max(const Tensor& x, const std::vector<int>& dims, bool keepdim) {
  return ReduceDims(cuda::ReduceOp::kMax, x, dims, keepdim);
}

absl::StatusOr<MaxResult> MaxAlong(const Tensor& x, int dim, bool keepdim) {
  LYRA_ASSIGN_OR_RETURN(ReduceOutputs out, ArgmaxAlong(x, dim, keepdim, "MaxAlong"));
  return MaxResult{std::move(out.values), std::move(out.indices)};
}

absl::StatusOr<Tensor> Argmax(const Tensor& x, int dim, bool keepdim) {
  LYRA_ASSIGN_OR_RETURN(ReduceOutputs out, ArgmaxAlong(x, dim, keepdim, "Argmax"));
  return out.indices;
}

absl::StatusOr<Tensor> SumToShape(const Tensor& x, const Shape& shape) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("SumToShape", {&x}));
  if (shape == x.shape()) return x;
  const int rank = static_cast<int>(shape.size());
  absl::StatusOr<Shape> broadcast = BroadcastShapes(shape, x.shape(), "SumToShape");
  if (rank > x.dim() || !broadcast.ok() || *broadcast != x.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("SumToShape: ", ShapeToString(shape),
                                                   " does not broadcast to ", x.Describe()));
  }
  const int lead = x.dim() - rank;
  std::vector<int> dims;
  for (int d = 0; d < x.dim(); ++d) {
    if (d < lead || (shape[d - lead] == 1 && x.size(d) != 1)) dims.push_back(d);
  }
  // dims is not empty: equal ranks with no size-1 dim to sum would mean equal shapes.
  LYRA_ASSIGN_OR_RETURN(Tensor summed, Sum(x, dims, /*keepdim=*/true));
  return summed.View(shape);
}

absl::StatusOr<Tensor> Softmax(const Tensor& x, int dim) {
  return RunSoftmax(cuda::SoftmaxOp::kSoftmax, x, nullptr, dim);
}

absl::StatusOr<Tensor> LogSoftmax(const Tensor& x, int dim) {
  return RunSoftmax(cuda::SoftmaxOp::kLogSoftmax, x, nullptr, dim);
}

absl::StatusOr<Tensor> SoftmaxBackward(const Tensor& y, const Tensor& grad, int dim) {
  return RunSoftmax(cuda::SoftmaxOp::kSoftmaxBackward, y, &grad, dim);
}

absl::StatusOr<Tensor> LogSoftmaxBackward(const Tensor& y, const Tensor& grad, int dim) {
  return RunSoftmax(cuda::SoftmaxOp::kLogSoftmaxBackward, y, &grad, dim);
}

absl::StatusOr<Tensor> Cumsum(const Tensor& x, int dim, bool reverse) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Cumsum", {&x}));
  LYRA_ASSIGN_OR_RETURN(int d, CheckedDim(dim, x, "Cumsum"));
  LYRA_ASSIGN_OR_RETURN(
      Tensor out, Tensor::Empty(x.shape(), cuda::CumsumOutputDType(x.dtype()), x.device()));
  if (x.numel() == 0) return out;
  std::vector<Tensor> operands = {x, out};
  LYRA_ASSIGN_OR_RETURN(Folded f, FoldAroundDim(operands, d));

  cuda::CumsumParams p;
  p.outer = f.outer;
  p.length = f.reduced;
  p.inner = f.inner;
  p.reverse = reverse;
  p.x = operands[0].data();
  p.x_dtype = x.dtype();
  p.x_stride_outer = f.strides[0][0];
  p.x_stride_length = f.strides[0][1];
  p.x_stride_inner = f.strides[0][2];
  p.y = out.data();
  p.y_dtype = out.dtype();
  p.y_stride_outer = f.strides[1][0];
  p.y_stride_length = f.strides[1][1];
  p.y_stride_inner = f.strides[1][2];
  LYRA_RETURN_IF_ERROR(
      internal::RunKernel(x.device(), p, cuda::CumsumReference, cuda::CumsumCuda));
  return out;
}

}  // namespace lyra
