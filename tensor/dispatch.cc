#include "tensor/dispatch.h"

namespace lyra::internal {

cuda::IterShape ToIterShape(const Shape& shape) {
  LYRA_CHECK(shape.size() <= static_cast<size_t>(cuda::kMaxDims))
      << "rank " << shape.size() << " exceeds " << cuda::kMaxDims;
  cuda::IterShape s;
  s.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < s.ndim; ++i) s.sizes[i] = shape[i];
  return s;
}

cuda::StridedOperand Operand(const Tensor& t, const Shape& iter_shape) {
  cuda::StridedOperand op;
  op.data = t.data();
  op.dtype = t.dtype();
  const int n = static_cast<int>(iter_shape.size());
  const int lead = n - t.dim();
  LYRA_CHECK(lead >= 0) << t.Describe() << " does not broadcast to " << ShapeToString(iter_shape);
  for (int i = 0; i < n; ++i) {
    if (i < lead || t.size(i - lead) == 1) {
      op.strides[i] = 0;
    } else {
      LYRA_CHECK(t.size(i - lead) == iter_shape[i])
          << t.Describe() << " does not broadcast to " << ShapeToString(iter_shape);
      op.strides[i] = t.stride(i - lead);
    }
  }
  return op;
}

absl::StatusOr<Device> CommonDevice(absl::string_view op, std::initializer_list<const Tensor*> ts) {
  LYRA_RETURN_IF_ERROR(CheckDefined(op, ts));
  Device device = (*ts.begin())->device();
  for (const Tensor* t : ts) {
    if (t->device() != device) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": tensors on different devices (",
                                                     device.ToString(), " and ",
                                                     t->device().ToString(), ")"));
    }
  }
  return device;
}

absl::Status CheckDefined(absl::string_view op, std::initializer_list<const Tensor*> ts) {
  int i = 0;
  for (const Tensor* t : ts) {
    if (!t->defined()) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": argument ", i, " is undefined"));
    }
    ++i;
  }
  return absl::OkStatus();
}

}  // namespace lyra::internal
