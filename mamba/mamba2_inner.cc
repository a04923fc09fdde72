#include "mamba/mamba2_inner.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/status_macros.h"
#include "mamba/ssd.h"
#include "nn/autocast.h"
#include "nn/conv1d.h"
#include "nn/gated_rms_norm.h"
#include "tensor/elementwise.h"
#include "tensor/index.h"
#include "tensor/matmul.h"
#include "tensor/random.h"
#include "tensor/reduce.h"

namespace lyra::mamba {
namespace {

using autograd::Variable;

// The node's inputs, in order.
enum Input {
  kZxbcdt,
  kConvWeight,
  kConvBias,
  kDtBias,
  kALog,
  kD,
  kNormWeight,
  kOutWeight,
  kOutBias,
  kLoraA,
  kLoraB,
  kNumInputs
};

// The saved inputs of one call: enough to recompute everything.
struct Saved {
  Tensor zxbcdt, conv_w, conv_b, dt_bias, A_log, D, norm_w, out_w, out_b, lora_a, lora_b,
      seq_idx;
  Mamba2InnerOptions options;
  int64_t batch = 0, length = 0, d_inner = 0, conv_dim = 0, d_model = 0, norm_group = 0;
  // LoRA on out_proj (lora_a defined) and its dropout: the mask is Bernoulli(1 - p) drawn from
  // Philox (seed, offset), regenerated in the backward.
  double lora_scale = 1;
  double dropout = 0;  // > 0 only while training
  uint64_t mask_seed = 0, mask_offset = 0;
};

// The forward's intermediates (recomputed in the backward).
struct Forward {
  Tensor xbc;  // [B, C, L] view of zxbcdt (conv input)
  Tensor z;    // [B, L, D] view of zxbcdt
  SsdInputs ssd;
  SsdResult ssd_out;
  Tensor y;       // [B, L, D] the SSD output
  Tensor rstd;    // [B·L, D / S] the norm's statistics (norm only)
  Tensor y_flat;  // [B·L, D] the out_proj input (the norm's output)
  Tensor mask;    // [B·L, D] bool, LoRA dropout only
  Tensor u;       // [B·L, D] the LoRA input: dropout(y_flat)
};

// mask ? t * scale : 0 (nn::Dropout's math).
absl::StatusOr<Tensor> MaskedScale(const Tensor& mask, const Tensor& t, double scale) {
  LYRA_ASSIGN_OR_RETURN(Tensor scaled, MulScalar(t, scale));
  LYRA_ASSIGN_OR_RETURN(Tensor zero, Tensor::Scalar(0, t.dtype(), t.device()));
  return Where(mask, scaled, zero);
}

absl::StatusOr<Forward> RunForward(const Saved& s) {
  Forward f;
  const Mamba2InnerOptions& o = s.options;
  const int64_t b = s.batch, l = s.length, d = s.d_inner, gn = o.groups * o.dstate;
  LYRA_ASSIGN_OR_RETURN(f.z, s.zxbcdt.Narrow(2, 0, d));
  LYRA_ASSIGN_OR_RETURN(Tensor xbc_bld, s.zxbcdt.Narrow(2, d, s.conv_dim));
  LYRA_ASSIGN_OR_RETURN(f.xbc, xbc_bld.Transpose(1, 2));
  LYRA_ASSIGN_OR_RETURN(Tensor dt, s.zxbcdt.Narrow(2, d + s.conv_dim, o.heads));
  // The conv output keeps the input's channel-last layout: [B, L, C] memory.
  LYRA_ASSIGN_OR_RETURN(Tensor xc, CausalConv1d(f.xbc, s.conv_w, s.conv_b,
                                                Conv1dActivation::kSilu, s.seq_idx));
  LYRA_ASSIGN_OR_RETURN(Tensor xc_bld, xc.Transpose(1, 2));
  LYRA_ASSIGN_OR_RETURN(Tensor x, xc_bld.Narrow(2, 0, d));
  LYRA_ASSIGN_OR_RETURN(f.ssd.x, x.Reshape({b, l, o.heads, o.head_dim}));
  LYRA_ASSIGN_OR_RETURN(Tensor bm, xc_bld.Narrow(2, d, gn));
  LYRA_ASSIGN_OR_RETURN(f.ssd.B, bm.Reshape({b, l, o.groups, o.dstate}));
  LYRA_ASSIGN_OR_RETURN(Tensor cm, xc_bld.Narrow(2, d + gn, gn));
  LYRA_ASSIGN_OR_RETURN(f.ssd.C, cm.Reshape({b, l, o.groups, o.dstate}));
  f.ssd.dt = dt;
  LYRA_ASSIGN_OR_RETURN(Tensor a, Exp(s.A_log));
  LYRA_ASSIGN_OR_RETURN(f.ssd.A, Neg(a));
  f.ssd.D = s.D;
  f.ssd.dt_bias = s.dt_bias;
  if (!o.norm) {
    LYRA_ASSIGN_OR_RETURN(f.ssd.z, f.z.Reshape({b, l, o.heads, o.head_dim}));
  }
  f.ssd.seq_idx = s.seq_idx;
  f.ssd.dt_softplus = true;
  f.ssd.dt_min = o.dt_min;
  f.ssd.dt_max = o.dt_max;
  f.ssd.chunk = o.chunk;
  LYRA_ASSIGN_OR_RETURN(f.ssd_out, SsdForward(f.ssd));
  LYRA_ASSIGN_OR_RETURN(f.y, f.ssd_out.y.Reshape({b, l, d}));
  Tensor normed = f.y;
  if (o.norm) {
    LYRA_ASSIGN_OR_RETURN(nn::functional::GatedNormForwardResult n,
                          nn::functional::GatedRmsNormForward(f.y, f.z, s.norm_w, s.norm_group,
                                                              o.norm_eps));
    normed = std::move(n.y);
    f.rstd = std::move(n.rstd);
  }
  LYRA_ASSIGN_OR_RETURN(f.y_flat, normed.Reshape({b * l, d}));
  if (s.lora_a.defined()) {
    f.u = f.y_flat;
    if (s.dropout > 0) {
      Generator gen(s.mask_seed);
      gen.set_state(s.mask_seed, s.mask_offset);
      LYRA_ASSIGN_OR_RETURN(f.mask, Bernoulli(f.y_flat.shape(), 1.0 - s.dropout,
                                              f.y_flat.device(), gen));
      LYRA_ASSIGN_OR_RETURN(f.u, MaskedScale(f.mask, f.y_flat, 1.0 / (1.0 - s.dropout)));
    }
  }
  return f;
}

// out = y W_outᵀ (+ b) + scale (u Aᵀ) Bᵀ, [B, L, M].
absl::StatusOr<Tensor> OutProjection(const Saved& s, const Forward& f) {
  LYRA_ASSIGN_OR_RETURN(Tensor out_t, s.out_w.Transpose(0, 1));
  LYRA_ASSIGN_OR_RETURN(Tensor out, s.out_b.defined() ? MatmulBias(f.y_flat, out_t, s.out_b)
                                                      : Matmul(f.y_flat, out_t));
  if (s.lora_a.defined()) {
    LYRA_ASSIGN_OR_RETURN(Tensor a_t, s.lora_a.Transpose(0, 1));
    LYRA_ASSIGN_OR_RETURN(Tensor t, Matmul(f.u, a_t));  // [B·L, r]
    LYRA_ASSIGN_OR_RETURN(Tensor b_t, s.lora_b.Transpose(0, 1));
    LYRA_RETURN_IF_ERROR(MatmulInto(t, b_t, out, s.lora_scale, 1));
  }
  return out.View({s.batch, s.length, s.d_model});
}

absl::Status CheckShape(const char* name, const Tensor& t, const Shape& want) {
  if (!t.defined() || t.shape() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("Mamba2Inner: ", name, " is ", t.defined() ? t.Describe() : "undefined",
                     ", expected ", ShapeToString(want)));
  }
  return absl::OkStatus();
}

absl::Status CheckDType(const char* name, const Tensor& t, DType want) {
  if (t.defined() && t.dtype() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Mamba2Inner: ", name, " must have zxbcdt's dtype ", DTypeName(want),
        " (pass nn::ComputeWeight copies under autocast), got ", t.Describe()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Saved> Validate(const Variable& zxbcdt, const Mamba2InnerWeights& w,
                               const Variable& lora_a, const Variable& lora_b,
                               const Mamba2InnerOptions& o, const Tensor& seq_idx) {
  if (o.heads < 1 || o.head_dim < 1 || o.groups < 1 || o.dstate < 1 || o.heads % o.groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Mamba2Inner: needs heads, head_dim, groups, dstate >= 1 and groups dividing heads, got "
        "heads ",
        o.heads, ", head_dim ", o.head_dim, ", groups ", o.groups, ", dstate ", o.dstate));
  }
  Saved s;
  s.options = o;
  s.d_inner = o.heads * o.head_dim;
  s.conv_dim = s.d_inner + 2 * o.groups * o.dstate;
  const int64_t want = s.d_inner + s.conv_dim + o.heads;
  if (!zxbcdt.defined() || zxbcdt.dim() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("Mamba2Inner: zxbcdt must be [B, L, ", want, "], got ",
                     zxbcdt.defined() ? zxbcdt.data().Describe() : "undefined"));
  }
  const int64_t width = zxbcdt.size(2);
  if (width > want && (width - want) % 2 == 0) {
    return absl::UnimplementedError(absl::StrCat(
        "Mamba2Inner: zxbcdt ", zxbcdt.data().Describe(), " has a d_mlp part of ",
        (width - want) / 2, " (2D + 2GN + H = ", want, "); only d_mlp = 0 is supported"));
  }
  if (width != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Mamba2Inner: zxbcdt ", zxbcdt.data().Describe(), " must have last dim 2D + 2GN + H = ",
        want, " (D = ", s.d_inner, ", G = ", o.groups, ", N = ", o.dstate, ", H = ", o.heads, ")"));
  }
  s.batch = zxbcdt.size(0);
  s.length = zxbcdt.size(1);
  const DType dtype = zxbcdt.dtype();
  const int64_t h = o.heads, d = s.d_inner;

  LYRA_RETURN_IF_ERROR(CheckShape("A_log", w.A_log.data(), {h}));
  if (w.dt_bias.defined()) LYRA_RETURN_IF_ERROR(CheckShape("dt_bias", w.dt_bias.data(), {h}));
  if (w.D.defined() && w.D.dim() != 1) {
    LYRA_RETURN_IF_ERROR(CheckShape("D", w.D.data(), {h, o.head_dim}));
  } else if (w.D.defined()) {
    LYRA_RETURN_IF_ERROR(CheckShape("D", w.D.data(), {h}));
  }
  if (!w.conv_weight.defined() || w.conv_weight.size(0) != s.conv_dim ||
      (w.conv_weight.dim() == 3 && w.conv_weight.size(1) != 1) ||
      (w.conv_weight.dim() != 2 && w.conv_weight.dim() != 3)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Mamba2Inner: conv1d.weight must be [", s.conv_dim, ", 1, K], got ",
        w.conv_weight.defined() ? w.conv_weight.data().Describe() : "undefined"));
  }
  if (w.conv_bias.defined()) {
    LYRA_RETURN_IF_ERROR(CheckShape("conv1d.bias", w.conv_bias.data(), {s.conv_dim}));
  }
  if (o.norm) {
    LYRA_RETURN_IF_ERROR(CheckShape("norm.weight", w.norm_weight.data(), {d}));
  }
  s.norm_group = o.norm_group_size == 0 ? d : o.norm_group_size;
  if (s.norm_group < 1 || d % s.norm_group != 0) {
    return absl::InvalidArgumentError(absl::StrCat("Mamba2Inner: norm group size ",
                                                   o.norm_group_size, " does not divide D = ", d));
  }
  if (!w.out_proj_weight.defined() || w.out_proj_weight.dim() != 2) {
    return absl::InvalidArgumentError("Mamba2Inner: out_proj.weight must be [M, D]");
  }
  s.d_model = w.out_proj_weight.size(0);
  LYRA_RETURN_IF_ERROR(CheckShape("out_proj.weight", w.out_proj_weight.data(), {s.d_model, d}));
  LYRA_RETURN_IF_ERROR(CheckDType("out_proj.weight", w.out_proj_weight.data(), dtype));
  if (w.out_proj_bias.defined()) {
    LYRA_RETURN_IF_ERROR(CheckShape("out_proj.bias", w.out_proj_bias.data(), {s.d_model}));
    LYRA_RETURN_IF_ERROR(CheckDType("out_proj.bias", w.out_proj_bias.data(), dtype));
  }
  if (w.out_proj_lora != nullptr) {
    const nn::LoraFactors& lora = *w.out_proj_lora;
    if (!lora_a.defined() || !lora_b.defined() || lora_a.dim() != 2) {
      return absl::InvalidArgumentError("Mamba2Inner: out_proj LoRA factors A and B must be 2-D");
    }
    const int64_t r = lora_a.size(0);
    LYRA_RETURN_IF_ERROR(CheckShape("out_proj lora_A", lora_a.data(), {r, d}));
    LYRA_RETURN_IF_ERROR(CheckShape("out_proj lora_B", lora_b.data(), {s.d_model, r}));
    LYRA_RETURN_IF_ERROR(CheckDType("out_proj lora_A", lora_a.data(), dtype));
    LYRA_RETURN_IF_ERROR(CheckDType("out_proj lora_B", lora_b.data(), dtype));
    if (!(lora.dropout >= 0 && lora.dropout < 1)) {
      return absl::InvalidArgumentError(
          absl::StrCat("Mamba2Inner: out_proj LoRA dropout ", lora.dropout, " outside [0, 1)"));
    }
    s.lora_a = lora_a.data();
    s.lora_b = lora_b.data();
    s.lora_scale = lora.scale;
    if (lora.training && lora.dropout > 0) {
      if (lora.generator == nullptr) {
        return absl::InvalidArgumentError(
            "Mamba2Inner: out_proj LoRA dropout while training needs a generator");
      }
      s.dropout = lora.dropout;
      s.mask_seed = lora.generator->seed();
      // Reserve the mask's blocks now, as Bernoulli would: the backward redraws from here.
      const uint64_t elements = static_cast<uint64_t>(s.batch * s.length * d);
      s.mask_offset = lora.generator->Advance((elements + 3) / 4);
    }
  }
  s.zxbcdt = zxbcdt.data();
  s.conv_w = w.conv_weight.data();
  s.conv_b = w.conv_bias.data();
  s.dt_bias = w.dt_bias.data();
  s.A_log = w.A_log.data();
  s.D = w.D.data();
  if (o.norm) s.norm_w = w.norm_weight.data();
  s.out_w = w.out_proj_weight.data();
  s.out_b = w.out_proj_bias.data();
  s.seq_idx = seq_idx;
  return s;
}

// The backward: recompute the forward, then walk it back.
absl::StatusOr<std::vector<Tensor>> Backward(const Saved& s, const std::vector<bool>& need,
                                             const Tensor& dout) {
  const Mamba2InnerOptions& o = s.options;
  const int64_t b = s.batch, l = s.length, d = s.d_inner, gn = o.groups * o.dstate;
  LYRA_ASSIGN_OR_RETURN(Forward f, RunForward(s));
  LYRA_ASSIGN_OR_RETURN(Tensor dout_flat, dout.Reshape({b * l, s.d_model}));
  std::vector<Tensor> grads(kNumInputs);
  LYRA_ASSIGN_OR_RETURN(Tensor dout_t, dout_flat.Transpose(0, 1));
  // out = y W_outᵀ + b:  dy = dout W_out,  dW_out = doutᵀ y,  db = Σ_rows dout.
  if (need[kOutWeight]) {
    LYRA_ASSIGN_OR_RETURN(grads[kOutWeight], Matmul(dout_t, f.y_flat));
  }
  if (need[kOutBias]) {
    LYRA_ASSIGN_OR_RETURN(grads[kOutBias], Sum(dout_flat, {0}));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dy_flat, Matmul(dout_flat, s.out_w));  // [B·L, D]
  if (s.lora_a.defined()) {
    // out += scale (u Aᵀ) Bᵀ, u = dropout(y):  dt = scale dout B,  dB = scale doutᵀ t,
    // dA = dtᵀ u,  dy += dropout'(dt A).
    LYRA_ASSIGN_OR_RETURN(Tensor dt_lora, Matmul(dout_flat, s.lora_b));  // [B·L, r]
    LYRA_ASSIGN_OR_RETURN(dt_lora, MulScalar(dt_lora, s.lora_scale));
    if (need[kLoraB]) {
      LYRA_ASSIGN_OR_RETURN(Tensor a_t, s.lora_a.Transpose(0, 1));
      LYRA_ASSIGN_OR_RETURN(Tensor t, Matmul(f.u, a_t));
      LYRA_ASSIGN_OR_RETURN(grads[kLoraB], Matmul(dout_t, t));
      LYRA_ASSIGN_OR_RETURN(grads[kLoraB], MulScalar(grads[kLoraB], s.lora_scale));
    }
    if (need[kLoraA]) {
      LYRA_ASSIGN_OR_RETURN(Tensor dt_t, dt_lora.Transpose(0, 1));
      LYRA_ASSIGN_OR_RETURN(grads[kLoraA], Matmul(dt_t, f.u));
    }
    if (s.dropout > 0) {
      LYRA_ASSIGN_OR_RETURN(Tensor du, Matmul(dt_lora, s.lora_a));
      LYRA_ASSIGN_OR_RETURN(du, MaskedScale(f.mask, du, 1.0 / (1.0 - s.dropout)));
      LYRA_ASSIGN_OR_RETURN(dy_flat, Add(dy_flat, du));
    } else {
      LYRA_RETURN_IF_ERROR(MatmulInto(dt_lora, s.lora_a, dy_flat, 1, 1));
    }
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dnormed, dy_flat.View({b, l, d}));
  Tensor dy = dnormed, dz;
  if (o.norm) {
    LYRA_ASSIGN_OR_RETURN(nn::functional::GatedNormGradients ng,
                          nn::functional::GatedRmsNormBackward(dnormed, f.y, f.z, s.norm_w,
                                                               f.rstd, s.norm_group));
    dy = std::move(ng.dx);
    dz = std::move(ng.dz);
    if (need[kNormWeight]) grads[kNormWeight] = std::move(ng.dweight);
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dy_heads, dy.Reshape({b, l, o.heads, o.head_dim}));
  // The recomputed forward's chunk-entry states (CUDA) spare the backward its state passing.
  LYRA_ASSIGN_OR_RETURN(SsdGrads g,
                        SsdBackward(f.ssd, dy_heads, Tensor(), f.ssd_out.chunk_states));
  // A = -exp(A_log):  dA_log = dA * A.
  if (need[kALog]) {
    LYRA_ASSIGN_OR_RETURN(grads[kALog], Mul(g.dA, f.ssd.A));
  }
  if (need[kD]) grads[kD] = g.dD;
  if (need[kDtBias]) grads[kDtBias] = g.ddt_bias;
  if (!o.norm) {
    LYRA_ASSIGN_OR_RETURN(dz, g.dz.Reshape({b, l, d}));
  }
  // xBC = silu(conv(xbc)) split into x, B, C.
  LYRA_ASSIGN_OR_RETURN(Tensor dx, g.dx.Reshape({b, l, d}));
  LYRA_ASSIGN_OR_RETURN(Tensor dB, g.dB.Reshape({b, l, gn}));
  LYRA_ASSIGN_OR_RETURN(Tensor dC, g.dC.Reshape({b, l, gn}));
  LYRA_ASSIGN_OR_RETURN(Tensor dxc_bld, Concat({dx, dB, dC}, 2));
  LYRA_ASSIGN_OR_RETURN(Tensor dxc, dxc_bld.Transpose(1, 2));
  LYRA_ASSIGN_OR_RETURN(CausalConv1dGrads cg,
                        CausalConv1dBackward(f.xbc, s.conv_w, s.conv_b, dxc,
                                             Conv1dActivation::kSilu, s.seq_idx));
  if (need[kConvWeight]) grads[kConvWeight] = std::move(cg.dweight);
  if (need[kConvBias]) grads[kConvBias] = std::move(cg.dbias);
  if (need[kZxbcdt]) {
    LYRA_ASSIGN_OR_RETURN(Tensor dxbc, cg.dx.Transpose(1, 2));
    LYRA_ASSIGN_OR_RETURN(grads[kZxbcdt], Concat({dz, dxbc, g.ddt}, 2));
  }
  return grads;
}

}  // namespace

absl::StatusOr<Variable> Mamba2Inner(const Variable& zxbcdt, const Mamba2InnerWeights& w,
                                     const Mamba2InnerOptions& options, const Tensor& seq_idx) {
  Variable lora_a, lora_b;
  if (w.out_proj_lora != nullptr) {
    LYRA_ASSIGN_OR_RETURN(lora_a, nn::ComputeWeight(w.out_proj_lora->A));
    LYRA_ASSIGN_OR_RETURN(lora_b, nn::ComputeWeight(w.out_proj_lora->B));
  }
  LYRA_ASSIGN_OR_RETURN(Saved saved, Validate(zxbcdt, w, lora_a, lora_b, options, seq_idx));
  LYRA_ASSIGN_OR_RETURN(Forward f, RunForward(saved));
  LYRA_ASSIGN_OR_RETURN(Tensor out, OutProjection(saved, f));
  const std::vector<Variable> inputs = {
      zxbcdt,          w.conv_weight,     w.conv_bias, w.dt_bias, w.A_log, w.D,
      options.norm ? w.norm_weight : Variable(), w.out_proj_weight, w.out_proj_bias, lora_a,
      lora_b};
  std::vector<bool> need;
  for (const Variable& v : inputs) need.push_back(v.requires_grad());
  return autograd::RecordUnaryResult(
      "Mamba2Inner", inputs, std::move(out),
      [saved = std::move(saved), need](const std::vector<Tensor>& g)
          -> absl::StatusOr<std::vector<Tensor>> { return Backward(saved, need, g[0]); });
}

}  // namespace lyra::mamba
