// Cross-entropy composed of differentiable ops:
//   loss = -(1 / |kept|) * sum_{i kept} log_softmax(logits)[i, target_i]
// where kept = {i : target_i != ignore_index}. Ignored rows gather index 0 and are masked out.
#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "tensor/elementwise.h"
#include "tensor/reduce.h"

namespace lyra::autograd {

absl::StatusOr<Variable> CrossEntropy(const Variable& logits, const Tensor& targets,
                                      int64_t ignore_index) {
  if (!logits.defined() || !targets.defined()) {
    return absl::InvalidArgumentError("CrossEntropy: undefined argument");
  }
  if (logits.dim() != 2 || targets.dim() != 1 || targets.size(0) != logits.size(0) ||
      !IsInteger(targets.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat("CrossEntropy: expected logits [N, C] and integer targets [N], got ",
                     logits.data().Describe(), " and ", targets.Describe()));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor ignore, Tensor::Scalar(static_cast<double>(ignore_index),
                                                      targets.dtype(), targets.device()));
  LYRA_ASSIGN_OR_RETURN(Tensor kept, lyra::Ne(targets, ignore));
  LYRA_ASSIGN_OR_RETURN(Tensor zero, Tensor::Scalar(0, targets.dtype(), targets.device()));
  LYRA_ASSIGN_OR_RETURN(Tensor safe_targets, lyra::Where(kept, targets, zero));
  LYRA_ASSIGN_OR_RETURN(safe_targets, safe_targets.Unsqueeze(1));
  LYRA_ASSIGN_OR_RETURN(Tensor kept_count, lyra::Sum(kept));
  LYRA_ASSIGN_OR_RETURN(double count, kept_count.Item());
  LYRA_ASSIGN_OR_RETURN(Tensor weight, kept.To(logits.dtype()));
  LYRA_ASSIGN_OR_RETURN(weight, weight.Unsqueeze(1));

  LYRA_ASSIGN_OR_RETURN(Variable log_probs, LogSoftmax(logits, 1));
  LYRA_ASSIGN_OR_RETURN(Variable picked, Gather(log_probs, 1, safe_targets));
  LYRA_ASSIGN_OR_RETURN(Variable masked, Mul(picked, Variable(weight)));
  LYRA_ASSIGN_OR_RETURN(Variable total, Sum(masked));
  // As torch: every target ignored gives 0 / 0 = NaN.
  return MulScalar(total, count > 0 ? -1.0 / count : std::nan(""));
}

}  // namespace lyra::autograd
