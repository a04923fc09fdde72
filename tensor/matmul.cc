#include "tensor/matmul.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/blas.h"
#include "cuda/matmul.h"
#include "tensor/dispatch.h"

namespace lyra {
namespace {

// [..., m, n] for a @ b, or InvalidArgument naming `op` and both tensors.
absl::StatusOr<Shape> MatmulShape(absl::string_view op, const Tensor& a, const Tensor& b) {
  if (a.dim() < 2 || b.dim() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": expected tensors of rank >= 2, got a ",
                                                   a.Describe(), " and b ", b.Describe()));
  }
  if (a.size(-1) != b.size(-2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": inner dimensions differ: a ", a.Describe(), " has ", a.size(-1),
        " columns but b ", b.Describe(), " has ", b.size(-2), " rows"));
  }
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  const Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  absl::StatusOr<Shape> batch = BroadcastShapes(a_batch, b_batch, op);
  if (!batch.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": batch dimensions of a ", a.Describe(),
                                                   " and b ", b.Describe(),
                                                   " do not broadcast"));
  }
  Shape shape = *std::move(batch);
  shape.push_back(a.size(-2));
  shape.push_back(b.size(-1));
  return shape;
}

// `t` as an operand over the batch shape (trailing dimensions aligned, stride 0 where `t` is
// broadcast), with its last two dimensions as the matrix.
cuda::MatmulOperand Operand(const Tensor& t, const Shape& batch) {
  cuda::MatmulOperand op;
  op.data = t.data();
  const int nb = static_cast<int>(batch.size());
  const int lead = nb - (t.dim() - 2);
  for (int d = 0; d < nb; ++d) {
    const bool broadcast = d < lead || t.size(d - lead) == 1;
    op.batch_strides[d] = broadcast ? 0 : t.stride(d - lead);
  }
  op.row_stride = t.stride(-2);
  op.col_stride = t.stride(-1);
  return op;
}

// True if x and y share storage and their element ranges intersect (conservative: two
// interleaved views that touch disjoint elements also count).
bool MayOverlap(const Tensor& x, const Tensor& y) {
  if (x.storage() != y.storage() || x.numel() == 0 || y.numel() == 0) return false;
  const auto span = [](const Tensor& t) {
    int64_t last = 0;
    for (int d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
    const char* begin = static_cast<const char*>(t.data());
    return std::make_pair(begin, begin + (last + 1) * static_cast<int64_t>(t.element_size()));
  };
  const auto [x_begin, x_end] = span(x);
  const auto [y_begin, y_end] = span(y);
  return x_begin < y_end && y_begin < x_end;
}

bool HasBlasLayout(const Tensor& t) {
  return cuda::BlasMatrixLayout(t.size(-2), t.size(-1), t.stride(-2), t.stride(-1)).order !=
         cuda::BlasOrder::kNone;
}

// `bias` is null or a defined tensor.
absl::Status MatmulIntoImpl(absl::string_view op, const Tensor& a, const Tensor& b,
                            const Tensor& out, double alpha, double beta, const Tensor* bias) {
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(op, {&a, &b, &out}));
  if (a.dtype() != b.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": dtypes differ (a ", a.Describe(),
                                                   ", b ", b.Describe(), "); cast one with To()"));
  }
  if (!IsFloating(a.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": expected a floating-point dtype, got a ", a.Describe(), " and b ", b.Describe()));
  }
  if (out.dtype() != a.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": out ", out.Describe(),
                                                   " does not have the inputs' dtype ",
                                                   DTypeName(a.dtype())));
  }
  LYRA_ASSIGN_OR_RETURN(Shape shape, MatmulShape(op, a, b));
  if (out.shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": out ", out.Describe(), " but a ",
                                                   a.Describe(), " @ b ", b.Describe(),
                                                   " has shape ", ShapeToString(shape)));
  }
  for (int d = 0; d < out.dim(); ++d) {
    if (out.size(d) > 1 && out.stride(d) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": out ", out.Describe(), " is broadcast (stride 0) along dimension ", d));
    }
  }
  if (MayOverlap(out, a) || MayOverlap(out, b)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": out ", out.Describe(),
                                                   " overlaps an input (a ", a.Describe(),
                                                   ", b ", b.Describe(), ")"));
  }
  if (bias != nullptr) {
    if (bias->device() != device) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": bias ", bias->Describe(),
                                                     " is not on the inputs' device ",
                                                     device.ToString()));
    }
    if (bias->dtype() != a.dtype()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": bias ", bias->Describe(),
                                                     " does not have the inputs' dtype ",
                                                     DTypeName(a.dtype())));
    }
    if (bias->dim() != 1 || bias->size(0) != shape.back()) {
      return absl::InvalidArgumentError(absl::StrCat(
          op, ": bias ", bias->Describe(), " must be 1-D of size n = ", shape.back(),
          " (the columns of a ", a.Describe(), " @ b ", b.Describe(), ")"));
    }
    if (MayOverlap(out, *bias)) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": out ", out.Describe(),
                                                     " overlaps the bias ", bias->Describe()));
    }
  }
  if (out.numel() == 0) return absl::OkStatus();

  Tensor a_in = a, b_in = b;
  Tensor bias_in = bias != nullptr ? *bias : Tensor();
  if (device.is_cuda()) {
    // cuBLAS reads row- and column-major matrices in place; anything else is copied.
    if (!HasBlasLayout(a)) {
      LYRA_ASSIGN_OR_RETURN(a_in, a.Contiguous());
    }
    if (!HasBlasLayout(b)) {
      LYRA_ASSIGN_OR_RETURN(b_in, b.Contiguous());
    }
    // cuBLASLt's bias epilogue reads a packed vector.
    if (bias != nullptr && bias->size(0) > 1 && bias->stride(0) != 1) {
      LYRA_ASSIGN_OR_RETURN(bias_in, bias->Contiguous());
    }
    if (!HasBlasLayout(out)) {
      LYRA_ASSIGN_OR_RETURN(Tensor staged, Tensor::Empty(shape, out.dtype(), device));
      if (beta != 0) LYRA_RETURN_IF_ERROR(staged.CopyFrom(out));
      LYRA_RETURN_IF_ERROR(MatmulIntoImpl(op, a_in, b_in, staged, alpha, beta,
                                          bias != nullptr ? &bias_in : nullptr));
      return out.CopyFrom(staged);
    }
  }

  const Shape batch(shape.begin(), shape.end() - 2);
  cuda::MatmulParams p;
  p.dtype = a.dtype();
  p.batch = internal::ToIterShape(batch);
  p.m = a.size(-2);
  p.k = a.size(-1);
  p.n = b.size(-1);
  p.a = Operand(a_in, batch);
  p.b = Operand(b_in, batch);
  p.out = Operand(out, batch);
  p.alpha = alpha;
  p.beta = beta;
  p.allow_tf32 = cuda::AllowTf32();
  if (bias != nullptr) {
    p.bias = bias_in.data();
    p.bias_stride = bias_in.stride(0);
  }
  return internal::RunKernel(device, p, cuda::MatmulReference, cuda::MatmulCuda);
}

}  // namespace

absl::StatusOr<Tensor> Matmul(const Tensor& a, const Tensor& b) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Matmul", {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Shape shape, MatmulShape("Matmul", a, b));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(shape, a.dtype(), a.device()));
  LYRA_RETURN_IF_ERROR(MatmulIntoImpl("Matmul", a, b, out, 1, 0, nullptr));
  return out;
}

absl::Status MatmulInto(const Tensor& a, const Tensor& b, const Tensor& out, double alpha,
                        double beta) {
  return MatmulIntoImpl("MatmulInto", a, b, out, alpha, beta, nullptr);
}

absl::StatusOr<Tensor> MatmulBias(const Tensor& a, const Tensor& b, const Tensor& bias) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("MatmulBias", {&a, &b, &bias}));
  LYRA_ASSIGN_OR_RETURN(Shape shape, MatmulShape("MatmulBias", a, b));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(shape, a.dtype(), a.device()));
  LYRA_RETURN_IF_ERROR(MatmulIntoImpl("MatmulBias", a, b, out, 1, 0, &bias));
  return out;
}

absl::Status MatmulBiasInto(const Tensor& a, const Tensor& b, const Tensor& bias,
                            const Tensor& out, double alpha, double beta) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("MatmulBiasInto", {&bias}));
  return MatmulIntoImpl("MatmulBiasInto", a, b, out, alpha, beta, &bias);
}

void SetAllowTf32(bool allow) { cuda::SetAllowTf32(allow); }
bool AllowTf32() { return cuda::AllowTf32(); }

}  // namespace lyra
