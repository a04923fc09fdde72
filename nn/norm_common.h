// Types and helpers shared by nn/rms_norm.h, nn/layer_norm.h and nn/gated_rms_norm.h: the results
// of the fused norm ops, how a tensor becomes the (rows, H) operand of the norm kernels
// (cuda/rms_norm.h), the argument checks, and the operand plumbing RMSNorm and LayerNorm share.
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

// AsRows(t) for a defined `t`; an empty Rows (undefined tensor, no rows) for an undefined one, so
// that an optional operand's pointer stays null.
absl::StatusOr<Rows> AsRowsIfDefined(const Tensor& t);

// InvalidArgument "<op>: x and weight must be defined" unless both are: the check every
// autograd-level norm makes before reaching the tensor level.
absl::Status CheckInputAndWeightDefined(absl::string_view op, const autograd::Variable& x,
                                        const autograd::Variable& weight);

// v.data(), or an undefined Tensor for an undefined (optional) Variable.
Tensor DataOrUndefined(const autograd::Variable& v);

// --- What RmsNormForward / LayerNormForward (and their backwards) share ------------------------
// Both kernels take the same operands under the same field names (cuda/rms_norm.h,
// cuda/layer_norm.h); LayerNorm adds mean and bias, which its wrapper sets itself.

// The forward's operands as rows, the weight in StatDType(x), and the allocated outputs: y (x's
// shape and dtype), residual_out (StatDType, only if `return_residual_out`), rstd and, if
// `with_mean`, mean ([rows] StatDType).
struct ResidualNormForwardOperands {
  Rows x;
  Rows residual;  // empty without a residual
  Tensor weight;
  functional::NormForwardResult out;
};
absl::StatusOr<ResidualNormForwardOperands> PrepareResidualNormForward(const Tensor& x,
                                                                       const Tensor& residual,
                                                                       const Tensor& weight,
                                                                       bool return_residual_out,
                                                                       bool with_mean);

// Points the fields RmsNormForwardParams and LayerNormForwardParams share at `o`.
template <typename Params>
void SetResidualNormForwardParams(const ResidualNormForwardOperands& o, DType dtype, double eps,
                                  Params& p) {
  p.dtype = dtype;
  p.rows = o.x.rows;
  p.hidden = o.out.y.size(-1);
  p.eps = eps;
  p.x = o.x.tensor.data();
  p.x_stride = o.x.stride;
  if (o.residual.tensor.defined()) {
    p.residual = o.residual.tensor.data();
    p.residual_stride = o.residual.stride;
  }
  p.weight = o.weight.data();
  p.y = o.out.y.data();
  p.y_stride = p.hidden;
  if (o.out.residual_out.defined()) {
    p.residual_out = o.out.residual_out.data();
    p.residual_out_stride = p.hidden;
  }
  p.rstd = o.out.rstd.data();
}

// The backward's operands as rows (h converted to StatDType(dy) first), the weight in StatDType,
// rstd made contiguous, and the allocated gradients: out.dx (dy's shape and dtype),
// out.dresidual (StatDType, only if `return_dresidual`) and out.dweight ([H] StatDType: the
// caller converts it to the weight's dtype once the kernel ran).
struct ResidualNormBackwardOperands {
  Rows dy;
  Rows dresidual_out;  // empty without one
  Rows h;
  Tensor weight;
  Tensor rstd;
  functional::NormGradients out;
};
absl::StatusOr<ResidualNormBackwardOperands> PrepareResidualNormBackward(
    const Tensor& dy, const Tensor& dresidual_out, const Tensor& h, const Tensor& weight,
    const Tensor& rstd, bool return_dresidual);

// Points the fields RmsNormBackwardParams and LayerNormBackwardParams share at `o`.
template <typename Params>
void SetResidualNormBackwardParams(const ResidualNormBackwardOperands& o, DType dtype,
                                   Params& p) {
  p.dtype = dtype;
  p.rows = o.dy.rows;
  p.hidden = o.out.dx.size(-1);
  p.dy = o.dy.tensor.data();
  p.dy_stride = o.dy.stride;
  if (o.dresidual_out.tensor.defined()) {
    p.dresidual_out = o.dresidual_out.tensor.data();
    p.dresidual_out_stride = o.dresidual_out.stride;
  }
  p.h = o.h.tensor.data();
  p.h_stride = o.h.stride;
  p.weight = o.weight.data();
  p.rstd = o.rstd.data();
  p.dx = o.out.dx.data();
  p.dx_stride = p.hidden;
  if (o.out.dresidual.defined()) {
    p.dresidual = o.out.dresidual.data();
    p.dresidual_stride = p.hidden;
  }
  p.dweight = o.out.dweight.data();
}

}  // namespace lyra::nn::norm_internal

#endif  // LYRA_NN_NORM_COMMON_H_
