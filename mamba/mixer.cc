#include "mamba/mixer.h"

#include "mamba/mamba_inner.h"
#include "mamba/mixer_init.h"
#include "mamba/tensor_checks.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "mamba/selective_scan.h"
#include "nn/autocast.h"
#include "nn/functional_linear.h"
#include "nn/init.h"
#include "nn/lora/lora_factors.h"
#include "nn/lora/lora_layer.h"

namespace lyra::mamba {

using autograd::Variable;

absl::StatusOr<std::unique_ptr<MambaMixer>> MambaMixer::Create(const MambaConfig& config,
                                                               Generator& gen, DType dtype,
                                                               Device device) {
  LYRA_RETURN_IF_ERROR(config.Validate());
  std::unique_ptr<MambaMixer> mixer(new MambaMixer(config));
  LYRA_RETURN_IF_ERROR(mixer->Init(gen, dtype, device));
  return mixer;
}

absl::Status MambaMixer::Init(Generator& gen, DType dtype, Device device) {
  const MambaConfig& c = config_;
  const int64_t M = c.hidden_size, D = c.intermediate_size, N = c.state_size;
  const int64_t R = c.time_step_rank;

  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Conv1d> conv,
                        CreateMixerConv1d(D, c, gen, dtype, device));
  conv1d_ = RegisterModule("conv1d", std::move(conv));
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> in_proj,
                        CreateNormalLinear(M, 2 * D, c.use_bias, c, gen, dtype, device));
  in_proj_ = RegisterModule("in_proj", std::move(in_proj));
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> x_proj,
                        CreateNormalLinear(D, R + 2 * N, /*bias=*/false, c, gen, dtype, device));
  x_proj_ = RegisterModule("x_proj", std::move(x_proj));

  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> dt_proj,
                        nn::Linear::Create(R, D, /*bias=*/true, gen, dtype, device));
  dt_proj_ = RegisterModule("dt_proj", std::move(dt_proj));
  const double dt_init_std = std::pow(static_cast<double>(R), -0.5) * c.time_step_scale;
  if (c.time_step_init_scheme == "constant") {
    LYRA_RETURN_IF_ERROR(nn::init::Constant(dt_proj_->weight().data(), dt_init_std));
  } else {
    LYRA_RETURN_IF_ERROR(
        nn::init::Uniform(dt_proj_->weight().data(), gen, -dt_init_std, dt_init_std));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor dt_bias, InverseSoftplusDtBias(D, c, gen, dtype, device));
  LYRA_RETURN_IF_ERROR(dt_proj_->bias().data().CopyFrom(dt_bias));

  std::vector<double> a_log(D * N);
  for (int64_t d = 0; d < D; ++d) {
    for (int64_t n = 0; n < N; ++n) a_log[d * N + n] = std::log(static_cast<double>(n + 1));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor a_log_t, Tensor::FromDoubles(a_log, {D, N}, dtype, device));
  A_log_ = RegisterParameter("A_log", std::move(a_log_t));
  LYRA_ASSIGN_OR_RETURN(Tensor d_t, Tensor::Ones({D}, dtype, device));
  D_ = RegisterParameter("D", std::move(d_t));

  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> out_proj,
                        CreateOutProj(c, gen, dtype, device));
  out_proj_ = RegisterModule("out_proj", std::move(out_proj));
  return absl::OkStatus();
}

absl::StatusOr<MambaMixer::ScanParams> MambaMixer::ScanParameters(DType act) const {
  const DType p = ScanParamDType(act);
  ScanParams out;
  LYRA_ASSIGN_OR_RETURN(out.A, NegExpA(A_log_, p));
  LYRA_ASSIGN_OR_RETURN(out.D, CastTo(D_, p));
  LYRA_ASSIGN_OR_RETURN(out.delta_bias, CastTo(dt_proj_->bias(), p));
  return out;
}

absl::StatusOr<Variable> MambaMixer::ForwardFused(const Variable& h,
                                                  const Tensor& seq_idx) const {
  LYRA_ASSIGN_OR_RETURN(Variable xz, in_proj_->Forward(h));
  const DType p = ScanParamDType(xz.dtype());
  MambaInnerWeights w;
  w.conv_weight = conv1d_->weight();
  w.conv_bias = conv1d_->bias();
  LYRA_ASSIGN_OR_RETURN(w.x_proj_weight, nn::ComputeWeight(x_proj_->weight()));
  LYRA_ASSIGN_OR_RETURN(w.dt_proj_weight, nn::ComputeWeight(dt_proj_->weight()));
  LYRA_ASSIGN_OR_RETURN(w.dt_proj_bias, CastTo(dt_proj_->bias(), p));
  LYRA_ASSIGN_OR_RETURN(w.A_log, CastTo(A_log_, p));
  LYRA_ASSIGN_OR_RETURN(w.D, CastTo(D_, p));
  LYRA_ASSIGN_OR_RETURN(w.out_proj_weight, nn::ComputeWeight(out_proj_->weight()));
  if (out_proj_->bias().defined()) {
    LYRA_ASSIGN_OR_RETURN(w.out_proj_bias, nn::ComputeWeight(out_proj_->bias()));
  }
  // Weights stored in another dtype than the activations (a model cast with Module::To but run
  // under another autocast dtype) are cast here, once per call.
  for (Variable* v : {&w.x_proj_weight, &w.dt_proj_weight, &w.out_proj_weight, &w.out_proj_bias}) {
    if (v->defined() && v->dtype() != xz.dtype()) {
      LYRA_ASSIGN_OR_RETURN(*v, autograd::Cast(*v, xz.dtype()));
    }
  }
  // Active LoRA adapters act inside the fused node, from their factors (in_proj's acted in
  // in_proj_->Forward above).
  w.x_proj_lora = x_proj_->active_lora();
  w.dt_proj_lora = dt_proj_->active_lora();
  w.out_proj_lora = out_proj_->active_lora();
  return MambaInner(xz, w, seq_idx);
}

absl::StatusOr<Variable> MambaMixer::Forward(const Variable& h, const Tensor& seq_idx,
                                             MambaLayerState* state) const {
  LYRA_RETURN_IF_ERROR(CheckHiddenStates("MambaMixer::Forward", h.defined() ? h.data() : Tensor(),
                                         3, config_.hidden_size));
  if (state == nullptr) return ForwardFused(h, seq_idx);
  const int64_t D = config_.intermediate_size, N = config_.state_size;
  const int64_t R = config_.time_step_rank;

  // 1. xz = in_proj(h) [B, L, 2D]; x and z as [B, D, L] views (channel-last memory).
  LYRA_ASSIGN_OR_RETURN(Variable xz, in_proj_->Forward(h));
  LYRA_ASSIGN_OR_RETURN(Variable x_bld, autograd::Narrow(xz, 2, 0, D));
  LYRA_ASSIGN_OR_RETURN(Variable z_bld, autograd::Narrow(xz, 2, D, D));
  LYRA_ASSIGN_OR_RETURN(Variable x, autograd::Transpose(x_bld, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable z, autograd::Transpose(z_bld, 1, 2));

  // 2. x = silu(conv1d(x)), causal; the conv state continues from / is written to `state`.
  const bool continuing = state != nullptr && state->defined();
  Variable conv_initial;
  if (continuing) {
    LYRA_ASSIGN_OR_RETURN(conv_initial, StartingState(state->conv_state, x.dtype()));
  }
  Tensor conv_final;
  LYRA_ASSIGN_OR_RETURN(Variable u,
                        conv1d_->Forward(x, Conv1dActivation::kSilu, seq_idx, conv_initial,
                                         state != nullptr ? &conv_final : nullptr));

  // 3. x_dbl = x_proj(u) [B, L, R + 2N] -> dt [B, L, R], B and C as [B, N, L] views.
  LYRA_ASSIGN_OR_RETURN(Variable u_bld, autograd::Transpose(u, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable x_dbl, x_proj_->Forward(u_bld));
  LYRA_ASSIGN_OR_RETURN(Variable dt, autograd::Narrow(x_dbl, 2, 0, R));
  LYRA_ASSIGN_OR_RETURN(Variable b_bln, autograd::Narrow(x_dbl, 2, R, N));
  LYRA_ASSIGN_OR_RETURN(Variable c_bln, autograd::Narrow(x_dbl, 2, R + N, N));
  LYRA_ASSIGN_OR_RETURN(Variable b_bnl, autograd::Transpose(b_bln, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable c_bnl, autograd::Transpose(c_bln, 1, 2));

  // delta = dt_proj.weight @ dt: [B, L, D] -> [B, D, L]; the bias is the scan's delta_bias.
  // dt_proj's weight is applied here rather than through dt_proj_->Forward (which would add the
  // bias), so its active adapter is added here too.
  LYRA_ASSIGN_OR_RETURN(Variable dt_weight, nn::ComputeWeight(dt_proj_->weight()));
  LYRA_ASSIGN_OR_RETURN(Variable dt_in, nn::ComputeInput(dt));
  LYRA_ASSIGN_OR_RETURN(Variable delta_bld, nn::functional::Linear(dt_in, dt_weight));
  if (const nn::LoraFactors* lora = dt_proj_->active_lora(); lora != nullptr) {
    LYRA_ASSIGN_OR_RETURN(delta_bld, nn::AddLoraLinear(delta_bld, dt_in, *lora));
  }
  LYRA_ASSIGN_OR_RETURN(Variable delta, autograd::Transpose(delta_bld, 1, 2));

  // 4. The selective scan, gated by silu(z), with the skip term D.
  LYRA_ASSIGN_OR_RETURN(ScanParams p, ScanParameters(u.dtype()));
  Variable z_in = z;
  if (z_in.dtype() != u.dtype()) {
    LYRA_ASSIGN_OR_RETURN(z_in, autograd::Cast(z, u.dtype()));
  }
  Variable ssm_initial;
  if (continuing) {
    LYRA_ASSIGN_OR_RETURN(ssm_initial,
                          StartingState(state->ssm_state, ScanParamDType(u.dtype())));
  }
  LYRA_ASSIGN_OR_RETURN(SelectiveScanOutputs scan,
                        SelectiveScan(u, delta, p.A, b_bnl, c_bnl, p.D, z_in, p.delta_bias,
                                      ssm_initial, seq_idx, /*delta_softplus=*/true));
  if (state != nullptr) {
    state->conv_state = conv_final;
    state->ssm_state = scan.final_state.data();
  }

  // 5. out_proj(y): [B, D, L] -> [B, L, D] -> [B, L, M].
  LYRA_ASSIGN_OR_RETURN(Variable y_bld, autograd::Transpose(scan.y, 1, 2));
  return out_proj_->Forward(y_bld);
}

absl::StatusOr<Tensor> MambaMixer::Step(const Tensor& h, MambaLayerState& state) const {
  LYRA_RETURN_IF_ERROR(CheckHiddenStates("MambaMixer::Step", h, 2, config_.hidden_size));
  if (!state.defined()) {
    return absl::FailedPreconditionError("MambaMixer::Step: the layer state is not defined");
  }
  autograd::NoGradGuard no_grad;
  const int64_t D = config_.intermediate_size, N = config_.state_size;
  const int64_t R = config_.time_step_rank;

  LYRA_ASSIGN_OR_RETURN(Variable xz, in_proj_->Forward(Variable(h)));  // [B, 2D]
  LYRA_ASSIGN_OR_RETURN(Tensor x, xz.data().Narrow(1, 0, D));
  LYRA_ASSIGN_OR_RETURN(Tensor z, xz.data().Narrow(1, D, D));
  LYRA_RETURN_IF_ERROR(CheckCachedConvState("MambaMixer::Step", state.conv_state, x.dtype()));
  LYRA_ASSIGN_OR_RETURN(Tensor u, conv1d_->Step(x, state.conv_state, Conv1dActivation::kSilu));

  LYRA_ASSIGN_OR_RETURN(Variable x_dbl, x_proj_->Forward(Variable(u)));  // [B, R + 2N]
  LYRA_ASSIGN_OR_RETURN(Tensor dt, x_dbl.data().Narrow(1, 0, R));
  LYRA_ASSIGN_OR_RETURN(Tensor b, x_dbl.data().Narrow(1, R, N));
  LYRA_ASSIGN_OR_RETURN(Tensor c, x_dbl.data().Narrow(1, R + N, N));
  LYRA_ASSIGN_OR_RETURN(Variable dt_weight, nn::ComputeWeight(dt_proj_->weight()));
  LYRA_ASSIGN_OR_RETURN(Variable dt_in, nn::ComputeInput(Variable(dt)));
  LYRA_ASSIGN_OR_RETURN(Variable delta, nn::functional::Linear(dt_in, dt_weight));  // [B, D]
  if (const nn::LoraFactors* lora = dt_proj_->active_lora(); lora != nullptr) {
    LYRA_ASSIGN_OR_RETURN(delta, nn::AddLoraLinear(delta, dt_in, *lora));
  }

  LYRA_ASSIGN_OR_RETURN(ScanParams p, ScanParameters(u.dtype()));
  LYRA_RETURN_IF_ERROR(
      CheckCachedSsmState("MambaMixer::Step", state.ssm_state, ScanParamDType(u.dtype())));
  Tensor z_in = z;
  if (z_in.dtype() != u.dtype()) {
    LYRA_ASSIGN_OR_RETURN(z_in, z.To(u.dtype()));
  }
  Tensor delta_t = delta.data();
  if (delta_t.dtype() != u.dtype()) {
    LYRA_ASSIGN_OR_RETURN(delta_t, delta_t.To(u.dtype()));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor y, SelectiveStateUpdate(state.ssm_state, u, delta_t, p.A.data(), b,
                                                       c, p.D.data(), z_in, p.delta_bias.data(),
                                                       /*dt_softplus=*/true));
  LYRA_ASSIGN_OR_RETURN(Variable out, out_proj_->Forward(Variable(y)));
  return out.data();
}

}  // namespace lyra::mamba
