#include "mamba/mamba_inner.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "mamba/selective_scan.h"
#include "nn/autocast.h"
#include "nn/conv1d.h"
#include "tensor/elementwise.h"
#include "tensor/index.h"
#include "tensor/matmul.h"
#include "tensor/random.h"
#include "tensor/reduce.h"

namespace lyra::mamba {
namespace {

// Bool elements per Philox block in tensor/random.h's Bernoulli (its table in cuda/random.h): a
// dropout mask of n elements reserves ceil(n / 4) blocks of the adapter's generator.
constexpr int64_t kMaskElementsPerPhiloxBlock = 4;

// One active adapter of a call: its factors in the compute dtype and, when its dropout is on,
// where the mask was drawn (the backward regenerates the same mask from there).
struct LoraSaved {
  Tensor A;            // [r, in]
  Tensor B;            // [out, r]
  double scale = 0;
  double p = 0;        // dropout probability while the mask is active, else 0
  uint64_t seed = 0;
  uint64_t offset = 0;  // first Philox block of the mask
  bool defined() const { return A.defined(); }
};

// The saved inputs of one call: enough to recompute everything.
struct Saved {
  Tensor xz, conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A_log, D, out_w, out_b, seq_idx;
  LoraSaved x_lora, dt_lora, out_lora;
  int64_t batch = 0, length = 0, d_inner = 0, rank = 0, d_state = 0, d_model = 0;
};

// The adapter's side of one projection y += scale · (drop(x) Aᵀ) Bᵀ, kept for the backward.
struct LoraForward {
  Tensor mask;  // [rows, in] bool, undefined without dropout
  Tensor in;    // drop(x) [rows, in] (x itself without dropout)
  Tensor t;     // in Aᵀ [rows, r]
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
  LoraForward x_lora, dt_lora, out_lora;
};

// mask ? t / (1 - p) : 0, the same ops as nn::functional::Dropout (so the values are identical).
absl::StatusOr<Tensor> MaskedScale(const Tensor& mask, const Tensor& t, double p) {
  LYRA_ASSIGN_OR_RETURN(Tensor scaled, MulScalar(t, 1.0 / (1.0 - p)));
  LYRA_ASSIGN_OR_RETURN(Tensor zero, Tensor::Scalar(0, t.dtype(), t.device()));
  return Where(mask, scaled, zero);
}

// The adapter's input side for x [rows, in]: the mask (regenerated from the saved Philox
// position: Bernoulli(shape, 1 - p) at that offset is exactly what nn::functional::Dropout draws
// there), drop(x) and t = drop(x) Aᵀ.
absl::StatusOr<LoraForward> LoraInput(const LoraSaved& lora, const Tensor& x) {
  LoraForward f;
  f.in = x;
  if (lora.p > 0) {
    Generator replay(lora.seed);
    replay.set_state(lora.seed, lora.offset);
    LYRA_ASSIGN_OR_RETURN(f.mask, Bernoulli(x.shape(), 1.0 - lora.p, x.device(), replay));
    LYRA_ASSIGN_OR_RETURN(f.in, MaskedScale(f.mask, x, lora.p));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor a_t, lora.A.Transpose(0, 1));
  LYRA_ASSIGN_OR_RETURN(f.t, Matmul(f.in, a_t));
  return f;
}

// out += scale · t Bᵀ (out: a fresh contiguous [rows, out] product of the base weight).
absl::StatusOr<LoraForward> AddLora(const LoraSaved& lora, const Tensor& x, const Tensor& out) {
  LYRA_ASSIGN_OR_RETURN(LoraForward f, LoraInput(lora, x));
  LYRA_ASSIGN_OR_RETURN(Tensor b_t, lora.B.Transpose(0, 1));
  LYRA_RETURN_IF_ERROR(MatmulInto(f.t, b_t, out, lora.scale, 1));
  return f;
}

// The backward of y += scale · (drop(x) Aᵀ) Bᵀ for the upstream gradient g [rows, out]:
//   dt = scale · g B            [rows, r]
//   dB = scale · gᵀ t           [out, r]   (= when wanted)
//   dA = dtᵀ drop(x)            [r, in]    (= when wanted)
//   dx += drop'(dt A)           [rows, in] (the mask times 1 / (1 - p), or dt A itself)
// `dx` is accumulated in place when the adapter has no dropout (it must then be contiguous and
// not shared); the result is the updated dx.
absl::StatusOr<Tensor> LoraBackward(const LoraSaved& lora, const LoraForward& f, const Tensor& g,
                                    bool need_a, bool need_b, Tensor dx, Tensor* dA,
                                    Tensor* dB) {
  LYRA_ASSIGN_OR_RETURN(Tensor g_b, Matmul(g, lora.B));
  LYRA_ASSIGN_OR_RETURN(Tensor dt, MulScalar(g_b, lora.scale));
  if (need_b) {
    LYRA_ASSIGN_OR_RETURN(Tensor g_t, g.Transpose(0, 1));
    LYRA_ASSIGN_OR_RETURN(Tensor gt_t, Matmul(g_t, f.t));
    LYRA_ASSIGN_OR_RETURN(*dB, MulScalar(gt_t, lora.scale));
  }
  if (need_a) {
    LYRA_ASSIGN_OR_RETURN(Tensor dt_t, dt.Transpose(0, 1));
    LYRA_ASSIGN_OR_RETURN(*dA, Matmul(dt_t, f.in));
  }
  if (lora.p == 0) {
    LYRA_RETURN_IF_ERROR(MatmulInto(dt, lora.A, dx, 1, 1));
    return dx;
  }
  LYRA_ASSIGN_OR_RETURN(Tensor d_in, Matmul(dt, lora.A));
  LYRA_ASSIGN_OR_RETURN(Tensor d_x, MaskedScale(f.mask, d_in, lora.p));
  return Add(dx, d_x);
}

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
  if (s.x_lora.defined()) {
    LYRA_ASSIGN_OR_RETURN(f.x_lora, AddLora(s.x_lora, f.xc_flat, x_dbl));
  }
  LYRA_ASSIGN_OR_RETURN(f.dt, x_dbl.Narrow(1, 0, s.rank));
  LYRA_ASSIGN_OR_RETURN(Tensor dt_proj_t, s.dt_proj_w.Transpose(0, 1));
  LYRA_ASSIGN_OR_RETURN(f.delta, Matmul(f.dt, dt_proj_t));  // [B·L, D]
  if (s.dt_lora.defined()) {
    LYRA_ASSIGN_OR_RETURN(f.dt_lora, AddLora(s.dt_lora, f.dt, f.delta));
  }
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

// out = y W_outᵀ + b (+ the adapter's term), [B, L, M].
absl::StatusOr<Tensor> OutProjection(const Saved& s, Forward& f) {
  LYRA_ASSIGN_OR_RETURN(Tensor out_t, s.out_w.Transpose(0, 1));
  LYRA_ASSIGN_OR_RETURN(Tensor out, s.out_b.defined() ? MatmulBias(f.y_flat, out_t, s.out_b)
                                                      : Matmul(f.y_flat, out_t));
  if (s.out_lora.defined()) {
    LYRA_ASSIGN_OR_RETURN(f.out_lora, AddLora(s.out_lora, f.y_flat, out));
  }
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

// The compute copies of one adapter's factors (nn::ComputeWeight, then xz's dtype), checked
// against the projection's [out, in]; undefined Variables when there is no adapter.
struct LoraInputs {
  autograd::Variable A, B;
};
absl::StatusOr<LoraInputs> LoraCompute(const char* name, const nn::LoraFactors* factors,
                                       int64_t out, int64_t in, DType dtype) {
  LoraInputs li;
  if (factors == nullptr) return li;
  const nn::LoraFactors& f = *factors;
  if (!f.A.defined() || !f.B.defined() || f.A.dim() != 2 || f.B.dim() != 2 ||
      f.A.size(1) != in || f.B.size(0) != out || f.A.size(0) < 1 ||
      f.B.size(1) != f.A.size(0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MambaInner: ", name, " LoRA factors must be A [r, ", in, "] and B [", out,
        ", r], got A ", f.A.defined() ? f.A.data().Describe() : "undefined", " and B ",
        f.B.defined() ? f.B.data().Describe() : "undefined"));
  }
  if (!std::isfinite(f.scale) || !(f.dropout >= 0 && f.dropout < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("MambaInner: ", name, " LoRA scale ",
                                                   f.scale, " / dropout ", f.dropout,
                                                   " (need a finite scale, 0 <= dropout < 1)"));
  }
  if (f.training && f.dropout > 0 && f.generator == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "MambaInner: ", name, " LoRA dropout ", f.dropout, " while training needs a generator"));
  }
  for (autograd::Variable* v : {&li.A, &li.B}) {
    LYRA_ASSIGN_OR_RETURN(*v, nn::ComputeWeight(v == &li.A ? f.A : f.B));
    if (v->dtype() != dtype) {
      LYRA_ASSIGN_OR_RETURN(*v, autograd::Cast(*v, dtype));
    }
  }
  return li;
}

// Fills `saved` for one adapter and reserves its mask's Philox blocks (rows × in elements) from
// the adapter's generator: once per forward, so the backward replays the same mask.
void SaveLora(const nn::LoraFactors* factors, const LoraInputs& li, int64_t rows, int64_t in,
              LoraSaved& saved) {
  if (factors == nullptr) return;
  saved.A = li.A.data();
  saved.B = li.B.data();
  saved.scale = factors->scale;
  if (factors->training && factors->dropout > 0) {
    saved.p = factors->dropout;
    saved.seed = factors->generator->seed();
    const int64_t n = rows * in;
    saved.offset = factors->generator->Advance(
        static_cast<uint64_t>((n + kMaskElementsPerPhiloxBlock - 1) / kMaskElementsPerPhiloxBlock));
  }
}

// [B, D, L] (any strides) -> [B·L, D].
absl::StatusOr<Tensor> ChannelsFirstToRows(const Tensor& bdl) {
  LYRA_ASSIGN_OR_RETURN(Tensor bld, bdl.Transpose(1, 2));
  return Rows(bld);
}

// Inputs of the node, in order: xz, conv weight / bias, x_proj, dt_proj weight / bias, A_log, D,
// out_proj weight / bias, then the A and B factors of the x_proj, dt_proj and out_proj adapters.
constexpr int kNumInputs = 16;

// The backward: recompute the forward, then walk it back.
absl::StatusOr<std::vector<Tensor>> Backward(const Saved& s, const std::vector<bool>& need,
                                             const Tensor& dout) {
  const int64_t b = s.batch, l = s.length, d = s.d_inner;
  LYRA_ASSIGN_OR_RETURN(Forward f, RunForward(s, /*keep_chunk_states=*/true));
  LYRA_ASSIGN_OR_RETURN(Tensor dout_flat, dout.Reshape({b * l, s.d_model}));
  std::vector<Tensor> grads(kNumInputs);
  // out = y W_outᵀ + b (+ scale · (drop(y) Aᵀ) Bᵀ):  dy = dout W_out (+ the adapter's term),
  // dW_out = doutᵀ y, db = Σ dout.
  if (s.out_lora.defined()) {
    LYRA_ASSIGN_OR_RETURN(f.out_lora, LoraInput(s.out_lora, f.y_flat));
  }
  if (need[8]) {
    LYRA_ASSIGN_OR_RETURN(Tensor dout_t, dout_flat.Transpose(0, 1));
    LYRA_ASSIGN_OR_RETURN(grads[8], Matmul(dout_t, f.y_flat));
  }
  if (need[9]) {
    LYRA_ASSIGN_OR_RETURN(grads[9], Sum(dout_flat, {0}));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dy_flat, Matmul(dout_flat, s.out_w));  // [B·L, D]
  if (s.out_lora.defined()) {
    LYRA_ASSIGN_OR_RETURN(dy_flat, LoraBackward(s.out_lora, f.out_lora, dout_flat, need[14],
                                                need[15], dy_flat, &grads[14], &grads[15]));
  }
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
  if (s.dt_lora.defined()) {  // delta += scale · (drop(dt) Aᵀ) Bᵀ
    LYRA_ASSIGN_OR_RETURN(d_dt, LoraBackward(s.dt_lora, f.dt_lora, ddelta_flat, need[12],
                                             need[13], d_dt, &grads[12], &grads[13]));
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
  if (s.x_lora.defined()) {  // x_dbl += scale · (drop(xc) Aᵀ) Bᵀ
    LYRA_ASSIGN_OR_RETURN(dxc_flat, LoraBackward(s.x_lora, f.x_lora, dx_dbl, need[10], need[11],
                                                 dxc_flat, &grads[10], &grads[11]));
  }
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
  const int64_t rows = saved.batch * saved.length, d = saved.d_inner;
  const int64_t r_2n = saved.rank + 2 * saved.d_state;
  LYRA_ASSIGN_OR_RETURN(LoraInputs x_lora,
                        LoraCompute("x_proj", w.x_proj_lora, r_2n, d, xz.dtype()));
  LYRA_ASSIGN_OR_RETURN(LoraInputs dt_lora,
                        LoraCompute("dt_proj", w.dt_proj_lora, d, saved.rank, xz.dtype()));
  LYRA_ASSIGN_OR_RETURN(LoraInputs out_lora,
                        LoraCompute("out_proj", w.out_proj_lora, saved.d_model, d, xz.dtype()));
  // Masks are reserved in the order the composed mixer draws them: x_proj, dt_proj, out_proj.
  SaveLora(w.x_proj_lora, x_lora, rows, d, saved.x_lora);
  SaveLora(w.dt_proj_lora, dt_lora, rows, saved.rank, saved.dt_lora);
  SaveLora(w.out_proj_lora, out_lora, rows, d, saved.out_lora);
  LYRA_ASSIGN_OR_RETURN(Forward f, RunForward(saved, /*keep_chunk_states=*/false));
  LYRA_ASSIGN_OR_RETURN(Tensor out, OutProjection(saved, f));
  const std::vector<autograd::Variable> inputs = {
      xz,        w.conv_weight, w.conv_bias, w.x_proj_weight,   w.dt_proj_weight,
      w.dt_proj_bias, w.A_log,  w.D,         w.out_proj_weight, w.out_proj_bias,
      x_lora.A,  x_lora.B,      dt_lora.A,   dt_lora.B,         out_lora.A,
      out_lora.B};
  std::vector<bool> need;
  for (const autograd::Variable& v : inputs) need.push_back(v.requires_grad());
  return autograd::RecordUnaryResult(
      "MambaInner", inputs, out,
      [saved = std::move(saved), need](const std::vector<Tensor>& g)
          -> absl::StatusOr<std::vector<Tensor>> { return Backward(saved, need, g[0]); });
}

}  // namespace lyra::mamba
