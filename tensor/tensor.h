// Tensor: an n-dimensional view (shape, strides, offset, dtype) of a shared Storage.
//
// A Tensor is a cheap handle: copying one shares the storage, and view methods (View, Transpose,
// Permute, Narrow, Slice, Select, Expand, Squeeze, Unsqueeze) return new handles over the same
// bytes. Writes through one view are seen through every other. Strides are in elements.
//
//   LYRA_ASSIGN_OR_RETURN(Tensor x, Tensor::Zeros({2, 3}, DType::kF32, Device::Cuda()));
//   LYRA_ASSIGN_OR_RETURN(Tensor xt, x.Transpose(0, 1));        // a view, no copy
//   LYRA_ASSIGN_OR_RETURN(Tensor y, xt.Contiguous());           // a copy in row-major order
//   LYRA_ASSIGN_OR_RETURN(std::vector<float> v, y.ToVector<float>());
//
// Every method that can fail on user input (a bad dim, shape or dtype; no GPU) returns a Status.
// Ops on tensors (Add, Matmul, Sum, ...) are free functions declared in tensor/ops.h.
#ifndef LYRA_TENSOR_TENSOR_H_
#define LYRA_TENSOR_TENSOR_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "tensor/device.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace lyra {

class Tensor {
 public:
  // An undefined tensor (defined() is false); most methods must not be called on it.
  Tensor() = default;

  // --- Factories ------------------------------------------------------------------------
  // Uninitialized memory.
  static absl::StatusOr<Tensor> Empty(const Shape& shape, DType dtype,
                                      Device device = Device::Cpu());
  static absl::StatusOr<Tensor> Zeros(const Shape& shape, DType dtype,
                                      Device device = Device::Cpu());
  static absl::StatusOr<Tensor> Ones(const Shape& shape, DType dtype,
                                     Device device = Device::Cpu());
  // Every element `value`, converted to `dtype` (bool: value != 0).
  static absl::StatusOr<Tensor> Full(const Shape& shape, double value, DType dtype,
                                     Device device = Device::Cpu());
  // A 0-dimensional tensor holding `value`.
  static absl::StatusOr<Tensor> Scalar(double value, DType dtype, Device device = Device::Cpu());
  // [start, start + step, ...) up to (excluding) `end`.
  static absl::StatusOr<Tensor> Arange(double start, double end, double step, DType dtype,
                                       Device device = Device::Cpu());
  // Copies host values (whose C++ type must match `dtype`'s storage type) into a new tensor.
  template <typename T>
  static absl::StatusOr<Tensor> FromVector(const std::vector<T>& values, const Shape& shape,
                                           Device device = Device::Cpu());
  // Converts doubles to any dtype: convenient for tests and small constants.
  static absl::StatusOr<Tensor> FromDoubles(const std::vector<double>& values, const Shape& shape,
                                            DType dtype, Device device = Device::Cpu());
  // Wraps existing storage as a tensor (no copy). InvalidArgument if the view would read outside
  // the storage.
  static absl::StatusOr<Tensor> FromStorage(std::shared_ptr<Storage> storage, const Shape& shape,
                                            const Shape& strides, int64_t offset, DType dtype);

  // --- Metadata -------------------------------------------------------------------------
  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int dim() const { return static_cast<int>(shape_.size()); }
  // size(-1) is the last dimension. CHECK-fails outside [-dim(), dim()).
  int64_t size(int d) const;
  int64_t stride(int d) const;
  int64_t offset() const { return offset_; }
  int64_t numel() const { return NumElements(shape_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::Cpu(); }
  size_t element_size() const { return DTypeSize(dtype_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  // "f32[2, 3] cuda:0"
  std::string Describe() const;

  // Address of element 0 (the storage pointer plus offset), on the tensor's device.
  void* data() const;
  // Typed address of element 0. CHECK-fails if T is not the dtype's storage type.
  template <typename T>
  T* data() const;

  // --- Views (no copy) ------------------------------------------------------------------
  // Same elements in a new shape (one entry may be -1); fails if the strides cannot express it
  // without a copy (then use Reshape).
  absl::StatusOr<Tensor> View(const Shape& shape) const;
  // View if possible, else a contiguous copy in the new shape.
  absl::StatusOr<Tensor> Reshape(const Shape& shape) const;
  absl::StatusOr<Tensor> Flatten() const { return Reshape({-1}); }
  absl::StatusOr<Tensor> Transpose(int d0, int d1) const;
  absl::StatusOr<Tensor> Permute(const std::vector<int>& dims) const;
  // Elements [start, start + length) of dimension `dim`.
  absl::StatusOr<Tensor> Narrow(int dim, int64_t start, int64_t length) const;
  // Elements start, start + step, ... < end of `dim` (start/end may be negative, Python-style).
  absl::StatusOr<Tensor> Slice(int dim, int64_t start, int64_t end, int64_t step = 1) const;
  // Index `index` of `dim`, removing the dimension.
  absl::StatusOr<Tensor> Select(int dim, int64_t index) const;
  // Broadcasts size-1 dimensions (and new leading ones) to `shape`; -1 keeps a size.
  absl::StatusOr<Tensor> Expand(const Shape& shape) const;
  absl::StatusOr<Tensor> Squeeze(int dim) const;
  // Every size-1 dimension removed.
  Tensor SqueezeAll() const;
  absl::StatusOr<Tensor> Unsqueeze(int dim) const;

  // --- Copies ---------------------------------------------------------------------------
  // This tensor if already contiguous, else a row-major copy.
  absl::StatusOr<Tensor> Contiguous() const;
  // A new contiguous tensor with the same values (always copies).
  absl::StatusOr<Tensor> Clone() const;
  absl::StatusOr<Tensor> To(Device device) const;
  absl::StatusOr<Tensor> To(DType dtype) const;
  // Copies `src` into this tensor's elements (broadcasting src, converting dtype, across
  // devices). This tensor's storage is written: every view of it sees the new values.
  absl::Status CopyFrom(const Tensor& src) const;
  // Sets every element to `value`.
  absl::Status Fill(double value) const;

  // --- Host access ----------------------------------------------------------------------
  // The values in row-major order, copied to the host. T must be the dtype's storage type.
  template <typename T>
  absl::StatusOr<std::vector<T>> ToVector() const;
  // The values converted to double, in row-major order (any dtype).
  absl::StatusOr<std::vector<double>> ToDoubles() const;
  // The single value of a one-element tensor, as double.
  absl::StatusOr<double> Item() const;
  // "tensor(f32[2, 2] cpu, [[1, 2], [3, 4]])"; at most `max_elements` values are shown.
  std::string ToString(int64_t max_elements = 64) const;

 private:
  Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, int64_t offset,
         DType dtype)
      : storage_(std::move(storage)),
        shape_(std::move(shape)),
        strides_(std::move(strides)),
        offset_(offset),
        dtype_(dtype) {}
  absl::StatusOr<std::vector<uint8_t>> ContiguousHostBytes() const;

  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
  DType dtype_ = DType::kF32;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Copies `bytes` host bytes into a contiguous tensor of `dtype` and `shape`.
absl::StatusOr<Tensor> TensorFromHostBytes(const void* bytes, const Shape& shape, DType dtype,
                                           Device device);

template <typename T>
absl::StatusOr<Tensor> Tensor::FromVector(const std::vector<T>& values, const Shape& shape,
                                          Device device) {
  if (static_cast<int64_t>(values.size()) != NumElements(shape)) {
    return absl::InvalidArgumentError(absl::StrCat("FromVector: ", values.size(),
                                                   " values for shape ", ShapeToString(shape)));
  }
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> bytes(values.begin(), values.end());
    return TensorFromHostBytes(bytes.data(), shape, DType::kBool, device);
  } else {
    return TensorFromHostBytes(values.data(), shape, kDTypeOf<T>, device);
  }
}

template <typename T>
T* Tensor::data() const {
  LYRA_CHECK(defined() && kDTypeOf<T> == dtype_)
      << "data<" << DTypeName(kDTypeOf<T>) << ">() on " << Describe();
  return static_cast<T*>(data());
}

template <typename T>
absl::StatusOr<std::vector<T>> Tensor::ToVector() const {
  if (!defined()) return absl::FailedPreconditionError("ToVector on an undefined tensor");
  if (kDTypeOf<T> != dtype_) {
    return absl::InvalidArgumentError(absl::StrCat("ToVector<", DTypeName(kDTypeOf<T>),
                                                   "> on a tensor of dtype ", DTypeName(dtype_)));
  }
  absl::StatusOr<std::vector<uint8_t>> bytes = ContiguousHostBytes();
  if (!bytes.ok()) return bytes.status();
  if constexpr (std::is_same_v<T, bool>) {
    return std::vector<bool>(bytes->begin(), bytes->end());
  } else {
    std::vector<T> out(numel());
    if (!out.empty()) std::memcpy(static_cast<void*>(out.data()), bytes->data(), bytes->size());
    return out;
  }
}

}  // namespace lyra

#endif  // LYRA_TENSOR_TENSOR_H_
