// Elementwise ops and their gradients. y = f(x) saves x or y, whichever the derivative needs;
// the *Backward binary kernels (cuda/elementwise.h) fuse "g * f'(.)" into one pass.
#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "autograd/ops_internal.h"
#include "base/status_macros.h"
#include "tensor/elementwise.h"

namespace lyra::autograd {
namespace {

using cuda::BinaryOp;
using internal::MaskAs;
using internal::RecordBinary;
using internal::RecordUnary;
using internal::ScalarLike;

// y = f(x) whose gradient is the fused kernel `backward`(saved, g), saved = x or y.
absl::StatusOr<Variable> UnaryWithFusedBackward(const std::string& name, const Variable& x,
                                                absl::StatusOr<Tensor> y_or, BinaryOp backward,
                                                bool save_output) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(name, {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, std::move(y_or));
  Tensor saved = save_output ? y : x.data();
  return RecordUnary(name, x, y, [saved, backward](const Tensor& g) {
    return lyra::Binary(backward, saved, g);
  });
}

}  // namespace

absl::StatusOr<Variable> Neg(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Neg", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Neg(x.data()));
  return RecordUnary("Neg", x, y, [](const Tensor& g) { return lyra::Neg(g); });
}

absl::StatusOr<Variable> Abs(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Abs", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Abs(x.data()));
  Tensor saved = x.data();
  return RecordUnary("Abs", x, y, [saved](const Tensor& g) -> absl::StatusOr<Tensor> {
    // sign(x) = [x > 0] - [x < 0]
    LYRA_ASSIGN_OR_RETURN(Tensor zero, ScalarLike(0, saved));
    LYRA_ASSIGN_OR_RETURN(Tensor pos, lyra::Gt(saved, zero));
    LYRA_ASSIGN_OR_RETURN(Tensor neg, lyra::Lt(saved, zero));
    LYRA_ASSIGN_OR_RETURN(pos, MaskAs(pos, saved));
    LYRA_ASSIGN_OR_RETURN(neg, MaskAs(neg, saved));
    LYRA_ASSIGN_OR_RETURN(Tensor sign, lyra::Sub(pos, neg));
    return lyra::Mul(g, sign);
  });
}

absl::StatusOr<Variable> Exp(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Exp", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Exp(x.data()));
  return RecordUnary("Exp", x, y, [y](const Tensor& g) { return lyra::Mul(g, y); });
}

absl::StatusOr<Variable> Log(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Log", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Log(x.data()));
  Tensor saved = x.data();
  return RecordUnary("Log", x, y, [saved](const Tensor& g) { return lyra::Div(g, saved); });
}

absl::StatusOr<Variable> Sqrt(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Sqrt", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Sqrt(x.data()));
  // d sqrt(x) = 1 / (2 sqrt(x))
  return RecordUnary("Sqrt", x, y, [y](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Div(g, y));
    return lyra::MulScalar(d, 0.5);
  });
}

absl::StatusOr<Variable> Rsqrt(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Rsqrt", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Rsqrt(x.data()));
  // y = x^(-1/2): dy/dx = -y^3 / 2
  return RecordUnary("Rsqrt", x, y, [y](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor y3, lyra::PowScalar(y, 3));
    LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Mul(g, y3));
    return lyra::MulScalar(d, -0.5);
  });
}

absl::StatusOr<Variable> Tanh(const Variable& x) {
  return UnaryWithFusedBackward("Tanh", x, lyra::Tanh(x.data()), BinaryOp::kTanhBackward, true);
}
absl::StatusOr<Variable> Sigmoid(const Variable& x) {
  return UnaryWithFusedBackward("Sigmoid", x, lyra::Sigmoid(x.data()),
                                BinaryOp::kSigmoidBackward, true);
}
absl::StatusOr<Variable> Silu(const Variable& x) {
  return UnaryWithFusedBackward("Silu", x, lyra::Silu(x.data()), BinaryOp::kSiluBackward,
                                false);
}
absl::StatusOr<Variable> Softplus(const Variable& x) {
  return UnaryWithFusedBackward("Softplus", x, lyra::Softplus(x.data()),
                                BinaryOp::kSoftplusBackward, false);
}
absl::StatusOr<Variable> Gelu(const Variable& x) {
  return UnaryWithFusedBackward("Gelu", x, lyra::Gelu(x.data()), BinaryOp::kGeluBackward, false);
}
absl::StatusOr<Variable> GeluTanh(const Variable& x) {
  return UnaryWithFusedBackward("GeluTanh", x, lyra::GeluTanh(x.data()),
                                BinaryOp::kGeluTanhBackward, false);
}
absl::StatusOr<Variable> Relu(const Variable& x) {
  return UnaryWithFusedBackward("Relu", x, lyra::Relu(x.data()), BinaryOp::kReluBackward, false);
}

absl::StatusOr<Variable> Square(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Square", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Square(x.data()));
  Tensor saved = x.data();
  return RecordUnary("Square", x, y, [saved](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Mul(g, saved));
    return lyra::MulScalar(d, 2);
  });
}

absl::StatusOr<Variable> Reciprocal(const Variable& x) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Reciprocal", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Reciprocal(x.data()));
  // d(1/x) = -1/x^2 = -y^2
  return RecordUnary("Reciprocal", x, y, [y](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor y2, lyra::Square(y));
    LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Mul(g, y2));
    return lyra::Neg(d);
  });
}

absl::StatusOr<Variable> AddScalar(const Variable& x, double s) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("AddScalar", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::AddScalar(x.data(), s));
  return RecordUnary("AddScalar", x, y,
                     [](const Tensor& g) -> absl::StatusOr<Tensor> { return g; });
}

absl::StatusOr<Variable> MulScalar(const Variable& x, double s) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("MulScalar", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::MulScalar(x.data(), s));
  return RecordUnary("MulScalar", x, y, [s](const Tensor& g) { return lyra::MulScalar(g, s); });
}

absl::StatusOr<Variable> PowScalar(const Variable& x, double exponent) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("PowScalar", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::PowScalar(x.data(), exponent));
  Tensor saved = x.data();
  // d x^e = e x^(e-1)
  return RecordUnary("PowScalar", x, y,
                     [saved, exponent](const Tensor& g) -> absl::StatusOr<Tensor> {
                       if (exponent == 0) return lyra::MulScalar(g, 0);
                       LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::PowScalar(saved, exponent - 1));
                       LYRA_ASSIGN_OR_RETURN(d, lyra::Mul(g, d));
                       return lyra::MulScalar(d, exponent);
                     });
}

absl::StatusOr<Variable> RsubScalar(const Variable& x, double s) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("RsubScalar", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::RsubScalar(x.data(), s));
  return RecordUnary("RsubScalar", x, y, [](const Tensor& g) { return lyra::Neg(g); });
}

absl::StatusOr<Variable> Clamp(const Variable& x, double lo, double hi) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Clamp", {&x}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Clamp(x.data(), lo, hi));
  Tensor saved = x.data();
  return RecordUnary("Clamp", x, y, [saved, lo, hi](const Tensor& g) -> absl::StatusOr<Tensor> {
    LYRA_ASSIGN_OR_RETURN(Tensor lo_t, ScalarLike(lo, saved));
    LYRA_ASSIGN_OR_RETURN(Tensor hi_t, ScalarLike(hi, saved));
    LYRA_ASSIGN_OR_RETURN(Tensor above, lyra::Ge(saved, lo_t));
    LYRA_ASSIGN_OR_RETURN(Tensor below, lyra::Le(saved, hi_t));
    LYRA_ASSIGN_OR_RETURN(Tensor inside, lyra::LogicalAnd(above, below));
    LYRA_ASSIGN_OR_RETURN(Tensor zero, ScalarLike(0, g));
    return lyra::Where(inside, g, zero);
  });
}

absl::StatusOr<Variable> Add(const Variable& a, const Variable& b, double alpha) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Add", {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Add(a.data(), b.data(), alpha));
  return RecordBinary(
      "Add", a, b, y, [](const Tensor& g) -> absl::StatusOr<Tensor> { return g; },
      [alpha](const Tensor& g) -> absl::StatusOr<Tensor> {
        if (alpha == 1) return g;
        return lyra::MulScalar(g, alpha);
      });
}

absl::StatusOr<Variable> Sub(const Variable& a, const Variable& b, double alpha) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Sub", {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Sub(a.data(), b.data(), alpha));
  return RecordBinary(
      "Sub", a, b, y, [](const Tensor& g) -> absl::StatusOr<Tensor> { return g; },
      [alpha](const Tensor& g) { return lyra::MulScalar(g, -alpha); });
}

absl::StatusOr<Variable> Mul(const Variable& a, const Variable& b) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Mul", {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Mul(a.data(), b.data()));
  // Each factor is saved only if the other one needs it.
  Tensor saved_a = b.requires_grad() ? a.data() : Tensor();
  Tensor saved_b = a.requires_grad() ? b.data() : Tensor();
  return RecordBinary(
      "Mul", a, b, y, [saved_b](const Tensor& g) { return lyra::Mul(g, saved_b); },
      [saved_a](const Tensor& g) { return lyra::Mul(g, saved_a); });
}

absl::StatusOr<Variable> Div(const Variable& a, const Variable& b) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Div", {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Div(a.data(), b.data()));
  Tensor saved_b = b.data();
  // d(a/b)/da = 1/b;  d(a/b)/db = -a/b^2 = -y/b
  return RecordBinary(
      "Div", a, b, y, [saved_b](const Tensor& g) { return lyra::Div(g, saved_b); },
      [saved_b, y](const Tensor& g) -> absl::StatusOr<Tensor> {
        LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Div(g, saved_b));
        LYRA_ASSIGN_OR_RETURN(d, lyra::Mul(d, y));
        return lyra::Neg(d);
      });
}

absl::StatusOr<Variable> Pow(const Variable& a, const Variable& b) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Pow", {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Pow(a.data(), b.data()));
  Tensor saved_a = a.data(), saved_b = b.data();
  // d a^b / da = b a^(b-1);  d a^b / db = a^b log(a)
  return RecordBinary(
      "Pow", a, b, y,
      [saved_a, saved_b](const Tensor& g) -> absl::StatusOr<Tensor> {
        LYRA_ASSIGN_OR_RETURN(Tensor bm1, lyra::AddScalar(saved_b, -1));
        LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Pow(saved_a, bm1));
        LYRA_ASSIGN_OR_RETURN(d, lyra::Mul(d, saved_b));
        return lyra::Mul(g, d);
      },
      [saved_a, y](const Tensor& g) -> absl::StatusOr<Tensor> {
        LYRA_ASSIGN_OR_RETURN(Tensor log_a, lyra::Log(saved_a));
        LYRA_ASSIGN_OR_RETURN(Tensor d, lyra::Mul(y, log_a));
        return lyra::Mul(g, d);
      });
}

namespace {

// Maximum (wins = Gt) or Minimum (wins = Lt): a gets g * w, b gets g * (1 - w), with
// w = [a wins] + [a == b] / 2.
absl::StatusOr<Variable> Extremum(const std::string& name, const Variable& a, const Variable& b,
                                  bool maximum) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(name, {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, maximum ? lyra::Maximum(a.data(), b.data())
                                          : lyra::Minimum(a.data(), b.data()));
  Tensor weight_a;
  if (AnyRequiresGrad({a, b})) {
    LYRA_ASSIGN_OR_RETURN(Tensor wins, maximum ? lyra::Gt(a.data(), b.data())
                                               : lyra::Lt(a.data(), b.data()));
    LYRA_ASSIGN_OR_RETURN(Tensor ties, lyra::Eq(a.data(), b.data()));
    LYRA_ASSIGN_OR_RETURN(wins, MaskAs(wins, y));
    LYRA_ASSIGN_OR_RETURN(ties, MaskAs(ties, y));
    LYRA_ASSIGN_OR_RETURN(weight_a, lyra::Add(wins, ties, 0.5));
  }
  return RecordBinary(
      name, a, b, y, [weight_a](const Tensor& g) { return lyra::Mul(g, weight_a); },
      [weight_a](const Tensor& g) -> absl::StatusOr<Tensor> {
        LYRA_ASSIGN_OR_RETURN(Tensor weight_b, lyra::RsubScalar(weight_a, 1));
        return lyra::Mul(g, weight_b);
      });
}

}  // namespace

absl::StatusOr<Variable> Maximum(const Variable& a, const Variable& b) {
  return Extremum("Maximum", a, b, true);
}
absl::StatusOr<Variable> Minimum(const Variable& a, const Variable& b) {
  return Extremum("Minimum", a, b, false);
}

absl::StatusOr<Variable> Where(const Tensor& cond, const Variable& a, const Variable& b) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Where", {&a, &b}));
  LYRA_ASSIGN_OR_RETURN(Tensor y, lyra::Where(cond, a.data(), b.data()));
  return RecordBinary(
      "Where", a, b, y,
      [cond](const Tensor& g) -> absl::StatusOr<Tensor> {
        LYRA_ASSIGN_OR_RETURN(Tensor zero, ScalarLike(0, g));
        return lyra::Where(cond, g, zero);
      },
      [cond](const Tensor& g) -> absl::StatusOr<Tensor> {
        LYRA_ASSIGN_OR_RETURN(Tensor zero, ScalarLike(0, g));
        return lyra::Where(cond, zero, g);
      });
}

absl::StatusOr<Variable> Cast(const Variable& x, DType dtype) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("Cast", {&x}));
  if (x.requires_grad() && GradModeEnabled() && !IsFloating(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Cast of ", x.Describe(), " to ", DTypeName(dtype),
        " has no gradient (detach it first)"));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor y, x.data().To(dtype));
  const DType from = x.dtype();
  return RecordUnary("Cast", x, y, [from](const Tensor& g) { return g.To(from); });
}

}  // namespace lyra::autograd
