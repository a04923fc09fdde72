// Differentiable ops on Variables. Each mirrors the tensor op of the same name (tensor/*.h: same
// argument conventions, dtypes, broadcasting and errors) and records its backward, written next
// to its forward in autograd/ops_*.cc. Gradients have their input's shape, dtype and device;
// broadcast inputs receive the gradient summed back to their shape.
//
// Not differentiable with respect to: index tensors, conditions, integer inputs (they get no
// gradient). Argmax and comparisons have no Variable form: use the tensor ops on data().
#ifndef LYRA_AUTOGRAD_OPS_H_
#define LYRA_AUTOGRAD_OPS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "autograd/variable.h"
#include "tensor/tensor.h"

namespace lyra::autograd {

// --- Elementwise (ops_elementwise.cc) -----------------------------------------------------
absl::StatusOr<Variable> Neg(const Variable& x);
absl::StatusOr<Variable> Abs(const Variable& x);  // d|x|/dx = sign(x), 0 at 0
absl::StatusOr<Variable> Exp(const Variable& x);
absl::StatusOr<Variable> Log(const Variable& x);
absl::StatusOr<Variable> Sqrt(const Variable& x);
absl::StatusOr<Variable> Rsqrt(const Variable& x);
absl::StatusOr<Variable> Tanh(const Variable& x);
absl::StatusOr<Variable> Sigmoid(const Variable& x);
absl::StatusOr<Variable> Silu(const Variable& x);
absl::StatusOr<Variable> Softplus(const Variable& x);
absl::StatusOr<Variable> Gelu(const Variable& x);
absl::StatusOr<Variable> GeluTanh(const Variable& x);
absl::StatusOr<Variable> Relu(const Variable& x);
absl::StatusOr<Variable> Square(const Variable& x);
absl::StatusOr<Variable> Reciprocal(const Variable& x);
absl::StatusOr<Variable> AddScalar(const Variable& x, double s);
absl::StatusOr<Variable> MulScalar(const Variable& x, double s);
absl::StatusOr<Variable> PowScalar(const Variable& x, double exponent);
absl::StatusOr<Variable> RsubScalar(const Variable& x, double s);  // s - x
// Gradient 1 inside [lo, hi] (boundaries included, as torch.clamp), 0 outside.
absl::StatusOr<Variable> Clamp(const Variable& x, double lo, double hi);

absl::StatusOr<Variable> Add(const Variable& a, const Variable& b, double alpha = 1);
absl::StatusOr<Variable> Sub(const Variable& a, const Variable& b, double alpha = 1);
absl::StatusOr<Variable> Mul(const Variable& a, const Variable& b);
absl::StatusOr<Variable> Div(const Variable& a, const Variable& b);
absl::StatusOr<Variable> Pow(const Variable& a, const Variable& b);
// The gradient goes to the larger (smaller) input; on ties it is split evenly, as torch does.
absl::StatusOr<Variable> Maximum(const Variable& a, const Variable& b);
absl::StatusOr<Variable> Minimum(const Variable& a, const Variable& b);
// cond ? a : b (cond is a bool tensor and gets no gradient).
absl::StatusOr<Variable> Where(const Tensor& cond, const Variable& a, const Variable& b);
// A dtype conversion; the gradient is converted back.
absl::StatusOr<Variable> Cast(const Variable& x, DType dtype);

// --- Shapes and views (ops_shape.cc) ------------------------------------------------------
absl::StatusOr<Variable> Reshape(const Variable& x, const Shape& shape);
absl::StatusOr<Variable> View(const Variable& x, const Shape& shape);
absl::StatusOr<Variable> Transpose(const Variable& x, int d0, int d1);
absl::StatusOr<Variable> Permute(const Variable& x, const std::vector<int>& dims);
absl::StatusOr<Variable> Narrow(const Variable& x, int dim, int64_t start, int64_t length);
absl::StatusOr<Variable> Slice(const Variable& x, int dim, int64_t start, int64_t end,
                               int64_t step = 1);
absl::StatusOr<Variable> Select(const Variable& x, int dim, int64_t index);
absl::StatusOr<Variable> Expand(const Variable& x, const Shape& shape);
absl::StatusOr<Variable> Squeeze(const Variable& x, int dim);
absl::StatusOr<Variable> Unsqueeze(const Variable& x, int dim);
absl::StatusOr<Variable> Contiguous(const Variable& x);
absl::StatusOr<Variable> Concat(const std::vector<Variable>& xs, int dim);
absl::StatusOr<std::vector<Variable>> Split(const Variable& x, const std::vector<int64_t>& sizes,
                                            int dim);

// --- Reductions, softmax, cumsum (ops_reduce.cc) ------------------------------------------
absl::StatusOr<Variable> Sum(const Variable& x, const std::vector<int>& dims = {},
                             bool keepdim = false);
absl::StatusOr<Variable> Mean(const Variable& x, const std::vector<int>& dims = {},
                              bool keepdim = false);
// The gradient is split evenly among tied maxima (torch.amax).
absl::StatusOr<Variable> Max(const Variable& x, const std::vector<int>& dims = {},
                             bool keepdim = false);
absl::StatusOr<Variable> Softmax(const Variable& x, int dim);
absl::StatusOr<Variable> LogSoftmax(const Variable& x, int dim);
absl::StatusOr<Variable> Cumsum(const Variable& x, int dim);

// --- Matmul (ops_matmul.cc) ---------------------------------------------------------------
// torch.matmul for rank >= 2 with broadcast batch dims.
absl::StatusOr<Variable> Matmul(const Variable& a, const Variable& b);

// --- Indexing (ops_index.cc) --------------------------------------------------------------
absl::StatusOr<Variable> IndexSelect(const Variable& x, int dim, const Tensor& index);
absl::StatusOr<Variable> Gather(const Variable& x, int dim, const Tensor& index);
// weight [V, D], ids (i32/i64) of any shape -> [ids..., D]; rows at padding_idx get no gradient.
absl::StatusOr<Variable> Embedding(const Variable& weight, const Tensor& ids,
                                   int64_t padding_idx = -1);

// --- Losses composed of the ops above (ops_loss.cc) ---------------------------------------
// Mean cross-entropy of logits [N, C] against targets [N] (i32/i64); targets equal to
// ignore_index are left out of the mean. A reference composition (log_softmax + gather); the
// fused, vocabulary-chunked kernel belongs to nn/.
absl::StatusOr<Variable> CrossEntropy(const Variable& logits, const Tensor& targets,
                                      int64_t ignore_index = -100);

}  // namespace lyra::autograd

#endif  // LYRA_AUTOGRAD_OPS_H_
