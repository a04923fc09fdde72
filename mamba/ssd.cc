// The Mamba-2 SSD: argument checks, operand layouts and output allocation around the kernels of
// cuda/ssd.h, the autograd node, the single-step update and the seq_idx of packed documents.
#include "mamba/ssd.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "cuda/ssd.h"
#include "mamba/scan_node.h"
#include "mamba/tensor_checks.h"
#include "tensor/dispatch.h"
#include "tensor/shape.h"

namespace lyra::mamba {
namespace {

using autograd::Variable;

// A (H), D (H) or (H, P) and dt_bias (H) of the scan and of the single step, in `pdtype`.
absl::Status CheckHeadParameters(absl::string_view op, const Tensor& A, const Tensor& D,
                                 const Tensor& dt_bias, int64_t heads, int64_t head_dim,
                                 DType pdtype) {
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "A", A, {heads}, pdtype));
  if (D.defined()) {
    const Shape d_shape = D.dim() == 2 ? Shape{heads, head_dim} : Shape{heads};
    LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "D ([H] or [H, P])", D, d_shape, pdtype));
  }
  if (dt_bias.defined()) {
    LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "dt_bias", dt_bias, {heads}, pdtype));
  }
  return absl::OkStatus();
}

// The A, D and dt_bias fields, named alike in cuda::SsdParams and cuda::SsdStateUpdateParams.
template <typename Params>
void SetHeadParameters(const Tensor& A, const Tensor& D, const Tensor& dt_bias, Params& p) {
  p.A = A.data();
  p.A_stride = A.stride(0);
  if (D.defined()) {
    p.D = D.data();
    p.D_per_head_dim = D.dim() == 2;
    p.D_stride_h = D.stride(0);
    p.D_stride_p = p.D_per_head_dim ? D.stride(1) : 0;
  }
  if (dt_bias.defined()) {
    p.dt_bias = dt_bias.data();
    p.dt_bias_stride = dt_bias.stride(0);
  }
}

// The checked inputs in the layouts the kernels read.
struct Operands {
  Tensor x, dt, A, B, C, D, z, dt_bias, initial_state, seq_idx;
  int64_t batch = 0, length = 0, heads = 0, head_dim = 0, dstate = 0, groups = 1;
};

absl::StatusOr<Operands> Check(absl::string_view op, const SsdInputs& in) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(op, {&in.x, &in.dt, &in.A, &in.B, &in.C}));
  if (in.x.dim() != 4 || !IsFloating(in.x.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": x must be a floating-point [B, L, H, P] tensor, got ", in.x.Describe()));
  }
  Operands o;
  o.batch = in.x.size(0);
  o.length = in.x.size(1);
  o.heads = in.x.size(2);
  o.head_dim = in.x.size(3);
  const DType dtype = in.x.dtype(), pdtype = ScanParamDType(dtype);
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "dt", in.dt, {o.batch, o.length, o.heads}, dtype));
  if (in.B.dim() != 4 || in.B.size(0) != o.batch || in.B.size(1) != o.length ||
      in.B.dtype() != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": B must be [B, L, G, N] = [", o.batch,
                                                   ", ", o.length, ", G, N] of x's dtype ",
                                                   DTypeName(dtype), ", got ", in.B.Describe()));
  }
  o.groups = in.B.size(2);
  o.dstate = in.B.size(3);
  LYRA_RETURN_IF_ERROR(CheckGroupsDivide(op, in.B, o.groups, "H", o.heads));
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "C (as B)", in.C, in.B.shape(), dtype));
  LYRA_RETURN_IF_ERROR(
      CheckHeadParameters(op, in.A, in.D, in.dt_bias, o.heads, o.head_dim, pdtype));
  if (in.z.defined()) {
    LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "z", in.z, in.x.shape(), dtype));
  }
  if (in.initial_state.defined()) {
    LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(op, "initial_state", in.initial_state,
                                             {o.batch, o.heads, o.head_dim, o.dstate}, pdtype));
  }
  if (in.seq_idx.defined()) {
    LYRA_RETURN_IF_ERROR(
        ExpectShapeAndDType(op, "seq_idx", in.seq_idx, {o.batch, o.length}, DType::kI32));
  }
  LYRA_RETURN_IF_ERROR(CheckSameDevice(op, "x", in.x,
                                       {&in.dt, &in.A, &in.B, &in.C, &in.D, &in.z, &in.dt_bias,
                                        &in.initial_state, &in.seq_idx}));
  LYRA_ASSIGN_OR_RETURN(o.x, UnitLastStrideOnCuda(in.x));
  LYRA_ASSIGN_OR_RETURN(o.z, UnitLastStrideOnCuda(in.z));
  LYRA_ASSIGN_OR_RETURN(o.B, UnitLastStrideOnCuda(in.B));
  LYRA_ASSIGN_OR_RETURN(o.C, UnitLastStrideOnCuda(in.C));
  LYRA_ASSIGN_OR_RETURN(o.initial_state, ContiguousOnCuda(in.initial_state));
  o.dt = in.dt;
  o.A = in.A;
  o.D = in.D;
  o.dt_bias = in.dt_bias;
  o.seq_idx = in.seq_idx;
  return o;
}

cuda::SsdParams MakeParams(const Operands& o, const SsdInputs& in) {
  cuda::SsdParams p;
  p.batch = o.batch;
  p.length = o.length;
  p.heads = o.heads;
  p.head_dim = o.head_dim;
  p.dstate = o.dstate;
  p.groups = o.groups;
  p.chunk = in.chunk;
  p.dt_softplus = in.dt_softplus;
  p.dt_min = in.dt_min;
  p.dt_max = in.dt_max;
  p.dtype = o.x.dtype();
  p.x = o.x.data();
  p.x_stride_b = o.x.stride(0);
  p.x_stride_l = o.x.stride(1);
  p.x_stride_h = o.x.stride(2);
  p.x_stride_p = o.x.stride(3);
  p.dt = o.dt.data();
  p.dt_stride_b = o.dt.stride(0);
  p.dt_stride_l = o.dt.stride(1);
  p.dt_stride_h = o.dt.stride(2);
  SetHeadParameters(o.A, o.D, o.dt_bias, p);
  p.B = o.B.data();
  p.B_stride_b = o.B.stride(0);
  p.B_stride_l = o.B.stride(1);
  p.B_stride_g = o.B.stride(2);
  p.B_stride_n = o.B.stride(3);
  p.C = o.C.data();
  p.C_stride_b = o.C.stride(0);
  p.C_stride_l = o.C.stride(1);
  p.C_stride_g = o.C.stride(2);
  p.C_stride_n = o.C.stride(3);
  if (o.z.defined()) {
    p.z = o.z.data();
    p.z_stride_b = o.z.stride(0);
    p.z_stride_l = o.z.stride(1);
    p.z_stride_h = o.z.stride(2);
    p.z_stride_p = o.z.stride(3);
  }
  if (o.initial_state.defined()) {
    p.initial_state = o.initial_state.data();
    p.initial_state_stride_b = o.initial_state.stride(0);
    p.initial_state_stride_h = o.initial_state.stride(1);
    p.initial_state_stride_p = o.initial_state.stride(2);
    p.initial_state_stride_n = o.initial_state.stride(3);
  }
  if (o.seq_idx.defined()) {
    p.seq_idx = o.seq_idx.data<int32_t>();
    p.seq_idx_stride_b = o.seq_idx.stride(0);
    p.seq_idx_stride_l = o.seq_idx.stride(1);
  }
  return p;
}

Shape StateShape(const Operands& o) { return {o.batch, o.heads, o.head_dim, o.dstate}; }
Shape ChunkStatesShape(const Operands& o, int64_t chunk) {
  return {o.batch, cuda::SsdNumChunks(o.length, chunk), o.heads, o.head_dim, o.dstate};
}

}  // namespace

absl::StatusOr<SsdResult> SsdForward(const SsdInputs& in) {
  constexpr absl::string_view kOp = "SsdForward";
  LYRA_ASSIGN_OR_RETURN(Operands o, Check(kOp, in));
  cuda::SsdParams p = MakeParams(o, in);
  const Device device = in.x.device();
  const DType pdtype = ScanParamDType(in.x.dtype());
  SsdResult r;
  LYRA_ASSIGN_OR_RETURN(r.y, Tensor::Empty(in.x.shape(), in.x.dtype(), device));
  LYRA_ASSIGN_OR_RETURN(r.final_state, Tensor::Empty(StateShape(o), pdtype, device));
  p.y = r.y.data();
  p.y_stride_b = r.y.stride(0);
  p.y_stride_l = r.y.stride(1);
  p.y_stride_h = r.y.stride(2);
  p.y_stride_p = r.y.stride(3);
  p.final_state = r.final_state.data();
  p.final_state_stride_b = r.final_state.stride(0);
  p.final_state_stride_h = r.final_state.stride(1);
  p.final_state_stride_p = r.final_state.stride(2);
  p.final_state_stride_n = r.final_state.stride(3);
  LYRA_RETURN_IF_ERROR(cuda::SsdSupported(p, device.is_cuda()));
  if (r.y.numel() == 0) {
    // Nothing to scan: the final state is the initial one (L == 0), or has no element.
    LYRA_RETURN_IF_ERROR(CarryStateThroughEmptyScan(o.initial_state, o.length, r.final_state));
    return r;
  }
  if (device.is_cuda()) {
    LYRA_ASSIGN_OR_RETURN(r.chunk_states,
                          Tensor::Empty(ChunkStatesShape(o, in.chunk), pdtype, device));
    p.chunk_states = r.chunk_states.data();
  }
  LYRA_RETURN_IF_ERROR(
      internal::RunKernel(device, p, &cuda::SsdReference, &cuda::SsdCuda));
  return r;
}

absl::StatusOr<SsdGrads> SsdBackward(const SsdInputs& in, const Tensor& dy,
                                     const Tensor& dfinal_state, const Tensor& chunk_states) {
  constexpr absl::string_view kOp = "SsdBackward";
  LYRA_ASSIGN_OR_RETURN(Operands o, Check(kOp, in));
  const Device device = in.x.device();
  const DType dtype = in.x.dtype(), pdtype = ScanParamDType(dtype);
  LYRA_RETURN_IF_ERROR(CheckOutputGrad(kOp, dy, "x", in.x));
  if (dfinal_state.defined()) {
    LYRA_RETURN_IF_ERROR(
        ExpectShapeAndDType(kOp, "dfinal_state", dfinal_state, StateShape(o), pdtype));
    LYRA_RETURN_IF_ERROR(CheckSameDevice(kOp, "x", in.x, {&dfinal_state}));
  }
  cuda::SsdBackwardParams bp;
  bp.forward = MakeParams(o, in);
  LYRA_ASSIGN_OR_RETURN(Tensor dy_p, UnitLastStrideOnCuda(dy));
  bp.dy = dy_p.data();
  bp.dy_stride_b = dy_p.stride(0);
  bp.dy_stride_l = dy_p.stride(1);
  bp.dy_stride_h = dy_p.stride(2);
  bp.dy_stride_p = dy_p.stride(3);
  LYRA_ASSIGN_OR_RETURN(Tensor dfinal, ContiguousOnCuda(dfinal_state));
  if (dfinal.defined()) {
    bp.dfinal_state = dfinal.data();
    bp.dfinal_state_stride_b = dfinal.stride(0);
    bp.dfinal_state_stride_h = dfinal.stride(1);
    bp.dfinal_state_stride_p = dfinal.stride(2);
    bp.dfinal_state_stride_n = dfinal.stride(3);
  }
  SsdGrads g;
  LYRA_ASSIGN_OR_RETURN(g.dx, Tensor::Empty(in.x.shape(), dtype, device));
  LYRA_ASSIGN_OR_RETURN(g.ddt, Tensor::Empty(in.dt.shape(), dtype, device));
  LYRA_ASSIGN_OR_RETURN(g.dA, Tensor::Empty(in.A.shape(), pdtype, device));
  LYRA_ASSIGN_OR_RETURN(g.dB, Tensor::Empty(in.B.shape(), dtype, device));
  LYRA_ASSIGN_OR_RETURN(g.dC, Tensor::Empty(in.C.shape(), dtype, device));
  bp.dx = g.dx.data();
  bp.dx_stride_b = g.dx.stride(0);
  bp.dx_stride_l = g.dx.stride(1);
  bp.dx_stride_h = g.dx.stride(2);
  bp.dx_stride_p = g.dx.stride(3);
  bp.ddt = g.ddt.data();
  bp.ddt_stride_b = g.ddt.stride(0);
  bp.ddt_stride_l = g.ddt.stride(1);
  bp.ddt_stride_h = g.ddt.stride(2);
  bp.dA = g.dA.data();
  bp.dA_stride = g.dA.stride(0);
  bp.dB = g.dB.data();
  bp.dB_stride_b = g.dB.stride(0);
  bp.dB_stride_l = g.dB.stride(1);
  bp.dB_stride_g = g.dB.stride(2);
  bp.dB_stride_n = g.dB.stride(3);
  bp.dC = g.dC.data();
  bp.dC_stride_b = g.dC.stride(0);
  bp.dC_stride_l = g.dC.stride(1);
  bp.dC_stride_g = g.dC.stride(2);
  bp.dC_stride_n = g.dC.stride(3);
  if (in.D.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dD, Tensor::Empty(in.D.shape(), pdtype, device));
    bp.dD = g.dD.data();
    bp.dD_stride_h = g.dD.stride(0);
    bp.dD_stride_p = g.dD.dim() == 2 ? g.dD.stride(1) : 0;
  }
  if (in.z.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dz, Tensor::Empty(in.x.shape(), dtype, device));
    bp.dz = g.dz.data();
    bp.dz_stride_b = g.dz.stride(0);
    bp.dz_stride_l = g.dz.stride(1);
    bp.dz_stride_h = g.dz.stride(2);
    bp.dz_stride_p = g.dz.stride(3);
  }
  if (in.dt_bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.ddt_bias, Tensor::Empty(in.dt_bias.shape(), pdtype, device));
    bp.ddt_bias = g.ddt_bias.data();
    bp.ddt_bias_stride = g.ddt_bias.stride(0);
  }
  if (in.initial_state.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dinitial_state, Tensor::Empty(StateShape(o), pdtype, device));
    bp.dinitial_state = g.dinitial_state.data();
    bp.dinitial_state_stride_b = g.dinitial_state.stride(0);
    bp.dinitial_state_stride_h = g.dinitial_state.stride(1);
    bp.dinitial_state_stride_p = g.dinitial_state.stride(2);
    bp.dinitial_state_stride_n = g.dinitial_state.stride(3);
  }
  const bool empty = in.x.numel() == 0;
  if (device.is_cuda() && !empty && chunk_states.defined()) {
    LYRA_RETURN_IF_ERROR(CheckSavedChunkStates(kOp, chunk_states, ChunkStatesShape(o, in.chunk),
                                               pdtype, "x", in.x));
    bp.chunk_states = chunk_states.data();
  }
  LYRA_RETURN_IF_ERROR(cuda::SsdBackwardSupported(bp, device.is_cuda()));
  if (empty) {
    // y has no element: nothing depends on the inputs but the final state, which is the
    // initial one when L == 0 (and has no element otherwise).
    LYRA_RETURN_IF_ERROR(
        FillZeros({&g.dx, &g.ddt, &g.dA, &g.dB, &g.dC, &g.dD, &g.dz, &g.ddt_bias}));
    LYRA_RETURN_IF_ERROR(CarryStateThroughEmptyScan(dfinal_state, o.length, g.dinitial_state));
    return g;
  }
  LYRA_RETURN_IF_ERROR(
      internal::RunKernel(device, bp, &cuda::SsdBackwardReference, &cuda::SsdBackwardCuda));
  return g;
}

absl::StatusOr<SsdOutputs> Ssd(const Variable& x, const Variable& dt, const Variable& A,
                               const Variable& B, const Variable& C, const Variable& D,
                               const Variable& z, const Variable& dt_bias,
                               const Variable& initial_state, const SsdInputs& options) {
  if (!x.defined() || !dt.defined() || !A.defined() || !B.defined() || !C.defined()) {
    return absl::InvalidArgumentError("Ssd: x, dt, A, B and C must be defined");
  }
  SsdInputs in = options;
  in.x = x.data();
  in.dt = dt.data();
  in.A = A.data();
  in.B = B.data();
  in.C = C.data();
  in.D = DataOrUndefined(D);
  in.z = DataOrUndefined(z);
  in.dt_bias = DataOrUndefined(dt_bias);
  in.initial_state = DataOrUndefined(initial_state);
  LYRA_ASSIGN_OR_RETURN(SsdResult r, SsdForward(in));
  const std::vector<Variable> inputs = {x, dt, A, B, C, D, z, dt_bias, initial_state};
  const Tensor saved_states = autograd::AnyRequiresGrad(inputs) ? r.chunk_states : Tensor();
  LYRA_ASSIGN_OR_RETURN(
      std::vector<Variable> outs,
      RecordScanNode("Ssd", inputs, std::move(r.y), std::move(r.final_state),
                     [in, saved_states](const Tensor& dy, const Tensor& dfinal_state)
                         -> absl::StatusOr<std::vector<Tensor>> {
                       LYRA_ASSIGN_OR_RETURN(SsdGrads gr,
                                             SsdBackward(in, dy, dfinal_state, saved_states));
                       return std::vector<Tensor>{gr.dx, gr.ddt,    gr.dA,
                                                  gr.dB, gr.dC,     gr.dD,
                                                  gr.dz, gr.ddt_bias, gr.dinitial_state};
                     }));
  return SsdOutputs{std::move(outs[0]), std::move(outs[1])};
}

absl::StatusOr<Tensor> SsdStateUpdate(const Tensor& state, const Tensor& x, const Tensor& dt,
                                      const Tensor& A, const Tensor& B, const Tensor& C,
                                      const Tensor& D, const Tensor& z, const Tensor& dt_bias,
                                      const SsdStepOptions& options) {
  constexpr absl::string_view kOp = "SsdStateUpdate";
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&state, &x, &dt, &A, &B, &C}));
  if (x.dim() != 3 || !IsFloating(x.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": x must be a floating-point [B, H, P] tensor, got ", x.Describe()));
  }
  const int64_t batch = x.size(0), heads = x.size(1), head_dim = x.size(2);
  const DType dtype = x.dtype(), pdtype = ScanParamDType(dtype);
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "dt", dt, {batch, heads}, dtype));
  if (B.dim() != 3 || B.size(0) != batch || B.dtype() != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": B must be [B, G, N] = [", batch,
                                                   ", G, N] of x's dtype ", DTypeName(dtype),
                                                   ", got ", B.Describe()));
  }
  const int64_t groups = B.size(1), dstate = B.size(2);
  LYRA_RETURN_IF_ERROR(CheckGroupsDivide(kOp, B, groups, "H", heads));
  LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "C (as B)", C, B.shape(), dtype));
  LYRA_RETURN_IF_ERROR(
      ExpectShapeAndDType(kOp, "state", state, {batch, heads, head_dim, dstate}, pdtype));
  LYRA_RETURN_IF_ERROR(CheckHeadParameters(kOp, A, D, dt_bias, heads, head_dim, pdtype));
  if (z.defined()) LYRA_RETURN_IF_ERROR(ExpectShapeAndDType(kOp, "z", z, x.shape(), dtype));
  LYRA_RETURN_IF_ERROR(
      CheckSameDevice(kOp, "x", x, {&state, &dt, &A, &B, &C, &D, &z, &dt_bias}));
  LYRA_ASSIGN_OR_RETURN(Tensor xs, UnitLastStrideOnCuda(x));
  LYRA_ASSIGN_OR_RETURN(Tensor zs, UnitLastStrideOnCuda(z));
  LYRA_ASSIGN_OR_RETURN(Tensor Bs, UnitLastStrideOnCuda(B));
  LYRA_ASSIGN_OR_RETURN(Tensor Cs, UnitLastStrideOnCuda(C));
  // The kernel updates a contiguous state in place; a strided one is updated through a copy.
  LYRA_ASSIGN_OR_RETURN(Tensor work, ContiguousOnCuda(state));
  LYRA_ASSIGN_OR_RETURN(Tensor y, Tensor::Empty(x.shape(), dtype, x.device()));
  cuda::SsdStateUpdateParams p;
  p.batch = batch;
  p.heads = heads;
  p.head_dim = head_dim;
  p.dstate = dstate;
  p.groups = groups;
  p.dt_softplus = options.dt_softplus;
  p.dt_min = options.dt_min;
  p.dt_max = options.dt_max;
  p.dtype = dtype;
  p.state = work.data();
  p.state_stride_b = work.stride(0);
  p.state_stride_h = work.stride(1);
  p.state_stride_p = work.stride(2);
  p.state_stride_n = work.stride(3);
  p.x = xs.data();
  p.x_stride_b = xs.stride(0);
  p.x_stride_h = xs.stride(1);
  p.x_stride_p = xs.stride(2);
  p.dt = dt.data();
  p.dt_stride_b = dt.stride(0);
  p.dt_stride_h = dt.stride(1);
  SetHeadParameters(A, D, dt_bias, p);
  p.B = Bs.data();
  p.B_stride_b = Bs.stride(0);
  p.B_stride_g = Bs.stride(1);
  p.B_stride_n = Bs.stride(2);
  p.C = Cs.data();
  p.C_stride_b = Cs.stride(0);
  p.C_stride_g = Cs.stride(1);
  p.C_stride_n = Cs.stride(2);
  if (zs.defined()) {
    p.z = zs.data();
    p.z_stride_b = zs.stride(0);
    p.z_stride_h = zs.stride(1);
    p.z_stride_p = zs.stride(2);
  }
  p.y = y.data();
  p.y_stride_b = y.stride(0);
  p.y_stride_h = y.stride(1);
  p.y_stride_p = y.stride(2);
  LYRA_RETURN_IF_ERROR(cuda::SsdStateUpdateSupported(p, x.device().is_cuda()));
  if (y.numel() == 0) return y;
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), p, &cuda::SsdStateUpdateReference,
                                           &cuda::SsdStateUpdateCuda));
  if (work.data() != state.data()) LYRA_RETURN_IF_ERROR(state.CopyFrom(work));
  return y;
}

absl::StatusOr<Tensor> SeqIdxFromCuSeqlens(const Tensor& cu_seqlens, int64_t length,
                                           Device device) {
  constexpr absl::string_view kOp = "SeqIdxFromCuSeqlens";
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&cu_seqlens}));
  if (cu_seqlens.dim() != 1 || cu_seqlens.size(0) < 1 || !IsInteger(cu_seqlens.dtype()) ||
      !cu_seqlens.device().is_cpu()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": cu_seqlens must be a CPU i32 / i64 [n_docs + 1] tensor, got ",
        cu_seqlens.Describe()));
  }
  if (length < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": negative length ", length));
  }
  LYRA_ASSIGN_OR_RETURN(std::vector<double> cu, cu_seqlens.ToDoubles());
  if (cu.front() != 0 || cu.back() != static_cast<double>(length)) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": cu_seqlens ", cu_seqlens.Describe(),
                                                   " must start at 0 and end at the length ",
                                                   length, " (got ", cu.front(), " .. ",
                                                   cu.back(), ")"));
  }
  std::vector<int32_t> seq(length);
  for (size_t k = 0; k + 1 < cu.size(); ++k) {
    if (cu[k + 1] < cu[k]) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": cu_seqlens ", cu_seqlens.Describe(),
                                                     " decreases at index ", k + 1, " (",
                                                     cu[k], " -> ", cu[k + 1], ")"));
    }
    for (int64_t t = static_cast<int64_t>(cu[k]); t < static_cast<int64_t>(cu[k + 1]); ++t) {
      seq[t] = static_cast<int32_t>(k);
    }
  }
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::FromVector(seq, {1, length}));
  if (device.is_cpu()) return out;
  return out.To(device);
}

}  // namespace lyra::mamba
