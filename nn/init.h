// Weight initialisation, as torch.nn.init: in-place initialisers of a tensor from a Generator.
//
//   Generator gen(/*seed=*/0);
//   LYRA_RETURN_IF_ERROR(init::KaimingUniform(linear.weight().data(), gen, std::sqrt(5.0)));
//   LYRA_RETURN_IF_ERROR(init::Normal(embedding.weight().data(), gen, 0, 0.02));
//
// Every initialiser writes the tensor's storage in place (a parameter's data() handle is such a
// tensor; views such as a Narrow of one row work too) and leaves shape, dtype and device as
// they are. The random ones draw one new contiguous tensor of the same shape, dtype and device
// from `gen` (tensor/random.h: the same numbers on CPU and CUDA for a given (seed, offset)) and
// copy it in. A tensor of zero elements is left alone (and draws nothing), as torch does.
//
// Fans, as torch's _calculate_fan_in_and_fan_out, for a tensor of rank >= 2 [out, in, k...]:
//   receptive = prod(k...)  (1 for a matrix),
//   fan_in  = in * receptive,    fan_out = out * receptive.
// A weight [out_features, in_features] (Linear, Hugging Face layout) thus has fan_in =
// in_features. Fans of a rank-0 or rank-1 tensor are undefined: InvalidArgument, as torch.
//
// Gains, as torch.nn.init.calculate_gain: linear / sigmoid 1, tanh 5/3, relu sqrt(2),
// leaky_relu sqrt(2 / (1 + a^2)) with negative slope a, selu 3/4.
//
// Errors: InvalidArgument naming the initialiser and the tensor (Describe()) for an undefined or
// non-floating tensor, a rank below 2 where fans are needed, or bad parameters (std < 0, hi <
// lo, non-finite values).
#ifndef LYRA_NN_INIT_H_
#define LYRA_NN_INIT_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tensor/random.h"
#include "tensor/shape.h"
#include "tensor/tensor.h"

namespace lyra::nn::init {

enum class FanMode { kFanIn, kFanOut };
enum class Nonlinearity { kLinear, kSigmoid, kTanh, kRelu, kLeakyRelu, kSelu };

struct Fans {
  int64_t fan_in = 0;
  int64_t fan_out = 0;
};

// The fans of a tensor of `shape` (see above). InvalidArgument for rank < 2.
absl::StatusOr<Fans> ComputeFans(const Shape& shape);

// The recommended gain for `nonlinearity`; `param` is leaky_relu's negative slope (ignored
// otherwise).
double CalculateGain(Nonlinearity nonlinearity, double param = 0.01);

// N(mean, std^2).
absl::Status Normal(const Tensor& t, Generator& gen, double mean = 0, double std = 1);
// U[lo, hi) (in the tensor's dtype; lo == hi fills lo).
absl::Status Uniform(const Tensor& t, Generator& gen, double lo = 0, double hi = 1);

// He initialisation (torch.nn.init.kaiming_uniform_ / kaiming_normal_; defaults as torch):
//   std = gain(nonlinearity, a) / sqrt(fan), fan by `mode`;
//   uniform: U(-sqrt(3) std, sqrt(3) std); normal: N(0, std^2).
// torch.nn.Linear's weight is KaimingUniform(w, gen, sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
absl::Status KaimingUniform(const Tensor& t, Generator& gen, double a = 0,
                            FanMode mode = FanMode::kFanIn,
                            Nonlinearity nonlinearity = Nonlinearity::kLeakyRelu);
absl::Status KaimingNormal(const Tensor& t, Generator& gen, double a = 0,
                           FanMode mode = FanMode::kFanIn,
                           Nonlinearity nonlinearity = Nonlinearity::kLeakyRelu);

// Glorot initialisation: bound = gain * sqrt(6 / (fan_in + fan_out)) for U(-bound, bound);
// std = gain * sqrt(2 / (fan_in + fan_out)) for the normal one.
absl::Status XavierUniform(const Tensor& t, Generator& gen, double gain = 1);
absl::Status XavierNormal(const Tensor& t, Generator& gen, double gain = 1);

// Every element `value` (no random numbers drawn; any dtype, as Tensor::Fill).
absl::Status Constant(const Tensor& t, double value);
absl::Status Zeros(const Tensor& t);
absl::Status Ones(const Tensor& t);

}  // namespace lyra::nn::init

#endif  // LYRA_NN_INIT_H_
