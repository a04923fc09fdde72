// CPU reference of the loss-scale kernels (math and layouts in cuda/loss_scale.h): one loop per
// gradient tensor, the product in the compute type (f32, or f64 for f64), rounded to the dtype.
#include <cstdint>

#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/loss_scale.h"

namespace lyra::cuda {
namespace {

// Unscales one tensor in place; true if it held a non-finite value.
template <typename T>
bool UnscaleTensorReference(T* data, int64_t numel, float factor) {  // data: (numel,)
  using C = ComputeType<T>;
  const C f = static_cast<C>(factor);
  const bool write = factor != 1.0f;
  bool found = false;
  for (int64_t i = 0; i < numel; ++i) {
    const C x = Load(data[i]);
    if (!IsFiniteValue(x)) found = true;
    if (write) data[i] = Store<T>(x * f);
  }
  return found;
}

}  // namespace

absl::Status UnscaleAndCheckReference(const UnscaleParams& p) {
  LYRA_RETURN_IF_ERROR(UnscaleSupported(p));
  const float factor = InverseScale(*p.scale);
  bool found = false;
  for (int64_t k = 0; k < p.num_tensors; ++k) {
    const UnscaleTensor& t = p.tensors[k];
    LYRA_RETURN_IF_ERROR(
        DispatchFloat(t.dtype, "UnscaleAndCheck", [&]<typename T>() -> absl::Status {
          if (UnscaleTensorReference(static_cast<T*>(t.data), t.numel, factor)) found = true;
          return absl::OkStatus();
        }));
  }
  if (found) *p.found_inf = 1.0f;
  return absl::OkStatus();
}

absl::Status UpdateScaleReference(const UpdateScaleParams& p) {
  LYRA_RETURN_IF_ERROR(UpdateScaleSupported(p));
  UpdateScaleStep(*p.found_inf, p.growth_factor, p.backoff_factor, p.growth_interval, *p.scale,
                  *p.growth_tracker, *p.num_skipped);
  return absl::OkStatus();
}

}  // namespace lyra::cuda
