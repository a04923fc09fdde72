// SGD with momentum, dampening, Nesterov momentum and (coupled) weight decay, exactly as
// torch.optim.SGD (maximize = False), parameter by parameter:
//
//   d = g + wd * p                              (when wd != 0)
//   b = d                                       at the parameter's first step with momentum,
//   b = momentum * b + (1 - dampening) * d      afterwards                     (when momentum != 0)
//   d = nesterov ? d + momentum * b : b
//   p = p - lr * d
//
// Each line is one elementwise op in f32 (tensor/elementwise.h), so it runs on the CPU and on
// CUDA; gradients may be f32, f16 or bf16 (converted to f32 first). Parameters without a gradient
// are skipped. Not fused: one op per line per parameter (SGD is the baseline optimizer here).
//
// State dict (besides the base keys of optim/optimizer.h):
//   "momentum", "dampening"                  f64 scalars;  "nesterov"  i64 scalar 0 / 1
//   "state.<name>.momentum_buffer"           f32, the parameter's shape (once it exists)
#ifndef LYRA_OPTIM_SGD_H_
#define LYRA_OPTIM_SGD_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "optim/optimizer.h"

namespace lyra::optim {

struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
};

class Sgd : public Optimizer {
 public:
  // InvalidArgument for bad parameters (Optimizer::InitGroups), a negative or non-finite lr,
  // momentum, dampening or weight decay, or nesterov without momentum > 0 and dampening == 0
  // (as torch).
  static absl::StatusOr<std::unique_ptr<Sgd>> Create(std::vector<ParamGroup> groups,
                                                     const SgdOptions& options = {});
  static absl::StatusOr<std::unique_ptr<Sgd>> Create(NamedParameters params,
                                                     const SgdOptions& options = {});

  absl::Status Step() override;
  absl::StatusOr<NamedTensors> StateDict() const override;
  absl::Status LoadStateDict(const NamedTensors& state) override;

  const SgdOptions& options() const { return options_; }

 private:
  explicit Sgd(const SgdOptions& options) : Optimizer("SGD"), options_(options) {}

  SgdOptions options_;
  std::vector<std::vector<Tensor>> momentum_buffers_;  // [group][param]; undefined: none yet
};

}  // namespace lyra::optim

#endif  // LYRA_OPTIM_SGD_H_
