// Mixed precision: an autocast region in which layers compute in a 16-bit dtype while the
// parameters stay FP32 master weights.
//
//   {
//     nn::AutocastGuard autocast(DType::kBF16);        // the step's forward pass
//     LYRA_ASSIGN_OR_RETURN(Variable loss, model.Loss(batch));
//     LYRA_RETURN_IF_ERROR(loss.Backward());           // FP32 gradients reach the masters
//   }
//
// Inside the region, layers ask for their weights through ComputeWeight: an FP32 weight is cast
// to the region's dtype once per region (the copy is cached by the guard, so a weight used by
// several layers or calls is cast once per step) and the cast is recorded, so the gradient
// flows back through it and arrives in FP32 at the master weight. ComputeInput casts floating
// activations to the region's dtype. Norms and reductions keep their internal math in FP32
// whatever the region. Outside any region both functions return their argument unchanged.
// Regions nest (the innermost wins) and are per thread.
#ifndef LYRA_NN_AUTOCAST_H_
#define LYRA_NN_AUTOCAST_H_

#include <optional>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "base/dtype.h"

namespace lyra::nn {

class AutocastGuard {
 public:
  // `dtype` is kF16, kBF16, or kF32 (a region that casts nothing, for uniform code).
  explicit AutocastGuard(DType dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

  DType dtype() const { return dtype_; }
  // The cast copy of `weight`, made on first use in this region.
  absl::StatusOr<autograd::Variable> Cast(const autograd::Variable& weight);

 private:
  DType dtype_;
  AutocastGuard* previous_;
  std::unordered_map<const autograd::VariableState*, autograd::Variable> cache_;
};

// The compute dtype of the innermost region on this thread, if any.
std::optional<DType> AutocastDType();

// `weight` in the region's dtype (cached per region), or `weight` itself outside one or when it
// is not an FP32 floating tensor of another dtype.
absl::StatusOr<autograd::Variable> ComputeWeight(const autograd::Variable& weight);
// A floating activation cast to the region's dtype (not cached), or `x` unchanged.
absl::StatusOr<autograd::Variable> ComputeInput(const autograd::Variable& x);

}  // namespace lyra::nn

#endif  // LYRA_NN_AUTOCAST_H_
