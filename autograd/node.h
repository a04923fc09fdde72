// Nodes of the autograd graph, and how an op (built-in or a user's fused kernel) records one.
//
// A differentiable op computes its outputs from its inputs' data, then calls RecordOp with a
// backward function. RecordOp wraps the outputs as Variables; when grad mode is on and some input
// requires grad, it also records a Node linking the outputs to the inputs:
//
//   // y = x * x, with a hand-written backward that saved only x.
//   LYRA_ASSIGN_OR_RETURN(Tensor y, Mul(x.data(), x.data()));
//   Tensor saved_x = x.data();
//   LYRA_ASSIGN_OR_RETURN(std::vector<Variable> out, RecordOp("Square", {x}, {y},
//       [saved_x](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
//         LYRA_ASSIGN_OR_RETURN(Tensor dx, Mul(g[0], saved_x));
//         LYRA_ASSIGN_OR_RETURN(dx, MulScalar(dx, 2));
//         return std::vector<Tensor>{dx};
//       }));
//
// The backward function receives one gradient per output (zeros for an output no gradient
// reached) and returns one gradient per input, in order: each of the input's shape and dtype, or
// an undefined Tensor for an input that gets none (an index tensor, an input not requiring grad).
// The engine checks every returned gradient's shape and dtype and reports a mismatch as Internal
// naming the op. This is the one mechanism: the fused scan kernels of later layers use it too.
#ifndef LYRA_AUTOGRAD_NODE_H_
#define LYRA_AUTOGRAD_NODE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::autograd {

using BackwardFn =
    std::function<absl::StatusOr<std::vector<Tensor>>(const std::vector<Tensor>& grad_outputs)>;

// Where the gradient of one input goes: into a leaf's accumulated grad, or into output
// `output_index` of the Node that produced the input. Inputs that do not require grad have no
// edge (both null).
struct Edge {
  std::shared_ptr<VariableState> leaf;
  std::shared_ptr<Node> node;
  int output_index = 0;
  bool connected() const { return leaf != nullptr || node != nullptr; }
};

// The metadata of one output or input, for checking gradients' shapes and dtypes.
struct TensorMeta {
  Shape shape;
  DType dtype = DType::kF32;
  Device device;
};

class Node {
 public:
  Node(std::string name, std::vector<Edge> inputs, std::vector<TensorMeta> input_meta,
       std::vector<TensorMeta> output_meta, BackwardFn backward);

  const std::string& name() const { return name_; }
  const std::vector<Edge>& inputs() const { return inputs_; }
  const std::vector<TensorMeta>& input_meta() const { return input_meta_; }
  const std::vector<TensorMeta>& output_meta() const { return output_meta_; }
  int num_outputs() const { return static_cast<int>(output_meta_.size()); }
  bool released() const { return !backward_; }

  // Runs the backward function (FailedPrecondition once released) and checks its result.
  absl::StatusOr<std::vector<Tensor>> Apply(const std::vector<Tensor>& grad_outputs) const;
  // Drops the backward function and the tensors it saved.
  void Release() { backward_ = nullptr; }

 private:
  std::string name_;
  std::vector<Edge> inputs_;
  std::vector<TensorMeta> input_meta_;
  std::vector<TensorMeta> output_meta_;
  BackwardFn backward_;
};

// Wraps `outputs` as Variables and, if grad mode is on and any input requires grad, records a
// Node named `name` with `backward`. Inputs may be undefined Variables (no gradient flows).
absl::StatusOr<std::vector<Variable>> RecordOp(const std::string& name,
                                               const std::vector<Variable>& inputs,
                                               std::vector<Tensor> outputs, BackwardFn backward);

// As RecordOp for a single output.
absl::StatusOr<Variable> RecordUnaryResult(const std::string& name,
                                           const std::vector<Variable>& inputs, Tensor output,
                                           BackwardFn backward);

// For an op that has no backward: InvalidArgument naming `name` if any input requires grad (and
// grad mode is on); otherwise wraps `output` as a Variable that does not require grad.
absl::StatusOr<Variable> NonDifferentiableResult(const std::string& name,
                                                 const std::vector<Variable>& inputs,
                                                 Tensor output);

// True if grad mode is on and some input requires grad: an op may skip saving tensors otherwise.
bool AnyRequiresGrad(const std::vector<Variable>& inputs);

}  // namespace lyra::autograd

#endif  // LYRA_AUTOGRAD_NODE_H_
