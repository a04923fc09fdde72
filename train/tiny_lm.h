// A tiny character-level language model trained with autograd and plain SGD: the end-to-end
// proof that tensors, kernels and autograd work together (and, until the Mamba demo replaces it,
// the README's main job).
//
// Model: next-character prediction from the current character,
//   h = tanh(E[c] W1 + b1),  logits = h W2 + b2,  loss = cross-entropy(logits, next char)
// with E [V, D], W1 [D, H], W2 [H, V]. Training walks the text in random windows of
// `batch_size` positions with full-batch SGD steps; the loss falls from log V towards the
// text's bigram entropy.
#ifndef LYRA_TRAIN_TINY_LM_H_
#define LYRA_TRAIN_TINY_LM_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tensor/device.h"

namespace lyra::train {

struct TinyLmOptions {
  Device device = Device::Cpu();
  int embedding_dim = 32;
  int hidden_dim = 64;
  int steps = 300;
  int batch_size = 256;
  double learning_rate = 0.5;
  uint64_t seed = 1;
};

struct TinyLmStep {
  int step = 0;
  double loss = 0;
  double tokens_per_second = 0;
};

struct TinyLmResult {
  int vocab_size = 0;
  double initial_loss = 0;  // at step 0, before any update
  double final_loss = 0;    // full-text loss after training
  std::vector<double> losses;  // per step (batch loss)
};

// The built-in training text (a few paragraphs of English).
const std::string& TinyLmText();

// Trains on `text`; `on_step` (optional) is called after every step. InvalidArgument for a text
// shorter than two characters or non-positive sizes; errors from the ops propagate.
absl::StatusOr<TinyLmResult> TrainTinyLm(const std::string& text, const TinyLmOptions& options,
                                         const std::function<void(const TinyLmStep&)>& on_step =
                                             nullptr);

}  // namespace lyra::train

#endif  // LYRA_TRAIN_TINY_LM_H_
