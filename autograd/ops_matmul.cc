// Matmul and its gradient: for Y = A B, dA = dY Bᵀ and dB = Aᵀ dY, each summed over the batch
// dims its operand was broadcast along. The transposes are views: cuBLAS reads them in place.
#include "autograd/ops.h"
#include "autograd/ops_internal.h"
#include "base/status_macros.h"
#include "tensor/matmul.h"

namespace lyra::autograd {

absl::StatusOr<Variable> Matmul(const Variable& a, const Variable& b) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Matmul", {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Matmul(a.data(), b.data()));
  Tensor saved_a = b.requires_grad() ? a.data() : Tensor();
  Tensor saved_b = a.requires_grad() ? b.data() : Tensor();
  return internal::RecordBinary(
      "Matmul", a, b, y,
      [saved_b](const Tensor& g) -> absl::StatusOr<Tensor> {
        LYRA_ASSIGN_OR_RETURN(Tensor bt, saved_b.Transpose(-1, -2));
        return lyra::Matmul(g, bt);
      },
      [saved_a](const Tensor& g) -> absl::StatusOr<Tensor> {
        LYRA_ASSIGN_OR_RETURN(Tensor at, saved_a.Transpose(-1, -2));
        return lyra::Matmul(at, g);
      });
}

}  // namespace lyra::autograd
