// Fused cross-entropy losses, each one autograd node with a hand-written backward.
//
//   LYRA_ASSIGN_OR_RETURN(Variable loss, nn::CrossEntropy(logits, targets));        // [N, V]
//   LYRA_ASSIGN_OR_RETURN(Variable loss, nn::LinearCrossEntropy(hidden, lm_head, targets));
//
// CrossEntropy(logits [N, V], targets [N]) = reduce_i (lse_i - logits[i, t_i]) over the rows
// whose target is not ignore_index, where lse_i = log sum_j exp(logits[i, j]). kMean divides by
// the number of kept rows (every row ignored: NaN, as torch), kSum does not (every row ignored:
// 0). The forward reads the logits once in their own dtype (f32 statistics for f16/bf16/f32, f64
// for f64) and saves only lse [N] in the compute type; the backward recomputes the softmax from
// the logits and lse: dlogits = g * (softmax - onehot(t)) / count, in the logits' dtype, zero on
// ignored rows. No [N, V] buffer of f32 is made by either pass; the gradient [N, V] in the
// logits' dtype is the only full-size allocation (plus, for logits whose last dim is strided,
// e.g. a transposed view, one row-contiguous copy in their own dtype, kept for the backward).
//
// LinearCrossEntropy(hidden [N, H], weight [V, H], targets [N]) = CrossEntropy(hidden Wᵀ,
// targets) without ever holding the [N, V] logits: for each chunk of `chunk_tokens` rows it
// computes logits_chunk = hidden_chunk Wᵀ (one matmul in the compute dtype), the chunk's losses
// AND its gradient (written in place over logits_chunk by one fused kernel), then dhidden_chunk
// = dlogits_chunk W and dW += dlogits_chunkᵀ hidden_chunk. The loss is a scalar, so the backward
// only scales the saved dhidden and dW by the upstream gradient. Gradients are computed only for
// the inputs that require grad (none under NoGradGuard: then only the forward runs).
//
// Memory of LinearCrossEntropy, with c = min(chunk_tokens, N) and the compute dtype's size s:
//   c * V * s                 the chunk's logits / gradient (the O(N V) logits never exist)
//   N * H * s                 dhidden (if hidden requires grad)
//   V * H * (s or 4)          dW, plus a V * H * s partial and a V * H f32 staging copy when the
//                             compute dtype is 16-bit (f32 accumulation), and the V * H * s
//                             compute copy of an f32 weight used with 16-bit hidden states
//   N * 4 (or 8)              per-row losses
//
// Targets are i32 or i64 on the logits' device. A target that is neither ignore_index nor in
// [0, V) is InvalidArgument naming its row and value. On CUDA the check is one kernel whose
// result (first bad row, number of kept rows) is copied back: one host sync per call, before
// any other work.
#ifndef LYRA_NN_CROSS_ENTROPY_H_
#define LYRA_NN_CROSS_ENTROPY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::nn {

inline constexpr int64_t kDefaultIgnoreIndex = -100;
inline constexpr int64_t kDefaultChunkTokens = 4096;

enum class Reduction { kMean, kSum };

// --- Tensor-level passes (no autograd); the autograd ops below are made of these ----------

struct CrossEntropyForwardResult {
  Tensor loss;             // 0-d, the logits' dtype
  Tensor lse;              // [N] f32 (f64 for f64 logits); 0 on ignored rows
  int64_t kept = 0;        // rows whose target is not ignore_index
  double grad_scale = 1;   // d loss / d loss_i on a kept row: 1 / kept (kMean) or 1 (kSum)
  Tensor logits;           // the logits as read (a row-contiguous copy if the input was not)
};

// InvalidArgument for logits not [N, V] of a float dtype, targets not integer [N], different
// devices, or a bad target.
absl::StatusOr<CrossEntropyForwardResult> CrossEntropyForward(
    const Tensor& logits, const Tensor& targets, int64_t ignore_index = kDefaultIgnoreIndex,
    Reduction reduction = Reduction::kMean);

// dlogits [N, V] in the logits' dtype from the forward's logits, lse and grad_scale and the
// upstream gradient g (a one-element tensor; read on the device, no sync).
absl::StatusOr<Tensor> CrossEntropyBackward(const Tensor& logits, const Tensor& targets,
                                            const Tensor& lse, const Tensor& grad_loss,
                                            double grad_scale,
                                            int64_t ignore_index = kDefaultIgnoreIndex);

// --- Differentiable losses (one autograd node each) ---------------------------------------
// Call them qualified (nn::CrossEntropy): an unqualified call with a Variable also finds the
// reference composition autograd::CrossEntropy through argument-dependent lookup.

// The loss is a 0-d Variable of the logits' dtype.
absl::StatusOr<autograd::Variable> CrossEntropy(const autograd::Variable& logits,
                                                const Tensor& targets,
                                                int64_t ignore_index = kDefaultIgnoreIndex,
                                                Reduction reduction = Reduction::kMean);

// hidden [N, H] in the compute dtype (f32, f16, bf16, f64); weight [V, H] of the same dtype, or
// f32 (an FP32 master weight, cast to the compute dtype once per call; its gradient arrives in
// f32). chunk_tokens > 0 need not divide N. The loss is a 0-d Variable of the compute dtype.
// Precision: the matmuls accumulate in f32 (f64 for f64); for a 16-bit compute dtype dW is
// summed over chunks in f32 and rounded once to the weight's dtype at the end.
absl::StatusOr<autograd::Variable> LinearCrossEntropy(
    const autograd::Variable& hidden, const autograd::Variable& weight, const Tensor& targets,
    int64_t ignore_index = kDefaultIgnoreIndex, Reduction reduction = Reduction::kMean,
    int64_t chunk_tokens = kDefaultChunkTokens);

}  // namespace lyra::nn

#endif  // LYRA_NN_CROSS_ENTROPY_H_
