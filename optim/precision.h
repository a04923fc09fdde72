// The precision policy of a training run: which dtype the forward and backward compute in, and
// what keeps a 16-bit run stable.
//
//   precision   compute dtype   master weights, grads, optimizer state   loss scaler
//   fp32        f32             f32                                      off (scale 1)
//   fp16        f16             f32                                      dynamic (2^16 start)
//   bf16        bf16            f32                                      off (bf16 has f32's range)
//
// Parameters are always FP32 master weights. Inside an nn::AutocastGuard(ComputeDType(p)) region
// layers compute on 16-bit copies of them (nn::ComputeWeight casts each weight once per region and
// records the cast, so the gradient arrives back at the master in FP32); norms, softmax and
// reductions keep FP32 internal math. FP16's narrow range needs the loss scaler; bf16 and fp32 use
// a disabled scaler so the training loop is the same code for every precision:
//
//   const PrecisionRecipe recipe = RecipeFor(precision);
//   LYRA_ASSIGN_OR_RETURN(DynamicLossScaler scaler, MakeLossScaler(recipe, device));
//   for (each step) {
//     Variable loss;
//     {
//       nn::AutocastGuard autocast(recipe.compute_dtype);          // 1. compute copies
//       LYRA_ASSIGN_OR_RETURN(loss, model.Loss(batch));            // 2. forward
//       LYRA_ASSIGN_OR_RETURN(Variable scaled, scaler.Scale(loss)); // 3. loss * S
//       LYRA_RETURN_IF_ERROR(scaled.Backward());                   // 4. S * grads, in FP32
//     }
//     LYRA_ASSIGN_OR_RETURN(bool stepped, scaler.StepIfFinite(params, [&]() -> absl::Status {
//       // 5. the gradients are unscaled and checked for inf/NaN (one fused launch) before this
//       LYRA_RETURN_IF_ERROR(ClipGradNorm(params, max_norm));     // 6. clip true gradients
//       return optimizer.Step();                                  // 7. only if all finite
//     }));                                                         // 8. scaler.Update
//     model.ZeroGrad();
//   }
//
// (Steps 5-8 can also be spelled out: found_inf = scaler.UnscaleAndCheck(params); clip; read
// found_inf and step if it is 0; scaler.Update(found_inf).)
#ifndef LYRA_OPTIM_PRECISION_H_
#define LYRA_OPTIM_PRECISION_H_

#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/dtype.h"
#include "optim/loss_scaler.h"
#include "tensor/device.h"

namespace lyra::optim {

enum class Precision { kFp32, kFp16, kBf16 };

// "fp32", "fp16", "bf16".
absl::string_view PrecisionName(Precision precision);
// Accepts, in any letter case, "fp32" / "float32" / "f32", "fp16" / "float16" / "f16" / "half",
// "bf16" / "bfloat16". InvalidArgument quoting the text otherwise.
absl::StatusOr<Precision> ParsePrecision(absl::string_view text);

// The dtype layers compute in (the autocast region's): f32, f16 or bf16.
DType ComputeDType(Precision precision);
// True for fp16 only.
bool UsesLossScaler(Precision precision);

// Everything a trainer needs to set a precision up.
struct PrecisionRecipe {
  Precision precision = Precision::kFp32;
  DType master_dtype = DType::kF32;   // parameters, gradients, optimizer state: always f32
  DType compute_dtype = DType::kF32;  // nn::AutocastGuard's dtype
  bool loss_scaling = false;          // a dynamic loss scaler is enabled
  LossScalerOptions scaler;           // its options (enabled == loss_scaling)
};

// The recipe of `precision`; `scaler` supplies the loss-scaler options (its `enabled` is
// overridden by UsesLossScaler).
PrecisionRecipe RecipeFor(Precision precision, const LossScalerOptions& scaler = {});

// A scaler for the recipe on `device`: enabled for fp16, disabled (scale 1) otherwise.
absl::StatusOr<DynamicLossScaler> MakeLossScaler(const PrecisionRecipe& recipe, Device device);

// "fp16: compute f16, master f32, dynamic loss scaling (init 65536, x2 every 2000 clean steps,
// x0.5 on overflow)"
std::string DescribeRecipe(const PrecisionRecipe& recipe);

inline std::ostream& operator<<(std::ostream& os, Precision precision) {
  return os << PrecisionName(precision);
}
template <typename Sink>
void AbslStringify(Sink& sink, Precision precision) {
  sink.Append(PrecisionName(precision));
}

}  // namespace lyra::optim

#endif  // LYRA_OPTIM_PRECISION_H_
