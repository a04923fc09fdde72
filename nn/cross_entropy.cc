// Fused cross-entropy and the vocabulary-chunked linear cross-entropy (nn/cross_entropy.h): shape
// and dtype checks, the target check, and the row kernels of cuda/cross_entropy.h run on the
// tensors' device; LinearCrossEntropy adds the chunk loop of matmuls around them.
#include "nn/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/node.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/cross_entropy.h"
#include "tensor/dispatch.h"
#include "tensor/elementwise.h"
#include "tensor/matmul.h"
#include "tensor/reduce.h"

namespace lyra::nn {
namespace {

using autograd::Variable;

// The dtype of lse and the per-row losses: f64 for f64 logits, f32 otherwise.
DType StatsDType(DType logits_dtype) {
  return logits_dtype == DType::kF64 ? DType::kF64 : DType::kF32;
}

absl::Status CheckTargets1d(absl::string_view op, const Tensor& targets, int64_t rows,
                            const Tensor& rows_from) {
  if (targets.dim() != 1 || targets.size(0) != rows || !IsInteger(targets.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": expected integer targets [", rows,
                                                   "] for ", rows_from.Describe(), ", got ",
                                                   targets.Describe()));
  }
  return absl::OkStatus();
}

absl::Status CheckLogitsAndTargets(absl::string_view op, const Tensor& logits,
                                   const Tensor& targets) {
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(op, {&logits, &targets}));
  if (logits.dim() != 2 || !IsFloating(logits.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        op, ": expected logits [N, V] of a floating-point dtype, got ", logits.Describe()));
  }
  LYRA_RETURN_IF_ERROR(CheckTargets1d(op, targets, logits.size(0), logits));
  return internal::CommonDevice(op, {&logits, &targets}).status();
}

// The number of kept rows, or InvalidArgument for a bad target (one host sync on CUDA).
absl::StatusOr<int64_t> CheckTargetValues(absl::string_view op, const Tensor& targets,
                                          int64_t vocab, int64_t ignore_index) {
  int64_t kept = 0;
  cuda::CrossEntropyTargetsParams p;
  p.op = op;
  p.target_dtype = targets.dtype();
  p.rows = targets.size(0);
  p.targets = targets.data();
  p.targets_stride = targets.stride(0);
  p.vocab = vocab;
  p.ignore_index = ignore_index;
  p.kept = &kept;
  LYRA_RETURN_IF_ERROR(internal::RunKernel(targets.device(), p,
                                           cuda::CrossEntropyCheckTargetsReference,
                                           cuda::CrossEntropyCheckTargetsCuda));
  return kept;
}

double GradScale(Reduction reduction, int64_t kept) {
  if (reduction == Reduction::kSum) return 1;
  return kept > 0 ? 1.0 / static_cast<double>(kept) : std::numeric_limits<double>::quiet_NaN();
}

// Logits with unit column stride, as the row kernels read them (a copy in the logits' own dtype
// otherwise).
absl::StatusOr<Tensor> RowContiguous(const Tensor& logits) {
  if (logits.size(1) <= 1 || logits.stride(1) == 1) return logits;
  return logits.Contiguous();
}

// The operands of one row-kernel launch. `logits` has unit column stride; so has `dlogits`.
struct RowOperands {
  const Tensor* logits = nullptr;
  const Tensor* targets = nullptr;
  const Tensor* loss = nullptr;       // forward ops
  const Tensor* lse = nullptr;        // optional for forward ops; kBackward input
  const Tensor* grad_loss = nullptr;  // kBackward
  const Tensor* dlogits = nullptr;    // backward ops
};

absl::Status RunRows(cuda::CrossEntropyOp op, const RowOperands& t, int64_t ignore_index,
                     double grad_scale) {
  cuda::CrossEntropyParams p;
  p.op = op;
  p.dtype = t.logits->dtype();
  p.target_dtype = t.targets->dtype();
  p.rows = t.logits->size(0);
  p.vocab = t.logits->size(1);
  p.logits = t.logits->data();
  p.logits_row_stride = t.logits->stride(0);
  p.targets = t.targets->data();
  p.targets_stride = t.targets->stride(0);
  p.ignore_index = ignore_index;
  if (t.loss != nullptr) p.loss = t.loss->data();
  if (t.lse != nullptr) p.lse = t.lse->data();
  if (t.grad_loss != nullptr) p.grad_loss = t.grad_loss->data();
  p.grad_scale = grad_scale;
  if (t.dlogits != nullptr) {
    p.dlogits = t.dlogits->data();
    p.dlogits_row_stride = t.dlogits->stride(0);
  }
  return internal::RunKernel(t.logits->device(), p, cuda::CrossEntropyReference,
                             cuda::CrossEntropyCuda);
}

// grad_scale * sum(loss_rows) in `dtype`.
absl::StatusOr<Tensor> ReducedLoss(const Tensor& loss_rows, double grad_scale, DType dtype) {
  LYRA_ASSIGN_OR_RETURN(Tensor total, Sum(loss_rows));
  LYRA_ASSIGN_OR_RETURN(total, MulScalar(total, grad_scale));
  return total.To(dtype);
}

// t * g for a one-element upstream gradient g (any float dtype), in t's dtype.
absl::StatusOr<Tensor> ScaleByGrad(const Tensor& t, const Tensor& g) {
  LYRA_ASSIGN_OR_RETURN(Tensor g_cast, g.To(t.dtype()));
  LYRA_ASSIGN_OR_RETURN(g_cast, g_cast.Reshape({}));
  return Mul(t, g_cast);
}

}  // namespace

absl::StatusOr<CrossEntropyForwardResult> CrossEntropyForward(const Tensor& logits,
                                                              const Tensor& targets,
                                                              int64_t ignore_index,
                                                              Reduction reduction) {
  constexpr absl::string_view kOp = "CrossEntropy";
  LYRA_RETURN_IF_ERROR(CheckLogitsAndTargets(kOp, logits, targets));
  CrossEntropyForwardResult r;
  LYRA_ASSIGN_OR_RETURN(r.kept, CheckTargetValues(kOp, targets, logits.size(1), ignore_index));
  r.grad_scale = GradScale(reduction, r.kept);
  LYRA_ASSIGN_OR_RETURN(r.logits, RowContiguous(logits));
  const DType stats = StatsDType(logits.dtype());
  LYRA_ASSIGN_OR_RETURN(Tensor loss_rows, Tensor::Empty({logits.size(0)}, stats, logits.device()));
  LYRA_ASSIGN_OR_RETURN(r.lse, Tensor::Empty({logits.size(0)}, stats, logits.device()));
  RowOperands t;
  t.logits = &r.logits;
  t.targets = &targets;
  t.loss = &loss_rows;
  t.lse = &r.lse;
  LYRA_RETURN_IF_ERROR(RunRows(cuda::CrossEntropyOp::kForward, t, ignore_index, 1));
  LYRA_ASSIGN_OR_RETURN(r.loss, ReducedLoss(loss_rows, r.grad_scale, logits.dtype()));
  return r;
}

absl::StatusOr<Tensor> CrossEntropyBackward(const Tensor& logits, const Tensor& targets,
                                            const Tensor& lse, const Tensor& grad_loss,
                                            double grad_scale, int64_t ignore_index) {
  constexpr absl::string_view kOp = "CrossEntropyBackward";
  LYRA_RETURN_IF_ERROR(CheckLogitsAndTargets(kOp, logits, targets));
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&lse, &grad_loss}));
  LYRA_RETURN_IF_ERROR(internal::CommonDevice(kOp, {&logits, &lse, &grad_loss}).status());
  const DType stats = StatsDType(logits.dtype());
  if (lse.shape() != Shape{logits.size(0)} || lse.dtype() != stats || !lse.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": expected a contiguous lse ",
                                                   DTypeName(stats), "[", logits.size(0),
                                                   "] for ", logits.Describe(), ", got ",
                                                   lse.Describe()));
  }
  if (grad_loss.numel() != 1 || !IsFloating(grad_loss.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": expected a one-element float upstream gradient, got ", grad_loss.Describe()));
  }
  LYRA_ASSIGN_OR_RETURN(Tensor x, RowContiguous(logits));
  LYRA_ASSIGN_OR_RETURN(Tensor g, grad_loss.To(logits.dtype()));
  LYRA_ASSIGN_OR_RETURN(g, g.Contiguous());
  LYRA_ASSIGN_OR_RETURN(Tensor dlogits,
                        Tensor::Empty(logits.shape(), logits.dtype(), logits.device()));
  RowOperands t;
  t.logits = &x;
  t.targets = &targets;
  t.lse = &lse;
  t.grad_loss = &g;
  t.dlogits = &dlogits;
  LYRA_RETURN_IF_ERROR(RunRows(cuda::CrossEntropyOp::kBackward, t, ignore_index, grad_scale));
  return dlogits;
}

absl::StatusOr<Variable> CrossEntropy(const Variable& logits, const Tensor& targets,
                                      int64_t ignore_index, Reduction reduction) {
  if (!logits.defined()) return absl::InvalidArgumentError("CrossEntropy: undefined logits");
  LYRA_ASSIGN_OR_RETURN(CrossEntropyForwardResult f,
                        CrossEntropyForward(logits.data(), targets, ignore_index, reduction));
  if (!autograd::AnyRequiresGrad({logits})) return Variable(f.loss, false);
  return autograd::RecordUnaryResult(
      "CrossEntropy", {logits}, f.loss,
      [x = f.logits, targets, lse = f.lse, scale = f.grad_scale,
       ignore_index](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        LYRA_ASSIGN_OR_RETURN(Tensor dx,
                              CrossEntropyBackward(x, targets, lse, g[0], scale, ignore_index));
        return std::vector<Tensor>{dx};
      });
}

absl::StatusOr<Variable> LinearCrossEntropy(const Variable& hidden, const Variable& weight,
                                            const Tensor& targets, int64_t ignore_index,
                                            Reduction reduction, int64_t chunk_tokens) {
  constexpr absl::string_view kOp = "LinearCrossEntropy";
  if (!hidden.defined() || !weight.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": undefined hidden or weight"));
  }
  const Tensor& h = hidden.data();
  const Tensor& w_in = weight.data();
  LYRA_RETURN_IF_ERROR(internal::CheckDefined(kOp, {&targets}));
  if (h.dim() != 2 || w_in.dim() != 2 || w_in.size(1) != h.size(1) || !IsFloating(h.dtype())) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": expected float hidden [N, H] and weight [V, H], got ", h.Describe(),
                     " and ", w_in.Describe()));
  }
  const bool master_weight = w_in.dtype() == DType::kF32 && IsHalf(h.dtype());
  if (w_in.dtype() != h.dtype() && !master_weight) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": weight ", w_in.Describe(), " must have the dtype of hidden ", h.Describe(),
        " (or be f32 with 16-bit hidden states)"));
  }
  LYRA_RETURN_IF_ERROR(CheckTargets1d(kOp, targets, h.size(0), h));
  LYRA_ASSIGN_OR_RETURN(Device device, internal::CommonDevice(kOp, {&h, &w_in, &targets}));
  if (chunk_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": chunk_tokens must be positive, got ", chunk_tokens));
  }
  const int64_t n = h.size(0), d_h = h.size(1), vocab = w_in.size(0);
  const DType compute = h.dtype();
  LYRA_ASSIGN_OR_RETURN(const int64_t kept, CheckTargetValues(kOp, targets, vocab, ignore_index));
  const double grad_scale = GradScale(reduction, kept);

  const bool grad_mode = autograd::GradModeEnabled();
  const bool need_dh = grad_mode && hidden.requires_grad();
  const bool need_dw = grad_mode && weight.requires_grad();
  const bool backward = need_dh || need_dw;
  const int64_t chunk = std::max<int64_t>(std::min(chunk_tokens, n), 1);
  const int64_t num_chunks = (n + chunk - 1) / chunk;

  Tensor w = w_in;
  if (master_weight) {
    LYRA_ASSIGN_OR_RETURN(w, w_in.To(compute));
  }
  LYRA_ASSIGN_OR_RETURN(const Tensor w_t, w.Transpose(0, 1));
  LYRA_ASSIGN_OR_RETURN(Tensor loss_rows, Tensor::Empty({n}, StatsDType(compute), device));
  LYRA_ASSIGN_OR_RETURN(Tensor buffer, Tensor::Empty({chunk, vocab}, compute, device));
  Tensor dh, dw, dw_partial, dw_staging;
  if (need_dh) {
    LYRA_ASSIGN_OR_RETURN(dh, Tensor::Empty({n, d_h}, compute, device));
  }
  // dW: summed by the matmul itself (beta = 1) in f32 / f64, or when there is one chunk; with a
  // 16-bit compute dtype and several chunks each chunk's product is added into an f32 sum.
  const bool dw_in_matmul = !IsHalf(compute) || num_chunks == 1;
  if (need_dw) {
    if (dw_in_matmul) {
      LYRA_ASSIGN_OR_RETURN(dw, Tensor::Empty({vocab, d_h}, compute, device));
    } else {
      LYRA_ASSIGN_OR_RETURN(dw, Tensor::Empty({vocab, d_h}, DType::kF32, device));
      LYRA_ASSIGN_OR_RETURN(dw_partial, Tensor::Empty({vocab, d_h}, compute, device));
      if (num_chunks > 1) {
        LYRA_ASSIGN_OR_RETURN(dw_staging, Tensor::Empty({vocab, d_h}, DType::kF32, device));
      }
    }
  }

  for (int64_t index = 0; index < num_chunks; ++index) {
    const int64_t start = index * chunk;
    const int64_t rows = std::min(chunk, n - start);
    LYRA_ASSIGN_OR_RETURN(const Tensor h_c, h.Narrow(0, start, rows));
    LYRA_ASSIGN_OR_RETURN(const Tensor logits_c, buffer.Narrow(0, 0, rows));
    LYRA_ASSIGN_OR_RETURN(const Tensor targets_c, targets.Narrow(0, start, rows));
    LYRA_ASSIGN_OR_RETURN(const Tensor loss_c, loss_rows.Narrow(0, start, rows));
    LYRA_RETURN_IF_ERROR(MatmulInto(h_c, w_t, logits_c));
    RowOperands t;
    t.logits = &logits_c;
    t.targets = &targets_c;
    t.loss = &loss_c;
    t.dlogits = backward ? &logits_c : nullptr;  // the gradient replaces the chunk's logits
    LYRA_RETURN_IF_ERROR(RunRows(
        backward ? cuda::CrossEntropyOp::kForwardBackward : cuda::CrossEntropyOp::kForward, t,
        ignore_index, grad_scale));
    if (need_dh) {
      LYRA_ASSIGN_OR_RETURN(const Tensor dh_c, dh.Narrow(0, start, rows));
      LYRA_RETURN_IF_ERROR(MatmulInto(logits_c, w, dh_c));
    }
    if (need_dw) {
      LYRA_ASSIGN_OR_RETURN(const Tensor dlogits_t, logits_c.Transpose(0, 1));
      if (dw_in_matmul) {
        LYRA_RETURN_IF_ERROR(MatmulInto(dlogits_t, h_c, dw, 1, index == 0 ? 0 : 1));
      } else {
        LYRA_RETURN_IF_ERROR(MatmulInto(dlogits_t, h_c, dw_partial));
        if (index == 0) {
          LYRA_RETURN_IF_ERROR(UnaryInto(cuda::UnaryOp::kIdentity, dw_partial, dw));
        } else {
          LYRA_RETURN_IF_ERROR(UnaryInto(cuda::UnaryOp::kIdentity, dw_partial, dw_staging));
          LYRA_RETURN_IF_ERROR(BinaryInto(cuda::BinaryOp::kAdd, dw, dw_staging, dw));
        }
      }
    }
  }
  LYRA_ASSIGN_OR_RETURN(Tensor loss, ReducedLoss(loss_rows, grad_scale, compute));
  if (!backward) return Variable(loss, false);
  if (need_dw && dw.dtype() != w_in.dtype()) {
    LYRA_ASSIGN_OR_RETURN(dw, dw.To(w_in.dtype()));
  }
  // Free the chunk buffer and the dW scratch before the graph holds the gradients.
  buffer = Tensor();
  dw_partial = Tensor();
  dw_staging = Tensor();
  return autograd::RecordUnaryResult(
      std::string(kOp), {hidden, weight}, loss,
      [dh, dw](const std::vector<Tensor>& g) -> absl::StatusOr<std::vector<Tensor>> {
        std::vector<Tensor> grads(2);
        if (dh.defined()) {
          LYRA_ASSIGN_OR_RETURN(grads[0], ScaleByGrad(dh, g[0]));
        }
        if (dw.defined()) {
          LYRA_ASSIGN_OR_RETURN(grads[1], ScaleByGrad(dw, g[0]));
        }
        return grads;
      });
}

}  // namespace lyra::nn
