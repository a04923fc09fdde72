// Loss-scale kernels for FP16 training (torch.cuda.amp.GradScaler semantics): the fused
// unscale-and-check over every gradient, and the dynamic scale update.
//
// UnscaleAndCheck, over a table of K gradient tensors g_k (any mix of f32, f16, bf16, f64):
//
//   factor = float(1 / double(*scale))                  // exact for a power-of-two scale
//   for every element x of every g_k:
//     if x is ±inf or NaN:  *found_inf = 1               // the value *before* unscaling
//     x = round_to_dtype(x * factor)                     // in place (=); skipped when factor == 1
//
// Shapes and layouts: each g_k is a dense run of numel_k elements (any order: the op is
// elementwise) at `data`; scale and found_inf are single f32 values on the same device. found_inf
// is only ever set to 1, never cleared: the caller zeroes it before the step, so several calls
// (e.g. per parameter group) OR into one flag. Gradients are unscaled even when a non-finite
// value is found, as torch does; the optimizer step is what gets skipped.
//
// Precision: the product is computed in f32 for f32/f16/bf16 and in f64 for f64 (factor widened),
// then rounded to nearest even. With a power-of-two scale the result is exact unless it falls
// into the dtype's subnormal range. The CPU reference and the CUDA kernel do the same operations,
// so their results are bit-identical for any scale.
//
// CUDA: ONE launch for all K tensors. The host builds a table of (pointer, numel, dtype, first
// chunk) entries, uploads it to a small device buffer, and block b processes chunk b (kUnscale
// ChunkElements elements) of the tensor whose chunk range holds b (binary search in the table),
// with 16-byte vector loads when the tensor's pointer is 16-byte aligned. The scale is read from
// device memory, so a changing scale needs no new launch parameters.
//
// UpdateScale (torch's _amp_update_scale_, in this order):
//
//   if *found_inf != 0:  *scale = float(*scale * backoff_factor); *growth_tracker = 0;
//                        *num_skipped += 1
//   else if *growth_tracker + 1 == growth_interval:
//                        grown = float(*scale * growth_factor); if grown is finite: *scale = grown;
//                        *growth_tracker = 0
//   else:                *growth_tracker += 1
//
// with the products in f64. All four values are single elements on one device (written =); the
// CUDA version is one thread, so a whole training step can stay on the device.
#ifndef LYRA_CUDA_LOSS_SCALE_H_
#define LYRA_CUDA_LOSS_SCALE_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/half.h"

namespace lyra::cuda {

// Elements per chunk of the fused unscale: one CUDA block's share of a tensor.
inline constexpr int64_t kUnscaleChunkElements = 16384;

// One gradient of the fused unscale.
struct UnscaleTensor {
  void* data = nullptr;  // (numel,) dense, updated in place
  int64_t numel = 0;
  DType dtype = DType::kF32;
};

struct UnscaleParams {
  const UnscaleTensor* tensors = nullptr;  // (num_tensors,) host array
  int64_t num_tensors = 0;
  const float* scale = nullptr;  // () f32, on the tensors' device
  float* found_inf = nullptr;    // () f32, on the tensors' device: set to 1, never cleared
};

struct UpdateScaleParams {
  float* scale = nullptr;             // () f32
  int64_t* growth_tracker = nullptr;  // () i64: clean steps since the last change of scale
  int64_t* num_skipped = nullptr;     // () i64: steps skipped for a non-finite gradient
  const float* found_inf = nullptr;   // () f32: nonzero means "this step overflowed"
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

// Finiteness by the exponent bits (no libm, identical on host and device, immune to fast math).
LYRA_HOST_DEVICE inline bool IsFiniteValue(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  return (bits & 0x7f800000u) != 0x7f800000u;
}
LYRA_HOST_DEVICE inline bool IsFiniteValue(double x) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof(bits));
  return (bits & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}

// The factor gradients are multiplied by: 1 / scale, computed in f64 and rounded to f32.
LYRA_HOST_DEVICE inline float InverseScale(float scale) {
  return static_cast<float>(1.0 / static_cast<double>(scale));
}

// One application of the update rule above to values held in registers.
LYRA_HOST_DEVICE inline void UpdateScaleStep(float found_inf, double growth_factor,
                                             double backoff_factor, int64_t growth_interval,
                                             float& scale, int64_t& growth_tracker,
                                             int64_t& num_skipped) {
  if (found_inf != 0.0f) {
    scale = static_cast<float>(static_cast<double>(scale) * backoff_factor);
    growth_tracker = 0;
    num_skipped += 1;
    return;
  }
  const int64_t successful = growth_tracker + 1;
  if (successful == growth_interval) {
    const float grown = static_cast<float>(static_cast<double>(scale) * growth_factor);
    if (IsFiniteValue(grown)) scale = grown;
    growth_tracker = 0;
  } else {
    growth_tracker = successful;
  }
}

// The one predicate of the fused unscale: float dtypes, non-negative sizes, pointers present,
// and a chunk count that fits a CUDA grid.
inline absl::Status UnscaleSupported(const UnscaleParams& p) {
  if (p.num_tensors < 0 || p.num_tensors > std::numeric_limits<int32_t>::max() ||
      (p.num_tensors > 0 && p.tensors == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat("UnscaleAndCheck: bad tensor table (", p.num_tensors, " entries)"));
  }
  if (p.scale == nullptr || p.found_inf == nullptr) {
    return absl::InvalidArgumentError("UnscaleAndCheck: scale and found_inf must be set");
  }
  int64_t chunks = 0;
  for (int64_t k = 0; k < p.num_tensors; ++k) {
    const UnscaleTensor& t = p.tensors[k];
    if (!IsFloating(t.dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("UnscaleAndCheck: tensor ", k, " has dtype ",
                                                     DTypeName(t.dtype),
                                                     "; gradients must be floating point"));
    }
    if (t.numel < 0 || (t.numel > 0 && t.data == nullptr)) {
      return absl::InvalidArgumentError(absl::StrCat("UnscaleAndCheck: tensor ", k, " has ",
                                                     t.numel, " elements but no data"));
    }
    chunks += (t.numel + kUnscaleChunkElements - 1) / kUnscaleChunkElements;
  }
  if (chunks > std::numeric_limits<int32_t>::max()) {
    return absl::UnimplementedError(
        absl::StrCat("UnscaleAndCheck: ", chunks, " chunks of ", kUnscaleChunkElements,
                     " elements exceed one launch's grid"));
  }
  return absl::OkStatus();
}

// The one predicate of the scale update: pointers present, growth_interval >= 1, factors finite
// and positive.
inline absl::Status UpdateScaleSupported(const UpdateScaleParams& p) {
  if (p.scale == nullptr || p.growth_tracker == nullptr || p.num_skipped == nullptr ||
      p.found_inf == nullptr) {
    return absl::InvalidArgumentError("UpdateScale: every state pointer must be set");
  }
  if (p.growth_interval < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("UpdateScale: growth_interval must be >= 1, got ", p.growth_interval));
  }
  if (!(p.growth_factor > 0) || !IsFiniteValue(p.growth_factor) || !(p.backoff_factor > 0) ||
      !IsFiniteValue(p.backoff_factor)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "UpdateScale: growth_factor ", p.growth_factor, " and backoff_factor ", p.backoff_factor,
        " must be finite and positive"));
  }
  return absl::OkStatus();
}

absl::Status UnscaleAndCheckReference(const UnscaleParams& params);
absl::Status UnscaleAndCheckCuda(const UnscaleParams& params, cudaStream_t stream);

absl::Status UpdateScaleReference(const UpdateScaleParams& params);
absl::Status UpdateScaleCuda(const UpdateScaleParams& params, cudaStream_t stream);

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_LOSS_SCALE_H_
