#include "mamba/tensor_checks.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "tensor/dispatch.h"
#include "tensor/shape.h"

namespace lyra::mamba {

DType ScanParamDType(DType act) { return act == DType::kF64 ? DType::kF64 : DType::kF32; }

absl::Status ExpectShapeAndDType(absl::string_view op, absl::string_view name, const Tensor& t,
                                 const Shape& shape, DType dtype) {
  if (t.shape() != shape || t.dtype() != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " must be ", DTypeName(dtype),
                                                   ShapeToString(shape), ", got ", t.Describe()));
  }
  return absl::OkStatus();
}

absl::Status CheckSameDevice(absl::string_view op, absl::string_view ref_name, const Tensor& ref,
                             std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->defined() && t->device() != ref.device()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", t->Describe(), " is not on ",
                                                     ref_name, "'s device (", ref.Describe(),
                                                     ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckGroupsDivide(absl::string_view op, const Tensor& B, int64_t groups,
                               absl::string_view dim_name, int64_t dim) {
  if (groups < 1 || dim % groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": the group count G = ", groups, " of B ",
                                                   B.Describe(), " must divide ", dim_name,
                                                   " = ", dim));
  }
  return absl::OkStatus();
}

absl::Status CheckOutputGrad(absl::string_view op, const Tensor& dy, absl::string_view ref_name,
                             const Tensor& ref) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(op, {&dy}));
  if (dy.shape() != ref.shape() || dy.dtype() != ref.dtype() || dy.device() != ref.device()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": dy ", dy.Describe(), " must match ",
                                                   ref_name, " ", ref.Describe()));
  }
  return absl::OkStatus();
}

absl::Status CheckSavedChunkStates(absl::string_view op, const Tensor& chunk_states,
                                   const Shape& shape, DType dtype, absl::string_view ref_name,
                                   const Tensor& ref) {
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "chunk_states", chunk_states, shape, dtype));
  if (!chunk_states.is_contiguous() || chunk_states.device() != ref.device()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": chunk_states ", chunk_states.Describe(),
                                                   " must be contiguous on ", ref_name,
                                                   "'s device"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> UnitLastStrideOnCuda(const Tensor& t) {
  if (!t.defined() || !t.device().is_cuda() || t.stride(-1) == 1 || t.size(-1) <= 1) return t;
  return t.Contiguous();
}

absl::StatusOr<Tensor> ContiguousOnCuda(const Tensor& t) {
  if (!t.defined() || !t.device().is_cuda() || t.is_contiguous()) return t;
  return t.Contiguous();
}

absl::Status CarryStateThroughEmptyScan(const Tensor& from, int64_t length, const Tensor& to) {
  if (!to.defined() || to.numel() == 0) return absl::OkStatus();
  return from.defined() && length == 0 ? to.CopyFrom(from) : to.Fill(0);
}

absl::Status FillZeros(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    if (t->defined() && t->numel() > 0) LYRA_RETURN_IF_ERROR(t->Fill(0));
  }
  return absl::OkStatus();
}

}  // namespace lyra::mamba
