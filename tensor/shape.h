// Shapes and strides (in elements), and the arithmetic on them shared by every op.
#ifndef LYRA_TENSOR_SHAPE_H_
#define LYRA_TENSOR_SHAPE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lyra {

using Shape = std::vector<int64_t>;

// "[2, 3, 4]"
std::string ShapeToString(const Shape& shape);
int64_t NumElements(const Shape& shape);
// Row-major strides of a contiguous tensor of `shape`.
Shape ContiguousStrides(const Shape& shape);

// Maps dim in [-ndim, ndim) to [0, ndim); InvalidArgument naming `op` otherwise.
absl::StatusOr<int> NormalizeDim(int64_t dim, int ndim, absl::string_view op);

// NumPy broadcasting of two shapes; InvalidArgument naming `op` and both shapes if they clash.
absl::StatusOr<Shape> BroadcastShapes(const Shape& a, const Shape& b, absl::string_view op);

}  // namespace lyra

#endif  // LYRA_TENSOR_SHAPE_H_
