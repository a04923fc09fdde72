#include "train/tiny_lm.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "tensor/elementwise.h"
#include "tensor/random.h"

namespace lyra::train {
namespace {

using autograd::NoGradGuard;
using autograd::Variable;

struct Params {
  Variable embedding, w1, b1, w2, b2;
  std::vector<Variable*> all() { return {&embedding, &w1, &b1, &w2, &b2}; }
};

absl::StatusOr<Variable> Param(const Shape& shape, double std, Device device, Generator& gen) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, std > 0 ? Randn(shape, DType::kF32, device, gen, 0, std)
                                          : Tensor::Zeros(shape, DType::kF32, device));
  return Variable(t, true);
}

absl::StatusOr<Variable> Loss(Params& p, const Tensor& inputs, const Tensor& targets) {
  LYRA_ASSIGN_OR_RETURN(Variable e, autograd::Embedding(p.embedding, inputs));
  LYRA_ASSIGN_OR_RETURN(Variable h, autograd::Matmul(e, p.w1));
  LYRA_ASSIGN_OR_RETURN(h, autograd::Add(h, p.b1));
  LYRA_ASSIGN_OR_RETURN(h, autograd::Tanh(h));
  LYRA_ASSIGN_OR_RETURN(Variable logits, autograd::Matmul(h, p.w2));
  LYRA_ASSIGN_OR_RETURN(logits, autograd::Add(logits, p.b2));
  return autograd::CrossEntropy(logits, targets);
}

// p <- p - lr * grad, outside the graph.
absl::Status SgdStep(Params& p, double lr) {
  NoGradGuard no_grad;
  for (Variable* v : p.all()) {
    if (!v->grad().defined()) continue;
    LYRA_ASSIGN_OR_RETURN(Tensor updated, Sub(v->data(), v->grad(), lr));
    LYRA_RETURN_IF_ERROR(v->set_data(updated));
    v->ZeroGrad();
  }
  return absl::OkStatus();
}

}  // namespace

const std::string& TinyLmText() {
  static const std::string* text = new std::string(
      "A state space model keeps a small hidden state and updates it one step at a time. "
      "Each new token changes the state a little, and the state decides what comes next. "
      "The selective scan lets the model choose what to remember and what to forget, so a "
      "long sequence costs no more per step than a short one. Training runs the scan in "
      "parallel over the whole sequence; generation runs it one token at a time and keeps "
      "only the state. A stable model is one whose state does not blow up: small changes in "
      "the input stay small as the steps go by. That is why such models can be trained in "
      "half precision without losing their way, and why fine tuning them with small "
      "adapters works as well as it does. We train, we measure, and we write down what we "
      "saw, so that the next person can build on it and check it for themselves.\n");
  return *text;
}

absl::StatusOr<TinyLmResult> TrainTinyLm(const std::string& text, const TinyLmOptions& options,
                                         const std::function<void(const TinyLmStep&)>& on_step) {
  if (text.size() < 2) {
    return absl::InvalidArgumentError("TrainTinyLm: the text needs at least two characters");
  }
  if (options.embedding_dim <= 0 || options.hidden_dim <= 0 || options.steps < 0 ||
      options.batch_size <= 0 || !(options.learning_rate > 0)) {
    return absl::InvalidArgumentError("TrainTinyLm: sizes, steps and learning rate must be > 0");
  }
  // Vocabulary: the distinct bytes of the text.
  std::map<unsigned char, int64_t> vocab;
  for (unsigned char c : text) vocab.emplace(c, 0);
  int64_t next_id = 0;
  for (auto& [c, id] : vocab) id = next_id++;
  const int64_t v = next_id;
  std::vector<int64_t> ids;
  for (unsigned char c : text) ids.push_back(vocab[c]);
  const int64_t positions = static_cast<int64_t>(ids.size()) - 1;

  const Device device = options.device;
  Generator gen(options.seed);
  Params p;
  const int d = options.embedding_dim, hdim = options.hidden_dim;
  LYRA_ASSIGN_OR_RETURN(p.embedding, Param({v, d}, 1.0, device, gen));
  LYRA_ASSIGN_OR_RETURN(p.w1, Param({d, hdim}, 1.0 / std::sqrt(d), device, gen));
  LYRA_ASSIGN_OR_RETURN(p.b1, Param({hdim}, 0, device, gen));
  LYRA_ASSIGN_OR_RETURN(p.w2, Param({hdim, v}, 1.0 / std::sqrt(hdim), device, gen));
  LYRA_ASSIGN_OR_RETURN(p.b2, Param({v}, 0, device, gen));

  // The whole text as one evaluation batch.
  std::vector<int64_t> all_in(ids.begin(), ids.end() - 1), all_out(ids.begin() + 1, ids.end());
  LYRA_ASSIGN_OR_RETURN(Tensor eval_in, Tensor::FromVector<int64_t>(all_in, {positions}, device));
  LYRA_ASSIGN_OR_RETURN(Tensor eval_out,
                        Tensor::FromVector<int64_t>(all_out, {positions}, device));

  TinyLmResult result;
  result.vocab_size = static_cast<int>(v);
  {
    NoGradGuard no_grad;
    LYRA_ASSIGN_OR_RETURN(Variable loss0, Loss(p, eval_in, eval_out));
    LYRA_ASSIGN_OR_RETURN(result.initial_loss, loss0.data().Item());
  }
  const int64_t batch = std::min<int64_t>(options.batch_size, positions);
  for (int step = 0; step < options.steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    // A batch of random positions, drawn from the generator (same on every device).
    LYRA_ASSIGN_OR_RETURN(Tensor pos, RandInt({batch}, 0, positions, DType::kI64, Device::Cpu(),
                                              gen));
    LYRA_ASSIGN_OR_RETURN(std::vector<int64_t> where, pos.ToVector<int64_t>());
    std::vector<int64_t> in(batch), out(batch);
    for (int64_t i = 0; i < batch; ++i) {
      in[i] = ids[where[i]];
      out[i] = ids[where[i] + 1];
    }
    LYRA_ASSIGN_OR_RETURN(Tensor inputs, Tensor::FromVector<int64_t>(in, {batch}, device));
    LYRA_ASSIGN_OR_RETURN(Tensor targets, Tensor::FromVector<int64_t>(out, {batch}, device));
    LYRA_ASSIGN_OR_RETURN(Variable loss, Loss(p, inputs, targets));
    LYRA_RETURN_IF_ERROR(loss.Backward());
    LYRA_RETURN_IF_ERROR(SgdStep(p, options.learning_rate));
    LYRA_ASSIGN_OR_RETURN(double value, loss.data().Item());
    if (!std::isfinite(value)) {
      return absl::InternalError(absl::StrCat("TrainTinyLm: loss became ", value, " at step ",
                                              step, " (learning rate too high?)"));
    }
    result.losses.push_back(value);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_step) on_step({step, value, batch / std::max(seconds, 1e-9)});
  }
  NoGradGuard no_grad;
  LYRA_ASSIGN_OR_RETURN(Variable final_loss, Loss(p, eval_in, eval_out));
  LYRA_ASSIGN_OR_RETURN(result.final_loss, final_loss.data().Item());
  return result;
}

}  // namespace lyra::train
