#include "tensor/tensor.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cuda/cuda_check.h"
#include "cuda/elementwise.h"
#include "tensor/dispatch.h"

namespace lyra {
namespace {

absl::Status CheckShape(const Shape& shape, absl::string_view op) {
  if (shape.size() > static_cast<size_t>(cuda::kMaxDims)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": rank ", shape.size(),
                                                   " exceeds the maximum of ", cuda::kMaxDims));
  }
  for (int64_t s : shape) {
    if (s < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": negative size in shape ", ShapeToString(shape)));
    }
  }
  return absl::OkStatus();
}

// Strides for viewing (sizes, strides) as `shape` without a copy, if possible (the rule of
// torch.Tensor.view: each run of dimensions that is contiguous in memory may be re-split).
std::optional<Shape> ViewStrides(const Shape& sizes, const Shape& strides, const Shape& shape) {
  Shape out(shape.size());
  if (NumElements(sizes) == 0 || sizes.empty()) return ContiguousStrides(shape);
  int view_d = static_cast<int>(shape.size()) - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1;
  int64_t view_numel = 1;
  for (int d = static_cast<int>(sizes.size()) - 1; d >= 0; --d) {
    tensor_numel *= sizes[d];
    if (d == 0 || (sizes[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return out;
}

absl::StatusOr<Shape> InferShape(const Shape& shape, int64_t numel, absl::string_view op,
                                 const Tensor& t) {
  Shape out = shape;
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      if (infer >= 0) return absl::InvalidArgumentError(absl::StrCat(op, ": two -1 in shape"));
      infer = static_cast<int>(i);
    } else if (out[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(op, ": invalid shape ", ShapeToString(shape)));
    } else {
      known *= out[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": cannot view ", t.Describe(),
                                                     " as ", ShapeToString(shape)));
    }
    out[infer] = numel / known;
  }
  if (NumElements(out) != numel) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": cannot view ", t.Describe(), " (",
                                                   numel, " elements) as ",
                                                   ShapeToString(shape)));
  }
  LYRA_RETURN_IF_ERROR(CheckShape(out, op));
  return out;
}

absl::Status MemcpyBetween(void* dst, Device dst_device, const void* src, Device src_device,
                           size_t bytes) {
  if (bytes == 0) return absl::OkStatus();
  if (dst_device.is_cpu() && src_device.is_cpu()) {
    std::memcpy(dst, src, bytes);
    return absl::OkStatus();
  }
  if (dst_device.is_cuda() && src_device.is_cuda()) {
    LYRA_RETURN_IF_ERROR(cuda::CheckGpu(dst_device.index));
    LYRA_RETURN_IF_ERROR(cuda::CheckGpu(src_device.index));
    // Order after work already queued on the source, then copy on the destination's stream.
    LYRA_RETURN_IF_ERROR(cuda::Synchronize(src_device.index));
    cuda::DeviceGuard guard(dst_device.index);
    LYRA_CUDA_RETURN_IF_ERROR(cudaMemcpyPeerAsync(dst, dst_device.index, src, src_device.index,
                                                  bytes, cuda::CurrentStream(dst_device.index)));
    return absl::OkStatus();
  }
  if (dst_device.is_cuda()) {  // host to device: the host buffer may go away, so wait
    LYRA_RETURN_IF_ERROR(cuda::CheckGpu(dst_device.index));
    cuda::DeviceGuard guard(dst_device.index);
    cudaStream_t stream = cuda::CurrentStream(dst_device.index);
    LYRA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    LYRA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
    return absl::OkStatus();
  }
  LYRA_RETURN_IF_ERROR(cuda::CheckGpu(src_device.index));
  cuda::DeviceGuard guard(src_device.index);
  cudaStream_t stream = cuda::CurrentStream(src_device.index);
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  LYRA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

}  // namespace

// --- Factories ----------------------------------------------------------------------------

absl::StatusOr<Tensor> Tensor::Empty(const Shape& shape, DType dtype, Device device) {
  LYRA_RETURN_IF_ERROR(CheckShape(shape, "Empty"));
  LYRA_ASSIGN_OR_RETURN(std::shared_ptr<Storage> storage,
                        Storage::Allocate(NumElements(shape) * DTypeSize(dtype), device));
  return Tensor(std::move(storage), shape, ContiguousStrides(shape), 0, dtype);
}

absl::StatusOr<Tensor> Tensor::Zeros(const Shape& shape, DType dtype, Device device) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, Empty(shape, dtype, device));
  if (device.is_cpu()) {
    std::memset(t.data(), 0, t.nbytes());
  } else {
    cuda::DeviceGuard guard(device.index);
    LYRA_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(t.data(), 0, t.nbytes(), cuda::CurrentStream(device.index)));
  }
  return t;
}

absl::StatusOr<Tensor> Tensor::Ones(const Shape& shape, DType dtype, Device device) {
  return Full(shape, 1.0, dtype, device);
}

absl::StatusOr<Tensor> Tensor::Full(const Shape& shape, double value, DType dtype,
                                    Device device) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, Empty(shape, dtype, device));
  LYRA_RETURN_IF_ERROR(t.Fill(value));
  return t;
}

absl::StatusOr<Tensor> Tensor::Scalar(double value, DType dtype, Device device) {
  return Full({}, value, dtype, device);
}

absl::StatusOr<Tensor> Tensor::Arange(double start, double end, double step, DType dtype,
                                      Device device) {
  if (step == 0 || !std::isfinite(start) || !std::isfinite(end) || !std::isfinite(step)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Arange: invalid range start=", start, " end=", end, " step=", step));
  }
  const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = start + static_cast<double>(i) * step;
  return FromDoubles(values, {n}, dtype, device);
}

absl::StatusOr<Tensor> Tensor::FromDoubles(const std::vector<double>& values, const Shape& shape,
                                           DType dtype, Device device) {
  LYRA_ASSIGN_OR_RETURN(Tensor f64, FromVector<double>(values, shape, Device::Cpu()));
  LYRA_ASSIGN_OR_RETURN(Tensor cast, f64.To(dtype));
  return cast.To(device);
}

absl::StatusOr<Tensor> TensorFromHostBytes(const void* bytes, const Shape& shape, DType dtype,
                                           Device device) {
  LYRA_ASSIGN_OR_RETURN(Tensor t, Tensor::Empty(shape, dtype, device));
  LYRA_RETURN_IF_ERROR(MemcpyBetween(t.data(), device, bytes, Device::Cpu(), t.nbytes()));
  return t;
}

absl::StatusOr<Tensor> Tensor::FromStorage(std::shared_ptr<Storage> storage, const Shape& shape,
                                           const Shape& strides, int64_t offset, DType dtype) {
  LYRA_RETURN_IF_ERROR(CheckShape(shape, "FromStorage"));
  if (storage == nullptr) return absl::InvalidArgumentError("FromStorage: null storage");
  if (strides.size() != shape.size()) {
    return absl::InvalidArgumentError("FromStorage: shape and strides differ in rank");
  }
  int64_t max_offset = offset;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (strides[i] < 0) return absl::InvalidArgumentError("FromStorage: negative stride");
    if (shape[i] > 0) max_offset += (shape[i] - 1) * strides[i];
  }
  const bool empty = NumElements(shape) == 0;
  if (offset < 0 ||
      (!empty && static_cast<size_t>(max_offset + 1) * DTypeSize(dtype) > storage->bytes())) {
    return absl::InvalidArgumentError(
        absl::StrCat("FromStorage: a ", DTypeName(dtype), ShapeToString(shape),
                     " view at offset ", offset, " reads past the storage's ", storage->bytes(),
                     " bytes"));
  }
  return Tensor(std::move(storage), shape, strides, offset, dtype);
}

// --- Metadata -----------------------------------------------------------------------------

int64_t Tensor::size(int d) const {
  LYRA_CHECK(d >= -dim() && d < dim()) << "size(" << d << ") of " << Describe();
  return shape_[d < 0 ? d + dim() : d];
}

int64_t Tensor::stride(int d) const {
  LYRA_CHECK(d >= -dim() && d < dim()) << "stride(" << d << ") of " << Describe();
  return strides_[d < 0 ? d + dim() : d];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int d = dim() - 1; d >= 0; --d) {
    if (shape_[d] != 1 && strides_[d] != expected) return false;
    expected *= shape_[d];
  }
  return true;
}

std::string Tensor::Describe() const {
  if (!defined()) return "undefined tensor";
  return absl::StrCat(DTypeName(dtype_), ShapeToString(shape_), " ", device().ToString());
}

void* Tensor::data() const {
  LYRA_CHECK(defined()) << "data() of an undefined tensor";
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<int64_t>(element_size());
}

// --- Views --------------------------------------------------------------------------------

absl::StatusOr<Tensor> Tensor::View(const Shape& shape) const {
  LYRA_ASSIGN_OR_RETURN(Shape target, InferShape(shape, numel(), "View", *this));
  std::optional<Shape> strides = ViewStrides(shape_, strides_, target);
  if (!strides) {
    return absl::InvalidArgumentError(
        absl::StrCat("View: ", Describe(), " with strides ", ShapeToString(strides_),
                     " cannot be viewed as ", ShapeToString(target),
                     " without a copy (use Reshape)"));
  }
  return Tensor(storage_, target, *strides, offset_, dtype_);
}

absl::StatusOr<Tensor> Tensor::Reshape(const Shape& shape) const {
  LYRA_ASSIGN_OR_RETURN(Shape target, InferShape(shape, numel(), "Reshape", *this));
  if (std::optional<Shape> strides = ViewStrides(shape_, strides_, target)) {
    return Tensor(storage_, target, *strides, offset_, dtype_);
  }
  LYRA_ASSIGN_OR_RETURN(Tensor copy, Contiguous());
  return copy.View(target);
}

absl::StatusOr<Tensor> Tensor::Transpose(int d0, int d1) const {
  LYRA_ASSIGN_OR_RETURN(int a, NormalizeDim(d0, dim(), "Transpose"));
  LYRA_ASSIGN_OR_RETURN(int b, NormalizeDim(d1, dim(), "Transpose"));
  Shape shape = shape_, strides = strides_;
  std::swap(shape[a], shape[b]);
  std::swap(strides[a], strides[b]);
  return Tensor(storage_, shape, strides, offset_, dtype_);
}

absl::StatusOr<Tensor> Tensor::Permute(const std::vector<int>& dims) const {
  if (static_cast<int>(dims.size()) != dim()) {
    return absl::InvalidArgumentError(absl::StrCat("Permute: ", dims.size(),
                                                   " dims given for ", Describe()));
  }
  Shape shape(dim()), strides(dim());
  std::vector<bool> seen(dim(), false);
  for (int i = 0; i < dim(); ++i) {
    LYRA_ASSIGN_OR_RETURN(int d, NormalizeDim(dims[i], dim(), "Permute"));
    if (seen[d]) {
      return absl::InvalidArgumentError(absl::StrCat("Permute: dimension ", d, " repeated"));
    }
    seen[d] = true;
    shape[i] = shape_[d];
    strides[i] = strides_[d];
  }
  return Tensor(storage_, shape, strides, offset_, dtype_);
}

absl::StatusOr<Tensor> Tensor::Narrow(int dim_arg, int64_t start, int64_t length) const {
  LYRA_ASSIGN_OR_RETURN(int d, NormalizeDim(dim_arg, dim(), "Narrow"));
  if (start < 0 || length < 0 || start + length > shape_[d]) {
    return absl::InvalidArgumentError(absl::StrCat("Narrow: [", start, ", ", start + length,
                                                   ") is outside dimension ", d, " of ",
                                                   Describe()));
  }
  Shape shape = shape_;
  shape[d] = length;
  return Tensor(storage_, shape, strides_, offset_ + start * strides_[d], dtype_);
}

absl::StatusOr<Tensor> Tensor::Slice(int dim_arg, int64_t start, int64_t end,
                                     int64_t step) const {
  LYRA_ASSIGN_OR_RETURN(int d, NormalizeDim(dim_arg, dim(), "Slice"));
  if (step <= 0) return absl::InvalidArgumentError("Slice: step must be positive");
  const int64_t n = shape_[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape shape = shape_, strides = strides_;
  shape[d] = (end - start + step - 1) / step;
  strides[d] *= step;
  return Tensor(storage_, shape, strides, offset_ + start * strides_[d], dtype_);
}

absl::StatusOr<Tensor> Tensor::Select(int dim_arg, int64_t index) const {
  LYRA_ASSIGN_OR_RETURN(int d, NormalizeDim(dim_arg, dim(), "Select"));
  if (index < -shape_[d] || index >= shape_[d]) {
    return absl::InvalidArgumentError(absl::StrCat("Select: index ", index,
                                                   " out of range for dimension ", d, " of ",
                                                   Describe()));
  }
  if (index < 0) index += shape_[d];
  Shape shape = shape_, strides = strides_;
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return Tensor(storage_, shape, strides, offset_ + index * strides_[d], dtype_);
}

absl::StatusOr<Tensor> Tensor::Expand(const Shape& shape) const {
  if (shape.size() < shape_.size() || shape.size() > static_cast<size_t>(cuda::kMaxDims)) {
    return absl::InvalidArgumentError(absl::StrCat("Expand: cannot expand ", Describe(), " to ",
                                                   ShapeToString(shape)));
  }
  const int lead = static_cast<int>(shape.size() - shape_.size());
  Shape out(shape.size()), strides(shape.size());
  for (int i = 0; i < static_cast<int>(shape.size()); ++i) {
    if (i < lead) {
      if (shape[i] < 0) return absl::InvalidArgumentError("Expand: -1 in a new dimension");
      out[i] = shape[i];
      strides[i] = 0;
      continue;
    }
    const int64_t have = shape_[i - lead];
    const int64_t want = shape[i] == -1 ? have : shape[i];
    if (have == want) {
      out[i] = have;
      strides[i] = strides_[i - lead];
    } else if (have == 1 && want >= 0) {
      out[i] = want;
      strides[i] = 0;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("Expand: cannot expand ", Describe(),
                                                     " to ", ShapeToString(shape)));
    }
  }
  return Tensor(storage_, out, strides, offset_, dtype_);
}

absl::StatusOr<Tensor> Tensor::Squeeze(int dim_arg) const {
  LYRA_ASSIGN_OR_RETURN(int d, NormalizeDim(dim_arg, dim(), "Squeeze"));
  if (shape_[d] != 1) return *this;
  Shape shape = shape_, strides = strides_;
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return Tensor(storage_, shape, strides, offset_, dtype_);
}

Tensor Tensor::SqueezeAll() const {
  Shape shape, strides;
  for (int d = 0; d < dim(); ++d) {
    if (shape_[d] == 1) continue;
    shape.push_back(shape_[d]);
    strides.push_back(strides_[d]);
  }
  return Tensor(storage_, shape, strides, offset_, dtype_);
}

absl::StatusOr<Tensor> Tensor::Unsqueeze(int dim_arg) const {
  LYRA_ASSIGN_OR_RETURN(int d, NormalizeDim(dim_arg, dim() + 1, "Unsqueeze"));
  if (dim() + 1 > cuda::kMaxDims) {
    return absl::InvalidArgumentError(absl::StrCat("Unsqueeze: rank would exceed ",
                                                   cuda::kMaxDims));
  }
  Shape shape = shape_, strides = strides_;
  const int64_t stride = d < dim() ? strides_[d] * shape_[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return Tensor(storage_, shape, strides, offset_, dtype_);
}

// --- Copies -------------------------------------------------------------------------------

absl::StatusOr<Tensor> Tensor::Contiguous() const {
  if (!defined()) return absl::InvalidArgumentError("Contiguous: undefined tensor");
  if (is_contiguous()) return *this;
  return Clone();
}

absl::StatusOr<Tensor> Tensor::Clone() const {
  if (!defined()) return absl::InvalidArgumentError("Clone: undefined tensor");
  LYRA_ASSIGN_OR_RETURN(Tensor out, Empty(shape_, dtype_, device()));
  LYRA_RETURN_IF_ERROR(out.CopyFrom(*this));
  return out;
}

absl::StatusOr<Tensor> Tensor::To(Device target) const {
  if (!defined()) return absl::InvalidArgumentError("To: undefined tensor");
  if (target == device()) return *this;
  LYRA_ASSIGN_OR_RETURN(Tensor out, Empty(shape_, dtype_, target));
  LYRA_RETURN_IF_ERROR(out.CopyFrom(*this));
  return out;
}

absl::StatusOr<Tensor> Tensor::To(DType target) const {
  if (!defined()) return absl::InvalidArgumentError("To: undefined tensor");
  if (target == dtype_) return *this;
  LYRA_ASSIGN_OR_RETURN(Tensor out, Empty(shape_, target, device()));
  LYRA_RETURN_IF_ERROR(out.CopyFrom(*this));
  return out;
}

absl::Status Tensor::CopyFrom(const Tensor& src) const {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined("CopyFrom", {this, &src}));
  LYRA_ASSIGN_OR_RETURN(Shape shape, BroadcastShapes(shape_, src.shape_, "CopyFrom"));
  if (shape != shape_) {
    return absl::InvalidArgumentError(absl::StrCat("CopyFrom: cannot copy ", src.Describe(),
                                                   " into ", Describe()));
  }
  if (src.device() != device()) {
    // Across devices: make a contiguous copy of the right dtype and shape where src lives, move
    // the bytes, then copy into place here if this tensor is not contiguous.
    LYRA_ASSIGN_OR_RETURN(Tensor staged, src.To(dtype_));
    LYRA_ASSIGN_OR_RETURN(staged, staged.Expand(shape_));
    LYRA_ASSIGN_OR_RETURN(staged, staged.Contiguous());
    if (is_contiguous()) {
      return MemcpyBetween(data(), device(), staged.data(), staged.device(), nbytes());
    }
    LYRA_ASSIGN_OR_RETURN(Tensor here, Empty(shape_, dtype_, device()));
    LYRA_RETURN_IF_ERROR(
        MemcpyBetween(here.data(), device(), staged.data(), staged.device(), nbytes()));
    return CopyFrom(here);
  }
  cuda::UnaryParams p;
  p.op = cuda::UnaryOp::kIdentity;
  p.shape = internal::ToIterShape(shape_);
  p.x = internal::Operand(src, shape_);
  p.y = internal::Operand(*this, shape_);
  return internal::RunKernel(device(), p, cuda::UnaryReference, cuda::UnaryCuda);
}

absl::Status Tensor::Fill(double value) const {
  if (!defined()) return absl::InvalidArgumentError("Fill: undefined tensor");
  cuda::FillParams p;
  p.shape = internal::ToIterShape(shape_);
  p.out = internal::Operand(*this, shape_);
  p.value = value;
  return internal::RunKernel(device(), p, cuda::FillReference, cuda::FillCuda);
}

// --- Host access --------------------------------------------------------------------------

absl::StatusOr<std::vector<uint8_t>> Tensor::ContiguousHostBytes() const {
  LYRA_ASSIGN_OR_RETURN(Tensor c, Contiguous());
  std::vector<uint8_t> bytes(c.nbytes());
  LYRA_RETURN_IF_ERROR(MemcpyBetween(bytes.data(), Device::Cpu(), c.data(), c.device(),
                                     bytes.size()));
  return bytes;
}

absl::StatusOr<std::vector<double>> Tensor::ToDoubles() const {
  if (!defined()) return absl::FailedPreconditionError("ToDoubles on an undefined tensor");
  LYRA_ASSIGN_OR_RETURN(Tensor f64, To(DType::kF64));
  return f64.ToVector<double>();
}

absl::StatusOr<double> Tensor::Item() const {
  if (!defined() || numel() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Item: expected a tensor with one element, got ", Describe()));
  }
  LYRA_ASSIGN_OR_RETURN(std::vector<double> v, ToDoubles());
  return v[0];
}

std::string Tensor::ToString(int64_t max_elements) const {
  if (!defined()) return "tensor(undefined)";
  absl::StatusOr<std::vector<double>> values = ToDoubles();
  if (!values.ok()) return absl::StrCat("tensor(", Describe(), ", <", values.status().message(), ">)");
  std::ostringstream os;
  os << "tensor(" << Describe() << ", ";
  int64_t printed = 0;
  // Recursive nested brackets; stops printing values after max_elements.
  std::function<void(int, int64_t)> print = [&](int d, int64_t base) {
    if (d == dim()) {
      if (printed < max_elements) os << (*values)[base];
      ++printed;
      return;
    }
    os << "[";
    int64_t inner = 1;
    for (int k = d + 1; k < dim(); ++k) inner *= shape_[k];
    for (int64_t i = 0; i < shape_[d]; ++i) {
      if (printed >= max_elements) {
        os << "...";
        break;
      }
      if (i > 0) os << ", ";
      print(d + 1, base + i * inner);
    }
    os << "]";
  };
  print(0, 0);
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.ToString(); }

}  // namespace lyra
