// Causal depthwise Conv1d: the short convolution of Mamba-1 and Mamba-2, with fused SiLU, a
// sequence index for packed batches, initial / final states, and the single-step update used in
// generation. The math, the precision policy and the kernels are described in cuda/conv1d.h:
//
//   y[b, d, t] = act(bias[d] + sum_{k<K} w[d, k] * x[b, d, t - (K-1) + k])
//
// with x = 0 (or the initial state) before t = 0, and taps that cross a seq_idx boundary dropped.
// This equals torch.nn.Conv1d(D, D, K, groups=D, padding=K-1)(x)[..., :L] (then SiLU).
//
// Three levels:
//   - tensor ops (namespace lyra): CausalConv1d, CausalConv1dBackward, CausalConv1dUpdate;
//   - the differentiable op (namespace lyra::nn): nn::CausalConv1d on Variables, one autograd
//     node whose backward recomputes the pre-activation (nothing but the inputs is saved);
//   - the module nn::Conv1d holding "weight" [D, 1, K] and "bias" [D] (the HF / torch layout).
//
//   LYRA_ASSIGN_OR_RETURN(std::unique_ptr<nn::Conv1d> conv,
//                         nn::Conv1d::Create(/*channels=*/1536, /*kernel_size=*/4,
//                                            /*bias=*/true, gen));
//   LYRA_ASSIGN_OR_RETURN(Variable y, conv->Forward(x, Conv1dActivation::kSilu));   // x [B, D, L]
//   // Generation: after a prefill that returned final_state [B, D, K-1] (the conv state),
//   LYRA_ASSIGN_OR_RETURN(Tensor y_t, conv->Step(x_t, conv_state, Conv1dActivation::kSilu));
//
// Shapes: x [B, D, L] with any strides: channel-first memory (Mamba-1) or a [B, L, D] buffer
// transposed to [B, D, L] (Mamba-2); outputs (y, dx) are allocated in x's memory layout, so a
// channel-last x gives a channel-last y. weight [D, K] or [D, 1, K], f32 or x's dtype; bias [D]
// of the weight's dtype, or undefined for none; seq_idx [B, L] i32 or undefined; initial_state
// [B, D, K-1] of x's dtype or undefined (zeros). x is f32, f16, bf16, or f64 (CPU only); K is in
// [1, 8] (larger: Unimplemented). Wrong shapes, dtypes or devices are InvalidArgument naming the
// tensor at fault.
#ifndef LYRA_NN_CONV1D_H_
#define LYRA_NN_CONV1D_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "nn/module.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lyra {

enum class Conv1dActivation { kIdentity, kSilu };

// y [B, D, L] in x's dtype and memory layout. With `final_state` non-null it is set to a new
// [B, D, K-1] tensor holding the last K-1 inputs of each row (reaching into the initial state,
// or zeros, when L < K-1): the conv state after this sequence.
absl::StatusOr<Tensor> CausalConv1d(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                    Conv1dActivation activation,
                                    const Tensor& seq_idx = Tensor(),
                                    const Tensor& initial_state = Tensor(),
                                    Tensor* final_state = nullptr);

// Gradients of a loss L with respect to the forward's inputs, given dy = dL/dy.
struct CausalConv1dGrads {
  Tensor dx;              // x's shape, dtype and memory layout
  Tensor dweight;         // weight's shape and dtype
  Tensor dbias;           // bias's; undefined without a bias
  Tensor dinitial_state;  // initial_state's; undefined without one
};

// The same arguments as the forward plus dy [B, D, L] (x's dtype, any strides).
absl::StatusOr<CausalConv1dGrads> CausalConv1dBackward(const Tensor& x, const Tensor& weight,
                                                       const Tensor& bias, const Tensor& dy,
                                                       Conv1dActivation activation,
                                                       const Tensor& seq_idx = Tensor(),
                                                       const Tensor& initial_state = Tensor());

// One generation step: x_t [B, D], conv_state [B, D, K-1] (x's dtype; the last K-1 inputs, e.g.
// a forward's final_state). Returns y_t [B, D] and shifts conv_state in place (its oldest
// column drops out, x_t enters at the end). y_t equals the next column of the full forward.
absl::StatusOr<Tensor> CausalConv1dUpdate(const Tensor& x_t, const Tensor& conv_state,
                                          const Tensor& weight, const Tensor& bias,
                                          Conv1dActivation activation);

namespace nn {

// The differentiable op: one autograd node "CausalConv1d" with inputs (x, weight, bias,
// initial_state); bias and initial_state may be undefined Variables. seq_idx gets no gradient,
// and neither does final_state (a plain tensor for the generation cache).
absl::StatusOr<Variable> CausalConv1d(const Variable& x, const Variable& weight,
                                      const Variable& bias, Conv1dActivation activation,
                                      const Tensor& seq_idx = Tensor(),
                                      const Variable& initial_state = Variable(),
                                      Tensor* final_state = nullptr);

// Depthwise causal Conv1d with parameters "weight" [D, 1, K] and (optionally) "bias" [D] (FP32
// master weights by default), initialised as torch.nn.Conv1d(D, D, K, groups=D): both uniform in
// [-1/sqrt(K), 1/sqrt(K)).
class Conv1d : public Module {
 public:
  // InvalidArgument unless channels >= 1, kernel_size >= 1 and dtype is floating; Unimplemented
  // for kernel_size > 8. Draws the weight, then the bias, from `gen`; allocation errors on
  // `device` are returned as they come.
  static absl::StatusOr<std::unique_ptr<Conv1d>> Create(int64_t channels, int kernel_size,
                                                        bool bias, Generator& gen,
                                                        DType dtype = DType::kF32,
                                                        Device device = Device::Cpu());

  // y [B, D, L] = CausalConv1d(x, weight, bias). Inside an autocast region x (and the initial
  // state) are cast to the region's dtype; the FP32 weights are read as they are (the kernels
  // take f32 weights with 16-bit activations). A weight of another dtype than f32 or x's is cast.
  absl::StatusOr<Variable> Forward(const Variable& x,
                                   Conv1dActivation activation = Conv1dActivation::kIdentity,
                                   const Tensor& seq_idx = Tensor(),
                                   const Variable& initial_state = Variable(),
                                   Tensor* final_state = nullptr);

  // One generation step (no gradient): see CausalConv1dUpdate.
  absl::StatusOr<Tensor> Step(const Tensor& x_t, const Tensor& conv_state,
                              Conv1dActivation activation = Conv1dActivation::kIdentity) const;

  int64_t channels() const { return channels_; }
  int kernel_size() const { return kernel_size_; }
  const Variable& weight() const { return weight_; }
  // Undefined when the module has no bias.
  const Variable& bias() const { return bias_; }

 private:
  Conv1d(int64_t channels, int kernel_size, Tensor weight, Tensor bias);

  int64_t channels_;
  int kernel_size_;
  Variable weight_;
  Variable bias_;
};

}  // namespace nn
}  // namespace lyra

#endif  // LYRA_NN_CONV1D_H_
