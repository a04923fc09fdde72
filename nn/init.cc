#include "nn/init.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace lyra::nn::init {
namespace {

// InvalidArgument naming `op` unless `t` is a defined floating-point tensor.
absl::Status CheckFloat(const char* op, const Tensor& t) {
  if (!t.defined()) return absl::InvalidArgumentError(absl::StrCat(op, ": undefined tensor"));
  if (!IsFloating(t.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": expected a floating-point tensor, got ", t.Describe()));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(const char* op, const char* what, double value) {
  if (!std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", what, " = ", value,
                                                   " is not finite"));
  }
  return absl::OkStatus();
}

// The fans of `t`, with the initialiser's name in the error.
absl::StatusOr<Fans> FansOf(const char* op, const Tensor& t) {
  absl::StatusOr<Fans> fans = ComputeFans(t.shape());
  if (!fans.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", fans.status().message(),
                                                   " (tensor ", t.Describe(), ")"));
  }
  return fans;
}

absl::Status NormalImpl(const char* op, const Tensor& t, Generator& gen, double mean,
                        double std) {
  LYRA_RETURN_IF_ERROR(CheckFloat(op, t));
  LYRA_RETURN_IF_ERROR(CheckFinite(op, "mean", mean));
  LYRA_RETURN_IF_ERROR(CheckFinite(op, "std", std));
  if (std < 0) return absl::InvalidArgumentError(absl::StrCat(op, ": std = ", std, " < 0"));
  if (t.numel() == 0) return absl::OkStatus();
  LYRA_ASSIGN_OR_RETURN(Tensor draw, Randn(t.shape(), t.dtype(), t.device(), gen, mean, std));
  return t.CopyFrom(draw);
}

absl::Status UniformImpl(const char* op, const Tensor& t, Generator& gen, double lo,
                         double hi) {
  LYRA_RETURN_IF_ERROR(CheckFloat(op, t));
  LYRA_RETURN_IF_ERROR(CheckFinite(op, "lo", lo));
  LYRA_RETURN_IF_ERROR(CheckFinite(op, "hi", hi));
  if (hi < lo) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": hi = ", hi, " < lo = ", lo));
  }
  if (t.numel() == 0) return absl::OkStatus();
  if (hi == lo) return t.Fill(lo);
  LYRA_ASSIGN_OR_RETURN(Tensor draw, Rand(t.shape(), t.dtype(), t.device(), gen, lo, hi));
  return t.CopyFrom(draw);
}

// gain / sqrt(fan) for the Kaiming initialisers.
absl::StatusOr<double> KaimingStd(const char* op, const Tensor& t, double a, FanMode mode,
                                  Nonlinearity nonlinearity) {
  LYRA_RETURN_IF_ERROR(CheckFloat(op, t));
  LYRA_RETURN_IF_ERROR(CheckFinite(op, "a", a));
  LYRA_ASSIGN_OR_RETURN(Fans fans, FansOf(op, t));
  const int64_t fan = mode == FanMode::kFanIn ? fans.fan_in : fans.fan_out;
  if (fan == 0) return 0.0;  // zero elements: nothing is drawn
  return CalculateGain(nonlinearity, a) / std::sqrt(static_cast<double>(fan));
}

}  // namespace

absl::StatusOr<Fans> ComputeFans(const Shape& shape) {
  if (shape.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "fan in and fan out need a tensor of rank >= 2, got shape ", ShapeToString(shape)));
  }
  int64_t receptive = 1;
  for (size_t d = 2; d < shape.size(); ++d) receptive *= shape[d];
  return Fans{shape[1] * receptive, shape[0] * receptive};
}

double CalculateGain(Nonlinearity nonlinearity, double param) {
  switch (nonlinearity) {
    case Nonlinearity::kLinear:
    case Nonlinearity::kSigmoid:
      return 1.0;
    case Nonlinearity::kTanh:
      return 5.0 / 3.0;
    case Nonlinearity::kRelu:
      return std::sqrt(2.0);
    case Nonlinearity::kLeakyRelu:
      return std::sqrt(2.0 / (1.0 + param * param));
    case Nonlinearity::kSelu:
      return 3.0 / 4.0;
  }
  return 1.0;
}

absl::Status Normal(const Tensor& t, Generator& gen, double mean, double std) {
  return NormalImpl("init::Normal", t, gen, mean, std);
}

absl::Status Uniform(const Tensor& t, Generator& gen, double lo, double hi) {
  return UniformImpl("init::Uniform", t, gen, lo, hi);
}

absl::Status KaimingUniform(const Tensor& t, Generator& gen, double a, FanMode mode,
                            Nonlinearity nonlinearity) {
  constexpr const char* kOp = "init::KaimingUniform";
  LYRA_ASSIGN_OR_RETURN(double std, KaimingStd(kOp, t, a, mode, nonlinearity));
  const double bound = std::sqrt(3.0) * std;
  return UniformImpl(kOp, t, gen, -bound, bound);
}

absl::Status KaimingNormal(const Tensor& t, Generator& gen, double a, FanMode mode,
                           Nonlinearity nonlinearity) {
  constexpr const char* kOp = "init::KaimingNormal";
  LYRA_ASSIGN_OR_RETURN(double std, KaimingStd(kOp, t, a, mode, nonlinearity));
  return NormalImpl(kOp, t, gen, 0, std);
}

absl::Status XavierUniform(const Tensor& t, Generator& gen, double gain) {
  constexpr const char* kOp = "init::XavierUniform";
  LYRA_RETURN_IF_ERROR(CheckFloat(kOp, t));
  LYRA_RETURN_IF_ERROR(CheckFinite(kOp, "gain", gain));
  LYRA_ASSIGN_OR_RETURN(Fans fans, FansOf(kOp, t));
  const int64_t fan_sum = fans.fan_in + fans.fan_out;
  if (fan_sum == 0) return absl::OkStatus();
  const double bound = std::abs(gain) * std::sqrt(6.0 / static_cast<double>(fan_sum));
  return UniformImpl(kOp, t, gen, -bound, bound);
}

absl::Status XavierNormal(const Tensor& t, Generator& gen, double gain) {
  constexpr const char* kOp = "init::XavierNormal";
  LYRA_RETURN_IF_ERROR(CheckFloat(kOp, t));
  LYRA_RETURN_IF_ERROR(CheckFinite(kOp, "gain", gain));
  LYRA_ASSIGN_OR_RETURN(Fans fans, FansOf(kOp, t));
  const int64_t fan_sum = fans.fan_in + fans.fan_out;
  if (fan_sum == 0) return absl::OkStatus();
  const double std = std::abs(gain) * std::sqrt(2.0 / static_cast<double>(fan_sum));
  return NormalImpl(kOp, t, gen, 0, std);
}

absl::Status Constant(const Tensor& t, double value) {
  if (!t.defined()) return absl::InvalidArgumentError("init::Constant: undefined tensor");
  return t.Fill(value);
}

absl::Status Zeros(const Tensor& t) { return Constant(t, 0); }
absl::Status Ones(const Tensor& t) { return Constant(t, 1); }

}  // namespace lyra::nn::init
