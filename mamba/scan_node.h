// The autograd plumbing shared by the differentiable scans SelectiveScan (mamba/selective_scan.h)
// and Ssd (mamba/ssd.h): each is ONE node with inputs (x or u, dt or delta, A, B, C, D, z, the dt
// bias, the initial state) and outputs (y, final_state), whose backward is the fused kernel.
#ifndef LYRA_MAMBA_SCAN_NODE_H_
#define LYRA_MAMBA_SCAN_NODE_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

// The data of `v`, or an undefined Tensor for an absent optional input.
Tensor DataOrUndefined(const autograd::Variable& v);

// The backward of a scan node: from the gradients of y and of the final state (zeros where no
// gradient reached), one gradient per input, in the order of the node's inputs.
using ScanBackwardFn = std::function<absl::StatusOr<std::vector<Tensor>>(
    const Tensor& dy, const Tensor& dfinal_state)>;

// autograd::RecordOp for a scan: wraps {y, final_state} as Variables and, when some input
// requires grad, records one node named `name` whose backward calls `backward` and drops the
// gradients of the inputs that did not require grad when the node was recorded.
absl::StatusOr<std::vector<autograd::Variable>> RecordScanNode(
    const std::string& name, const std::vector<autograd::Variable>& inputs, Tensor y,
    Tensor final_state, ScanBackwardFn backward);

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_SCAN_NODE_H_
