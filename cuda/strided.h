// Strided iteration shared by the elementwise, cast and copy kernels (CPU and CUDA).
//
// An operand is a data pointer, a dtype and one stride per dimension (in elements, 0 for a
// broadcast dimension). All operands of one op share an iteration shape. CoalesceDims merges
// dimensions that are contiguous for every operand, so a contiguous tensor becomes one
// dimension and a row-broadcast [M, N] + [N] stays two.
#ifndef LYRA_CUDA_STRIDED_H_
#define LYRA_CUDA_STRIDED_H_

#include <cstdint>

#include "base/dtype.h"

namespace lyra::cuda {

inline constexpr int kMaxDims = 8;

struct IterShape {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= sizes[i];
    return n;
  }
};

struct StridedOperand {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t strides[kMaxDims] = {};
};

// Drops size-1 dimensions and merges dimension d into d+1 wherever, for every operand,
// stride[d] == stride[d+1] * size[d+1]. Operands keep pointing at the same elements.
inline void CoalesceDims(IterShape& shape, StridedOperand* operands, int num_operands) {
  int out = 0;
  for (int d = 0; d < shape.ndim; ++d) {
    if (shape.sizes[d] == 1) continue;
    shape.sizes[out] = shape.sizes[d];
    for (int k = 0; k < num_operands; ++k) operands[k].strides[out] = operands[k].strides[d];
    ++out;
  }
  shape.ndim = out;
  if (out <= 1) return;
  int merged = shape.ndim - 1;  // walk backwards, merging into the innermost kept dim
  int64_t sizes[kMaxDims];
  int64_t strides[8][kMaxDims];
  int n = 0;
  sizes[0] = shape.sizes[merged];
  for (int k = 0; k < num_operands; ++k) strides[k][0] = operands[k].strides[merged];
  for (int d = merged - 1; d >= 0; --d) {
    bool can_merge = true;
    for (int k = 0; k < num_operands; ++k) {
      if (operands[k].strides[d] != strides[k][n] * sizes[n]) can_merge = false;
    }
    if (can_merge) {
      sizes[n] *= shape.sizes[d];
    } else {
      ++n;
      sizes[n] = shape.sizes[d];
      for (int k = 0; k < num_operands; ++k) strides[k][n] = operands[k].strides[d];
    }
  }
  shape.ndim = n + 1;
  for (int d = 0; d <= n; ++d) {
    shape.sizes[d] = sizes[n - d];
    for (int k = 0; k < num_operands; ++k) operands[k].strides[d] = strides[k][n - d];
  }
}

// True if the operand walks the shape in row-major order with no gaps.
inline bool IsContiguous(const IterShape& shape, const StridedOperand& operand) {
  int64_t expected = 1;
  for (int d = shape.ndim - 1; d >= 0; --d) {
    if (shape.sizes[d] != 1 && operand.strides[d] != expected) return false;
    expected *= shape.sizes[d];
  }
  return true;
}

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_STRIDED_H_
