// Linear: y = x W^T + b, the layer of torch.nn.Linear with Hugging Face parameter names.
//
//   Generator gen(/*seed=*/0);
//   LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Linear> proj,
//                         nn::Linear::Create(768, 3072, /*bias=*/false, gen));
//   LYRA_ASSIGN_OR_RETURN(Variable y, proj->Forward(x));   // x [..., 768] -> y [..., 3072]
//
// Parameters: "weight" [out_features, in_features] and, if enabled, "bias" [out_features],
// created in `dtype` on `device` and initialised as torch.nn.Linear.reset_parameters:
// weight ~ KaimingUniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), then bias ~ the same
// U(-1/sqrt(in), 1/sqrt(in)), drawn from `gen` in that order.
//
// Forward is nn::functional::Linear (one autograd node; on CUDA one cuBLASLt call with the bias
// in its epilogue) on nn::ComputeInput(x), nn::ComputeWeight(weight) and ComputeWeight(bias):
// under an AutocastGuard(kBF16) FP32 masters are cast to bf16 once per region, the matmul runs
// in bf16 with f32 accumulation and the masters receive FP32 gradients.
#ifndef LYRA_NN_LINEAR_H_
#define LYRA_NN_LINEAR_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "nn/module.h"
#include "tensor/device.h"
#include "tensor/random.h"

namespace lyra::nn {

class Linear : public Module {
 public:
  // InvalidArgument unless in_features >= 1, out_features >= 1 and dtype is floating; errors of
  // allocation on `device` (e.g. no GPU) are returned as they come.
  static absl::StatusOr<std::unique_ptr<Linear>> Create(int64_t in_features,
                                                        int64_t out_features, bool bias,
                                                        Generator& gen,
                                                        DType dtype = DType::kF32,
                                                        Device device = Device::Cpu());

  // x [..., in_features] -> [..., out_features], in the compute dtype (x's, or autocast's).
  absl::StatusOr<Variable> Forward(const Variable& x) const;

  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  const Variable& weight() const { return weight_; }
  // Undefined when the layer has no bias.
  const Variable& bias() const { return bias_; }

 private:
  Linear(int64_t in_features, int64_t out_features, Tensor weight, Tensor bias);

  int64_t in_features_;
  int64_t out_features_;
  Variable weight_;
  Variable bias_;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_LINEAR_H_
