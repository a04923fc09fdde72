// CPU reference of GradNorm and GradScale (cuda/grad_norm.h): per-chunk f32 sums of squares in
// element order, the partials summed in f64 in chunk order.
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/grad_norm.h"
#include "cuda/grad_norm_math.h"

namespace lyra::cuda {
namespace {

float LoadValue(const void* data, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF16: return static_cast<float>(static_cast<const Float16*>(data)[i]);
    case DType::kBF16: return static_cast<float>(static_cast<const BFloat16*>(data)[i]);
    default: return static_cast<const float*>(data)[i];
  }
}

void StoreValue(void* data, DType dtype, int64_t i, float x) {
  switch (dtype) {
    case DType::kF16: static_cast<Float16*>(data)[i] = Float16(x); break;
    case DType::kBF16: static_cast<BFloat16*>(data)[i] = BFloat16(x); break;
    default: static_cast<float*>(data)[i] = x; break;
  }
}

absl::Status CheckTables(const GradNormTensor* tensors, int32_t num_tensors,
                         const TensorChunk* chunks, int32_t num_chunks, double max_norm) {
  if (num_tensors < 0 || num_chunks < 0 || (num_tensors > 0 && tensors == nullptr) ||
      (num_chunks > 0 && chunks == nullptr)) {
    return absl::InvalidArgumentError("GradNorm: missing table");
  }
  return GradNormSupported(absl::MakeConstSpan(tensors, num_tensors),
                           absl::MakeConstSpan(chunks, num_chunks), max_norm);
}

}  // namespace

absl::Status GradNormSupported(absl::Span<const GradNormTensor> tensors,
                               absl::Span<const TensorChunk> chunks, double max_norm) {
  if (tensors.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()) ||
      chunks.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::UnimplementedError(absl::StrCat("GradNorm: ", tensors.size(), " tensors in ",
                                                 chunks.size(), " chunks; at most 2^31 - 1"));
  }
  if (!std::isfinite(max_norm) || max_norm < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GradNorm: max_norm must be finite and >= 0, got ", max_norm));
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const GradNormTensor& t = tensors[i];
    if (t.dtype != DType::kF32 && t.dtype != DType::kF16 && t.dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat("GradNorm: tensor ", i, " is ",
                                                     DTypeName(t.dtype),
                                                     "; expected f32, f16 or bf16"));
    }
    if (t.numel < 0 || (t.numel > 0 && t.data == nullptr)) {
      return absl::InvalidArgumentError(
          absl::StrCat("GradNorm: tensor ", i, " has numel ", t.numel, " and no data"));
    }
  }
  for (size_t c = 0; c < chunks.size(); ++c) {
    const TensorChunk& chunk = chunks[c];
    if (chunk.tensor < 0 || static_cast<size_t>(chunk.tensor) >= tensors.size() ||
        chunk.length < 0 || chunk.start < 0 ||
        chunk.start + chunk.length > tensors[chunk.tensor].numel) {
      return absl::InvalidArgumentError(
          absl::StrCat("GradNorm: chunk ", c, " (tensor ", chunk.tensor, ", start ", chunk.start,
                       ", length ", chunk.length, ") lies outside its tensor"));
    }
  }
  return absl::OkStatus();
}

absl::Status GradNormReference(const GradNormParams& params) {
  LYRA_RETURN_IF_ERROR(CheckTables(params.tensors, params.num_tensors, params.chunks,
                                   params.num_chunks, params.max_norm));
  if (params.norm == nullptr || params.coef == nullptr) {
    return absl::InvalidArgumentError("GradNorm: missing norm or coef output");
  }
  double total = 0;
  for (int32_t c = 0; c < params.num_chunks; ++c) {
    const TensorChunk& chunk = params.chunks[c];
    const GradNormTensor& t = params.tensors[chunk.tensor];
    float partial = 0;
    for (int64_t i = chunk.start; i < chunk.start + chunk.length; ++i) {
      const float x = LoadValue(t.data, t.dtype, i);
      partial += x * x;
    }
    if (params.partials != nullptr) params.partials[c] = partial;
    total += partial;
  }
  const float norm = static_cast<float>(std::sqrt(total));
  *params.norm = norm;
  *params.coef = ClipCoefficient(norm, params.max_norm);
  return absl::OkStatus();
}

absl::Status GradScaleReference(const GradScaleParams& params) {
  LYRA_RETURN_IF_ERROR(CheckTables(params.tensors, params.num_tensors, params.chunks,
                                   params.num_chunks, /*max_norm=*/0));
  if (params.coef == nullptr) return absl::InvalidArgumentError("GradScale: missing coef");
  const float coef = *params.coef;
  if (coef == 1.0f) return absl::OkStatus();
  for (int32_t c = 0; c < params.num_chunks; ++c) {
    const TensorChunk& chunk = params.chunks[c];
    const GradNormTensor& t = params.tensors[chunk.tensor];
    for (int64_t i = chunk.start; i < chunk.start + chunk.length; ++i) {
      StoreValue(t.data, t.dtype, i, LoadValue(t.data, t.dtype, i) * coef);
    }
  }
  return absl::OkStatus();
}

}  // namespace lyra::cuda
