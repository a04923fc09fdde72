#include "tests/mamba/ssd_cuda_testing.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "tests/testing/testing.h"

namespace lyra::cuda::ssd_testing {

using ::lyra::testing::RandomTensor;

std::string Describe(const Config& c) {
  return absl::StrCat(c.name, " ", DTypeName(c.dtype), " B=", c.batch, " L=", c.length,
                      " H=", c.heads, " P=", c.head_dim, " N=", c.dstate, " G=", c.groups,
                      " Q=", c.chunk, " z=", c.has_z, " bias=", c.has_bias, " softplus=",
                      c.softplus, " init=", c.has_init, " D=", static_cast<int>(c.d_mode),
                      " seq=", static_cast<int>(c.seq), " clamp=[", c.dt_min, ", ", c.dt_max, "]");
}

absl::StatusOr<Tensor> MakeSeqIdx(const Config& c, uint64_t seed) {
  std::vector<int32_t> v(c.batch * c.length);
  uint64_t state = seed * 2654435761u + 7;
  for (int64_t b = 0; b < c.batch; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < c.length; ++t) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      bool start = false;
      if (c.seq == SeqMode::kRandom) start = t > 0 && (state >> 33) % 40 == 0;
      if (c.seq == SeqMode::kChunkBoundary) {
        start = t == c.chunk || t == 3 * c.chunk || (b == 1 && t == 5);
      }
      if (start) ++doc;
      v[b * c.length + t] = doc;
    }
  }
  return Tensor::FromVector(v, {c.batch, c.length});
}

absl::StatusOr<Problem> MakeProblem(const Config& c, uint64_t seed) {
  Problem pr;
  const int64_t Bt = c.batch, L = c.length, H = c.heads, P = c.head_dim, N = c.dstate;
  LYRA_ASSIGN_OR_RETURN(pr.x, RandomTensor({Bt, L, H, P}, c.dtype, seed + 1));
  // Raw dt around Mamba-2's initialisation: softplus(dt + bias) in ~[0.001, 0.1]; without
  // softplus dt itself is used: keep it positive.
  LYRA_ASSIGN_OR_RETURN(pr.dt, RandomTensor({Bt, L, H}, c.dtype, seed + 2,
                                            c.softplus ? -1.0 : 0.001, c.softplus ? 1.0 : 0.1));
  std::vector<double> a(H);
  // A = -exp(a_log), a_log spread over [0, 2.7] across the heads.
  for (int64_t h = 0; h < H; ++h) a[h] = -std::exp(2.7 * h / std::max<int64_t>(H - 1, 1));
  LYRA_ASSIGN_OR_RETURN(pr.A, Tensor::FromDoubles(a, {H}, DType::kF32));
  LYRA_ASSIGN_OR_RETURN(pr.B, RandomTensor({Bt, L, c.groups, N}, c.dtype, seed + 3));
  LYRA_ASSIGN_OR_RETURN(pr.C, RandomTensor({Bt, L, c.groups, N}, c.dtype, seed + 4));
  if (c.d_mode == DMode::kPerHead) {
    LYRA_ASSIGN_OR_RETURN(pr.D, RandomTensor({H}, DType::kF32, seed + 5, 0.5, 1.5));
  } else if (c.d_mode == DMode::kPerHeadDim) {
    LYRA_ASSIGN_OR_RETURN(pr.D, RandomTensor({H, P}, DType::kF32, seed + 5, 0.5, 1.5));
  }
  if (c.has_z) {
    LYRA_ASSIGN_OR_RETURN(pr.z, RandomTensor({Bt, L, H, P}, c.dtype, seed + 6, -2.0, 2.0));
  }
  if (c.has_bias) {
    const double lo = c.softplus ? -5.0 : 0.0, hi = c.softplus ? -2.0 : 0.01;
    LYRA_ASSIGN_OR_RETURN(pr.dt_bias, RandomTensor({H}, DType::kF32, seed + 7, lo, hi));
  }
  if (c.has_init) {
    LYRA_ASSIGN_OR_RETURN(pr.initial_state, RandomTensor({Bt, H, P, N}, DType::kF32, seed + 8));
  }
  if (c.seq != SeqMode::kNone) {
    LYRA_ASSIGN_OR_RETURN(pr.seq_idx, MakeSeqIdx(c, seed + 9));
  }
  return pr;
}

absl::StatusOr<Problem> ToDevice(const Problem& in, Device device) {
  Problem out = in;
  for (Tensor* t : {&out.x, &out.dt, &out.A, &out.B, &out.C, &out.D, &out.z, &out.dt_bias,
                    &out.initial_state, &out.seq_idx}) {
    if (t->defined()) {
      LYRA_ASSIGN_OR_RETURN(*t, t->To(device));
    }
  }
  return out;
}

absl::StatusOr<Outputs> MakeOutputs(const Config& c, Device device) {
  Outputs o;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t nc = SsdNumChunks(c.length, c.chunk);
  LYRA_ASSIGN_OR_RETURN(o.y, Tensor::Full({c.batch, c.length, c.heads, c.head_dim}, nan,
                                          c.dtype, device));
  LYRA_ASSIGN_OR_RETURN(o.final_state, Tensor::Full({c.batch, c.heads, c.head_dim, c.dstate},
                                                    nan, DType::kF32, device));
  LYRA_ASSIGN_OR_RETURN(o.chunk_states,
                        Tensor::Full({c.batch, nc, c.heads, c.head_dim, c.dstate}, nan,
                                     DType::kF32, device));
  return o;
}

SsdParams MakeParams(const Config& c, const Problem& pr, const Outputs& o) {
  SsdParams p;
  const int64_t L = c.length, H = c.heads, P = c.head_dim, N = c.dstate, G = c.groups;
  p.batch = c.batch, p.length = L, p.heads = H, p.head_dim = P, p.dstate = N, p.groups = G;
  p.chunk = c.chunk, p.dt_softplus = c.softplus, p.dt_min = c.dt_min, p.dt_max = c.dt_max;
  p.dtype = c.dtype;
  p.x = pr.x.data(), p.x_stride_b = L * H * P, p.x_stride_l = H * P, p.x_stride_h = P;
  p.x_stride_p = 1;
  p.dt = pr.dt.data(), p.dt_stride_b = L * H, p.dt_stride_l = H, p.dt_stride_h = 1;
  p.A = pr.A.data(), p.A_stride = 1;
  p.B = pr.B.data(), p.B_stride_b = L * G * N, p.B_stride_l = G * N, p.B_stride_g = N;
  p.B_stride_n = 1;
  p.C = pr.C.data(), p.C_stride_b = L * G * N, p.C_stride_l = G * N, p.C_stride_g = N;
  p.C_stride_n = 1;
  if (pr.D.defined()) {
    p.D = pr.D.data(), p.D_per_head_dim = c.d_mode == DMode::kPerHeadDim;
    p.D_stride_h = p.D_per_head_dim ? P : 1, p.D_stride_p = 1;
  }
  if (pr.z.defined()) {
    p.z = pr.z.data(), p.z_stride_b = L * H * P, p.z_stride_l = H * P, p.z_stride_h = P;
    p.z_stride_p = 1;
  }
  if (pr.dt_bias.defined()) p.dt_bias = pr.dt_bias.data(), p.dt_bias_stride = 1;
  if (pr.initial_state.defined()) {
    p.initial_state = pr.initial_state.data();
    p.initial_state_stride_b = H * P * N, p.initial_state_stride_h = P * N;
    p.initial_state_stride_p = N, p.initial_state_stride_n = 1;
  }
  if (pr.seq_idx.defined()) {
    p.seq_idx = pr.seq_idx.data<int32_t>(), p.seq_idx_stride_b = L, p.seq_idx_stride_l = 1;
  }
  p.y = o.y.data(), p.y_stride_b = L * H * P, p.y_stride_l = H * P, p.y_stride_h = P;
  p.y_stride_p = 1;
  p.final_state = o.final_state.data();
  p.final_state_stride_b = H * P * N, p.final_state_stride_h = P * N;
  p.final_state_stride_p = N, p.final_state_stride_n = 1;
  p.chunk_states = o.chunk_states.data();
  return p;
}

std::vector<double> Doubles(const Tensor& t) {
  absl::StatusOr<Tensor> cpu = t.To(Device::Cpu());
  EXPECT_TRUE(cpu.ok()) << cpu.status();
  if (!cpu.ok()) return {};
  absl::StatusOr<std::vector<double>> v = cpu->ToDoubles();
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::vector<double>();
}

double NormRelError(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> a = Doubles(actual), b = Doubles(expected);
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

}  // namespace lyra::cuda::ssd_testing
