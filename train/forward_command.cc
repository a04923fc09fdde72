#include "train/forward_command.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "mamba/checkpoint.h"
#include "nn/autocast.h"
#include "nn/cross_entropy.h"
#include "nn/lora/lora.h"
#include "nn/lora/peft_io.h"
#include "tensor/safetensors.h"

namespace lyra::train {
namespace {

using autograd::Variable;

// The dtype of everything written: f64 for an f64 run, else f32.
DType OutputDType(DType dtype) { return dtype == DType::kF64 ? DType::kF64 : DType::kF32; }

// The dtype the parameters must have: the run's for f64 / f32, FP32 masters under autocast.
DType WeightDType(DType dtype) { return IsHalf(dtype) ? DType::kF32 : dtype; }

absl::Status CheckRunDType(DType dtype) {
  if (dtype == DType::kF64 || dtype == DType::kF32 || IsHalf(dtype)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "lyra forward: --dtype must be f64, f32, bf16 or f16, got ", DTypeName(dtype)));
}

// A CPU copy of `t` in `dtype`.
absl::StatusOr<Tensor> ToHost(const Tensor& t, DType dtype) {
  LYRA_ASSIGN_OR_RETURN(Tensor cast, t.dtype() == dtype ? t.Contiguous() : t.To(dtype));
  if (cast.device().is_cpu()) return cast;
  return cast.To(Device::Cpu());
}

// Hugging Face's causal-LM loss of logits [B, T, V] for ids [B, T] (on the logits' device):
// mean cross-entropy of logits[:, :-1] against ids[:, 1:].
absl::StatusOr<Variable> CausalLmLoss(const Variable& logits, const Tensor& ids) {
  const int64_t B = logits.size(0), T = logits.size(1), V = logits.size(2);
  LYRA_ASSIGN_OR_RETURN(Variable shifted, autograd::Narrow(logits, 1, 0, T - 1));
  LYRA_ASSIGN_OR_RETURN(Variable flat, autograd::Reshape(shifted, {B * (T - 1), V}));
  LYRA_ASSIGN_OR_RETURN(Tensor next, ids.Narrow(1, 1, T - 1));
  LYRA_ASSIGN_OR_RETURN(Tensor next_c, next.Contiguous());
  LYRA_ASSIGN_OR_RETURN(Tensor targets, next_c.Reshape({B * (T - 1)}));
  return nn::CrossEntropy(flat, targets, nn::kDefaultIgnoreIndex, nn::Reduction::kMean);
}

}  // namespace

absl::StatusOr<DType> ParseForwardDType(absl::string_view name) {
  if (name == "f64") return DType::kF64;
  if (name == "f32") return DType::kF32;
  if (name == "bf16") return DType::kBF16;
  if (name == "f16") return DType::kF16;
  return absl::InvalidArgumentError(
      absl::StrCat("lyra forward: --dtype must be f64, f32, bf16 or f16, got '", name, "'"));
}

absl::StatusOr<ForwardOutputs> ComputeForward(
    mamba::MambaForCausalLM& model, const Tensor& input_ids, DType dtype, bool grads,
    const std::vector<std::pair<std::string, autograd::Variable>>* grad_parameters) {
  LYRA_RETURN_IF_ERROR(CheckRunDType(dtype));
  if (!input_ids.defined() || !IsInteger(input_ids.dtype()) || input_ids.dim() != 2 ||
      input_ids.size(1) < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lyra forward: input_ids must be an I64 (or I32) tensor [B, T] with T >= 2, got ",
        input_ids.defined() ? input_ids.Describe() : "an undefined tensor"));
  }
  const Variable& head = model.lm_head_weight();
  if (head.dtype() != WeightDType(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lyra forward: a ", DTypeName(dtype), " run needs ", DTypeName(WeightDType(dtype)),
        " parameters, the model has ", head.Describe()));
  }
  const Device device = head.device();
  LYRA_ASSIGN_OR_RETURN(Tensor ids64, input_ids.dtype() == DType::kI64
                                          ? input_ids.Contiguous()
                                          : input_ids.To(DType::kI64));
  LYRA_ASSIGN_OR_RETURN(Tensor ids, ids64.To(device));

  model.ZeroGrad();
  std::optional<autograd::NoGradGuard> no_grad;
  if (!grads) no_grad.emplace();
  Variable logits, loss;
  {
    std::optional<nn::AutocastGuard> autocast;
    if (IsHalf(dtype)) autocast.emplace(dtype);
    LYRA_ASSIGN_OR_RETURN(logits, model.Forward(ids));
    if (logits.dtype() != OutputDType(dtype)) {
      // transformers computes the loss on f32 logits (`.float()`); so do we.
      LYRA_ASSIGN_OR_RETURN(logits, autograd::Cast(logits, OutputDType(dtype)));
    }
    LYRA_ASSIGN_OR_RETURN(loss, CausalLmLoss(logits, ids));
  }
  if (grads) LYRA_RETURN_IF_ERROR(loss.Backward());

  ForwardOutputs out;
  const DType out_dtype = OutputDType(dtype);
  LYRA_ASSIGN_OR_RETURN(out.logits, ToHost(logits.data(), out_dtype));
  LYRA_ASSIGN_OR_RETURN(Tensor loss_host, ToHost(loss.data(), out_dtype));
  LYRA_ASSIGN_OR_RETURN(out.loss, loss_host.Reshape({1}));
  if (grads) {
    for (const auto& [name, param] :
         grad_parameters != nullptr ? *grad_parameters : model.NamedParameters()) {
      Tensor grad = param.grad();
      if (!grad.defined()) {
        // Not reached by the loss: its gradient is zero.
        LYRA_ASSIGN_OR_RETURN(grad, Tensor::Zeros(param.shape(), out_dtype));
      }
      LYRA_ASSIGN_OR_RETURN(Tensor host, ToHost(grad, out_dtype));
      out.grads.emplace_back(name, std::move(host));
    }
  }
  return out;
}

absl::Status RunForward(const ForwardOptions& options) {
  for (const auto& [flag, value] : {std::pair<const char*, const std::string*>{
                                        "--model", &options.model_dir},
                                    {"--input", &options.input_path},
                                    {"--out", &options.output_path}}) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat("lyra forward: ", flag, " is required"));
    }
  }
  LYRA_RETURN_IF_ERROR(CheckRunDType(options.dtype));
  if (options.dtype == DType::kF64 && !options.device.is_cpu()) {
    return absl::UnimplementedError(absl::StrCat(
        "lyra forward: --dtype=f64 runs on the CPU only (the scans have no f64 CUDA "
        "kernel), got --device=", options.device.ToString()));
  }
  LYRA_ASSIGN_OR_RETURN(std::unique_ptr<mamba::MambaForCausalLM> model,
                        mamba::LoadMamba(options.model_dir, options.device,
                                         WeightDType(options.dtype)));
  std::vector<std::pair<std::string, Variable>> adapter_params;
  if (!options.adapter_dir.empty()) {
    LYRA_RETURN_IF_ERROR(nn::LoadLoraAdapter(*model, options.adapter_dir, "default",
                                             /*trainable=*/options.grads)
                             .status());
    adapter_params = nn::PeftAdapterParameters(*model, "default");
  }
  LYRA_ASSIGN_OR_RETURN(SafetensorsContents input, ReadSafetensors(options.input_path));
  LYRA_ASSIGN_OR_RETURN(Tensor input_ids, input.Get("input_ids"));
  LYRA_ASSIGN_OR_RETURN(
      ForwardOutputs out,
      ComputeForward(*model, input_ids, options.dtype, options.grads,
                     options.adapter_dir.empty() ? nullptr : &adapter_params));

  std::vector<std::pair<std::string, Tensor>> tensors = {{"logits", out.logits},
                                                         {"loss", out.loss}};
  for (auto& entry : out.grads) tensors.push_back(std::move(entry));
  std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"command", "lyra forward"},
      {"dtype", std::string(DTypeName(options.dtype))},
      {"device", options.device.ToString()},
      {"model", options.model_dir},
  };
  if (!options.adapter_dir.empty()) metadata["adapter"] = options.adapter_dir;
  return WriteSafetensors(options.output_path, tensors, metadata);
}

}  // namespace lyra::train
