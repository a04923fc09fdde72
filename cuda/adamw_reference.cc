// CPU reference of the fused AdamW step (cuda/adamw.h): the same per-element arithmetic as the
// kernel (cuda/adamw_math.h), walking the chunk table in order. Compiled with -ffp-contract=off
// so no multiply-add is fused on any host architecture.
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/adamw.h"
#include "cuda/adamw_math.h"

namespace lyra::cuda {
namespace {

bool FiniteNonNegative(double x) { return std::isfinite(x) && x >= 0; }

float LoadGrad(const void* grad, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kF16: return static_cast<float>(static_cast<const Float16*>(grad)[i]);
    case DType::kBF16: return static_cast<float>(static_cast<const BFloat16*>(grad)[i]);
    default: return static_cast<const float*>(grad)[i];
  }
}

}  // namespace

absl::Status AdamWSupported(absl::Span<const AdamWTensor> tensors,
                            absl::Span<const TensorChunk> chunks,
                            absl::Span<const AdamWHyperParams> hyper) {
  if (tensors.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max()) ||
      chunks.size() > static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::UnimplementedError(absl::StrCat("AdamW: ", tensors.size(), " tensors in ",
                                                 chunks.size(), " chunks; at most 2^31 - 1"));
  }
  for (size_t g = 0; g < hyper.size(); ++g) {
    const AdamWHyperParams& h = hyper[g];
    if (!FiniteNonNegative(h.lr) || !FiniteNonNegative(h.eps) ||
        !FiniteNonNegative(h.weight_decay) || !(h.beta1 >= 0 && h.beta1 < 1) ||
        !(h.beta2 >= 0 && h.beta2 < 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "AdamW: group ", g, " has invalid hyper-parameters (lr ", h.lr, ", betas (", h.beta1,
          ", ", h.beta2, "), eps ", h.eps, ", weight_decay ", h.weight_decay,
          "): lr, eps and weight_decay must be finite and >= 0, betas in [0, 1)"));
    }
  }
  std::vector<int32_t> counted(tensors.size(), 0);
  for (size_t c = 0; c < chunks.size(); ++c) {
    const TensorChunk& chunk = chunks[c];
    if (chunk.tensor < 0 || static_cast<size_t>(chunk.tensor) >= tensors.size() ||
        chunk.length < 0 || chunk.start < 0 ||
        chunk.start + chunk.length > tensors[chunk.tensor].numel) {
      return absl::InvalidArgumentError(
          absl::StrCat("AdamW: chunk ", c, " (tensor ", chunk.tensor, ", start ", chunk.start,
                       ", length ", chunk.length, ") lies outside its tensor"));
    }
    ++counted[chunk.tensor];
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const AdamWTensor& t = tensors[i];
    if (t.grad_dtype != DType::kF32 && t.grad_dtype != DType::kF16 &&
        t.grad_dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(
          "AdamW: tensor ", i, " has a ", DTypeName(t.grad_dtype), " gradient; expected f32, f16 or bf16"));
    }
    if (t.numel < 0 || t.group < 0 || static_cast<size_t>(t.group) >= hyper.size()) {
      return absl::InvalidArgumentError(absl::StrCat("AdamW: tensor ", i, " has numel ", t.numel,
                                                     " and group ", t.group, " of ",
                                                     hyper.size()));
    }
    if (t.step == nullptr || (t.numel > 0 && (t.param == nullptr || t.grad == nullptr ||
                                              t.exp_avg == nullptr || t.exp_avg_sq == nullptr))) {
      return absl::InvalidArgumentError(absl::StrCat("AdamW: tensor ", i, " has a null pointer"));
    }
    if (t.num_chunks != counted[i] || t.num_chunks < 1) {
      return absl::InvalidArgumentError(absl::StrCat("AdamW: tensor ", i, " says ", t.num_chunks,
                                                     " chunks; the chunk table has ", counted[i]));
    }
  }
  return absl::OkStatus();
}

absl::Status AdamWReference(const AdamWParams& params) {
  if (params.num_tensors < 0 || params.num_chunks < 0 || params.num_groups < 0 ||
      (params.num_tensors > 0 && params.tensors == nullptr) ||
      (params.num_chunks > 0 && params.chunks == nullptr) ||
      (params.num_groups > 0 && params.hyper == nullptr)) {
    return absl::InvalidArgumentError("AdamW: missing table");
  }
  const absl::Span<const AdamWTensor> tensors(params.tensors, params.num_tensors);
  const absl::Span<const TensorChunk> chunks(params.chunks, params.num_chunks);
  LYRA_RETURN_IF_ERROR(
      AdamWSupported(tensors, chunks, absl::MakeConstSpan(params.hyper, params.num_groups)));
  // Each chunk reads its tensor's step counter before any chunk of it is done, as on the GPU;
  // the counters advance after the whole table.
  for (const TensorChunk& chunk : chunks) {
    const AdamWTensor& t = tensors[chunk.tensor];
    const AdamWScalars s = MakeAdamWScalars(params.hyper[t.group], *t.step + 1);
    for (int64_t i = chunk.start; i < chunk.start + chunk.length; ++i) {
      AdamWElement(s, LoadGrad(t.grad, t.grad_dtype, i), t.param[i], t.exp_avg[i],
                   t.exp_avg_sq[i]);
    }
  }
  for (const AdamWTensor& t : tensors) ++*t.step;
  return absl::OkStatus();
}

}  // namespace lyra::cuda
