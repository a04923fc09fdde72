// The backward pass: Variable::Backward.
//
// 1. Collect the Nodes reachable from the root and count, for each, the edges from other
//    reachable Nodes that feed it (its pending gradient contributions).
// 2. Run Nodes whose contributions have all arrived, starting at the root: sum the gradients of
//    each output (zeros where none arrived), Apply the backward function, and pass every input
//    gradient along its edge — added into a leaf's grad, or into the buffer of the producing Node.
// This is a topological order, so each Node runs once, after everything that depends on it.
// Gradients are summed out of place: a backward function may return a tensor it was given (or a
// view of one) without it being modified later.
#include <deque>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "tensor/elementwise.h"

namespace lyra::autograd {
namespace {

// a + b, where either may be undefined (no gradient yet).
absl::StatusOr<Tensor> AddGradients(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return Add(a, b);
}

// Adds `grad` into a leaf's accumulated gradient. A gradient that may share storage with other
// tensors (or is a broadcast view) is copied first, so later in-place updates of leaf.grad (by
// an optimizer or loss scaler) never write through to anything else.
absl::Status AccumulateIntoLeaf(VariableState& leaf, const Tensor& grad) {
  if (leaf.grad.defined()) {
    LYRA_ASSIGN_OR_RETURN(leaf.grad, Add(leaf.grad, grad));
    return absl::OkStatus();
  }
  if (grad.is_contiguous() && grad.storage().use_count() == 1 &&
      grad.storage()->bytes() == grad.nbytes()) {
    leaf.grad = grad;
  } else {
    LYRA_ASSIGN_OR_RETURN(leaf.grad, grad.Clone());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Variable::Backward(const Tensor& grad, bool retain_graph) const {
  if (!defined()) return absl::InvalidArgumentError("Backward on an undefined Variable");
  if (!requires_grad()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Backward on ", Describe(), ", which does not require grad (no input of the "
        "computation had requires_grad, or it ran under NoGradGuard)"));
  }
  Tensor seed = grad;
  if (!seed.defined()) {
    if (numel() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Backward without a gradient needs a one-element result, got ", Describe()));
    }
    LYRA_ASSIGN_OR_RETURN(seed, Tensor::Ones(shape(), dtype(), device()));
  } else if (seed.shape() != shape() || seed.dtype() != dtype() || seed.device() != device()) {
    return absl::InvalidArgumentError(absl::StrCat("Backward: gradient ", seed.Describe(),
                                                   " does not match ", Describe()));
  }
  // Recording is off during the backward pass itself: no double backward.
  NoGradGuard no_grad;
  if (is_leaf()) return AccumulateIntoLeaf(*state(), seed);

  // 1. Reachable nodes and their pending contribution counts.
  std::unordered_map<Node*, int> pending;
  std::vector<Node*> stack = {grad_fn().get()};
  pending[grad_fn().get()] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& e : node->inputs()) {
      if (!e.node) continue;
      auto [it, inserted] = pending.try_emplace(e.node.get(), 0);
      it->second++;
      if (inserted) stack.push_back(e.node.get());
    }
  }

  // 2. Run nodes as their contributions complete. Buffers hold per-output gradient sums.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  buffers[grad_fn().get()].resize(grad_fn()->num_outputs());
  buffers[grad_fn().get()][output_index()] = seed;
  std::deque<std::shared_ptr<Node>> ready = {grad_fn()};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.front();
    ready.pop_front();
    std::vector<Tensor> grad_outputs = std::move(buffers[node.get()]);
    buffers.erase(node.get());
    grad_outputs.resize(node->num_outputs());
    for (int i = 0; i < node->num_outputs(); ++i) {
      if (grad_outputs[i].defined()) continue;
      const TensorMeta& m = node->output_meta()[i];
      LYRA_ASSIGN_OR_RETURN(grad_outputs[i], Tensor::Zeros(m.shape, m.dtype, m.device));
    }
    LYRA_ASSIGN_OR_RETURN(std::vector<Tensor> grad_inputs, node->Apply(grad_outputs));
    grad_outputs.clear();
    for (size_t i = 0; i < grad_inputs.size(); ++i) {
      const Edge& e = node->inputs()[i];
      if (e.leaf) {
        if (grad_inputs[i].defined()) {
          LYRA_RETURN_IF_ERROR(AccumulateIntoLeaf(*e.leaf, grad_inputs[i]));
        }
      } else if (e.node) {
        std::vector<Tensor>& buffer = buffers[e.node.get()];
        buffer.resize(e.node->num_outputs());
        LYRA_ASSIGN_OR_RETURN(buffer[e.output_index],
                              AddGradients(buffer[e.output_index], grad_inputs[i]));
        if (--pending[e.node.get()] == 0) ready.push_back(e.node);
      }
    }
    if (!retain_graph) node->Release();
  }
  return absl::OkStatus();
}

}  // namespace lyra::autograd
