// Argument checks and operand layouts shared by the scans of mamba/selective_scan.h (Mamba-1)
// and mamba/ssd.h (Mamba-2), and by the mixers that call them. Every check returns
// InvalidArgument naming the op, the tensor at fault (its name and Describe()) and what was
// expected, e.g. "SsdForward: A must be f32[4], got f16[4] on cpu".
#ifndef LYRA_MAMBA_TENSOR_CHECKS_H_
#define LYRA_MAMBA_TENSOR_CHECKS_H_

#include <cstdint>
#include <initializer_list>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/dtype.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

// The dtype of the scan parameters (A, D, the dt bias) and of the SSM states for activations of
// dtype `act`: f64 for an f64 model, else f32.
DType ScanParamDType(DType act);

// "<op>: <name> must be <dtype><shape>, got <t>" unless `t` has exactly that shape and dtype.
absl::Status ExpectShapeAndDType(absl::string_view op, absl::string_view name, const Tensor& t,
                                 const Shape& shape, DType dtype);

// "<op>: <t> is not on <ref_name>'s device (<ref>)" for the first defined tensor of `ts` that is
// not on `ref`'s device; undefined tensors (absent optional inputs) are skipped.
absl::Status CheckSameDevice(absl::string_view op, absl::string_view ref_name, const Tensor& ref,
                             std::initializer_list<const Tensor*> ts);

// "<op>: the group count G = <groups> of B <B> must divide <dim_name> = <dim>": B and C are
// shared by groups of channels (Mamba-1: D) or heads (Mamba-2: H).
absl::Status CheckGroupsDivide(absl::string_view op, const Tensor& B, int64_t groups,
                               absl::string_view dim_name, int64_t dim);

// A backward's dy: defined, with the shape, dtype and device of the forward's input `ref` (u or
// x), else "<op>: dy <dy> must match <ref_name> <ref>".
absl::Status CheckOutputGrad(absl::string_view op, const Tensor& dy, absl::string_view ref_name,
                             const Tensor& ref);

// The chunk-boundary states a forward saved for its backward: `shape` and `dtype`, contiguous,
// on `ref`'s device, else "<op>: chunk_states <t> must be contiguous on <ref_name>'s device".
absl::Status CheckSavedChunkStates(absl::string_view op, const Tensor& chunk_states,
                                   const Shape& shape, DType dtype, absl::string_view ref_name,
                                   const Tensor& ref);

// On CUDA the scan kernels read their activations with unit stride along the last dim (L for
// Mamba-1's [B, D, L], P or N for Mamba-2's [B, L, H, P] / [B, L, G, N]): a copy of `t` if it is
// strided there, else `t` itself. Undefined and CPU tensors pass through.
absl::StatusOr<Tensor> UnitLastStrideOnCuda(const Tensor& t);

// On CUDA the kernels read contiguous states: a contiguous copy of `t` if it is not, else `t`.
// Undefined and CPU tensors pass through.
absl::StatusOr<Tensor> ContiguousOnCuda(const Tensor& t);

// A scan with no element to scan (an empty output, or N == 0) writes its state output `to` (the
// final state forward, dinitial_state backward) without a kernel: a copy of `from` (the initial
// state, dfinal_state) when the length is 0 and `from` is defined, else zeros. Nothing to do
// when `to` is undefined or has no element.
absl::Status CarryStateThroughEmptyScan(const Tensor& from, int64_t length, const Tensor& to);

// Fills every defined tensor of `ts` that has an element with zeros: the gradients of an empty
// scan.
absl::Status FillZeros(std::initializer_list<const Tensor*> ts);

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_TENSOR_CHECKS_H_
