// The clip coefficient of a norm, shared by the CPU reference and the kernel (cuda/grad_norm.h).
#ifndef LYRA_CUDA_GRAD_NORM_MATH_H_
#define LYRA_CUDA_GRAD_NORM_MATH_H_

#include <math.h>

#include "base/half.h"
#include "cuda/grad_norm.h"

namespace lyra::cuda {

LYRA_HOST_DEVICE inline float ClipCoefficient(float norm, double max_norm) {
  if (!isfinite(norm)) return 1.0f;
  const float coef = (1.0f / (norm + kClipNormEpsilon)) * static_cast<float>(max_norm);
  return coef < 1.0f ? coef : 1.0f;
}

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_GRAD_NORM_MATH_H_
