#include "mamba/mixer_init.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "nn/init.h"
#include "tensor/elementwise.h"

namespace lyra::mamba {

using autograd::Variable;

absl::StatusOr<std::unique_ptr<nn::Conv1d>> CreateMixerConv1d(int64_t channels,
                                                              const MambaConfig& config,
                                                              Generator& gen, DType dtype,
                                                              Device device) {
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Conv1d> conv,
                        nn::Conv1d::Create(channels, static_cast<int>(config.conv_kernel),
                                           config.use_conv_bias, gen, dtype, device));
  if (conv->bias().defined()) LYRA_RETURN_IF_ERROR(nn::init::Zeros(conv->bias().data()));
  return conv;
}

absl::StatusOr<std::unique_ptr<nn::Linear>> CreateNormalLinear(int64_t in_features,
                                                              int64_t out_features, bool bias,
                                                              const MambaConfig& config,
                                                              Generator& gen, DType dtype,
                                                              Device device) {
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> linear,
                        nn::Linear::Create(in_features, out_features, bias, gen, dtype, device));
  LYRA_RETURN_IF_ERROR(nn::init::Normal(linear->weight().data(), gen, 0, config.initializer_range));
  if (linear->bias().defined()) LYRA_RETURN_IF_ERROR(nn::init::Zeros(linear->bias().data()));
  return linear;
}

absl::StatusOr<std::unique_ptr<nn::Linear>> CreateOutProj(const MambaConfig& config,
                                                         Generator& gen, DType dtype,
                                                         Device device) {
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> out_proj,
                        nn::Linear::Create(config.intermediate_size, config.hidden_size,
                                           config.use_bias, gen, dtype, device));
  if (out_proj->bias().defined()) {
    LYRA_RETURN_IF_ERROR(nn::init::Zeros(out_proj->bias().data()));
  }
  if (config.rescale_prenorm_residual) {
    LYRA_ASSIGN_OR_RETURN(
        Tensor scaled,
        MulScalar(out_proj->weight().data(),
                  1.0 / std::sqrt(static_cast<double>(config.num_hidden_layers))));
    LYRA_RETURN_IF_ERROR(out_proj->weight().data().CopyFrom(scaled));
  }
  return out_proj;
}

absl::StatusOr<Tensor> InverseSoftplusDtBias(int64_t n, const MambaConfig& config, Generator& gen,
                                             DType dtype, Device device) {
  LYRA_ASSIGN_OR_RETURN(Tensor u, Rand({n}, DType::kF64, Device::Cpu(), gen));
  LYRA_ASSIGN_OR_RETURN(std::vector<double> v, u.ToDoubles());
  const double lo = std::log(config.time_step_min), hi = std::log(config.time_step_max);
  for (double& x : v) {
    double dt = std::exp(x * (hi - lo) + lo);
    dt = std::max(dt, config.time_step_floor);
    x = dt + std::log(-std::expm1(-dt));
  }
  return Tensor::FromDoubles(v, {n}, dtype, device);
}

absl::StatusOr<Variable> CastTo(const Variable& v, DType dtype) {
  if (v.dtype() == dtype) return v;
  return autograd::Cast(v, dtype);
}

absl::StatusOr<Variable> NegExpA(const Variable& A_log, DType pdtype) {
  LYRA_ASSIGN_OR_RETURN(Variable a_log, CastTo(A_log, pdtype));
  LYRA_ASSIGN_OR_RETURN(Variable exp_a, autograd::Exp(a_log));
  return autograd::Neg(exp_a);
}

absl::Status CheckHiddenStates(const char* op, const Tensor& h, int want_dim, int64_t hidden) {
  if (!h.defined() || h.dim() != want_dim || h.size(want_dim - 1) != hidden ||
      !IsFloating(h.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": hidden states must be a floating ", want_dim == 3 ? "[B, L, M]" : "[B, M]",
        " tensor with M = ", hidden, ", got ", h.defined() ? h.Describe() : "undefined"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Variable> StartingState(const Tensor& cached, DType dtype) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, cached.To(dtype));
  return Variable(t);
}

absl::Status CheckCachedConvState(const char* op, const Tensor& conv_state, DType compute) {
  if (conv_state.dtype() != compute) {
    return absl::FailedPreconditionError(absl::StrCat(
        op, ": the cached conv state is ", conv_state.Describe(), " but the step computes in ",
        DTypeName(compute), " (prefill and steps must run under the same autocast dtype)"));
  }
  return absl::OkStatus();
}

absl::Status CheckCachedSsmState(const char* op, const Tensor& ssm_state, DType pdtype) {
  if (ssm_state.dtype() != pdtype) {
    return absl::FailedPreconditionError(absl::StrCat(
        op, ": the cached ssm state is ", ssm_state.Describe(), "; expected ", DTypeName(pdtype)));
  }
  return absl::OkStatus();
}

}  // namespace lyra::mamba
