#include "mamba/mamba2_mixer.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "mamba/mamba2_inner.h"
#include "mamba/mixer_init.h"
#include "mamba/ssd.h"
#include "mamba/tensor_checks.h"
#include "nn/autocast.h"

namespace lyra::mamba {

using autograd::Variable;

absl::StatusOr<std::unique_ptr<Mamba2Mixer>> Mamba2Mixer::Create(const MambaConfig& config,
                                                                 Generator& gen, DType dtype,
                                                                 Device device) {
  LYRA_RETURN_IF_ERROR(config.Validate());
  if (config.version != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Mamba2Mixer::Create: the config is of Mamba version ", config.version, ", not 2"));
  }
  std::unique_ptr<Mamba2Mixer> mixer(new Mamba2Mixer(config));
  LYRA_RETURN_IF_ERROR(mixer->Init(gen, dtype, device));
  return mixer;
}

absl::Status Mamba2Mixer::Init(Generator& gen, DType dtype, Device device) {
  const MambaConfig& c = config_;
  const int64_t M = c.hidden_size, D = c.intermediate_size, H = c.num_heads;

  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Conv1d> conv,
                        CreateMixerConv1d(conv_dim(), c, gen, dtype, device));
  conv1d_ = RegisterModule("conv1d", std::move(conv));
  LYRA_ASSIGN_OR_RETURN(
      std::unique_ptr<nn::Linear> in_proj,
      CreateNormalLinear(M, D + conv_dim() + H, c.use_bias, c, gen, dtype, device));
  in_proj_ = RegisterModule("in_proj", std::move(in_proj));
  LYRA_ASSIGN_OR_RETURN(Tensor bias, InverseSoftplusDtBias(H, c, gen, dtype, device));
  dt_bias_ = RegisterParameter("dt_bias", std::move(bias));
  std::vector<double> a_log(H);
  for (int64_t h = 0; h < H; ++h) a_log[h] = std::log(static_cast<double>(h + 1));
  LYRA_ASSIGN_OR_RETURN(Tensor a_log_t, Tensor::FromDoubles(a_log, {H}, dtype, device));
  A_log_ = RegisterParameter("A_log", std::move(a_log_t));

  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::GatedRMSNorm> norm,
                        nn::GatedRMSNorm::Create(D, c.norm_group_size, c.norm_epsilon, dtype,
                                                 device));
  norm_ = RegisterModule("norm", std::move(norm));

  LYRA_ASSIGN_OR_RETURN(Tensor d_t, Tensor::Ones({c.D_has_hdim ? D : H}, dtype, device));
  D_ = RegisterParameter("D", std::move(d_t));

  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> out_proj,
                        CreateOutProj(c, gen, dtype, device));
  out_proj_ = RegisterModule("out_proj", std::move(out_proj));
  return absl::OkStatus();
}

absl::StatusOr<Mamba2Mixer::SsdParams> Mamba2Mixer::SsdParameters(DType act) const {
  const DType p = ScanParamDType(act);
  SsdParams out;
  LYRA_ASSIGN_OR_RETURN(out.A, NegExpA(A_log_, p));
  LYRA_ASSIGN_OR_RETURN(out.D, CastTo(D_, p));
  if (config_.D_has_hdim) {
    LYRA_ASSIGN_OR_RETURN(out.D,
                          autograd::Reshape(out.D, {config_.num_heads, config_.head_dim}));
  }
  LYRA_ASSIGN_OR_RETURN(out.dt_bias, CastTo(dt_bias_, p));
  return out;
}

absl::StatusOr<Variable> Mamba2Mixer::ForwardFused(const Variable& h,
                                                   const Tensor& seq_idx) const {
  const MambaConfig& c = config_;
  LYRA_ASSIGN_OR_RETURN(Variable zxbcdt, in_proj_->Forward(h));
  const DType p = ScanParamDType(zxbcdt.dtype());
  Mamba2InnerWeights w;
  w.conv_weight = conv1d_->weight();
  w.conv_bias = conv1d_->bias();
  LYRA_ASSIGN_OR_RETURN(w.dt_bias, CastTo(dt_bias_, p));
  LYRA_ASSIGN_OR_RETURN(w.A_log, CastTo(A_log_, p));
  LYRA_ASSIGN_OR_RETURN(w.D, CastTo(D_, p));
  if (c.D_has_hdim) {
    LYRA_ASSIGN_OR_RETURN(w.D, autograd::Reshape(w.D, {c.num_heads, c.head_dim}));
  }
  w.norm_weight = norm_->weight();
  LYRA_ASSIGN_OR_RETURN(w.out_proj_weight, nn::ComputeWeight(out_proj_->weight()));
  if (out_proj_->bias().defined()) {
    LYRA_ASSIGN_OR_RETURN(w.out_proj_bias, nn::ComputeWeight(out_proj_->bias()));
  }
  // Weights stored in another dtype than the activations (a model cast with Module::To but run
  // under another autocast dtype) are cast here, once per call.
  for (Variable* v : {&w.out_proj_weight, &w.out_proj_bias}) {
    if (v->defined() && v->dtype() != zxbcdt.dtype()) {
      LYRA_ASSIGN_OR_RETURN(*v, autograd::Cast(*v, zxbcdt.dtype()));
    }
  }
  w.out_proj_lora = out_proj_->active_lora();
  Mamba2InnerOptions o;
  o.heads = c.num_heads;
  o.head_dim = c.head_dim;
  o.groups = c.n_groups;
  o.dstate = c.state_size;
  o.chunk = c.chunk_size;
  o.dt_min = c.time_step_limit_min;
  o.dt_max = c.time_step_limit_max;
  o.norm_eps = c.norm_epsilon;
  o.norm = true;
  o.norm_group_size = c.norm_group_size;
  return Mamba2Inner(zxbcdt, w, o, seq_idx);
}

absl::StatusOr<Variable> Mamba2Mixer::Forward(const Variable& h, const Tensor& seq_idx,
                                              MambaLayerState* state) const {
  LYRA_RETURN_IF_ERROR(CheckHiddenStates("Mamba2Mixer::Forward",
                                         h.defined() ? h.data() : Tensor(), 3,
                                         config_.hidden_size));
  if (state == nullptr) return ForwardFused(h, seq_idx);
  const MambaConfig& c = config_;
  const int64_t B = h.size(0), L = h.size(1);
  const int64_t D = c.intermediate_size, H = c.num_heads, P = c.head_dim;
  const int64_t G = c.n_groups, N = c.state_size, GN = GroupStateSize();

  // 1. zxbcdt = in_proj(h) [B, L, D + conv_dim + H] -> z [B, L, D], xBC as [B, conv_dim, L]
  //    (a channel-last view), dt [B, L, H].
  LYRA_ASSIGN_OR_RETURN(Variable zxbcdt, in_proj_->Forward(h));
  LYRA_ASSIGN_OR_RETURN(Variable z, autograd::Narrow(zxbcdt, 2, 0, D));
  LYRA_ASSIGN_OR_RETURN(Variable xbc_bld, autograd::Narrow(zxbcdt, 2, D, conv_dim()));
  LYRA_ASSIGN_OR_RETURN(Variable dt, autograd::Narrow(zxbcdt, 2, D + conv_dim(), H));
  LYRA_ASSIGN_OR_RETURN(Variable xbc, autograd::Transpose(xbc_bld, 1, 2));

  // 2. xBC = silu(conv1d(xBC)), causal; the conv state continues from / is written to `state`.
  const bool continuing = state != nullptr && state->defined();
  Variable conv_initial;
  if (continuing) {
    LYRA_ASSIGN_OR_RETURN(conv_initial, StartingState(state->conv_state, xbc.dtype()));
  }
  Tensor conv_final;
  LYRA_ASSIGN_OR_RETURN(Variable u,
                        conv1d_->Forward(xbc, Conv1dActivation::kSilu, seq_idx, conv_initial,
                                         state != nullptr ? &conv_final : nullptr));

  // 3. x [B, L, H, P], B and C [B, L, G, N] out of the conv output [B, L, conv_dim].
  LYRA_ASSIGN_OR_RETURN(Variable u_bld, autograd::Transpose(u, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable x_flat, autograd::Narrow(u_bld, 2, 0, D));
  LYRA_ASSIGN_OR_RETURN(Variable b_flat, autograd::Narrow(u_bld, 2, D, GN));
  LYRA_ASSIGN_OR_RETURN(Variable c_flat, autograd::Narrow(u_bld, 2, D + GN, GN));
  LYRA_ASSIGN_OR_RETURN(Variable x, autograd::Reshape(x_flat, {B, L, H, P}));
  LYRA_ASSIGN_OR_RETURN(Variable b_in, autograd::Reshape(b_flat, {B, L, G, N}));
  LYRA_ASSIGN_OR_RETURN(Variable c_in, autograd::Reshape(c_flat, {B, L, G, N}));
  Variable dt_in = dt;
  if (dt_in.dtype() != x.dtype()) {
    LYRA_ASSIGN_OR_RETURN(dt_in, autograd::Cast(dt, x.dtype()));
  }

  // 4. The SSD with the skip term D; the gate z goes to the norm, not into the scan.
  LYRA_ASSIGN_OR_RETURN(SsdParams p, SsdParameters(x.dtype()));
  Variable ssm_initial;
  if (continuing) {
    LYRA_ASSIGN_OR_RETURN(ssm_initial,
                          StartingState(state->ssm_state, ScanParamDType(x.dtype())));
  }
  SsdInputs options;
  options.seq_idx = seq_idx;
  options.dt_softplus = true;
  options.dt_min = c.time_step_limit_min;
  options.dt_max = c.time_step_limit_max;
  options.chunk = c.chunk_size;
  LYRA_ASSIGN_OR_RETURN(SsdOutputs ssd, Ssd(x, dt_in, p.A, b_in, c_in, p.D, Variable(),
                                            p.dt_bias, ssm_initial, options));
  if (state != nullptr) {
    state->conv_state = conv_final;
    state->ssm_state = ssd.final_state.data();
  }

  // 5. y = GatedRMSNorm(y, z) [B, L, D], then out_proj.
  LYRA_ASSIGN_OR_RETURN(Variable y, autograd::Reshape(ssd.y, {B, L, D}));
  Variable z_in = z;
  if (z_in.dtype() != y.dtype()) {
    LYRA_ASSIGN_OR_RETURN(z_in, autograd::Cast(z, y.dtype()));
  }
  LYRA_ASSIGN_OR_RETURN(Variable normed, norm_->Forward(y, z_in));
  return out_proj_->Forward(normed);
}

absl::StatusOr<Tensor> Mamba2Mixer::Step(const Tensor& h, MambaLayerState& state) const {
  LYRA_RETURN_IF_ERROR(CheckHiddenStates("Mamba2Mixer::Step", h, 2, config_.hidden_size));
  if (!state.defined()) {
    return absl::FailedPreconditionError("Mamba2Mixer::Step: the layer state is not defined");
  }
  autograd::NoGradGuard no_grad;
  const MambaConfig& c = config_;
  const int64_t B = h.size(0);
  const int64_t D = c.intermediate_size, H = c.num_heads, P = c.head_dim;
  const int64_t G = c.n_groups, N = c.state_size, GN = GroupStateSize();

  LYRA_ASSIGN_OR_RETURN(Variable zxbcdt_v, in_proj_->Forward(Variable(h)));  // [B, W]
  const Tensor& zxbcdt = zxbcdt_v.data();
  LYRA_ASSIGN_OR_RETURN(Tensor z_view, zxbcdt.Narrow(1, 0, D));
  LYRA_ASSIGN_OR_RETURN(Tensor xbc_view, zxbcdt.Narrow(1, D, conv_dim()));
  LYRA_ASSIGN_OR_RETURN(Tensor dt_view, zxbcdt.Narrow(1, D + conv_dim(), H));
  LYRA_ASSIGN_OR_RETURN(Tensor xbc, xbc_view.Contiguous());
  LYRA_RETURN_IF_ERROR(
      CheckCachedConvState("Mamba2Mixer::Step", state.conv_state, xbc.dtype()));
  LYRA_ASSIGN_OR_RETURN(Tensor u, conv1d_->Step(xbc, state.conv_state, Conv1dActivation::kSilu));

  LYRA_ASSIGN_OR_RETURN(Tensor x_view, u.Narrow(1, 0, D));
  LYRA_ASSIGN_OR_RETURN(Tensor b_view, u.Narrow(1, D, GN));
  LYRA_ASSIGN_OR_RETURN(Tensor c_view, u.Narrow(1, D + GN, GN));
  LYRA_ASSIGN_OR_RETURN(Tensor x_c, x_view.Contiguous());
  LYRA_ASSIGN_OR_RETURN(Tensor b_c, b_view.Contiguous());
  LYRA_ASSIGN_OR_RETURN(Tensor c_c, c_view.Contiguous());
  LYRA_ASSIGN_OR_RETURN(Tensor x, x_c.Reshape({B, H, P}));
  LYRA_ASSIGN_OR_RETURN(Tensor b, b_c.Reshape({B, G, N}));
  LYRA_ASSIGN_OR_RETURN(Tensor cm, c_c.Reshape({B, G, N}));
  LYRA_ASSIGN_OR_RETURN(Tensor dt, dt_view.dtype() == x.dtype() ? dt_view.Contiguous()
                                                                  : dt_view.To(x.dtype()));

  LYRA_ASSIGN_OR_RETURN(SsdParams p, SsdParameters(x.dtype()));
  LYRA_RETURN_IF_ERROR(
      CheckCachedSsmState("Mamba2Mixer::Step", state.ssm_state, ScanParamDType(x.dtype())));
  SsdStepOptions options;
  options.dt_softplus = true;
  options.dt_min = c.time_step_limit_min;
  options.dt_max = c.time_step_limit_max;
  LYRA_ASSIGN_OR_RETURN(Tensor y, SsdStateUpdate(state.ssm_state, x, dt, p.A.data(), b, cm,
                                                 p.D.data(), Tensor(), p.dt_bias.data(),
                                                 options));  // [B, H, P]
  LYRA_ASSIGN_OR_RETURN(Tensor y_flat, y.Reshape({B, D}));
  LYRA_ASSIGN_OR_RETURN(Tensor z, z_view.dtype() == y_flat.dtype() ? z_view.Contiguous()
                                                                   : z_view.To(y_flat.dtype()));
  LYRA_ASSIGN_OR_RETURN(Variable normed, norm_->Forward(Variable(y_flat), Variable(z)));
  LYRA_ASSIGN_OR_RETURN(Variable out, out_proj_->Forward(normed));
  return out.data();
}

}  // namespace lyra::mamba
