// Dropout, as torch.nn.Dropout: in training, y = x * m / (1 - p) with m ~ Bernoulli(1 - p) per
// element; in evaluation (or with p = 0) the identity.
//
//   LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Dropout> drop, nn::Dropout::Create(0.1, /*seed=*/7));
//   LYRA_ASSIGN_OR_RETURN(Variable y, drop->Forward(x));   // training mode by default
//   drop->Eval();                                          // now Forward(x) returns x itself
//
// The mask is reproducible: it is Bernoulli(x.shape(), 1 - p, x.device(), gen) of
// tensor/random.h, so element i (row-major) keeps x iff Philox word i % 4 of block
// offset + i / 4 of the generator's seed is < floor((1 - p) 2^32), where offset is the
// generator's offset at the call (which then advances by ceil(numel / 4) blocks). CPU and CUDA
// draw the same mask. Saving the module generator's (seed, offset) replays every later mask.
//
// As a differentiable op it is one autograd node "Dropout" composed of tensor ops (the mask is
// kept as bool, 1 byte per element, and is the only thing saved):
//   y  = mask ? x * scale : 0,   scale = 1 / (1 - p)  (the product in f32 for f16 / bf16)
//   dx = mask ? g * scale : 0
// so the gradient is exactly the mask times 1 / (1 - p).
#ifndef LYRA_NN_DROPOUT_H_
#define LYRA_NN_DROPOUT_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "nn/module.h"
#include "tensor/random.h"

namespace lyra::nn {

namespace functional {

// Dropout in training mode, drawing the mask from `gen`. p == 0 returns x itself (nothing
// drawn). InvalidArgument unless 0 <= p < 1 and x is a defined floating-point Variable.
absl::StatusOr<autograd::Variable> Dropout(const autograd::Variable& x, double p,
                                           Generator& gen);

}  // namespace functional

class Dropout : public Module {
 public:
  // InvalidArgument unless 0 <= p < 1.
  static absl::StatusOr<std::unique_ptr<Dropout>> Create(double p, uint64_t seed = 0);

  // functional::Dropout with the module's generator in training mode; x itself (no copy) in
  // evaluation mode or when p == 0.
  absl::StatusOr<Variable> Forward(const Variable& x);

  double p() const { return p_; }
  // The mask stream: read (seed, offset) to checkpoint it, set_state to resume or reseed.
  Generator& generator() { return gen_; }

 private:
  Dropout(double p, uint64_t seed);

  double p_;
  Generator gen_;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_DROPOUT_H_
