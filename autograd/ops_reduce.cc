// Reductions, softmax and cumsum with their gradients. A reduction's gradient is the output
// gradient broadcast back over the reduced dims (scaled for Mean, masked for Max).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "autograd/ops_internal.h"
#include "base/status_macros.h"
#include "tensor/elementwise.h"
#include "tensor/reduce.h"

namespace lyra::autograd {
namespace {

using internal::RecordUnary;

// The reduced dims in [0, rank), sorted; every dim when `dims` is empty.
absl::StatusOr<std::vector<int>> NormalizeDims(const std::vector<int>& dims, int rank,
                                               absl::string_view op) {
  std::vector<int> out;
  if (dims.empty()) {
    for (int d = 0; d < rank; ++d) out.push_back(d);
    return out;
  }
  for (int d : dims) {
    LYRA_ASSIGN_OR_RETURN(int n, NormalizeDim(d, rank, op));
    out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Broadcasts a reduction's output (or its gradient) back to the input's shape.
absl::StatusOr<Tensor> ExpandReduced(const Tensor& g, const Shape& input_shape,
                                     const std::vector<int>& dims, bool keepdim) {
  Tensor t = g;
  if (!keepdim) {
    for (int d : dims) {
      LYRA_ASSIGN_OR_RETURN(t, t.Unsqueeze(d));
    }
  }
  return t.Expand(input_shape);
}

int64_t ReducedCount(const Shape& shape, const std::vector<int>& dims) {
  int64_t n = 1;
  for (int d : dims) n *= shape[d];
  return n;
}

}  // namespace

absl::StatusOr<Variable> Sum(const Variable& x, const std::vector<int>& dims, bool keepdim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Sum", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Sum(x.data(), dims, keepdim));
  LYRA_ASSIGN_OR_RETURN(std::vector<int> reduced, NormalizeDims(dims, x.dim(), "Sum"));
  const Shape in = x.shape();
  return RecordUnary("Sum", x, y, [=](const Tensor& g) {
    return ExpandReduced(g, in, reduced, keepdim);
  });
}

absl::StatusOr<Variable> Mean(const Variable& x, const std::vector<int>& dims, bool keepdim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Mean", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Mean(x.data(), dims, keepdim));
  LYRA_ASSIGN_OR_RETURN(std::vector<int> reduced, NormalizeDims(dims, x.dim(), "Mean"));
  const Shape in = x.shape();
  const double scale = 1.0 / static_cast<double>(std::max<int64_t>(1, ReducedCount(in, reduced)));
  return RecordUnary("Mean", x, y, [=](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor scaled, lyra::MulScalar(g, scale));
    return ExpandReduced(scaled, in, reduced, keepdim);
  });
}

absl::StatusOr<Variable> Max(const Variable& x, const std::vector<int>& dims, bool keepdim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Max", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Max(x.data(), dims, keepdim));
  LYRA_ASSIGN_OR_RETURN(std::vector<int> reduced, NormalizeDims(dims, x.dim(), "Max"));
  const Shape in = x.shape();
  Tensor saved_x = x.data();
  // d max / dx = [x == max] / (number of elements equal to the max)
  return RecordUnary("Max", x, y, [=](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor y_full, ExpandReduced(y, in, reduced, keepdim));
    LYRA_ASSIGN_OR_RETURN(Tensor hit, lyra::Eq(saved_x, y_full));
    LYRA_ASSIGN_OR_RETURN(hit, hit.To(g.dtype()));
    LYRA_ASSIGN_OR_RETURN(Tensor count, lyra::Sum(hit, reduced, /*keepdim=*/true));
    LYRA_ASSIGN_OR_RETURN(Tensor g_full, ExpandReduced(g, in, reduced, keepdim));
    LYRA_ASSIGN_OR_RETURN(Tensor share, lyra::Div(hit, count));
    return lyra::Mul(g_full, share);
  });
}

absl::StatusOr<Variable> Softmax(const Variable& x, int dim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Softmax", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Softmax(x.data(), dim));
  return RecordUnary("Softmax", x, y,
                     [y, dim](const Tensor& g) { return lyra::SoftmaxBackward(y, g, dim); });
}

absl::StatusOr<Variable> LogSoftmax(const Variable& x, int dim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("LogSoftmax", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::LogSoftmax(x.data(), dim));
  return RecordUnary("LogSoftmax", x, y,
                     [y, dim](const Tensor& g) { return lyra::LogSoftmaxBackward(y, g, dim); });
}

absl::StatusOr<Variable> Cumsum(const Variable& x, int dim) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Cumsum", {&x}));
  if (x.requires_grad() && !IsFloating(x.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("Cumsum: ", x.Describe()));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Cumsum(x.data(), dim));
  // y_i = sum_{j <= i} x_j, so dx_j = sum_{i >= j} g_i: a reversed cumsum.
  return RecordUnary("Cumsum", x, y,
                     [dim](const Tensor& g) { return lyra::Cumsum(g, dim, /*reverse=*/true); });
}

}  // namespace lyra::autograd
