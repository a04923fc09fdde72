// The arithmetic of one AdamW element update, shared by AdamWReference (host) and the CUDA
// kernel (cuda/adamw.cu, compiled with --fmad=false) so both round identically. See cuda/adamw.h
// for the math and why each scalar is rounded to f32 once.
#ifndef LYRA_CUDA_ADAMW_MATH_H_
#define LYRA_CUDA_ADAMW_MATH_H_

#include <math.h>

#include <cstdint>

#include "base/half.h"
#include "cuda/adamw.h"

namespace lyra::cuda {

// The f32 scalars of one tensor's update at step t (t >= 1), from f64 hyper-parameters.
struct AdamWScalars {
  float decay;                  // 1 - lr * wd
  float lerp_weight;            // 1 - beta1
  float beta2;
  float one_minus_beta2;        // 1 - beta2
  float bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  float eps;
  float neg_step_size;          // -lr / (1 - beta1^t)
};

LYRA_HOST_DEVICE inline AdamWScalars MakeAdamWScalars(const AdamWHyperParams& h, int64_t t) {
  const double step = static_cast<double>(t);
  const double bias_correction1 = 1.0 - pow(h.beta1, step);
  const double bias_correction2 = 1.0 - pow(h.beta2, step);
  AdamWScalars s;
  s.decay = static_cast<float>(1.0 - h.lr * h.weight_decay);
  s.lerp_weight = static_cast<float>(1.0 - h.beta1);
  s.beta2 = static_cast<float>(h.beta2);
  s.one_minus_beta2 = static_cast<float>(1.0 - h.beta2);
  s.bias_correction2_sqrt = static_cast<float>(sqrt(bias_correction2));
  s.eps = static_cast<float>(h.eps);
  s.neg_step_size = static_cast<float>(-(h.lr / bias_correction1));
  return s;
}

// torch.lerp: start + w (end - start) for |w| < 0.5, else end - (end - start) (1 - w).
LYRA_HOST_DEVICE inline float TorchLerp(float start, float end, float w) {
  return fabsf(w) < 0.5f ? start + w * (end - start) : end - (end - start) * (1.0f - w);
}

// One element: p, m, v updated in place from gradient g.
LYRA_HOST_DEVICE inline void AdamWElement(const AdamWScalars& s, float g, float& p, float& m,
                                          float& v) {
  p = p * s.decay;
  m = TorchLerp(m, g, s.lerp_weight);
  v = v * s.beta2;
  v = v + s.one_minus_beta2 * (g * g);
  const float denom = sqrtf(v) / s.bias_correction2_sqrt + s.eps;
  p = p + s.neg_step_size * (m / denom);
}

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_ADAMW_MATH_H_
