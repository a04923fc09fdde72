#include "mamba/scan_node.h"

#include <utility>

#include "autograd/node.h"
#include "base/status_macros.h"

namespace lyra::mamba {

Tensor DataOrUndefined(const autograd::Variable& v) { return v.defined() ? v.data() : Tensor(); }

absl::StatusOr<std::vector<autograd::Variable>> RecordScanNode(
    const std::string& name, const std::vector<autograd::Variable>& inputs, Tensor y,
    Tensor final_state, ScanBackwardFn backward) {
  std::vector<bool> wants(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) wants[i] = inputs[i].requires_grad();
  return autograd::RecordOp(
      name, inputs, {std::move(y), std::move(final_state)},
      [wants, backward = std::move(backward)](
          const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(std::vector<Tensor> out, backward(g[0], g[1]));
        for (size_t i = 0; i < out.size() && i < wants.size(); ++i) {
          if (!wants[i]) out[i] = Tensor();
        }
        return out;
      });
}

}  // namespace lyra::mamba
