// The selective scan: argument checks, operand layouts and output allocation around the kernels
// of cuda/selective_scan.h, and the autograd node.
#include "mamba/selective_scan.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "cuda/selective_scan.h"
#include "mamba/scan_node.h"
#include "mamba/tensor_checks.h"
#include "tensor/dispatch.h"
#include "tensor/shape.h"

namespace lyra::mamba {
namespace {

using autograd::Variable;

// B or C as [B, G, N, L].
absl::StatusOr<Tensor> As4d(const Tensor& t) {
  if (t.dim() == 3) return t.Unsqueeze(1);
  return t;
}

// The operands after checking, in the layouts the kernels read.
struct Operands {
  Tensor u, delta, A, B, C, D, z, delta_bias, initial_state, seq_idx;
  int64_t batch = 0, dim = 0, length = 0, dstate = 0, groups = 1;
};

absl::StatusOr<Operands> Check(absl::string_view op, const SelectiveScanInputs& in) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(op, {&in.u, &in.delta, &in.A, &in.B, &in.C}));
  if (in.u.dim() != 3 || !IsFloating(in.u.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": u must be a floating-point [B, D, L] tensor, got ", in.u.Describe()));
  }
  Operands o;
  o.batch = in.u.size(0);
  o.dim = in.u.size(1);
  o.length = in.u.size(2);
  const DType dtype = in.u.dtype(), pdtype = ScanParamDType(dtype);
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "delta", in.delta, in.u.shape(), dtype));
  if (in.A.dim() != 2 || in.A.size(0) != o.dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": A must be [D, N] with D = ", o.dim, ", got ", in.A.Describe()));
  }
  o.dstate = in.A.size(1);
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "A", in.A, in.A.shape(), pdtype));
  if (in.B.dim() != 3 && in.B.dim() != 4) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": B must be [B, G, N, L] or [B, N, L], got ", in.B.Describe()));
  }
  o.groups = in.B.dim() == 4 ? in.B.size(1) : 1;
  const Shape bc_shape = in.B.dim() == 4 ? Shape{o.batch, o.groups, o.dstate, o.length}
                                         : Shape{o.batch, o.dstate, o.length};
  const bool bc_dtype_ok = in.B.dtype() == dtype || (in.B.dtype() == DType::kF32 &&
                                                     dtype != DType::kF64);
  if (in.B.shape() != bc_shape || !bc_dtype_ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": B must be ", ShapeToString(bc_shape), " of u's dtype ", DTypeName(dtype),
        " or f32 (u ", in.u.Describe(), ", A ", in.A.Describe(), "), got ", in.B.Describe()));
  }
  LYRA_RETURN_IF_ERROR(CheckGroupsDivide(op, in.B, o.groups, "D", o.dim));
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "C (as B)", in.C, bc_shape, in.B.dtype()));
  if (in.D.defined()) LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "D", in.D, {o.dim}, pdtype));
  if (in.z.defined()) LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "z", in.z, in.u.shape(), dtype));
  if (in.delta_bias.defined()) {
    LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "delta_bias", in.delta_bias, {o.dim}, pdtype));
  }
  if (in.initial_state.defined()) {
    LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "initial_state", in.initial_state,
                                             {o.batch, o.dim, o.dstate}, pdtype));
  }
  if (in.seq_idx.defined()) {
    LYRA_RETURN_IF_ERROR(
        ExpectShapeAndDType(op, "seq_idx", in.seq_idx, {o.batch, o.length}, DType::kI32));
  }
  LYRA_RETURN_IF_ERROR(CheckSameDevice(op, "u", in.u,
                                       {&in.delta, &in.A, &in.B, &in.C, &in.D, &in.z,
                                        &in.delta_bias, &in.initial_state, &in.seq_idx}));
  LYRA_ASSIGN_OR_RETURN(o.u, UnitLastStrideOnCuda(in.u));
  LYRA_ASSIGN_OR_RETURN(o.delta, UnitLastStrideOnCuda(in.delta));
  LYRA_ASSIGN_OR_RETURN(o.z, UnitLastStrideOnCuda(in.z));
  LYRA_ASSIGN_OR_RETURN(Tensor b4, As4d(in.B));
  LYRA_ASSIGN_OR_RETURN(Tensor c4, As4d(in.C));
  LYRA_ASSIGN_OR_RETURN(o.B, UnitLastStrideOnCuda(b4));
  LYRA_ASSIGN_OR_RETURN(o.C, UnitLastStrideOnCuda(c4));
  o.A = in.A;
  o.D = in.D;
  o.delta_bias = in.delta_bias;
  o.initial_state = in.initial_state;
  o.seq_idx = in.seq_idx;
  return o;
}

cuda::SelectiveScanParams MakeParams(const Operands& o, bool delta_softplus) {
  cuda::SelectiveScanParams p;
  p.batch = o.batch;
  p.dim = o.dim;
  p.length = o.length;
  p.dstate = o.dstate;
  p.groups = o.groups;
  p.delta_softplus = delta_softplus;
  p.dtype = o.u.dtype();
  p.bc_dtype = o.B.dtype();
  p.u = o.u.data();
  p.u_stride_b = o.u.stride(0);
  p.u_stride_d = o.u.stride(1);
  p.u_stride_l = o.u.stride(2);
  p.delta = o.delta.data();
  p.delta_stride_b = o.delta.stride(0);
  p.delta_stride_d = o.delta.stride(1);
  p.delta_stride_l = o.delta.stride(2);
  p.A = o.A.data();
  p.A_stride_d = o.A.stride(0);
  p.A_stride_n = o.A.stride(1);
  p.B = o.B.data();
  p.B_stride_b = o.B.stride(0);
  p.B_stride_g = o.B.stride(1);
  p.B_stride_n = o.B.stride(2);
  p.B_stride_l = o.B.stride(3);
  p.C = o.C.data();
  p.C_stride_b = o.C.stride(0);
  p.C_stride_g = o.C.stride(1);
  p.C_stride_n = o.C.stride(2);
  p.C_stride_l = o.C.stride(3);
  if (o.D.defined()) {
    p.D = o.D.data();
    p.D_stride = o.D.stride(0);
  }
  if (o.z.defined()) {
    p.z = o.z.data();
    p.z_stride_b = o.z.stride(0);
    p.z_stride_d = o.z.stride(1);
    p.z_stride_l = o.z.stride(2);
  }
  if (o.delta_bias.defined()) {
    p.delta_bias = o.delta_bias.data();
    p.delta_bias_stride = o.delta_bias.stride(0);
  }
  if (o.initial_state.defined()) {
    p.initial_state = o.initial_state.data();
    p.initial_state_stride_b = o.initial_state.stride(0);
    p.initial_state_stride_d = o.initial_state.stride(1);
    p.initial_state_stride_n = o.initial_state.stride(2);
  }
  if (o.seq_idx.defined()) {
    p.seq_idx = o.seq_idx.data<int32_t>();
    p.seq_idx_stride_b = o.seq_idx.stride(0);
    p.seq_idx_stride_l = o.seq_idx.stride(1);
  }
  return p;
}

// A [B, G, N, L] gradient viewed in the shape of the B or C the user passed.
absl::StatusOr<Tensor> LikeInput(const Tensor& g4, const Tensor& input) {
  if (input.dim() == 3) return g4.Squeeze(1);
  return g4;
}

}  // namespace

absl::StatusOr<SelectiveScanResult> SelectiveScanForward(const SelectiveScanInputs& in) {
  constexpr absl::string_view kOp = "SelectiveScanForward";
  LYRA_ASSIGN_OR_RETURN(Operands o, Check(kOp, in));
  cuda::SelectiveScanParams p = MakeParams(o, in.delta_softplus);
  const Device device = in.u.device();
  const DType pdtype = ScanParamDType(in.u.dtype());
  SelectiveScanResult r;
  LYRA_ASSIGN_OR_RETURN(r.y, Tensor::Empty(in.u.shape(), in.u.dtype(), device));
  LYRA_ASSIGN_OR_RETURN(r.final_state, Tensor::Empty({o.batch, o.dim, o.dstate}, pdtype, device));
  p.y = r.y.data();
  p.y_stride_b = r.y.stride(0);
  p.y_stride_d = r.y.stride(1);
  p.y_stride_l = r.y.stride(2);
  p.final_state = r.final_state.data();
  p.final_state_stride_b = r.final_state.stride(0);
  p.final_state_stride_d = r.final_state.stride(1);
  p.final_state_stride_n = r.final_state.stride(2);
  LYRA_RETURN_IF_ERROR(cuda::SelectiveScanSupported(p, device.is_cuda()));
  if (device.is_cuda() && o.length > 0) {
    LYRA_ASSIGN_OR_RETURN(r.chunk_states,
                          Tensor::Empty({o.batch, o.dim, cuda::SelectiveScanNumChunks(o.length),
                                         o.dstate},
                                        pdtype, device));
    p.chunk_states = r.chunk_states.data();
  }
  if (in.u.numel() == 0 || o.dstate == 0) {
    // Nothing to scan: the final state is the initial one (L == 0) or empty.
    LYRA_RETURN_IF_ERROR(CarryStateThroughEmptyScan(o.initial_state, o.length, r.final_state));
    return r;
  }
  LYRA_RETURN_IF_ERROR(internal::RunKernel(device, p, &cuda::SelectiveScanReference,
                                           &cuda::SelectiveScanCuda));
  return r;
}

absl::StatusOr<SelectiveScanGrads> SelectiveScanBackward(const SelectiveScanInputs& in,
                                                         const Tensor& dy,
                                                         const Tensor& dfinal_state,
                                                         const Tensor& chunk_states) {
  constexpr absl::string_view kOp = "SelectiveScanBackward";
  LYRA_ASSIGN_OR_RETURN(Operands o, Check(kOp, in));
  const Device device = in.u.device();
  const DType dtype = in.u.dtype(), pdtype = ScanParamDType(dtype);
  LYRA_RETURN_IF_ERROR(CheckOutputGrad(kOp, dy, "u", in.u));
  const Shape state_shape = {o.batch, o.dim, o.dstate};
  if (dfinal_state.defined()) {
    LYRA_RETURN_IF_ERROR(
        ExpectShapeAndDType(kOp, "dfinal_state", dfinal_state, state_shape, pdtype));
    if (dfinal_state.device() != device) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": dfinal_state ",
                                                     dfinal_state.Describe(),
                                                     " is not on u's device"));
    }
  }
  cuda::SelectiveScanBackwardParams bp;
  bp.forward = MakeParams(o, in.delta_softplus);
  LYRA_ASSIGN_OR_RETURN(Tensor dy_l, UnitLastStrideOnCuda(dy));
  bp.dy = dy_l.data();
  bp.dy_stride_b = dy_l.stride(0);
  bp.dy_stride_d = dy_l.stride(1);
  bp.dy_stride_l = dy_l.stride(2);
  if (dfinal_state.defined()) {
    bp.dfinal_state = dfinal_state.data();
    bp.dfinal_state_stride_b = dfinal_state.stride(0);
    bp.dfinal_state_stride_d = dfinal_state.stride(1);
    bp.dfinal_state_stride_n = dfinal_state.stride(2);
  }
  SelectiveScanGrads g;
  LYRA_ASSIGN_OR_RETURN(g.du, Tensor::Empty(in.u.shape(), dtype, device));
  LYRA_ASSIGN_OR_RETURN(g.ddelta, Tensor::Empty(in.u.shape(), dtype, device));
  LYRA_ASSIGN_OR_RETURN(g.dA, Tensor::Empty(in.A.shape(), pdtype, device));
  LYRA_ASSIGN_OR_RETURN(Tensor dB4, Tensor::Empty(o.B.shape(), o.B.dtype(), device));
  LYRA_ASSIGN_OR_RETURN(Tensor dC4, Tensor::Empty(o.C.shape(), o.C.dtype(), device));
  bp.du = g.du.data();
  bp.du_stride_b = g.du.stride(0);
  bp.du_stride_d = g.du.stride(1);
  bp.du_stride_l = g.du.stride(2);
  bp.ddelta = g.ddelta.data();
  bp.ddelta_stride_b = g.ddelta.stride(0);
  bp.ddelta_stride_d = g.ddelta.stride(1);
  bp.ddelta_stride_l = g.ddelta.stride(2);
  bp.dA = g.dA.data();
  bp.dA_stride_d = g.dA.stride(0);
  bp.dA_stride_n = g.dA.stride(1);
  bp.dB = dB4.data();
  bp.dB_stride_b = dB4.stride(0);
  bp.dB_stride_g = dB4.stride(1);
  bp.dB_stride_n = dB4.stride(2);
  bp.dB_stride_l = dB4.stride(3);
  bp.dC = dC4.data();
  bp.dC_stride_b = dC4.stride(0);
  bp.dC_stride_g = dC4.stride(1);
  bp.dC_stride_n = dC4.stride(2);
  bp.dC_stride_l = dC4.stride(3);
  if (in.D.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dD, Tensor::Empty({o.dim}, pdtype, device));
    bp.dD = g.dD.data();
    bp.dD_stride = 1;
  }
  if (in.z.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dz, Tensor::Empty(in.u.shape(), dtype, device));
    bp.dz = g.dz.data();
    bp.dz_stride_b = g.dz.stride(0);
    bp.dz_stride_d = g.dz.stride(1);
    bp.dz_stride_l = g.dz.stride(2);
  }
  if (in.delta_bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.ddelta_bias, Tensor::Empty({o.dim}, pdtype, device));
    bp.ddelta_bias = g.ddelta_bias.data();
    bp.ddelta_bias_stride = 1;
  }
  if (in.initial_state.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dinitial_state, Tensor::Empty(state_shape, pdtype, device));
    bp.dinitial_state = g.dinitial_state.data();
    bp.dinitial_state_stride_b = g.dinitial_state.stride(0);
    bp.dinitial_state_stride_d = g.dinitial_state.stride(1);
    bp.dinitial_state_stride_n = g.dinitial_state.stride(2);
  }
  const bool empty = in.u.numel() == 0 || o.dstate == 0;
  Tensor states;
  if (device.is_cuda() && !empty) {
    const Shape chunk_shape = {o.batch, o.dim, cuda::SelectiveScanNumChunks(o.length), o.dstate};
    if (chunk_states.defined()) {
      LYRA_RETURN_IF_ERROR(
          CheckSavedChunkStates(kOp, chunk_states, chunk_shape, pdtype, "u", in.u));
      states = chunk_states;
    } else {
      // No saved states: a forward pass that writes only them.
      LYRA_ASSIGN_OR_RETURN(states, Tensor::Empty(chunk_shape, pdtype, device));
      cuda::SelectiveScanParams fp = bp.forward;
      fp.chunk_states = states.data();
      LYRA_RETURN_IF_ERROR(cuda::SelectiveScanSupported(fp, true));
      LYRA_RETURN_IF_ERROR(internal::RunKernel(device, fp, &cuda::SelectiveScanReference,
                                               &cuda::SelectiveScanCuda));
    }
    bp.chunk_states = states.data();
  }
  LYRA_RETURN_IF_ERROR(cuda::SelectiveScanBackwardSupported(bp, device.is_cuda()));
  if (empty) {
    // No output depends on anything but the final state, which is the initial one when L == 0.
    LYRA_RETURN_IF_ERROR(FillZeros({&g.dA, &dB4, &dC4, &g.dD, &g.ddelta_bias}));
    LYRA_RETURN_IF_ERROR(CarryStateThroughEmptyScan(dfinal_state, o.length, g.dinitial_state));
  } else {
    LYRA_RETURN_IF_ERROR(internal::RunKernel(device, bp, &cuda::SelectiveScanBackwardReference,
                                             &cuda::SelectiveScanBackwardCuda));
  }
  LYRA_ASSIGN_OR_RETURN(g.dB, LikeInput(dB4, in.B));
  LYRA_ASSIGN_OR_RETURN(g.dC, LikeInput(dC4, in.C));
  return g;
}

absl::StatusOr<SelectiveScanOutputs> SelectiveScan(const Variable& u, const Variable& delta,
                                                   const Variable& A, const Variable& B,
                                                   const Variable& C, const Variable& D,
                                                   const Variable& z, const Variable& delta_bias,
                                                   const Variable& initial_state,
                                                   const Tensor& seq_idx, bool delta_softplus) {
  if (!u.defined() || !delta.defined() || !A.defined() || !B.defined() || !C.defined()) {
    return absl::InvalidArgumentError("SelectiveScan: u, delta, A, B and C must be defined");
  }
  SelectiveScanInputs in;
  in.u = u.data();
  in.delta = delta.data();
  in.A = A.data();
  in.B = B.data();
  in.C = C.data();
  in.D = DataOrUndefined(D);
  in.z = DataOrUndefined(z);
  in.delta_bias = DataOrUndefined(delta_bias);
  in.initial_state = DataOrUndefined(initial_state);
  in.seq_idx = seq_idx;
  in.delta_softplus = delta_softplus;
  LYRA_ASSIGN_OR_RETURN(SelectiveScanResult r, SelectiveScanForward(in));
  const std::vector<Variable> inputs = {u, delta, A, B, C, D, z, delta_bias, initial_state};
  const Tensor saved_states = autograd::AnyRequiresGrad(inputs) ? r.chunk_states : Tensor();
  LYRA_ASSIGN_OR_RETURN(
      std::vector<Variable> outs,
      RecordScanNode("SelectiveScan", inputs, std::move(r.y), std::move(r.final_state),
                     [in, saved_states](const Tensor& dy, const Tensor& dfinal_state)
                         -> absl::StatusOr<std::vector<Tensor>> {
                       LYRA_ASSIGN_OR_RETURN(
                           SelectiveScanGrads gr,
                           SelectiveScanBackward(in, dy, dfinal_state, saved_states));
                       return std::vector<Tensor>{gr.du, gr.ddelta,       gr.dA,
                                                  gr.dB, gr.dC,           gr.dD,
                                                  gr.dz, gr.ddelta_bias, gr.dinitial_state};
                     }));
  return SelectiveScanOutputs{std::move(outs[0]), std::move(outs[1])};
}

absl::StatusOr<Tensor> SelectiveStateUpdate(const Tensor& state, const Tensor& x,
                                            const Tensor& dt, const Tensor& A, const Tensor& B,
                                            const Tensor& C, const Tensor& D, const Tensor& z,
                                            const Tensor& dt_bias, bool dt_softplus) {
  constexpr absl::string_view kOp = "SelectiveStateUpdate";
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&state, &x, &dt, &A, &B, &C}));
  if (x.dim() != 2 || !IsFloating(x.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": x must be a floating-point [B, D] tensor, got ", x.Describe()));
  }
  const int64_t batch = x.size(0), dim = x.size(1);
  const DType dtype = x.dtype(), pdtype = ScanParamDType(dtype);
  if (A.dim() != 2 || A.size(0) != dim) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": A must be [D, N] with D = ", dim, ", got ", A.Describe()));
  }
  const int64_t dstate = A.size(1);
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "A", A, A.shape(), pdtype));
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "state", state, {batch, dim, dstate}, pdtype));
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "dt", dt, x.shape(), dtype));
  if (B.dim() != 2 && B.dim() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": B must be [B, G, N] or [B, N], got ", B.Describe()));
  }
  const int64_t groups = B.dim() == 3 ? B.size(1) : 1;
  const Shape bc_shape = B.dim() == 3 ? Shape{batch, groups, dstate} : Shape{batch, dstate};
  const bool bc_dtype_ok =
      B.dtype() == dtype || (B.dtype() == DType::kF32 && dtype != DType::kF64);
  if (B.shape() != bc_shape || !bc_dtype_ok || groups < 1 || dim % groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": B must be ", ShapeToString(bc_shape), " (G dividing D = ", dim,
        ") of x's dtype or f32, got ", B.Describe()));
  }
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "C (as B)", C, bc_shape, B.dtype()));
  if (D.defined()) LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "D", D, {dim}, pdtype));
  if (z.defined()) LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "z", z, x.shape(), dtype));
  if (dt_bias.defined()) {
    LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "dt_bias", dt_bias, {dim}, pdtype));
  }
  LYRA_RETURN_IF_ERROR(
      CheckSameDevice(kOp, "x", x, {&state, &dt, &A, &B, &C, &D, &z, &dt_bias}));
  LYRA_ASSIGN_OR_RETURN(Tensor B3, B.dim() == 2 ? B.Unsqueeze(1) : absl::StatusOr<Tensor>(B));
  LYRA_ASSIGN_OR_RETURN(Tensor C3, C.dim() == 2 ? C.Unsqueeze(1) : absl::StatusOr<Tensor>(C));
  LYRA_ASSIGN_OR_RETURN(Tensor y, Tensor::Empty(x.shape(), dtype, x.device()));
  cuda::SelectiveStateUpdateParams p;
  p.batch = batch;
  p.dim = dim;
  p.dstate = dstate;
  p.groups = groups;
  p.dt_softplus = dt_softplus;
  p.dtype = dtype;
  p.bc_dtype = B.dtype();
  p.state = state.data();
  p.state_stride_b = state.stride(0);
  p.state_stride_d = state.stride(1);
  p.state_stride_n = state.stride(2);
  p.x = x.data();
  p.x_stride_b = x.stride(0);
  p.x_stride_d = x.stride(1);
  p.dt = dt.data();
  p.dt_stride_b = dt.stride(0);
  p.dt_stride_d = dt.stride(1);
  p.A = A.data();
  p.A_stride_d = A.stride(0);
  p.A_stride_n = A.stride(1);
  p.B = B3.data();
  p.B_stride_b = B3.stride(0);
  p.B_stride_g = B3.stride(1);
  p.B_stride_n = B3.stride(2);
  p.C = C3.data();
  p.C_stride_b = C3.stride(0);
  p.C_stride_g = C3.stride(1);
  p.C_stride_n = C3.stride(2);
  if (D.defined()) {
    p.D = D.data();
    p.D_stride = D.stride(0);
  }
  if (z.defined()) {
    p.z = z.data();
    p.z_stride_b = z.stride(0);
    p.z_stride_d = z.stride(1);
  }
  if (dt_bias.defined()) {
    p.dt_bias = dt_bias.data();
    p.dt_bias_stride = dt_bias.stride(0);
  }
  p.y = y.data();
  p.y_stride_b = y.stride(0);
  p.y_stride_d = y.stride(1);
  LYRA_RETURN_IF_ERROR(cuda::SelectiveStateUpdateSupported(p, x.device().is_cuda()));
  if (y.numel() == 0 || dstate == 0) return y;
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), p, &cuda::SelectiveStateUpdateReference,
                                           &cuda::SelectiveStateUpdateCuda));
  return y;
}

}  // namespace lyra::mamba
