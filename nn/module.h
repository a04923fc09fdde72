// Module: the base of every layer and model. A module owns named parameters (leaf Variables,
// FP32 master weights by default), named buffers (tensors saved with the model but not
// trained) and named child modules, so every parameter has a dotted name that matches Hugging
// Face checkpoints: "backbone.layers.0.mixer.in_proj.weight".
//
//   class Mlp : public Module {
//    public:
//     Mlp() : Module("Mlp") {
//       up_ = RegisterModule("up", std::make_unique<Linear>(...));
//     }
//     absl::StatusOr<Variable> Forward(const Variable& x) { return up_->Forward(x); }
//    private:
//     Linear* up_;   // owned by the registry
//   };
//
// Subclasses keep typed pointers / Variable handles to what they registered (a Variable is a
// handle: the registry and the member share one state). Names are unique within a module and
// may not contain '.'; registration order is the iteration order (and the state-dict order).
//
// Adapters (nn/lora/ builds on this): a module may also hold adapter parameters, registered
// under dotted names that follow PEFT's in-memory names ("lora_A.default.weight"). They are
// parameters for training: NamedParameters / Parameters / TrainableParameters / NumParameters
// list them (after the module's own parameters), To() moves them and ZeroGrad drops their
// gradients. They are NOT part of the state dict: StateDict / LoadStateDict / Save- and
// LoadSafetensors see only the base parameters and buffers, so a base checkpoint saves and
// loads unchanged (strictly) while adapters are attached. NamedAdapterParameters lists them.
// A base parameter may also be swapped with a stand-in (PEFT's modules_to_save copy, see
// SwapParameter): layers then compute with and train the stand-in's value while state dicts
// keep reading and writing the displaced original.
#ifndef LYRA_NN_MODULE_H_
#define LYRA_NN_MODULE_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "tensor/tensor.h"

namespace lyra::nn {

using autograd::Variable;

// A list of named tensors (a state dict), in order.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// What LoadStateDict did not match (only non-empty when strict is false).
struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the state dict
  std::vector<std::string> unexpected;  // in the state dict, not in the module
};

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // "Linear", "RMSNorm", ...
  const std::string& type_name() const { return type_name_; }

  // --- Traversal (registration order, depth first; names are dotted paths) ---------------
  std::vector<std::pair<std::string, Variable>> NamedParameters() const;
  std::vector<Variable> Parameters() const;
  // Parameters with requires_grad (what an optimizer updates).
  std::vector<std::pair<std::string, Variable>> TrainableParameters() const;
  std::vector<std::pair<std::string, Tensor>> NamedBuffers() const;
  // This module ("") and every descendant.
  std::vector<std::pair<std::string, Module*>> NamedModules();
  std::vector<std::pair<std::string, const Module*>> NamedModules() const;
  // The direct child named `name`, or NotFound.
  absl::StatusOr<Module*> Child(const std::string& name) const;
  // The descendant at dotted `path` ("layers.0.mixer"), or NotFound naming the missing part.
  absl::StatusOr<Module*> Find(const std::string& path) const;

  // --- Modes ------------------------------------------------------------------------------
  // Training mode (dropout active) for this module and its descendants.
  void Train(bool training = true);
  void Eval() { Train(false); }
  bool is_training() const { return training_; }

  // --- Devices and dtypes -----------------------------------------------------------------
  // Moves every parameter and buffer (gradients are dropped).
  absl::Status To(Device device);
  // Converts every floating-point parameter and buffer (integer buffers keep their dtype).
  absl::Status To(DType dtype);

  // --- Freezing and counting --------------------------------------------------------------
  // Sets requires_grad on every parameter whose full dotted name matches the ECMAScript regular
  // expression `pattern` entirely (std::regex_match); returns how many matched. InvalidArgument
  // for a malformed pattern; NotFound when nothing matches (a typo should not pass silently).
  absl::StatusOr<int> SetRequiresGrad(const std::string& pattern, bool requires_grad);
  // requires_grad for every parameter.
  void SetRequiresGradAll(bool requires_grad);
  // Elements in all parameters, or only in those that require grad.
  int64_t NumParameters(bool trainable_only = false) const;
  // Drops every parameter's accumulated gradient.
  void ZeroGrad();

  // --- Adapters (see the file comment) ------------------------------------------------------
  // Registers an adapter parameter (a new leaf holding `value`) under `name`: dot-separated
  // non-empty parts, unique among this module's adapter parameters and not a base name.
  // InvalidArgument otherwise.
  absl::StatusOr<Variable> AddAdapterParameter(const std::string& name, Tensor value,
                                               bool requires_grad = true);
  // Removes one; NotFound if there is none of that name.
  absl::Status RemoveAdapterParameter(const std::string& name);
  // Adapter parameters of this module and every descendant, by full dotted name.
  std::vector<std::pair<std::string, Variable>> NamedAdapterParameters() const;
  // Exchanges the whole state (value, gradient, requires_grad) of this module's own base
  // parameter `name` with the leaf `other`: the layer, which reads its parameter Variable, now
  // computes with (and trains) what `other` held, and `other` holds the original. While swapped,
  // StateDict / LoadStateDict read and write `other` (the original) under `name`. Swapping again
  // with the same `other` undoes it. InvalidArgument for an unknown name, a non-leaf, a shape or
  // dtype mismatch, or while `name` is swapped with another Variable. Swap outside autocast
  // regions: an AutocastGuard caches casts per Variable state and would keep the old value's.
  absl::Status SwapParameter(const std::string& name, const Variable& other);
  // Whether own parameter `name` is currently swapped (with whom: `with`, if non-null).
  bool IsParameterSwapped(const std::string& name, Variable* with = nullptr) const;

  // --- State dicts ------------------------------------------------------------------------
  // Every parameter's and buffer's current value by dotted name (no copies).
  NamedTensors StateDict() const;
  // Copies values into the parameters and buffers with the same names, converting dtype and
  // device to the module's. A key whose shape differs is InvalidArgument naming the key and both
  // shapes (always, strict or not); in strict mode any missing or unexpected key is
  // InvalidArgument listing them. Nothing is modified unless every check passes.
  absl::StatusOr<LoadReport> LoadStateDict(const NamedTensors& state, bool strict = true);
  // The state dict as a safetensors file (atomic write) / loaded from one.
  absl::Status SaveSafetensors(const std::string& path) const;
  absl::StatusOr<LoadReport> LoadSafetensors(const std::string& path, bool strict = true);

 protected:
  // Registers a parameter (a new leaf Variable holding `value`). CHECK-fails on a duplicate or
  // dotted name: a programming error in the module's constructor.
  Variable RegisterParameter(const std::string& name, Tensor value, bool requires_grad = true);
  // Registers a tensor saved in the state dict but never trained; returns a pointer to the
  // registry's slot (stable for the module's life) so the module can update it.
  Tensor* RegisterBuffer(const std::string& name, Tensor value);
  // Takes ownership of a child; returns it typed.
  template <typename M>
  M* RegisterModule(const std::string& name, std::unique_ptr<M> module) {
    M* raw = module.get();
    AddChild(name, std::move(module));
    return raw;
  }

 private:
  void AddChild(const std::string& name, std::unique_ptr<Module> module);
  void CheckNewName(const std::string& name) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Variable>> parameters_;
  std::vector<std::pair<std::string, Variable>> adapter_parameters_;
  // Own parameter name -> the Variable holding its original while swapped (SwapParameter).
  std::vector<std::pair<std::string, Variable>> swapped_;
  // The Variable the state dict reads for own parameter `name` (the original while swapped).
  Variable StateDictSlot(const std::string& name, const Variable& live) const;
  std::vector<std::pair<std::string, std::unique_ptr<Tensor>>> buffers_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_MODULE_H_
