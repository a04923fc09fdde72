// Pieces the Mamba-1 mixer (mamba/mixer.h) and the Mamba-2 mixer (mamba/mamba2_mixer.h) share:
// the initialisation of transformers' _init_weights, and the checks and casts around their
// forward and step paths.
#ifndef LYRA_MAMBA_MIXER_INIT_H_
#define LYRA_MAMBA_MIXER_INIT_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "mamba/config.h"
#include "nn/conv1d.h"
#include "nn/linear.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

// ---- Initialisation (transformers' Mamba(2)PreTrainedModel._init_weights) ----

// The depthwise causal conv over `channels`: Kaiming-uniform weight (Conv1d::Create's), bias 0.
absl::StatusOr<std::unique_ptr<nn::Conv1d>> CreateMixerConv1d(int64_t channels,
                                                              const MambaConfig& config,
                                                              Generator& gen, DType dtype,
                                                              Device device);

// A projection with weight N(0, config.initializer_range) and bias 0 (in_proj, Mamba-1 x_proj).
absl::StatusOr<std::unique_ptr<nn::Linear>> CreateNormalLinear(int64_t in_features,
                                                              int64_t out_features, bool bias,
                                                              const MambaConfig& config,
                                                              Generator& gen, DType dtype,
                                                              Device device);

// out_proj [D -> M]: Kaiming-uniform weight (a = sqrt 5, Linear::Create's), divided by
// sqrt(num_hidden_layers) with rescale_prenorm_residual; bias 0.
absl::StatusOr<std::unique_ptr<nn::Linear>> CreateOutProj(const MambaConfig& config,
                                                         Generator& gen, DType dtype,
                                                         Device device);

// The dt bias [n] (Mamba-1: dt_proj.bias over D; Mamba-2: dt_bias over H): dt = exp(U[0, 1) *
// (log time_step_max - log time_step_min) + log time_step_min), clamped below at
// time_step_floor; the bias is its inverse softplus dt + log(-expm1(-dt)), so that
// softplus(bias) = dt at initialisation. Drawn in f64 on the CPU from `gen`.
absl::StatusOr<Tensor> InverseSoftplusDtBias(int64_t n, const MambaConfig& config, Generator& gen,
                                             DType dtype, Device device);

// ---- Forward and step ----

// `v` in `dtype`: itself when it already is, else an autograd cast.
absl::StatusOr<autograd::Variable> CastTo(const autograd::Variable& v, DType dtype);

// The scan's A = -exp(A_log), computed in `pdtype` (ScanParamDType of the activations).
absl::StatusOr<autograd::Variable> NegExpA(const autograd::Variable& A_log, DType pdtype);

// "<op>: hidden states must be a floating [B, L, M] tensor with M = <hidden>, got <h>" (want_dim
// 3, Forward) or "[B, M]" (want_dim 2, Step), also for an undefined h.
absl::Status CheckHiddenStates(const char* op, const Tensor& h, int want_dim, int64_t hidden);

// A cached state (conv or ssm) that a continuing Forward starts from, as a Variable in `dtype`
// that receives no gradient.
absl::StatusOr<autograd::Variable> StartingState(const Tensor& cached, DType dtype);

// FailedPrecondition from Step when the cached conv state is not in the step's compute dtype
// (prefill and steps ran under different autocast dtypes).
absl::Status CheckCachedConvState(const char* op, const Tensor& conv_state, DType compute);

// FailedPrecondition from Step when the cached ssm state is not in `pdtype`.
absl::Status CheckCachedSsmState(const char* op, const Tensor& ssm_state, DType pdtype);

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_MIXER_INIT_H_
