// `lyra forward`: runs a Mamba-1 or Mamba-2 checkpoint on token ids and writes the logits, the
// loss and (optionally) every parameter's gradient, for parity checks against other
// implementations.
//
//   lyra forward --model=DIR --input=FILE.safetensors --out=FILE.safetensors
//                [--device=cpu|cuda[:N]] [--dtype=f64|f32|bf16|f16] [--grads] [--adapter=DIR]
//
// DIR is a Hugging Face (or mamba_ssm) model directory, loaded by mamba::LoadMamba. The input
// file holds "input_ids" (I64, or I32, [B, T], T >= 2). The output file (written atomically)
// holds
//   "logits"  [B, T, V]   f64 with --dtype=f64, else f32
//   "loss"    [1]         same dtype: Hugging Face's causal-LM loss, the mean cross-entropy of
//                         logits[:, :-1] against input_ids[:, 1:]
//   "<name>"              with --grads: d loss / d parameter for every parameter, under its
//                         Hugging Face name (mamba/model.h; a tied lm_head is the embedding),
//                         same dtype as the logits
// and metadata {"format": "pt", "command": "lyra forward", "dtype", "device", "model"} (and
// "adapter" with --adapter).
//
// --adapter=DIR loads a PEFT LoRA adapter directory (adapter_config.json +
// adapter_model.safetensors, nn/lora/peft_io.h) onto the base model as adapter "default"; the
// base parameters are frozen, and --grads then writes the gradients of the adapter's
// parameters only, under PEFT's on-disk keys ("base_model.model.<path>.lora_A.weight", ...,
// modules_to_save copies as "base_model.model.<path>.<param>") instead of the base names.
//
// Precision: --dtype=f64 / f32 load the weights in that dtype and run the whole model in it
// (f64: CPU only, the selective scan and the SSD have no f64 CUDA kernels). --dtype=bf16 / f16
// load FP32 master
// weights and run under nn::AutocastGuard(dtype), as a mixed-precision training step does; the
// logits are cast to f32 before the loss (as transformers does) and the gradients arrive in f32.
#ifndef LYRA_TRAIN_FORWARD_COMMAND_H_
#define LYRA_TRAIN_FORWARD_COMMAND_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "mamba/model.h"
#include "nn/module.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace lyra::train {

struct ForwardOptions {
  std::string model_dir;    // --model
  std::string input_path;   // --input
  std::string output_path;  // --out
  Device device = Device::Cpu();
  DType dtype = DType::kF32;  // kF64, kF32, kBF16 or kF16
  bool grads = false;
  std::string adapter_dir;  // --adapter (optional)
};

// "f64", "f32", "bf16", "f16" -> the dtype; InvalidArgument naming the text otherwise.
absl::StatusOr<DType> ParseForwardDType(absl::string_view name);

// What `lyra forward` writes, on the CPU.
struct ForwardOutputs {
  Tensor logits;           // [B, T, V], f64 for kF64 else f32
  Tensor loss;             // [1], the logits' dtype
  nn::NamedTensors grads;  // (HF name, gradient), parameter order; empty without `grads`
};

// One forward (and with `grads` one backward) pass of a loaded model over input_ids [B, T]
// (I64 or I32, any device; T >= 2), in `dtype` as described above: the model's parameters must
// be in `dtype` for kF64 / kF32 and FP32 for kBF16 / kF16 (InvalidArgument otherwise). The
// parameters' accumulated gradients are dropped first. InvalidArgument for ids of another
// dtype or rank, T < 2, or ids outside [0, V). `grad_parameters`, when non-null, names the
// parameters whose gradients are written (default: every parameter under its HF name).
absl::StatusOr<ForwardOutputs> ComputeForward(
    mamba::MambaForCausalLM& model, const Tensor& input_ids, DType dtype, bool grads,
    const std::vector<std::pair<std::string, autograd::Variable>>* grad_parameters = nullptr);

// The whole command: LoadMamba (and LoadLoraAdapter with --adapter), read "input_ids",
// ComputeForward, write `output_path`.
// InvalidArgument for an empty path or dtype other than the four; Unimplemented for f64 on
// CUDA; NotFound for a missing model directory, config, weights or input file (and "input_ids"
// missing from the input file); the loader's and writer's errors as they come.
absl::Status RunForward(const ForwardOptions& options);

}  // namespace lyra::train

#endif  // LYRA_TRAIN_FORWARD_COMMAND_H_
