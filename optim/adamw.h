// AdamW, exactly as torch.optim.AdamW (amsgrad = False, maximize = False), fused: on CUDA one
// kernel launch updates every parameter of every group (cuda/adamw.h has the math, the rounding
// and the multi-tensor layout); on the CPU the reference loop does the same arithmetic.
//
//   p <- p (1 - lr wd);  m <- lerp(m, g, 1 - beta1);  v <- beta2 v + (1 - beta2) g^2
//   p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
//
// Parameters are FP32 master Variables updated in place; gradients may be f32, f16 or bf16
// (upcast in the kernel); moments are f32. State is created at a parameter's first step with a
// gradient; a parameter without a gradient is skipped and its step count does not advance.
// Each group may set lr and weight_decay (ParamGroup); betas and eps are per optimizer.
//
// CUDA graphs: every step-dependent value the kernel needs lives in device memory (step
// counters, bias corrections derived from them, the tables, the hyper-parameters), and the tables
// are re-uploaded only when they change. After one warm-up Step() (which allocates the state and
// uploads the tables), a Step() captured in a graph replays correctly as long as the gradient
// buffers keep their addresses and the learning rate is not changed; to change lr between
// replays write the device table at device_hyper_params() (cuda::AdamWHyperParams per group).
//
// State dict (besides the base keys of optim/optimizer.h):
//   "beta1", "beta2", "eps"                              f64 scalars
//   "state.<name>.exp_avg", "state.<name>.exp_avg_sq"    f32, the parameter's shape
//   "state.<name>.step"                                  i64 scalar: steps the parameter took
// for every parameter that has state.
#ifndef LYRA_OPTIM_ADAMW_H_
#define LYRA_OPTIM_ADAMW_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cuda/adamw.h"
#include "cuda/multi_tensor.h"
#include "optim/optimizer.h"

namespace lyra::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  // Elements per multi-tensor chunk (a positive multiple of 4 below 2^31): a tuning and testing
  // knob; results do not depend on it.
  int64_t chunk_elements = cuda::kMultiTensorChunkElements;
};

class AdamW : public Optimizer {
 public:
  // InvalidArgument for a bad parameter (see Optimizer::InitGroups), a negative or non-finite
  // lr / eps / weight decay, betas outside [0, 1), or a bad chunk size.
  static absl::StatusOr<std::unique_ptr<AdamW>> Create(std::vector<ParamGroup> groups,
                                                       const AdamWOptions& options = {});
  // One group holding `params`.
  static absl::StatusOr<std::unique_ptr<AdamW>> Create(NamedParameters params,
                                                       const AdamWOptions& options = {});

  // InvalidArgument for a gradient whose shape differs from its parameter's, whose dtype is not
  // f32 / f16 / bf16, or that lies on another device.
  absl::Status Step() override;
  absl::StatusOr<NamedTensors> StateDict() const override;
  absl::Status LoadStateDict(const NamedTensors& state) override;

  const AdamWOptions& options() const { return options_; }
  // The steps parameter `name` has taken (0 without state); NotFound for an unknown name.
  absl::StatusOr<int64_t> StepCount(const std::string& name) const;
  // CUDA: the device table of cuda::AdamWHyperParams (one per group) the kernel reads; null on
  // the CPU and before the first CUDA Step().
  void* device_hyper_params() const { return hyper_table_.data(); }

 private:
  struct State {
    Tensor exp_avg;     // f32, the parameter's shape and device
    Tensor exp_avg_sq;  // f32
    Tensor step;        // i64 scalar on the parameter's device
  };

  AdamW(const AdamWOptions& options) : Optimizer("AdamW"), options_(options) {}
  absl::StatusOr<State> NewState(const Variable& param) const;
  const State* FindState(const std::string& name) const;

  AdamWOptions options_;
  std::vector<std::vector<State>> state_;  // [group][param]; undefined tensors: no state yet
  cuda::DeviceTable tensor_table_;
  cuda::DeviceTable chunk_table_;
  cuda::DeviceTable hyper_table_;
  cuda::DeviceTable tickets_;
};

}  // namespace lyra::optim

#endif  // LYRA_OPTIM_ADAMW_H_
