// Causal depthwise Conv1d: argument checks and output allocation around the kernels of
// cuda/conv1d.h, the autograd node, and the module.
#include "nn/conv1d.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "cuda/conv1d.h"
#include "nn/autocast.h"
#include "tensor/dispatch.h"
#include "tensor/shape.h"

namespace lyra {
namespace {

// The weight's (D, K) view: strides of its channel and tap dims, and K.
struct WeightView {
  int64_t stride_d = 0;
  int64_t stride_k = 0;
  int width = 0;
};

absl::StatusOr<WeightView> CheckWeight(absl::string_view op, const Tensor& weight,
                                       int64_t channels, DType x_dtype) {
  const bool shape_ok = (weight.dim() == 2 || (weight.dim() == 3 && weight.size(1) == 1)) &&
                        weight.size(0) == channels;
  if (!shape_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": weight must be [D, K] or [D, 1, K] with D = ", channels, ", got ",
                     weight.Describe()));
  }
  if (weight.dtype() != DType::kF32 && weight.dtype() != x_dtype) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": weight must be f32 or x's dtype ",
                                                   DTypeName(x_dtype), ", got ",
                                                   weight.Describe()));
  }
  WeightView v;
  v.stride_d = weight.stride(0);
  v.stride_k = weight.stride(-1);
  const int64_t k = weight.size(-1);
  if (k < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": kernel width must be at least 1, weight is ", weight.Describe()));
  }
  // Widths above the kernels' limit are Unimplemented (from the supported predicate); clamp
  // only to keep the int conversion exact.
  v.width = static_cast<int>(std::min<int64_t>(k, 1 << 20));
  return v;
}

absl::Status CheckBias(absl::string_view op, const Tensor& bias, int64_t channels,
                       const Tensor& weight) {
  if (!bias.defined()) return absl::OkStatus();
  if (bias.dim() != 1 || bias.size(0) != channels) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": bias must be [D] with D = ", channels,
                                                   ", got ", bias.Describe()));
  }
  if (bias.dtype() != weight.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": bias ", bias.Describe(),
                                                   " must have the weight's dtype (weight ",
                                                   weight.Describe(), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckState(absl::string_view op, absl::string_view name, const Tensor& state,
                        int64_t batch, int64_t channels, int width, DType dtype) {
  const Shape expected = {batch, channels, width - 1};
  if (state.shape() != expected || state.dtype() != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " must be ", DTypeName(dtype),
                                                   ShapeToString(expected), ", got ",
                                                   state.Describe()));
  }
  return absl::OkStatus();
}

// Everything the forward and the backward check; fills the inputs of `p`.
absl::Status PrepareForward(absl::string_view op, const Tensor& x, const Tensor& weight,
                            const Tensor& bias, Conv1dActivation activation,
                            const Tensor& seq_idx, const Tensor& initial_state,
                            cuda::CausalConv1dParams& p) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(op, {&x, &weight}));
  if (x.dim() != 3 || !IsFloating(x.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": x must be a floating-point [B, D, L] tensor, got ", x.Describe()));
  }
  const int64_t batch = x.size(0), channels = x.size(1), length = x.size(2);
  LYRA_ASSIGN_OR_RETURN(WeightView w, CheckWeight(op, weight, channels, x.dtype()));
  LYRA_RETURN_IF_ERROR(CheckBias(op, bias, channels, weight));
  std::vector<const Tensor*> on_device = {&x, &weight};
  if (bias.defined()) on_device.push_back(&bias);
  if (seq_idx.defined()) {
    if (seq_idx.dtype() != DType::kI32 || seq_idx.shape() != Shape{batch, length}) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": seq_idx must be i32[", batch, ", ",
                                                     length, "], got ", seq_idx.Describe()));
    }
    on_device.push_back(&seq_idx);
  }
  if (initial_state.defined()) {
    LYRA_RETURN_IF_ERROR(
        CheckState(op, "initial_state", initial_state, batch, channels, w.width, x.dtype()));
    on_device.push_back(&initial_state);
  }
  for (const Tensor* t : on_device) {
    if (t->device() != x.device()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": ", t->Describe(),
                                                     " is not on x's device (", x.Describe(),
                                                     ")"));
    }
  }

  p.batch = batch;
  p.channels = channels;
  p.length = length;
  p.width = w.width;
  p.silu = activation == Conv1dActivation::kSilu;
  p.x = x.data();
  p.dtype = x.dtype();
  p.x_stride_b = x.stride(0);
  p.x_stride_d = x.stride(1);
  p.x_stride_l = x.stride(2);
  p.weight = weight.data();
  p.weight_dtype = weight.dtype();
  p.weight_stride_d = w.stride_d;
  p.weight_stride_k = w.stride_k;
  if (bias.defined()) {
    p.bias = bias.data();
    p.bias_stride = bias.stride(0);
  }
  if (seq_idx.defined()) {
    p.seq_idx = seq_idx.data<int32_t>();
    p.seq_idx_stride_b = seq_idx.stride(0);
    p.seq_idx_stride_l = seq_idx.stride(1);
  }
  if (initial_state.defined()) {
    p.initial_state = initial_state.data();
    p.initial_state_stride_b = initial_state.stride(0);
    p.initial_state_stride_d = initial_state.stride(1);
    p.initial_state_stride_k = initial_state.stride(2);
  }
  return absl::OkStatus();
}

// A new [B, D, L] tensor in x's memory layout: a [B, L, D] buffer transposed when x walks D
// faster than L (channel-last), else contiguous [B, D, L].
absl::StatusOr<Tensor> EmptyLike(const Tensor& x) {
  const auto abs = [](int64_t s) { return s < 0 ? -s : s; };
  if (abs(x.stride(1)) < abs(x.stride(2))) {
    LYRA_ASSIGN_OR_RETURN(Tensor buffer,
                          Tensor::Empty({x.size(0), x.size(2), x.size(1)}, x.dtype(), x.device()));
    return buffer.Transpose(1, 2);
  }
  return Tensor::Empty(x.shape(), x.dtype(), x.device());
}

}  // namespace

absl::StatusOr<Tensor> CausalConv1d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    Conv1dActivation activation, const Tensor& seq_idx,
                                    const Tensor& initial_state, Tensor* final_state) {
  constexpr absl::string_view kOp = "CausalConv1d";
  cuda::CausalConv1dParams p;
  LYRA_RETURN_IF_ERROR(
      PrepareForward(kOp, x, weight, bias, activation, seq_idx, initial_state, p));
  LYRA_ASSIGN_OR_RETURN(Tensor y, EmptyLike(x));
  p.y = y.data();
  p.y_stride_b = y.stride(0);
  p.y_stride_d = y.stride(1);
  p.y_stride_l = y.stride(2);
  // The limits (K <= 8, f64 only on the CPU, the CUDA grid) come from the one predicate.
  LYRA_RETURN_IF_ERROR(cuda::CausalConv1dSupported(p, x.device().is_cuda()));
  Tensor state;
  if (final_state != nullptr) {
    LYRA_ASSIGN_OR_RETURN(state,
                          Tensor::Empty({p.batch, p.channels, p.width - 1}, x.dtype(), x.device()));
    p.final_state = state.data();
    p.final_state_stride_b = state.stride(0);
    p.final_state_stride_d = state.stride(1);
    p.final_state_stride_k = state.stride(2);
  }
  if (x.numel() == 0) {
    // Nothing to convolve. The final state is the initial one (L == 0) or empty (B or D == 0).
    if (state.defined()) {
      LYRA_RETURN_IF_ERROR(initial_state.defined() ? state.CopyFrom(initial_state)
                                                   : state.Fill(0));
    }
  } else {
    LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), p, &cuda::CausalConv1dReference,
                                             &cuda::CausalConv1dCuda));
  }
  if (final_state != nullptr) *final_state = std::move(state);
  return y;
}

absl::StatusOr<CausalConv1dGrads> CausalConv1dBackward(const Tensor& x, const Tensor& weight,
                                                       const Tensor& bias, const Tensor& dy,
                                                       Conv1dActivation activation,
                                                       const Tensor& seq_idx,
                                                       const Tensor& initial_state) {
  constexpr absl::string_view kOp = "CausalConv1dBackward";
  cuda::CausalConv1dBackwardParams bp;
  LYRA_RETURN_IF_ERROR(
      PrepareForward(kOp, x, weight, bias, activation, seq_idx, initial_state, bp.forward));
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&dy}));
  if (dy.shape() != x.shape() || dy.dtype() != x.dtype() || dy.device() != x.device()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": dy ", dy.Describe(),
                                                   " must match x ", x.Describe()));
  }
  CausalConv1dGrads grads;
  LYRA_ASSIGN_OR_RETURN(grads.dx, EmptyLike(x));
  LYRA_ASSIGN_OR_RETURN(grads.dweight, Tensor::Empty(weight.shape(), weight.dtype(), x.device()));
  bp.dy = dy.data();
  bp.dy_stride_b = dy.stride(0);
  bp.dy_stride_d = dy.stride(1);
  bp.dy_stride_l = dy.stride(2);
  bp.dx = grads.dx.data();
  bp.dx_stride_b = grads.dx.stride(0);
  bp.dx_stride_d = grads.dx.stride(1);
  bp.dx_stride_l = grads.dx.stride(2);
  bp.dweight = grads.dweight.data();
  bp.dweight_stride_d = grads.dweight.stride(0);
  bp.dweight_stride_k = grads.dweight.stride(-1);
  if (bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(grads.dbias, Tensor::Empty(bias.shape(), bias.dtype(), x.device()));
    bp.dbias = grads.dbias.data();
    bp.dbias_stride = grads.dbias.stride(0);
  }
  if (initial_state.defined()) {
    LYRA_ASSIGN_OR_RETURN(grads.dinitial_state,
                          Tensor::Empty(initial_state.shape(), x.dtype(), x.device()));
    bp.dinitial_state = grads.dinitial_state.data();
    bp.dinitial_state_stride_b = grads.dinitial_state.stride(0);
    bp.dinitial_state_stride_d = grads.dinitial_state.stride(1);
    bp.dinitial_state_stride_k = grads.dinitial_state.stride(2);
  }
  LYRA_RETURN_IF_ERROR(cuda::CausalConv1dBackwardSupported(bp, x.device().is_cuda()));
  if (x.numel() == 0) {
    // No output depends on anything: every gradient is zero.
    for (Tensor* g : {&grads.dweight, &grads.dbias, &grads.dinitial_state}) {
      if (g->defined()) LYRA_RETURN_IF_ERROR(g->Fill(0));
    }
    return grads;
  }
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x.device(), bp, &cuda::CausalConv1dBackwardReference,
                                           &cuda::CausalConv1dBackwardCuda));
  return grads;
}

absl::StatusOr<Tensor> CausalConv1dUpdate(const Tensor& x_t, const Tensor& conv_state,
                                          const Tensor& weight, const Tensor& bias,
                                          Conv1dActivation activation) {
  constexpr absl::string_view kOp = "CausalConv1dUpdate";
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&x_t, &conv_state, &weight}));
  if (x_t.dim() != 2 || !IsFloating(x_t.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": x_t must be a floating-point [B, D] tensor, got ", x_t.Describe()));
  }
  const int64_t batch = x_t.size(0), channels = x_t.size(1);
  LYRA_ASSIGN_OR_RETURN(WeightView w, CheckWeight(kOp, weight, channels, x_t.dtype()));
  LYRA_RETURN_IF_ERROR(CheckBias(kOp, bias, channels, weight));
  LYRA_RETURN_IF_ERROR(
      CheckState(kOp, "conv_state", conv_state, batch, channels, w.width, x_t.dtype()));
  for (const Tensor* t : {&conv_state, &weight, &bias}) {
    if (t->defined() && t->device() != x_t.device()) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": ", t->Describe(),
                                                     " is not on x_t's device (", x_t.Describe(),
                                                     ")"));
    }
  }
  LYRA_ASSIGN_OR_RETURN(Tensor y, Tensor::Empty({batch, channels}, x_t.dtype(), x_t.device()));
  cuda::CausalConv1dUpdateParams p;
  p.batch = batch;
  p.channels = channels;
  p.width = w.width;
  p.silu = activation == Conv1dActivation::kSilu;
  p.x = x_t.data();
  p.dtype = x_t.dtype();
  p.x_stride_b = x_t.stride(0);
  p.x_stride_d = x_t.stride(1);
  p.conv_state = conv_state.data();
  p.state_stride_b = conv_state.stride(0);
  p.state_stride_d = conv_state.stride(1);
  p.state_stride_k = conv_state.stride(2);
  p.weight = weight.data();
  p.weight_dtype = weight.dtype();
  p.weight_stride_d = w.stride_d;
  p.weight_stride_k = w.stride_k;
  if (bias.defined()) {
    p.bias = bias.data();
    p.bias_stride = bias.stride(0);
  }
  p.y = y.data();
  p.y_stride_b = y.stride(0);
  p.y_stride_d = y.stride(1);
  LYRA_RETURN_IF_ERROR(cuda::CausalConv1dUpdateSupported(p, x_t.device().is_cuda()));
  if (y.numel() == 0) return y;
  LYRA_RETURN_IF_ERROR(internal::RunKernel(x_t.device(), p, &cuda::CausalConv1dUpdateReference,
                                           &cuda::CausalConv1dUpdateCuda));
  return y;
}

namespace nn {

absl::StatusOr<Variable> CausalConv1d(const Variable& x, const Variable& weight,
                                      const Variable& bias, Conv1dActivation activation,
                                      const Tensor& seq_idx, const Variable& initial_state,
                                      Tensor* final_state) {
  if (!x.defined() || !weight.defined()) {
    return absl::InvalidArgumentError("CausalConv1d: x and weight must be defined");
  }
  const Tensor bias_t = bias.defined() ? bias.data() : Tensor();
  const Tensor state_t = initial_state.defined() ? initial_state.data() : Tensor();
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::CausalConv1d(x.data(), weight.data(), bias_t, activation,
                                                     seq_idx, state_t, final_state));
  const std::vector<Variable> inputs = {x, weight, bias, initial_state};
  // Backward recomputes the pre-activation from the inputs; only they are kept.
  const Tensor x_t = x.data(), w_t = weight.data();
  return autograd::RecordUnaryResult(
      "CausalConv1d", inputs, std::move(y),
      [x_t, w_t, bias_t, state_t, seq_idx, activation](
          const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(CausalConv1dGrads grads,
                              CausalConv1dBackward(x_t, w_t, bias_t, g[0], activation, seq_idx,
                                                   state_t));
        return std::vector<Tensor>{std::move(grads.dx), std::move(grads.dweight),
                                   std::move(grads.dbias), std::move(grads.dinitial_state)};
      });
}

Conv1d::Conv1d(int64_t channels, int kernel_size, Tensor weight, Tensor bias)
    : Module("Conv1d"), channels_(channels), kernel_size_(kernel_size) {
  weight_ = RegisterParameter("weight", std::move(weight));
  if (bias.defined()) bias_ = RegisterParameter("bias", std::move(bias));
}

absl::StatusOr<std::unique_ptr<Conv1d>> Conv1d::Create(int64_t channels, int kernel_size,
                                                       bool bias, Generator& gen, DType dtype,
                                                       Device device) {
  if (channels < 1 || kernel_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("Conv1d: channels (", channels,
                                                   ") and kernel_size (", kernel_size,
                                                   ") must be positive"));
  }
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Conv1d: parameters must be floating-point, got ", DTypeName(dtype)));
  }
  if (kernel_size > cuda::kCausalConv1dMaxWidth) {
    return absl::UnimplementedError(absl::StrCat("Conv1d: kernel_size ", kernel_size,
                                                 " exceeds the supported ",
                                                 cuda::kCausalConv1dMaxWidth));
  }
  // torch's default: kaiming_uniform(a = sqrt(5)) gives bound 1 / sqrt(fan_in) for the weight,
  // and the bias uses the same bound; fan_in = (in_channels / groups) * K = K.
  const double bound = 1.0 / std::sqrt(static_cast<double>(kernel_size));
  LYRA_ASSIGN_OR_RETURN(Tensor w,
                        Rand({channels, 1, kernel_size}, dtype, device, gen, -bound, bound));
  Tensor b;
  if (bias) {
    LYRA_ASSIGN_OR_RETURN(b, Rand({channels}, dtype, device, gen, -bound, bound));
  }
  return std::unique_ptr<Conv1d>(new Conv1d(channels, kernel_size, std::move(w), std::move(b)));
}

absl::StatusOr<Variable> Conv1d::Forward(const Variable& x, Conv1dActivation activation,
                                         const Tensor& seq_idx, const Variable& initial_state,
                                         Tensor* final_state) {
  if (!x.defined()) return absl::InvalidArgumentError("Conv1d: x is undefined");
  LYRA_ASSIGN_OR_RETURN(Variable xc, ComputeInput(x));
  Variable state = initial_state;
  if (state.defined()) {
    LYRA_ASSIGN_OR_RETURN(state, ComputeInput(state));
  }
  // The kernels read f32 weights or weights of x's dtype; anything else is cast (recorded).
  const auto compute = [&](const Variable& p) -> absl::StatusOr<Variable> {
    if (!p.defined() || p.dtype() == DType::kF32 || p.dtype() == xc.dtype()) return p;
    return autograd::Cast(p, xc.dtype());
  };
  LYRA_ASSIGN_OR_RETURN(Variable w, compute(weight_));
  LYRA_ASSIGN_OR_RETURN(Variable b, compute(bias_));
  return CausalConv1d(xc, w, b, activation, seq_idx, state, final_state);
}

absl::StatusOr<Tensor> Conv1d::Step(const Tensor& x_t, const Tensor& conv_state,
                                    Conv1dActivation activation) const {
  Tensor w = weight_.data(), b = bias_.defined() ? bias_.data() : Tensor();
  if (x_t.defined() && w.dtype() != DType::kF32 && w.dtype() != x_t.dtype()) {
    LYRA_ASSIGN_OR_RETURN(w, w.To(x_t.dtype()));
    if (b.defined()) {
      LYRA_ASSIGN_OR_RETURN(b, b.To(x_t.dtype()));
    }
  }
  return lyra::CausalConv1dUpdate(x_t, conv_state, w, b, activation);
}

}  // namespace nn
}  // namespace lyra
