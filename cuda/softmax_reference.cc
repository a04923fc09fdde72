// CPU reference of softmax / log-softmax and their backward (cuda/softmax.h): for every row
// (o, i), two passes over l in the compute type (f32, or f64 for f64 tensors).
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "cuda/softmax.h"

namespace lyra::cuda {

absl::string_view SoftmaxOpName(SoftmaxOp op) {
  switch (op) {
    case SoftmaxOp::kSoftmax: return "Softmax";
    case SoftmaxOp::kLogSoftmax: return "LogSoftmax";
    case SoftmaxOp::kSoftmaxBackward: return "SoftmaxBackward";
    case SoftmaxOp::kLogSoftmaxBackward: return "LogSoftmaxBackward";
  }
  return "UnknownSoftmax";
}

absl::Status SoftmaxSupported(const SoftmaxParams& p) {
  const absl::string_view name = SoftmaxOpName(p.op);
  if (!IsFloating(p.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a floating-point dtype, got ", DTypeName(p.dtype)));
  }
  if (p.outer < 0 || p.length < 0 || p.inner < 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": negative size"));
  }
  const int64_t rows = p.outer * p.inner;
  if (rows > 0 && p.length > 0 &&
      (p.in == nullptr || p.out == nullptr || (IsSoftmaxBackward(p.op) && p.grad == nullptr))) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": missing input or output pointer"));
  }
  if (rows >= (int64_t{1} << 31)) {
    return absl::UnimplementedError(
        absl::StrCat(name, ": ", rows, " rows; at most 2^31 - 1 are supported"));
  }
  return absl::OkStatus();
}

namespace {

template <typename T>
absl::Status SoftmaxTyped(const SoftmaxParams& p) {
  using C = ComputeType<T>;
  const T* in = static_cast<const T*>(p.in);
  const T* grad = static_cast<const T*>(p.grad);
  T* out = static_cast<T*>(p.out);
  const SoftmaxOperandStrides& si = p.in_strides;
  const SoftmaxOperandStrides& sg = p.grad_strides;
  const SoftmaxOperandStrides& so = p.out_strides;
  for (int64_t o = 0; o < p.outer; ++o) {
    for (int64_t i = 0; i < p.inner; ++i) {
      auto at_in = [&](int64_t l) { return Load(in[o * si.outer + l * si.length + i * si.inner]); };
      auto at_grad = [&](int64_t l) {
        return Load(grad[o * sg.outer + l * sg.length + i * sg.inner]);
      };
      auto store = [&](int64_t l, C v) {
        out[o * so.outer + l * so.length + i * so.inner] = Store<T>(v);
      };
      switch (p.op) {
        case SoftmaxOp::kSoftmax:
        case SoftmaxOp::kLogSoftmax: {
          C m = -std::numeric_limits<C>::infinity();
          bool has_nan = false;
          for (int64_t l = 0; l < p.length; ++l) {
            const C v = at_in(l);
            if (std::isnan(v)) has_nan = true;
            if (v > m) m = v;
          }
          if (has_nan) m = std::numeric_limits<C>::quiet_NaN();
          C s = 0;
          for (int64_t l = 0; l < p.length; ++l) s += std::exp(at_in(l) - m);
          const C log_s = std::log(s);
          for (int64_t l = 0; l < p.length; ++l) {
            store(l, p.op == SoftmaxOp::kSoftmax ? std::exp(at_in(l) - m) / s
                                                 : at_in(l) - m - log_s);
          }
          break;
        }
        case SoftmaxOp::kSoftmaxBackward: {
          C dot = 0;
          for (int64_t l = 0; l < p.length; ++l) dot += at_grad(l) * at_in(l);
          for (int64_t l = 0; l < p.length; ++l) store(l, at_in(l) * (at_grad(l) - dot));
          break;
        }
        case SoftmaxOp::kLogSoftmaxBackward: {
          C sum = 0;
          for (int64_t l = 0; l < p.length; ++l) sum += at_grad(l);
          for (int64_t l = 0; l < p.length; ++l) store(l, at_grad(l) - std::exp(at_in(l)) * sum);
          break;
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SoftmaxReference(const SoftmaxParams& p) {
  if (absl::Status s = SoftmaxSupported(p); !s.ok()) return s;
  return DispatchFloat(p.dtype, SoftmaxOpName(p.op),
                       [&]<typename T>() -> absl::Status { return SoftmaxTyped<T>(p); });
}

}  // namespace lyra::cuda
