#include "optim/clip.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/device.h"
#include "cuda/grad_norm.h"
#include "cuda/multi_tensor.h"
#include "cuda/stream.h"

namespace lyra::optim {
namespace {

struct Gathered {
  std::vector<Tensor> grads;      // contiguous (a copy where the gradient is strided)
  std::vector<Tensor> originals;  // the gradients as stored
  Device device = Device::Cpu();
};

absl::StatusOr<Gathered> GatherGrads(const std::vector<autograd::Variable>& params,
                                     const char* op) {
  Gathered out;
  bool have_device = false;
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].defined()) continue;
    const Tensor& grad = params[i].grad();
    if (!grad.defined()) continue;
    if (grad.dtype() != DType::kF32 && grad.dtype() != DType::kF16 &&
        grad.dtype() != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": gradient of parameter ", i, " is ",
                                                     grad.Describe(),
                                                     "; expected f32, f16 or bf16"));
    }
    if (!have_device) {
      out.device = grad.device();
      have_device = true;
    } else if (grad.device() != out.device) {
      return absl::InvalidArgumentError(absl::StrCat(op, ": gradient of parameter ", i, " is on ",
                                                     grad.device().ToString(), ", others on ",
                                                     out.device.ToString()));
    }
    out.originals.push_back(grad);
    if (grad.is_contiguous()) {
      out.grads.push_back(grad);
    } else {
      LYRA_ASSIGN_OR_RETURN(Tensor copy, grad.Contiguous());
      out.grads.push_back(copy);
    }
  }
  return out;
}

// Norm (and, when `scale`, clipping) of the gathered gradients.
absl::StatusOr<ClipResult> NormAndClip(const Gathered& g, double max_norm, bool scale,
                                       const char* op) {
  if (!std::isfinite(max_norm) || max_norm < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": max_norm must be finite and >= 0, got ", max_norm));
  }
  std::vector<cuda::GradNormTensor> tensors;
  std::vector<cuda::TensorChunk> chunks;
  for (const Tensor& grad : g.grads) {
    cuda::AppendChunks(static_cast<int32_t>(tensors.size()), grad.numel(),
                       cuda::kMultiTensorChunkElements, chunks);
    tensors.push_back(cuda::GradNormTensor{grad.data(), grad.numel(), grad.dtype()});
  }
  LYRA_RETURN_IF_ERROR(cuda::GradNormSupported(tensors, chunks, max_norm));
  ClipResult result;
  LYRA_ASSIGN_OR_RETURN(result.total_norm_device, Tensor::Zeros({}, DType::kF32, g.device));
  LYRA_ASSIGN_OR_RETURN(result.clip_coef_device, Tensor::Ones({}, DType::kF32, g.device));
  if (tensors.empty()) return result;

  cuda::GradNormParams norm;
  norm.num_tensors = static_cast<int32_t>(tensors.size());
  norm.num_chunks = static_cast<int32_t>(chunks.size());
  norm.max_norm = max_norm;
  norm.norm = result.total_norm_device.data<float>();
  norm.coef = result.clip_coef_device.data<float>();
  cuda::GradScaleParams scaling;
  scaling.num_tensors = norm.num_tensors;
  scaling.num_chunks = norm.num_chunks;
  scaling.coef = norm.coef;
  if (g.device.is_cpu()) {
    norm.tensors = scaling.tensors = tensors.data();
    norm.chunks = scaling.chunks = chunks.data();
    LYRA_RETURN_IF_ERROR(cuda::GradNormReference(norm));
    if (scale) LYRA_RETURN_IF_ERROR(cuda::GradScaleReference(scaling));
  } else {
    LYRA_RETURN_IF_ERROR(cuda::CheckGpu(g.device.index));
    cuda::DeviceGuard guard(g.device.index);
    const cudaStream_t stream = cuda::CurrentStream(g.device.index);
    cuda::DeviceTable tensor_table, chunk_table, partials, ticket;
    LYRA_RETURN_IF_ERROR(tensor_table.Upload(g.device.index, tensors.data(),
                                             tensors.size() * sizeof(tensors[0]), stream));
    LYRA_RETURN_IF_ERROR(chunk_table.Upload(g.device.index, chunks.data(),
                                            chunks.size() * sizeof(chunks[0]), stream));
    LYRA_RETURN_IF_ERROR(
        partials.EnsureZeroed(g.device.index, chunks.size() * sizeof(float), stream));
    LYRA_RETURN_IF_ERROR(ticket.EnsureZeroed(g.device.index, sizeof(uint32_t), stream));
    norm.tensors = scaling.tensors = tensor_table.as<const cuda::GradNormTensor>();
    norm.chunks = scaling.chunks = chunk_table.as<const cuda::TensorChunk>();
    norm.partials = partials.as<float>();
    norm.ticket = ticket.as<uint32_t>();
    LYRA_RETURN_IF_ERROR(cuda::GradNormCuda(norm, stream));
    if (scale) LYRA_RETURN_IF_ERROR(cuda::GradScaleCuda(scaling, stream));
  }
  // Strided gradients were clipped in a contiguous copy: write it back.
  if (scale) {
    for (size_t i = 0; i < g.grads.size(); ++i) {
      if (g.grads[i].data() != g.originals[i].data() ||
          g.grads[i].strides() != g.originals[i].strides()) {
        LYRA_RETURN_IF_ERROR(g.originals[i].CopyFrom(g.grads[i]));
      }
    }
  }
  LYRA_ASSIGN_OR_RETURN(result.total_norm, result.total_norm_device.Item());
  return result;
}

}  // namespace

absl::StatusOr<ClipResult> ClipGradNorm(const std::vector<autograd::Variable>& params,
                                        double max_norm) {
  LYRA_ASSIGN_OR_RETURN(Gathered g, GatherGrads(params, "ClipGradNorm"));
  return NormAndClip(g, max_norm, /*scale=*/true, "ClipGradNorm");
}

absl::StatusOr<double> GradNorm(const std::vector<autograd::Variable>& params) {
  LYRA_ASSIGN_OR_RETURN(Gathered g, GatherGrads(params, "GradNorm"));
  LYRA_ASSIGN_OR_RETURN(ClipResult r, NormAndClip(g, /*max_norm=*/0, /*scale=*/false, "GradNorm"));
  return r.total_norm;
}

}  // namespace lyra::optim
