// Optimizer: the base of AdamW and SGD. It owns parameter groups (named FP32 master Variables,
// each group with its own learning rate and weight decay), applies Step() to every parameter that
// has a gradient (a parameter without one is skipped, as torch), drops gradients in ZeroGrad()
// and saves / restores its state as named tensors (safetensors friendly) so that
// save -> load -> continue gives the same parameters, bit for bit, as an uninterrupted run.
//
//   LYRA_ASSIGN_OR_RETURN(auto groups, DecayGroups(model, {.weight_decay = 0.1}));
//   LYRA_ASSIGN_OR_RETURN(std::unique_ptr<AdamW> opt, AdamW::Create(std::move(groups), {.lr = 3e-4}));
//   ... loss.Backward(); opt->Step(); opt->ZeroGrad(); ...
//   LYRA_ASSIGN_OR_RETURN(nn::NamedTensors state, opt->StateDict());
//   LYRA_RETURN_IF_ERROR(WriteSafetensors("optimizer.safetensors", state));
//
// State-dict keys shared by every optimizer (each optimizer adds its own, see its header):
//   "group.<g>.lr", "group.<g>.initial_lr", "group.<g>.weight_decay"   f64 scalars
//   "group.<g>.num_params"                                              i64 scalar
// LoadStateDict checks every key before it changes anything: an unknown key, a missing group
// key, a different number of groups or of parameters in a group, or a per-parameter tensor whose
// shape differs from its parameter's, is InvalidArgument naming the key.
#ifndef LYRA_OPTIM_OPTIMIZER_H_
#define LYRA_OPTIM_OPTIMIZER_H_

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "nn/module.h"
#include "tensor/tensor.h"

namespace lyra::optim {

using autograd::Variable;
using nn::NamedTensors;
using NamedParameters = std::vector<std::pair<std::string, Variable>>;

// A parameter group. Unset lr / weight_decay take the optimizer's defaults.
struct ParamGroup {
  NamedParameters params;
  std::optional<double> lr;
  std::optional<double> weight_decay;
};

// How DecayGroups splits a module's trainable parameters.
struct DecayGroupOptions {
  // Weight decay of the "decay" group (the "no decay" group always has 0).
  double weight_decay = 0.01;
  // No decay for parameters whose last name component is "bias".
  bool no_decay_biases = true;
  // No decay for norm weights: names ending in "norm.weight" (also "layernorm.weight",
  // "norm_f.weight"), and every parameter with at most one dimension.
  bool no_decay_norms_and_1d = true;
  // No decay for embedding tables: names ending in "embeddings.weight", "embedding.weight",
  // "embed_tokens.weight" or "wte.weight". Off by default (torch and HF decay them).
  bool no_decay_embeddings = false;
  // Last name components that never decay: mamba_ssm marks A_log and D `_no_weight_decay`.
  std::vector<std::string> no_decay_names = {"A_log", "D"};
};

// Two groups from module.TrainableParameters() in registration order: [0] "decay" with
// options.weight_decay, [1] "no decay" with weight decay 0 (either may be empty). lr is unset in
// both. InvalidArgument if options.weight_decay is negative or not finite.
absl::StatusOr<std::vector<ParamGroup>> DecayGroups(const nn::Module& module,
                                                    const DecayGroupOptions& options = {});

// True if DecayGroups(options) would put a parameter of this name and rank in "no decay".
bool IsNoDecayParameter(const std::string& name, int dim, const DecayGroupOptions& options);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter with a gradient; parameters without one are skipped.
  virtual absl::Status Step() = 0;
  // The state as named tensors (group hyper-parameters and per-parameter state). Per-parameter
  // tensors are the live state (no copies): write them out before the next Step().
  virtual absl::StatusOr<NamedTensors> StateDict() const = 0;
  // Restores a StateDict() exactly (values converted to each parameter's device).
  virtual absl::Status LoadStateDict(const NamedTensors& state) = 0;

  // Drops every parameter's gradient (torch's zero_grad(set_to_none=True)).
  void ZeroGrad();

  const std::string& name() const { return name_; }
  int num_groups() const { return static_cast<int>(groups_.size()); }
  // CHECK-fail outside [0, num_groups()).
  const NamedParameters& parameters(int group) const;
  double lr(int group) const;
  double weight_decay(int group) const;
  // The lr the group was created with; schedules scale it (torch's "initial_lr").
  double initial_lr(int group) const;
  // InvalidArgument for a group out of range or an lr that is negative or not finite.
  absl::Status SetLr(int group, double lr);

 protected:
  struct Group {
    NamedParameters params;
    double lr = 0;
    double initial_lr = 0;
    double weight_decay = 0;
  };

  explicit Optimizer(std::string name) : name_(std::move(name)) {}

  // Validates and stores the groups: every parameter a defined f32 leaf, contiguous, on one
  // device; names unique and no Variable in two groups; lr and weight decay finite and >= 0.
  absl::Status InitGroups(std::vector<ParamGroup> groups, double default_lr,
                          double default_weight_decay);

  // The base keys ("group.<g>.lr", ...) of StateDict.
  void AppendGroupState(NamedTensors& state) const;

  std::string name_;
  std::vector<Group> groups_;
  Device device_ = Device::Cpu();
};

namespace internal {

// Looks up state-dict keys and remembers which were used, so that unknown keys are reported.
class StateReader {
 public:
  StateReader(std::string op, const NamedTensors& state);
  bool Has(const std::string& key) const { return index_.count(key) > 0; }
  // The tensor under `key`, or InvalidArgument naming the key.
  absl::StatusOr<Tensor> Get(const std::string& key);
  // A one-element tensor's value as double / int64.
  absl::StatusOr<double> GetDouble(const std::string& key);
  absl::StatusOr<int64_t> GetInt(const std::string& key);
  // InvalidArgument listing the keys never looked up.
  absl::Status CheckAllUsed() const;

 private:
  std::string op_;
  std::map<std::string, Tensor> index_;
  std::map<std::string, bool> used_;
};

// Reads the base group keys into `groups` (whose parameters are already set), checking the
// group count and per-group parameter counts.
absl::Status ReadGroupState(const std::string& op, StateReader& reader,
                            std::vector<double>& lr, std::vector<double>& initial_lr,
                            std::vector<double>& weight_decay, int num_groups,
                            const std::vector<int64_t>& params_per_group);

// A scalar tensor on the CPU.
Tensor ScalarF64(double value);
Tensor ScalarI64(int64_t value);

}  // namespace internal

}  // namespace lyra::optim

#endif  // LYRA_OPTIM_OPTIMIZER_H_
