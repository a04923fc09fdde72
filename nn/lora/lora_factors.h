// LoraFactors: the trainable low-rank update of one active LoRA adapter on a linear map, as the
// fused Mamba paths receive it (nn/lora/lora.h builds them; Linear::active_lora() hands them out).
//
// For a base weight W [out, in], the adapted map is
//   y = x Wᵀ + scale · (dropout(x) Aᵀ) Bᵀ          A [r, in], B [out, r]
// with scale = lora_alpha / r (rsLoRA: lora_alpha / sqrt(r)), and dropout (probability
// `dropout`, inverted scaling 1 / (1 - dropout)) applied to the adapter's input only while the
// module trains. This is PEFT's LoraLayer (lora_A = A, lora_B = B, scaling = scale). A consumer
// that honours the adapter computes the low-rank product from A and B (it never forms W + scale·BA
// while the adapter is trainable) so that A and B receive their gradients.
#ifndef LYRA_NN_LORA_LORA_FACTORS_H_
#define LYRA_NN_LORA_LORA_FACTORS_H_

#include "autograd/variable.h"
#include "tensor/random.h"

namespace lyra::nn {

struct LoraFactors {
  autograd::Variable A;   // lora_A [r, in] (master dtype; consumers cast with ComputeWeight)
  autograd::Variable B;   // lora_B [out, r]
  double scale = 1.0;     // lora_alpha / r (or / sqrt(r))
  double dropout = 0.0;   // probability on the adapter input; applied only when `training`
  bool training = false;  // the owning module's mode
  // Where dropout masks are drawn from (non-null when dropout > 0 and training): a consumer
  // reserves Philox blocks from it once per forward and regenerates the same mask in backward.
  Generator* generator = nullptr;
};

}  // namespace lyra::nn

#endif  // LYRA_NN_LORA_LORA_FACTORS_H_
