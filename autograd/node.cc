#include "autograd/node.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace lyra::autograd {
namespace {

TensorMeta MetaOf(const Tensor& t) { return TensorMeta{t.shape(), t.dtype(), t.device()}; }

std::string MetaToString(const TensorMeta& m) {
  return absl::StrCat(DTypeName(m.dtype), ShapeToString(m.shape), " ", m.device.ToString());
}

}  // namespace

Node::Node(std::string name, std::vector<Edge> inputs, std::vector<TensorMeta> input_meta,
           std::vector<TensorMeta> output_meta, BackwardFn backward)
    : name_(std::move(name)),
      inputs_(std::move(inputs)),
      input_meta_(std::move(input_meta)),
      output_meta_(std::move(output_meta)),
      backward_(std::move(backward)) {}

absl::StatusOr<std::vector<Tensor>> Node::Apply(const std::vector<Tensor>& grad_outputs) const {
  if (!backward_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backward through ", name_,
        " a second time: its graph was freed by the first Backward (pass retain_graph = true)"));
  }
  LYRA_ASSIGN_OR_RETURN(std::vector<Tensor> grads, backward_(grad_outputs));
  if (grads.size() != inputs_.size()) {
    return absl::InternalError(absl::StrCat(name_, " backward returned ", grads.size(),
                                            " gradients for ", inputs_.size(), " inputs"));
  }
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) continue;
    const TensorMeta& m = input_meta_[i];
    if (grads[i].shape() != m.shape || grads[i].dtype() != m.dtype ||
        grads[i].device() != m.device) {
      return absl::InternalError(absl::StrCat(name_, " backward: gradient ", i, " is ",
                                              grads[i].Describe(), " but the input is ",
                                              MetaToString(m)));
    }
  }
  return grads;
}

bool AnyRequiresGrad(const std::vector<Variable>& inputs) {
  if (!GradModeEnabled()) return false;
  for (const Variable& v : inputs) {
    if (v.requires_grad()) return true;
  }
  return false;
}

absl::StatusOr<std::vector<Variable>> RecordOp(const std::string& name,
                                               const std::vector<Variable>& inputs,
                                               std::vector<Tensor> outputs, BackwardFn backward) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].defined()) {
      return absl::InternalError(absl::StrCat(name, ": output ", i, " is undefined"));
    }
  }
  std::vector<Variable> results;
  results.reserve(outputs.size());
  if (!AnyRequiresGrad(inputs)) {
    for (Tensor& t : outputs) results.emplace_back(std::move(t), false);
    return results;
  }
  std::vector<Edge> edges;
  std::vector<TensorMeta> input_meta;
  for (const Variable& v : inputs) {
    Edge e;
    if (v.requires_grad()) {
      if (v.is_leaf()) {
        e.leaf = v.state();
      } else {
        e.node = v.grad_fn();
        e.output_index = v.output_index();
      }
    }
    edges.push_back(std::move(e));
    input_meta.push_back(v.defined() ? MetaOf(v.data()) : TensorMeta{});
  }
  std::vector<TensorMeta> output_meta;
  for (const Tensor& t : outputs) output_meta.push_back(MetaOf(t));
  auto node = std::make_shared<Node>(name, std::move(edges), std::move(input_meta),
                                     std::move(output_meta), std::move(backward));
  for (size_t i = 0; i < outputs.size(); ++i) {
    auto state = std::make_shared<VariableState>();
    state->data = std::move(outputs[i]);
    // Integer outputs (e.g. argmax indices) never carry gradients.
    state->requires_grad = IsFloating(state->data.dtype());
    state->grad_fn = state->requires_grad ? node : nullptr;
    state->output_index = static_cast<int>(i);
    results.emplace_back(std::move(state));
  }
  return results;
}

absl::StatusOr<Variable> RecordUnaryResult(const std::string& name,
                                           const std::vector<Variable>& inputs, Tensor output,
                                           BackwardFn backward) {
  std::vector<Tensor> outputs;
  outputs.push_back(std::move(output));
  LYRA_ASSIGN_OR_RETURN(std::vector<Variable> results,
                        RecordOp(name, inputs, std::move(outputs), std::move(backward)));
  return results[0];
}

absl::StatusOr<Variable> NonDifferentiableResult(const std::string& name,
                                                 const std::vector<Variable>& inputs,
                                                 Tensor output) {
  if (AnyRequiresGrad(inputs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " has no backward, but an input requires grad (detach it or use NoGradGuard)"));
  }
  return Variable(std::move(output), false);
}

}  // namespace lyra::autograd
