#include "tensor/index.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/index.h"
#include "tensor/dispatch.h"

namespace lyra {
namespace {

// An operand over an iteration shape of `rank` dimensions whose strides are given explicitly
// (the kernels walk the indexed operand and the index along chosen dimensions only).
cuda::StridedOperand MakeOperand(const Tensor& t, const Shape& strides) {
  cuda::StridedOperand op;
  op.data = t.data();
  op.dtype = t.dtype();
  for (size_t d = 0; d < strides.size(); ++d) op.strides[d] = strides[d];
  return op;
}

cuda::StridedOperand FullOperand(const Tensor& t) { return MakeOperand(t, t.strides()); }

// `dim` of `t` in [0, rank); InvalidArgument naming `op` for a bad dim or a 0-D tensor.
absl::StatusOr<int> IndexedDim(absl::string_view op, int dim, const Tensor& t) {
  if (t.dim() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": expected a tensor of rank >= 1, got ", t.Describe()));
  }
  return NormalizeDim(dim, t.dim(), op);
}

absl::Status CheckIndexTensor(absl::string_view op, absl::string_view name, const Tensor& index) {
  if (index.dtype() != DType::kI32 && index.dtype() != DType::kI64) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, " must be i32 or i64, got ", index.Describe()));
  }
  return absl::OkStatus();
}

// A 0-D or 1-D index (IndexSelect, IndexAdd).
absl::Status CheckIndexVector(absl::string_view op, const Tensor& index) {
  LYRA_RETURN_IF_ERROR(CheckIndexTensor(op, "index", index));
  if (index.dim() > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": index must be 0-D or 1-D, got ", index.Describe()));
  }
  return absl::OkStatus();
}

absl::Status CheckFloat(absl::string_view op, const Tensor& t) {
  if (IsFloating(t.dtype())) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(op, ": expected a floating-point tensor, got ", t.Describe()));
}

// Runs an indexing kernel; a kernel error (a bad index) gets `context()` appended, which names the
// tensor and dimension indexed. The context is only built on failure.
template <typename Params, typename Context>
absl::Status RunIndexKernel(Device device, const Params& p,
                            absl::Status (*reference)(const Params&),
                            absl::Status (*cuda_launcher)(const Params&, cudaStream_t),
                            Context&& context) {
  absl::Status status = internal::RunKernel(device, p, reference, cuda_launcher);
  if (status.ok() || status.code() != absl::StatusCode::kInvalidArgument) return status;
  return absl::InvalidArgumentError(absl::StrCat(status.message(), " ", context()));
}

}  // namespace

absl::StatusOr<Tensor> IndexSelect(const Tensor& x, int dim_arg, const Tensor& index) {
  constexpr absl::string_view kOp = "IndexSelect";
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(kOp, {&x, &index}));
  LYRA_ASSIGN_OR_RETURN(const int dim, IndexedDim(kOp, dim_arg, x));
  LYRA_RETURN_IF_ERROR(CheckIndexVector(kOp, index));
  Shape out_shape = x.shape();
  out_shape[dim] = index.numel();
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(out_shape, x.dtype(), device));

  Shape src_strides = x.strides();
  src_strides[dim] = 0;
  Shape index_strides(x.dim(), 0);
  index_strides[dim] = index.dim() == 1 ? index.stride(0) : 0;
  cuda::IndexGatherParams p;
  p.op = kOp;
  p.shape = internal::ToIterShape(out_shape);
  p.out = FullOperand(out);
  p.src = MakeOperand(x, src_strides);
  p.index = MakeOperand(index, index_strides);
  p.src_index_stride = x.stride(dim);
  p.index_bound = x.size(dim);
  LYRA_RETURN_IF_ERROR(RunIndexKernel(device, p, cuda::IndexGatherReference,
                                      cuda::IndexGatherCuda, [&] {
                                        return absl::StrCat("(dim ", dim, " of ", x.Describe(),
                                                            ")");
                                      }));
  return out;
}

absl::Status IndexAdd(const Tensor& out, int dim_arg, const Tensor& index, const Tensor& src) {
  constexpr absl::string_view kOp = "IndexAdd";
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(kOp, {&out, &index, &src}));
  LYRA_ASSIGN_OR_RETURN(const int dim, IndexedDim(kOp, dim_arg, out));
  LYRA_RETURN_IF_ERROR(CheckIndexVector(kOp, index));
  LYRA_RETURN_IF_ERROR(CheckFloat(kOp, out));
  if (src.dtype() != out.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": src ", src.Describe(),
                                                   " and out ", out.Describe(),
                                                   " differ in dtype"));
  }
  Shape expected = out.shape();
  expected[dim] = index.numel();
  if (src.shape() != expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": src ", src.Describe(), " must have shape ", ShapeToString(expected),
        " (out ", out.Describe(), " with ", index.numel(), " indices at dim ", dim, ")"));
  }
  Shape out_strides = out.strides();
  out_strides[dim] = 0;
  Shape index_strides(out.dim(), 0);
  index_strides[dim] = index.dim() == 1 ? index.stride(0) : 0;
  cuda::IndexScatterAddParams p;
  p.op = kOp;
  p.shape = internal::ToIterShape(src.shape());
  p.out = MakeOperand(out, out_strides);
  p.src = FullOperand(src);
  p.index = MakeOperand(index, index_strides);
  p.out_index_stride = out.stride(dim);
  p.index_bound = out.size(dim);
  return RunIndexKernel(device, p, cuda::IndexScatterAddReference, cuda::IndexScatterAddCuda,
                        [&] { return absl::StrCat("(dim ", dim, " of ", out.Describe(), ")"); });
}

absl::StatusOr<Tensor> Gather(const Tensor& x, int dim_arg, const Tensor& index) {
  constexpr absl::string_view kOp = "Gather";
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(kOp, {&x, &index}));
  LYRA_ASSIGN_OR_RETURN(const int dim, IndexedDim(kOp, dim_arg, x));
  LYRA_RETURN_IF_ERROR(CheckIndexTensor(kOp, "index", index));
  if (index.dim() != x.dim()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": index ", index.Describe(),
                                                   " must have the rank of x ", x.Describe()));
  }
  for (int d = 0; d < x.dim(); ++d) {
    if (d != dim && index.size(d) > x.size(d)) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": index ", index.Describe(),
                                                     " is larger than x ", x.Describe(),
                                                     " at dim ", d));
    }
  }
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(index.shape(), x.dtype(), device));
  Shape src_strides = x.strides();
  src_strides[dim] = 0;
  cuda::IndexGatherParams p;
  p.op = kOp;
  p.shape = internal::ToIterShape(index.shape());
  p.out = FullOperand(out);
  p.src = MakeOperand(x, src_strides);
  p.index = FullOperand(index);
  p.src_index_stride = x.stride(dim);
  p.index_bound = x.size(dim);
  LYRA_RETURN_IF_ERROR(RunIndexKernel(device, p, cuda::IndexGatherReference,
                                      cuda::IndexGatherCuda, [&] {
                                        return absl::StrCat("(dim ", dim, " of ", x.Describe(),
                                                            ")");
                                      }));
  return out;
}

absl::Status ScatterAdd(const Tensor& out, int dim_arg, const Tensor& index, const Tensor& src) {
  constexpr absl::string_view kOp = "ScatterAdd";
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(kOp, {&out, &index, &src}));
  LYRA_ASSIGN_OR_RETURN(const int dim, IndexedDim(kOp, dim_arg, out));
  LYRA_RETURN_IF_ERROR(CheckIndexTensor(kOp, "index", index));
  LYRA_RETURN_IF_ERROR(CheckFloat(kOp, out));
  if (src.dtype() != out.dtype()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": src ", src.Describe(),
                                                   " and out ", out.Describe(),
                                                   " differ in dtype"));
  }
  if (index.dim() != out.dim() || src.dim() != out.dim()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": index ", index.Describe(), ", src ",
                                                   src.Describe(), " and out ", out.Describe(),
                                                   " must have one rank"));
  }
  for (int d = 0; d < out.dim(); ++d) {
    if (index.size(d) > src.size(d) || (d != dim && index.size(d) > out.size(d))) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": index ", index.Describe(), " is larger than src ", src.Describe(),
          d != dim ? absl::StrCat(" or out ", out.Describe()) : std::string(), " at dim ", d));
    }
  }
  Shape out_strides = out.strides();
  out_strides[dim] = 0;
  cuda::IndexScatterAddParams p;
  p.op = kOp;
  p.shape = internal::ToIterShape(index.shape());
  p.out = MakeOperand(out, out_strides);
  p.src = FullOperand(src);
  p.index = FullOperand(index);
  p.out_index_stride = out.stride(dim);
  p.index_bound = out.size(dim);
  return RunIndexKernel(device, p, cuda::IndexScatterAddReference, cuda::IndexScatterAddCuda,
                        [&] { return absl::StrCat("(dim ", dim, " of ", out.Describe(), ")"); });
}

absl::StatusOr<Tensor> Embedding(const Tensor& weight, const Tensor& ids) {
  constexpr absl::string_view kOp = "Embedding";
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(kOp, {&weight, &ids}));
  LYRA_RETURN_IF_ERROR(CheckIndexTensor(kOp, "ids", ids));
  if (weight.dim() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": weight must be [V, D], got ", weight.Describe()));
  }
  Shape out_shape = ids.shape();
  out_shape.push_back(weight.size(1));
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(out_shape, weight.dtype(), device));
  // Iteration [ids..., D]: the ids broadcast over D, the weight row over the ids.
  Shape src_strides(out_shape.size(), 0);
  src_strides.back() = weight.stride(1);
  Shape index_strides = ids.strides();
  index_strides.push_back(0);
  cuda::IndexGatherParams p;
  p.op = kOp;
  p.shape = internal::ToIterShape(out_shape);
  p.out = FullOperand(out);
  p.src = MakeOperand(weight, src_strides);
  p.index = MakeOperand(ids, index_strides);
  p.src_index_stride = weight.stride(0);
  p.index_bound = weight.size(0);
  LYRA_RETURN_IF_ERROR(RunIndexKernel(
      device, p, cuda::IndexGatherReference, cuda::IndexGatherCuda,
      [&] { return absl::StrCat("(rows of weight ", weight.Describe(), ")"); }));
  return out;
}

absl::StatusOr<Tensor> EmbeddingBackward(const Tensor& grad, const Tensor& ids,
                                         int64_t num_embeddings, int64_t padding_idx) {
  constexpr absl::string_view kOp = "EmbeddingBackward";
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(kOp, {&grad, &ids}));
  LYRA_RETURN_IF_ERROR(CheckIndexTensor(kOp, "ids", ids));
  LYRA_RETURN_IF_ERROR(CheckFloat(kOp, grad));
  if (grad.dim() != ids.dim() + 1 ||
      !std::equal(ids.shape().begin(), ids.shape().end(), grad.shape().begin())) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": grad ", grad.Describe(), " must have shape [ids..., D] for ids ", ids.Describe()));
  }
  if (num_embeddings < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": negative num_embeddings ", num_embeddings));
  }
  if (padding_idx >= num_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": padding_idx ", padding_idx,
                                                   " must be < num_embeddings ",
                                                   num_embeddings));
  }
  const int64_t d_model = grad.size(-1);
  // f16/bf16 gradients are summed in f32 (frequent ids collect many rows) and rounded once.
  const DType accumulate_dtype = IsHalf(grad.dtype()) ? DType::kF32 : grad.dtype();
  LYRA_ASSIGN_OR_RETURN(Tensor dweight,
                        Tensor::Zeros({num_embeddings, d_model}, accumulate_dtype, device));
  Shape out_strides(grad.dim(), 0);
  out_strides.back() = dweight.stride(1);
  Shape index_strides = ids.strides();
  index_strides.push_back(0);
  cuda::IndexScatterAddParams p;
  p.op = kOp;
  p.shape = internal::ToIterShape(grad.shape());
  p.out = MakeOperand(dweight, out_strides);
  p.src = FullOperand(grad);
  p.index = MakeOperand(ids, index_strides);
  p.out_index_stride = dweight.stride(0);
  p.index_bound = num_embeddings;
  p.skip_index = padding_idx;
  LYRA_RETURN_IF_ERROR(RunIndexKernel(
      device, p, cuda::IndexScatterAddReference, cuda::IndexScatterAddCuda,
      [&] { return absl::StrCat("(num_embeddings ", num_embeddings, ")"); }));
  return dweight.To(grad.dtype());
}

absl::StatusOr<Tensor> Concat(const std::vector<Tensor>& xs, int dim_arg) {
  constexpr absl::string_view kOp = "Concat";
  if (xs.empty()) return absl::InvalidArgumentError("Concat: no tensors given");
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!xs[i].defined()) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": input ", i, " is undefined"));
    }
  }
  const Tensor& first = xs[0];
  LYRA_ASSIGN_OR_RETURN(const int dim, IndexedDim(kOp, dim_arg, first));
  Shape out_shape = first.shape();
  out_shape[dim] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const Tensor& x = xs[i];
    bool match = x.dtype() == first.dtype() && x.device() == first.device() &&
                 x.dim() == first.dim();
    for (int d = 0; match && d < x.dim(); ++d) match = d == dim || x.size(d) == first.size(d);
    if (!match) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": input ", i, " ", x.Describe(), " does not match input 0 ", first.Describe(),
          " (same dtype, device, rank and sizes outside dim ", dim, " required)"));
    }
    out_shape[dim] += x.size(dim);
  }
  LYRA_ASSIGN_OR_RETURN(Tensor out, Tensor::Empty(out_shape, first.dtype(), first.device()));
  int64_t start = 0;
  for (const Tensor& x : xs) {
    const int64_t length = x.size(dim);
    if (length > 0 && x.numel() > 0) {
      LYRA_ASSIGN_OR_RETURN(Tensor slot, out.Narrow(dim, start, length));
      LYRA_RETURN_IF_ERROR(slot.CopyFrom(x));
    }
    start += length;
  }
  return out;
}

absl::StatusOr<std::vector<Tensor>> Split(const Tensor& x, const std::vector<int64_t>& sizes,
                                          int dim_arg) {
  constexpr absl::string_view kOp = "Split";
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&x}));
  LYRA_ASSIGN_OR_RETURN(const int dim, IndexedDim(kOp, dim_arg, x));
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(kOp, ": negative size ", s, " splitting ", x.Describe()));
    }
    total += s;
  }
  if (total != x.size(dim)) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": sizes sum to ", total, ", but dim ",
                                                   dim, " of ", x.Describe(), " has ",
                                                   x.size(dim)));
  }
  std::vector<Tensor> pieces;
  pieces.reserve(sizes.size());
  int64_t start = 0;
  for (int64_t s : sizes) {
    LYRA_ASSIGN_OR_RETURN(Tensor piece, x.Narrow(dim, start, s));
    pieces.push_back(std::move(piece));
    start += s;
  }
  return pieces;
}

absl::StatusOr<std::vector<Tensor>> SplitEvenly(const Tensor& x, int64_t chunk_size,
                                                int dim_arg) {
  constexpr absl::string_view kOp = "SplitEvenly";
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&x}));
  LYRA_ASSIGN_OR_RETURN(const int dim, IndexedDim(kOp, dim_arg, x));
  if (chunk_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": chunk_size must be positive, got ", chunk_size));
  }
  const int64_t n = x.size(dim);
  std::vector<int64_t> sizes;
  for (int64_t start = 0; start < n; start += chunk_size) {
    sizes.push_back(std::min(chunk_size, n - start));
  }
  if (sizes.empty()) sizes.push_back(0);
  return Split(x, sizes, dim);
}

}  // namespace lyra
