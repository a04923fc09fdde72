// Types and helpers shared by nn/rms_norm.h and nn/layer_norm.h: the results of the fused norm
// ops, and how a tensor becomes the (rows, H) operand of the norm kernels (cuda/rms_norm.h).
#ifndef LYRA_NN_NORM_COMMON_H_
#define LYRA_NN_NORM_COMMON_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "autograd/variable.h"
#include "base/dtype.h"
#include "tensor/tensor.h"

namespace lyra::nn::functional {

// The two outputs of a norm with the fused residual add: the normalised y (x's dtype) and
// residual_out = x + residual (f32, or f64 for f64 x), the next block's residual.
struct ResidualNormResult {
  autograd::Variable y;
  autograd::Variable residual_out;
};

// Tensor-level forward results. residual_out is defined only when asked for; mean only for
// LayerNorm. mean and rstd are [rows] (rows = x.numel() / H) in the statistics dtype.
struct NormForwardResult {
  Tensor y;
  Tensor residual_out;
  Tensor mean;
  Tensor rstd;
};

// Tensor-level gradients. dresidual is defined only when asked for; dbias only for a LayerNorm
// with a bias. dweight and dbias have the weight's (bias's) dtype.
struct NormGradients {
  Tensor dx;
  Tensor dresidual;
  Tensor dweight;
  Tensor dbias;
};

}  // namespace lyra::nn::functional

namespace lyra::nn::norm_internal {

// The dtype of the residual stream, the statistics and the kernels' weight: f64 for f64 x, else
// f32.
constexpr DType StatDType(DType x) { return x == DType::kF64 ? DType::kF64 : DType::kF32; }

// `t` as `rows` rows of its last dimension with unit column stride and a single row stride. A
// tensor whose leading dims do not collapse to one row stride (a transposed view, say) is
// replaced by a contiguous copy; views that only narrow the last dim, or broadcast rows, are
// read in place.
struct Rows {
  Tensor tensor;
  int64_t rows = 0;
  int64_t stride = 0;
};
absl::StatusOr<Rows> AsRows(const Tensor& t);

// InvalidArgument naming `op`, the tensor at fault, its shape and dtype unless: x is a float
// tensor of at least one dim; residual (if defined) has x's shape and StatDType(x); weight and
// bias (if defined) are [H] (x's last dim) of f32 or x's dtype; all on one device.
absl::Status CheckNormForwardInputs(absl::string_view op, const Tensor& x, const Tensor& residual,
                                    const Tensor& weight, const Tensor& bias);

// InvalidArgument naming `op` unless dy is float; h has dy's shape and dy's dtype or
// StatDType(dy); dresidual_out (if defined) has dy's shape and StatDType; weight is [H] of f32 or
// dy's dtype; each statistic (if defined) has dy.numel() / H elements of StatDType.
absl::Status CheckNormBackwardInputs(absl::string_view op, const Tensor& dy,
                                     const Tensor& dresidual_out, const Tensor& h,
                                     const Tensor& weight, const Tensor& mean,
                                     const Tensor& rstd);

// `v` converted to `dtype` and made contiguous (a no-op when it already is both).
absl::StatusOr<Tensor> ContiguousAs(const Tensor& v, DType dtype);

}  // namespace lyra::nn::norm_internal

#endif  // LYRA_NN_NORM_COMMON_H_
