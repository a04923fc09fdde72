// Views and shape ops. Forward results are views of the input (no copy) where the tensor op
// gives one; gradients are views of the output gradient, or the gradient written into a zero
// tensor of the input's shape for ops that pick a part of the input (Narrow, Slice, Select).
#include <numeric>

#include "autograd/ops.h"
#include "autograd/ops_internal.h"
#include "base/status_macros.h"
#include "tensor/index.h"
#include "tensor/reduce.h"

namespace lyra::autograd {
namespace {

using internal::RecordUnary;

// A zero tensor shaped like the input, with `g` copied into the part `pick` selects of it.
absl::StatusOr<Tensor> ScatterIntoZeros(
    const Tensor& g, const Shape& shape,
    const std::function<absl::StatusOr<Tensor>(const Tensor&)>& pick) {
  LYRA_ASSIGN_OR_RETURN(Tensor dx, Tensor::Zeros(shape, g.dtype(), g.device()));
  LYRA_ASSIGN_OR_RETURN(Tensor part, pick(dx));
  LYRA_RETURN_IF_ERROR(part.CopyFrom(g));
  return dx;
}

}  // namespace

absl::StatusOr<Variable> Reshape(const Variable& x, const Shape& shape) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Reshape", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Reshape(shape));
  const Shape in = x.shape();
  return RecordUnary("Reshape", x, y, [in](const Tensor& g) { return g.Reshape(in); });
}

absl::StatusOr<Variable> View(const Variable& x, const Shape& shape) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("View", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().View(shape));
  const Shape in = x.shape();
  return RecordUnary("View", x, y, [in](const Tensor& g) { return g.Reshape(in); });
}

absl::StatusOr<Variable> Transpose(const Variable& x, int d0, int d1) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Transpose", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Transpose(d0, d1));
  return RecordUnary("Transpose", x, y,
                     [d0, d1](const Tensor& g) { return g.Transpose(d0, d1); });
}

absl::StatusOr<Variable> Permute(const Variable& x, const std::vector<int>& dims) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Permute", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Permute(dims));
  // y dim i is x dim dims[i], so x dim dims[i] is y dim i.
  std::vector<int> inverse(dims.size());
  for (int i = 0; i < static_cast<int>(dims.size()); ++i) {
    const int d = dims[i] < 0 ? dims[i] + x.dim() : dims[i];
    inverse[d] = i;
  }
  return RecordUnary("Permute", x, y, [inverse](const Tensor& g) { return g.Permute(inverse); });
}

absl::StatusOr<Variable> Narrow(const Variable& x, int dim, int64_t start, int64_t length) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Narrow", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Narrow(dim, start, length));
  const Shape in = x.shape();
  return RecordUnary("Narrow", x, y, [=](const Tensor& g) {
    return ScatterIntoZeros(g, in, [=](const Tensor& dx) { return dx.Narrow(dim, start, length); });
  });
}

absl::StatusOr<Variable> Slice(const Variable& x, int dim, int64_t start, int64_t end,
                               int64_t step) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Slice", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Slice(dim, start, end, step));
  const Shape in = x.shape();
  return RecordUnary("Slice", x, y, [=](const Tensor& g) {
    return ScatterIntoZeros(g, in,
                            [=](const Tensor& dx) { return dx.Slice(dim, start, end, step); });
  });
}

absl::StatusOr<Variable> Select(const Variable& x, int dim, int64_t index) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Select", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Select(dim, index));
  const Shape in = x.shape();
  return RecordUnary("Select", x, y, [=](const Tensor& g) {
    return ScatterIntoZeros(g, in, [=](const Tensor& dx) { return dx.Select(dim, index); });
  });
}

absl::StatusOr<Variable> Expand(const Variable& x, const Shape& shape) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Expand", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Expand(shape));
  const Shape in = x.shape();
  return RecordUnary("Expand", x, y,
                     [in](const Tensor& g) { return internal::ReduceToShape(g, in); });
}

absl::StatusOr<Variable> Squeeze(const Variable& x, int dim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Squeeze", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Squeeze(dim));
  const Shape in = x.shape();
  return RecordUnary("Squeeze", x, y, [in](const Tensor& g) { return g.Reshape(in); });
}

absl::StatusOr<Variable> Unsqueeze(const Variable& x, int dim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Unsqueeze", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Unsqueeze(dim));
  const Shape in = x.shape();
  return RecordUnary("Unsqueeze", x, y, [in](const Tensor& g) { return g.Reshape(in); });
}

absl::StatusOr<Variable> Contiguous(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Contiguous", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().Contiguous());
  return RecordUnary("Contiguous", x, y,
                     [](const Tensor& g) -> absl::StatusOr<Tensor> { return g; });
}

absl::StatusOr<Variable> Concat(const std::vector<Variable>& xs, int dim) {
  std::vector<Tensor> data;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!xs[i].defined()) {
      return absl::InvalidArgumentError(absl::StrCat("Concat: input ", i, " is undefined"));
    }
    data.push_back(xs[i].data());
  }
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Concat(data, dim));
  LYRA_ASSIGN_OR_RETURN(int d, NormalizeDim(dim, y.dim(), "Concat"));
  for (const Tensor& t : data) sizes.push_back(t.size(d));
  return RecordUnaryResult(
      "Concat", xs, y,
      [sizes, d](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        return lyra::Split(g[0], sizes, d);
      });
}

absl::StatusOr<std::vector<Variable>> Split(const Variable& x, const std::vector<int64_t>& sizes,
                                            int dim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Split", {&x}));
  LYRA_ASSIGN_OR_RETURN(std::vector<Tensor> parts, lyra::Split(x.data(), sizes, dim));
  LYRA_ASSIGN_OR_RETURN(int d, NormalizeDim(dim, x.dim(), "Split"));
  return RecordOp("Split", {x}, std::move(parts),
                  [d](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
                    LYRA_ASSIGN_OR_RETURN(Tensor dx, lyra::Concat(g, d));
                    return std::vector<Tensor>{std::move(dx)};
                  });
}

}  // namespace lyra::autograd
