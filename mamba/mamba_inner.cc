#include "mamba/mamba_inner.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "mamba/selective_scan.h"
#include "nn/conv1d.h"
#include "tensor/elementwise.h"
#include "tensor/index.h"
#include "tensor/matmul.h"
#include "tensor/reduce.h"

namespace lyra::mamba {
namespace {

// The saved inputs of one call: enough to recompute everything.
struct Saved {
  Tensor xz, conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A_log, D, out_w, out_b, seq_idx;
  int64_t batch = 0, length = 0, d_inner = 0, rank = 0, d_state = 0, d_model = 0;
};

// The forward's intermediates (recomputed in the backward).
struct Forward {
  Tensor x;      // [B, D, L] view of xz
  Tensor z;      // [B, D, L] view of xz
  Tensor xc;     // [B, D, L] silu(conv(x))
  Tensor xc_flat;  // [B·L, D]
  Tensor dt;     // [B·L, R]
  Tensor delta;  // [B·L, D]
  SelectiveScanInputs scan;
  SelectiveScanResult scan_out;
  Tensor y_flat;   // [B·L, D]
};

// [B, L, D] (any strides) -> [B·L, D]; a copy only when the view cannot be flattened.
absl::StatusOr<Tensor> Rows(const Tensor& bld) {
  return bld.Reshape({bld.size(0) * bld.size(1), bld.size(2)});
}

// [B·L, C] columns [start, start + n) as [B, C', L].
absl::StatusOr<Tensor> ColumnsAsChannelsFirst(const Tensor& flat, int64_t b, int64_t l,
                                              int64_t start, int64_t n) {
  LYRA_ASSIGN_OR_RETURN(Tensor cols, flat.Narrow(1, start, n));
  LYRA_ASSIGN_OR_RETURN(Tensor bln, cols.View({b, l, n}));
  return bln.Transpose(1, 2);
}

absl::StatusOr<Forward> RunForward(const Saved& s, bool keep_chunk_states) {
  Forward f;
  const int64_t b = s.batch, l = s.length, d = s.d_inner;
  LYRA_ASSIGN_OR_RETURN(Tensor x_bld, s.xz.Narrow(2, 0, d));
  LYRA_ASSIGN_OR_RETURN(Tensor z_bld, s.xz.Narrow(2, d, d));
  LYRA_ASSIGN_OR_RETURN(f.x, x_bld.Transpose(1, 2));
  LYRA_ASSIGN_OR_RETURN(f.z, z_bld.Transpose(1, 2));
  LYRA_ASSIGN_OR_RETURN(f.xc, CausalConv1d(f.x, s.conv_w, s.conv_b, Conv1dActivation::kSilu,
                                           s.seq_idx));
  LYRA_ASSIGN_OR_RETURN(Tensor xc_bld, f.xc.Transpose(1, 2));
  LYRA_ASSIGN_OR_RETURN(f.xc_flat, Rows(xc_bld));
  LYRA_ASSIGN_OR_RETURN(Tensor x_proj_t, s.x_proj_w.Transpose(0, 1));
  LYRA_ASSIGN_OR_RETURN(Tensor x_dbl, Matmul(f.xc_flat, x_proj_t));  // [B·L, R + 2N]
  LYRA_ASSIGN_OR_RETURN(f.dt, x_dbl.Narrow(1, 0, s.rank));
  LYRA_ASSIGN_OR_RETURN(Tensor dt_proj_t, s.dt_proj_w.Transpose(0, 1));
  LYRA_ASSIGN_OR_RETURN(f.delta, Matmul(f.dt, dt_proj_t));  // [B·L, D]
  LYRA_ASSIGN_OR_RETURN(Tensor delta_bld, f.delta.View({b, l, d}));
  LYRA_ASSIGN_OR_RETURN(Tensor a, Exp(s.A_log));
  LYRA_ASSIGN_OR_RETURN(a, Neg(a));
  f.scan.u = f.xc;
  LYRA_ASSIGN_OR_RETURN(f.scan.delta, delta_bld.Transpose(1, 2));
  f.scan.A = a;
  LYRA_ASSIGN_OR_RETURN(f.scan.B, ColumnsAsChannelsFirst(x_dbl, b, l, s.rank, s.d_state));
  LYRA_ASSIGN_OR_RETURN(f.scan.C,
                        ColumnsAsChannelsFirst(x_dbl, b, l, s.rank + s.d_state, s.d_state));
  f.scan.D = s.D;
  f.scan.z = f.z;
  f.scan.delta_bias = s.dt_proj_b;
  f.scan.seq_idx = s.seq_idx;
  f.scan.delta_softplus = true;
  LYRA_ASSIGN_OR_RETURN(f.scan_out, SelectiveScanForward(f.scan));
  if (!keep_chunk_states) f.scan_out.chunk_states = Tensor();
  LYRA_ASSIGN_OR_RETURN(Tensor y_bld, f.scan_out.y.Transpose(1, 2));
  LYRA_ASSIGN_OR_RETURN(f.y_flat, Rows(y_bld));
  return f;
}

absl::StatusOr<Tensor> OutProjection(const Saved& s, const Tensor& y_flat) {
  LYRA_ASSIGN_OR_RETURN(Tensor out_t, s.out_w.Transpose(0, 1));
  LYRA_ASSIGN_OR_RETURN(Tensor out, s.out_b.defined() ? MatmulBias(y_flat, out_t, s.out_b)
                                                      : Matmul(y_flat, out_t));
  return out.View({s.batch, s.length, s.d_model});
}

absl::Status CheckShape(const char* name, const Tensor& t, const Shape& want) {
  if (!t.defined() || t.shape() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MambaInner: ", name, " is ", t.defined() ? t.Describe() : "undefined", ", expected ",
        ShapeToString(want)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Saved> Validate(const autograd::Variable& xz, const MambaInnerWeights& w,
                               const Tensor& seq_idx) {
  Saved s;
  if (!xz.defined() || xz.dim() != 3 || xz.size(2) % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MambaInner: xz must be [B, L, 2D], got ", xz.defined() ? xz.data().Describe() : "undefined"));
  }
  s.batch = xz.size(0);
  s.length = xz.size(1);
  s.d_inner = xz.size(2) / 2;
  if (!w.A_log.defined() || w.A_log.dim() != 2 || !w.dt_proj_weight.defined() ||
      w.dt_proj_weight.dim() != 2 || !w.out_proj_weight.defined() ||
      w.out_proj_weight.dim() != 2) {
    return absl::InvalidArgumentError("MambaInner: A_log, dt_proj and out_proj must be 2-D");
  }
  s.d_state = w.A_log.size(1);
  s.rank = w.dt_proj_weight.size(1);
  s.d_model = w.out_proj_weight.size(0);
  const int64_t d = s.d_inner;
  LYRA_RETURN_IF_ERROR(CheckShape("A_log", w.A_log.data(), {d, s.d_state}));
  LYRA_RETURN_IF_ERROR(CheckShape("x_proj.weight", w.x_proj_weight.data(),
                                  {s.rank + 2 * s.d_state, d}));
  LYRA_RETURN_IF_ERROR(CheckShape("dt_proj.weight", w.dt_proj_weight.data(), {d, s.rank}));
  LYRA_RETURN_IF_ERROR(CheckShape("out_proj.weight", w.out_proj_weight.data(), {s.d_model, d}));
  LYRA_RETURN_IF_ERROR(CheckShape("D", w.D.data(), {d}));
  if (w.dt_proj_bias.defined()) {
    LYRA_RETURN_IF_ERROR(CheckShape("dt_proj.bias", w.dt_proj_bias.data(), {d}));
  }
  if (w.out_proj_bias.defined()) {
    LYRA_RETURN_IF_ERROR(CheckShape("out_proj.bias", w.out_proj_bias.data(), {s.d_model}));
  }
  if (!w.conv_weight.defined() || w.conv_weight.size(0) != d) {
    return absl::InvalidArgumentError(absl::StrCat("MambaInner: conv1d.weight must be [", d,
                                                   ", 1, K]"));
  }
  for (const autograd::Variable* v : {&w.x_proj_weight, &w.dt_proj_weight, &w.out_proj_weight}) {
    if (v->dtype() != xz.dtype()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "MambaInner: projection weights must have xz's dtype ", DTypeName(xz.dtype()),
          " (pass nn::ComputeWeight copies under autocast), got ", v->data().Describe()));
    }
  }
  s.xz = xz.data();
  s.conv_w = w.conv_weight.data();
  s.conv_b = w.conv_bias.data();
  s.x_proj_w = w.x_proj_weight.data();
  s.dt_proj_w = w.dt_proj_weight.data();
  s.dt_proj_b = w.dt_proj_bias.data();
  s.A_log = w.A_log.data();
  s.D = w.D.data();
  s.out_w = w.out_proj_weight.data();
  s.out_b = w.out_proj_bias.data();
  s.seq_idx = seq_idx;
  return s;
}

// [B, D, L] (any strides) -> [B·L, D].
absl::StatusOr<Tensor> ChannelsFirstToRows(const Tensor& bdl) {
  LYRA_ASSIGN_OR_RETURN(Tensor bld, bdl.Transpose(1, 2));
  return Rows(bld);
}

// The backward: recompute the forward, then walk it back.
absl::StatusOr<std::vector<Tensor>> Backward(const Saved& s, const std::vector<bool>& need,
                                             const Tensor& dout) {
  const int64_t b = s.batch, l = s.length, d = s.d_inner;
  LYRA_ASSIGN_OR_RETURN(Forward f, RunForward(s, /*keep_chunk_states=*/true));
  LYRA_ASSIGN_OR_RETURN(Tensor dout_flat, dout.Reshape({b * l, s.d_model}));
  std::vector<Tensor> grads(10);
  // out = y W_outᵀ + b:  dy = dout W_out, dW_out = doutᵀ y, db = Σ dout.
  if (need[8]) {
    LYRA_ASSIGN_OR_RETURN(Tensor dout_t, dout_flat.Transpose(0, 1));
    LYRA_ASSIGN_OR_RETURN(grads[8], Matmul(dout_t, f.y_flat));
  }
  if (need[9]) {
    LYRA_ASSIGN_OR_RETURN(grads[9], Sum(dout_flat, {0}));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dy_flat, Matmul(dout_flat, s.out_w));  // [B·L, D]
  LYRA_ASSIGN_OR_RETURN(Tensor dy_bld, dy_flat.View({b, l, d}));
  LYRA_ASSIGN_OR_RETURN(Tensor dy, dy_bld.Transpose(1, 2));
  LYRA_ASSIGN_OR_RETURN(SelectiveScanGrads sg,
                        SelectiveScanBackward(f.scan, dy, Tensor(), f.scan_out.chunk_states));
  // A = -exp(A_log): dA_log = dA * A.
  if (need[6]) {
    LYRA_ASSIGN_OR_RETURN(grads[6], Mul(sg.dA, f.scan.A));
  }
  if (need[7]) grads[7] = sg.dD;
  if (need[5]) grads[5] = sg.ddelta_bias;
  // delta = dt W_dtᵀ:  d dt = ddelta W_dt,  dW_dt = ddeltaᵀ dt.
  LYRA_ASSIGN_OR_RETURN(Tensor ddelta_flat, ChannelsFirstToRows(sg.ddelta));
  LYRA_ASSIGN_OR_RETURN(Tensor d_dt, Matmul(ddelta_flat, s.dt_proj_w));  // [B·L, R]
  if (need[4]) {
    LYRA_ASSIGN_OR_RETURN(Tensor ddelta_t, ddelta_flat.Transpose(0, 1));
    LYRA_ASSIGN_OR_RETURN(grads[4], Matmul(ddelta_t, f.dt));
  }
  // x_dbl = [dt | B | C] = xc W_xᵀ:  dxc += dx_dbl W_x,  dW_x = dx_dblᵀ xc.
  LYRA_ASSIGN_OR_RETURN(Tensor dB_flat, ChannelsFirstToRows(sg.dB));
  LYRA_ASSIGN_OR_RETURN(Tensor dC_flat, ChannelsFirstToRows(sg.dC));
  LYRA_ASSIGN_OR_RETURN(Tensor dx_dbl, Concat({d_dt, dB_flat, dC_flat}, 1));
  if (need[3]) {
    LYRA_ASSIGN_OR_RETURN(Tensor dx_dbl_t, dx_dbl.Transpose(0, 1));
    LYRA_ASSIGN_OR_RETURN(grads[3], Matmul(dx_dbl_t, f.xc_flat));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dxc_flat, ChannelsFirstToRows(sg.du));
  // du is used only here: accumulate the x_proj term into it (in place when it is contiguous).
  LYRA_ASSIGN_OR_RETURN(dxc_flat, dxc_flat.Contiguous());
  LYRA_RETURN_IF_ERROR(MatmulInto(dx_dbl, s.x_proj_w, dxc_flat, 1, 1));
  LYRA_ASSIGN_OR_RETURN(Tensor dxc_bld, dxc_flat.View({b, l, d}));
  LYRA_ASSIGN_OR_RETURN(Tensor dxc, dxc_bld.Transpose(1, 2));
  // xc = silu(conv(x)).
  LYRA_ASSIGN_OR_RETURN(CausalConv1dGrads cg,
                        CausalConv1dBackward(f.x, s.conv_w, s.conv_b, dxc,
                                             Conv1dActivation::kSilu, s.seq_idx));
  if (need[1]) grads[1] = cg.dweight;
  if (need[2]) grads[2] = cg.dbias;
  if (need[0]) {
    LYRA_ASSIGN_OR_RETURN(Tensor dx_bld, cg.dx.Transpose(1, 2));
    LYRA_ASSIGN_OR_RETURN(Tensor dz_bld, sg.dz.Transpose(1, 2));
    LYRA_ASSIGN_OR_RETURN(grads[0], Concat({dx_bld, dz_bld}, 2));
  }
  return grads;
}

}  // namespace

absl::StatusOr<autograd::Variable> MambaInner(const autograd::Variable& xz,
                                              const MambaInnerWeights& w,
                                              const Tensor& seq_idx) {
  LYRA_ASSIGN_OR_RETURN(Saved saved, Validate(xz, w, seq_idx));
  LYRA_ASSIGN_OR_RETURN(Forward f, RunForward(saved, /*keep_chunk_states=*/false));
  LYRA_ASSIGN_OR_RETURN(Tensor out, OutProjection(saved, f.y_flat));
  const std::vector<autograd::Variable> inputs = {
      xz,        w.conv_weight, w.conv_bias, w.x_proj_weight,   w.dt_proj_weight,
      w.dt_proj_bias, w.A_log,  w.D,         w.out_proj_weight, w.out_proj_bias};
  std::vector<bool> need;
  for (const autograd::Variable& v : inputs) need.push_back(v.requires_grad());
  return autograd::RecordUnaryResult(
      "MambaInner", inputs, out,
      [saved = std::move(saved), need](const std::vector<Tensor>& g)
          -> absl::StatusOr<std::vector<Tensor>> { return Backward(saved, need, g[0]); });
}

}  // namespace lyra::mamba
