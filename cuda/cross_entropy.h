// Fused cross-entropy over rows of logits: forward, backward, and both in one pass.
//
// Rows r in [0, N) of logits x (N, V) with integer targets t (N):
//   lse_r  = log sum_j exp(x_rj)                         (online max / log-sum-exp, one read)
//   loss_r = lse_r - x_{r, t_r}                          (0 where t_r == ignore_index)
//   dx_rj  = s * (exp(x_rj - lse_r) - [j == t_r])        (0 on every ignored row)
// with s = g * grad_scale, g the upstream gradient of the reduced loss (read from memory, so no
// host sync) and grad_scale = 1 / (number of kept rows) for a mean, 1 for a sum.
//
//   kForward:          reads x, t; writes loss (and lse if given).
//   kBackward:         reads x, t, lse, g; writes dx. dx must not overlap x.
//   kForwardBackward:  reads x, t; writes loss (and lse if given), then dx with s = grad_scale
//                      (g taken as 1). dx may be x itself: the row is overwritten in place with
//                      its gradient (LinearCrossEntropy's chunk buffer).
//
// Layout: x and dx have unit column stride and their own 64-bit row stride (elements); t has its
// own stride; loss and lse are contiguous (N). x, dx and g share `dtype` (f32, f16, bf16, f64);
// t is i32 or i64.
//
// Precision: every statistic and the gradient are computed in f32 for f16/bf16/f32 logits (f64
// for f64); loss and lse are stored in that compute type (float, or double for f64), dx in the
// logits' dtype. No (N, V) buffer of the compute type exists anywhere. Outputs are written (=).
//
// Targets: the row kernels require targets already validated by CrossEntropyCheckTargets*
// (each in [0, V) or equal to ignore_index). Should an unchecked bad target reach the CUDA
// kernel anyway, it never reads outside the row: that row's loss becomes NaN.
#ifndef LYRA_CUDA_CROSS_ENTROPY_H_
#define LYRA_CUDA_CROSS_ENTROPY_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "base/dtype.h"

namespace lyra::cuda {

enum class CrossEntropyOp { kForward, kBackward, kForwardBackward };

absl::string_view CrossEntropyOpName(CrossEntropyOp op);

struct CrossEntropyParams {
  CrossEntropyOp op = CrossEntropyOp::kForward;
  DType dtype = DType::kF32;         // of logits, dlogits and grad_loss
  DType target_dtype = DType::kI64;  // i32 or i64
  int64_t rows = 0;                  // N
  int64_t vocab = 0;                 // V

  const void* logits = nullptr;  // (N, V), column stride 1
  int64_t logits_row_stride = 0;
  const void* targets = nullptr;  // (N)
  int64_t targets_stride = 1;
  int64_t ignore_index = -100;

  void* loss = nullptr;  // (N) compute type; forward ops
  void* lse = nullptr;   // (N) compute type; written by forward ops if non-null, read by kBackward

  const void* grad_loss = nullptr;  // () dtype: g, kBackward only (device memory on CUDA)
  double grad_scale = 1;            // 1 / kept rows (mean) or 1 (sum); backward ops
  void* dlogits = nullptr;          // (N, V), column stride 1; backward ops
  int64_t dlogits_row_stride = 0;
};

// OK if the row kernels handle `p`: InvalidArgument for a non-float dtype, a target dtype other
// than i32/i64, a negative size or a missing pointer; Unimplemented for N >= 2^31 rows (one
// block per row).
absl::Status CrossEntropySupported(const CrossEntropyParams& p);

absl::Status CrossEntropyReference(const CrossEntropyParams& p);
absl::Status CrossEntropyCuda(const CrossEntropyParams& p, cudaStream_t stream);

// Validation of the targets, and the count that a mean divides by.
struct CrossEntropyTargetsParams {
  absl::string_view op = "CrossEntropy";  // named in errors
  DType target_dtype = DType::kI64;
  int64_t rows = 0;  // N
  const void* targets = nullptr;  // (N)
  int64_t targets_stride = 1;
  int64_t vocab = 0;  // V
  int64_t ignore_index = -100;
  int64_t* kept = nullptr;  // host memory: set to the number of rows whose target is kept
};

// InvalidArgument for a target dtype other than i32/i64, a negative size or a missing pointer.
absl::Status CrossEntropyTargetsSupported(const CrossEntropyTargetsParams& p);

// Sets *p.kept, or returns InvalidArgument naming the first (lowest) row whose target is
// neither ignore_index nor in [0, V), and its value. The CUDA version runs one kernel that
// counts the kept rows and finds the first bad one into a device word pair, copies the pair back
// and synchronizes the stream: one host sync per call (a second copy fetches the bad value on
// the error path only).
absl::Status CrossEntropyCheckTargetsReference(const CrossEntropyTargetsParams& p);
absl::Status CrossEntropyCheckTargetsCuda(const CrossEntropyTargetsParams& p,
                                          cudaStream_t stream);

// The InvalidArgument both checks return for a bad target `value` at `row`.
absl::Status CrossEntropyBadTarget(absl::string_view op, int64_t row, int64_t value,
                                   int64_t vocab, int64_t ignore_index);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_CROSS_ENTROPY_H_
