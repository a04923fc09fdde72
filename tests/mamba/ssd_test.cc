// Tests of the Mamba-2 SSD (cuda/ssd.h, mamba/ssd.h).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cuda/ssd.h"
#include "gtest/gtest.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::testing::RandomTensor;

struct Config {
  std::string name;
  int64_t batch = 2, length = 37, heads = 4, head_dim = 3, dstate = 5, groups = 2, chunk = 16;
  DType dtype = DType::kF64;
  bool has_D = true, D_per_head_dim = false, has_z = true, has_bias = true, has_init = true;
  bool has_seq = false, softplus = true;
  double dt_min = 0.0, dt_max = INFINITY;
};

DType ParamDType(DType d) { return d == DType::kF64 ? DType::kF64 : DType::kF32; }

struct Operands {
  Tensor x, dt, A, B, C, D, z, dt_bias, initial_state, seq_idx;
};

absl::StatusOr<Tensor> MakeSeqIdx(int64_t batch, int64_t length, uint64_t seed) {
  std::vector<int32_t> v(batch * length);
  uint64_t state = seed * 2654435761u + 1;
  for (int64_t b = 0; b < batch; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < length; ++t) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      if (t > 0 && (state >> 33) % 6 == 0) ++doc;
      v[b * length + t] = doc;
    }
  }
  return Tensor::FromVector(v, {batch, length});
}

absl::StatusOr<Operands> MakeOperands(const Config& c, uint64_t seed) {
  Operands o;
  const DType pd = ParamDType(c.dtype);
  LYRA_ASSIGN_OR_RETURN(o.x, RandomTensor({c.batch, c.length, c.heads, c.head_dim}, c.dtype,
                                          seed + 1));
  LYRA_ASSIGN_OR_RETURN(o.dt, RandomTensor({c.batch, c.length, c.heads}, c.dtype, seed + 2,
                                           c.softplus ? -3.0 : 0.01, c.softplus ? 1.0 : 0.5));
  LYRA_ASSIGN_OR_RETURN(Tensor a_log, RandomTensor({c.heads}, DType::kF64, seed + 3, -1.0, 1.0));
  std::vector<double> a;
  LYRA_ASSIGN_OR_RETURN(a, a_log.ToDoubles());
  for (double& v : a) v = -std::exp(v);
  LYRA_ASSIGN_OR_RETURN(o.A, Tensor::FromDoubles(a, {c.heads}, pd));
  LYRA_ASSIGN_OR_RETURN(o.B, RandomTensor({c.batch, c.length, c.groups, c.dstate}, c.dtype,
                                          seed + 4));
  LYRA_ASSIGN_OR_RETURN(o.C, RandomTensor({c.batch, c.length, c.groups, c.dstate}, c.dtype,
                                          seed + 5));
  if (c.has_D) {
    const Shape ds = c.D_per_head_dim ? Shape{c.heads, c.head_dim} : Shape{c.heads};
    LYRA_ASSIGN_OR_RETURN(o.D, RandomTensor(ds, pd, seed + 6));
  }
  if (c.has_z) {
    LYRA_ASSIGN_OR_RETURN(o.z, RandomTensor({c.batch, c.length, c.heads, c.head_dim}, c.dtype,
                                            seed + 7, -2.0, 2.0));
  }
  if (c.has_bias) {
    LYRA_ASSIGN_OR_RETURN(o.dt_bias, RandomTensor({c.heads}, pd, seed + 8, -1.0, 0.5));
  }
  if (c.has_init) {
    LYRA_ASSIGN_OR_RETURN(o.initial_state,
                          RandomTensor({c.batch, c.heads, c.head_dim, c.dstate}, pd, seed + 9));
  }
  if (c.has_seq) {
    LYRA_ASSIGN_OR_RETURN(o.seq_idx, MakeSeqIdx(c.batch, c.length, seed + 10));
  }
  return o;
}

// Outputs of a reference call.
struct Outputs {
  Tensor y, final_state, chunk_states;
};

// The forward's params from the operands (any strides), without outputs.
cuda::SsdParams ForwardParams(const Config& c, const Operands& o) {
  cuda::SsdParams p;
  p.batch = c.batch, p.length = c.length, p.heads = c.heads, p.head_dim = c.head_dim;
  p.dstate = c.dstate, p.groups = c.groups, p.chunk = c.chunk;
  p.dt_softplus = c.softplus, p.dt_min = c.dt_min, p.dt_max = c.dt_max, p.dtype = c.dtype;
  p.x = o.x.data();
  p.x_stride_b = o.x.stride(0), p.x_stride_l = o.x.stride(1), p.x_stride_h = o.x.stride(2);
  p.x_stride_p = o.x.stride(3);
  p.dt = o.dt.data();
  p.dt_stride_b = o.dt.stride(0), p.dt_stride_l = o.dt.stride(1), p.dt_stride_h = o.dt.stride(2);
  p.A = o.A.data(), p.A_stride = o.A.stride(0);
  p.B = o.B.data();
  p.B_stride_b = o.B.stride(0), p.B_stride_l = o.B.stride(1), p.B_stride_g = o.B.stride(2);
  p.B_stride_n = o.B.stride(3);
  p.C = o.C.data();
  p.C_stride_b = o.C.stride(0), p.C_stride_l = o.C.stride(1), p.C_stride_g = o.C.stride(2);
  p.C_stride_n = o.C.stride(3);
  if (o.D.defined()) {
    p.D = o.D.data(), p.D_per_head_dim = o.D.dim() == 2, p.D_stride_h = o.D.stride(0);
    p.D_stride_p = o.D.dim() == 2 ? o.D.stride(1) : 0;
  }
  if (o.z.defined()) {
    p.z = o.z.data();
    p.z_stride_b = o.z.stride(0), p.z_stride_l = o.z.stride(1), p.z_stride_h = o.z.stride(2);
    p.z_stride_p = o.z.stride(3);
  }
  if (o.dt_bias.defined()) p.dt_bias = o.dt_bias.data(), p.dt_bias_stride = o.dt_bias.stride(0);
  if (o.initial_state.defined()) {
    const Tensor& s = o.initial_state;
    p.initial_state = s.data();
    p.initial_state_stride_b = s.stride(0), p.initial_state_stride_h = s.stride(1);
    p.initial_state_stride_p = s.stride(2), p.initial_state_stride_n = s.stride(3);
  }
  if (o.seq_idx.defined()) {
    p.seq_idx = o.seq_idx.data<int32_t>();
    p.seq_idx_stride_b = o.seq_idx.stride(0), p.seq_idx_stride_l = o.seq_idx.stride(1);
  }
  return p;
}

absl::StatusOr<Outputs> RunReference(const Config& c, const Operands& o, bool chunked) {
  Outputs r;
  const DType pd = ParamDType(c.dtype);
  LYRA_ASSIGN_OR_RETURN(r.y, Tensor::Empty(o.x.shape(), c.dtype));
  LYRA_ASSIGN_OR_RETURN(r.final_state,
                        Tensor::Empty({c.batch, c.heads, c.head_dim, c.dstate}, pd));
  LYRA_ASSIGN_OR_RETURN(
      r.chunk_states,
      Tensor::Empty({c.batch, cuda::SsdNumChunks(c.length, c.chunk), c.heads, c.head_dim,
                     c.dstate},
                    pd));
  cuda::SsdParams p = ForwardParams(c, o);
  p.y = r.y.data();
  p.y_stride_b = r.y.stride(0), p.y_stride_l = r.y.stride(1), p.y_stride_h = r.y.stride(2);
  p.y_stride_p = r.y.stride(3);
  const Tensor& f = r.final_state;
  p.final_state = f.data();
  p.final_state_stride_b = f.stride(0), p.final_state_stride_h = f.stride(1);
  p.final_state_stride_p = f.stride(2), p.final_state_stride_n = f.stride(3);
  if (chunked) {
    p.chunk_states = r.chunk_states.data();
    LYRA_RETURN_IF_ERROR(cuda::SsdReference(p));
  } else {
    r.chunk_states = Tensor();
    LYRA_RETURN_IF_ERROR(cuda::SsdSequentialReference(p));
  }
  return r;
}

TEST(SsdReferenceTest, ChunkedEqualsSequentialF64) {
  std::vector<Config> configs;
  for (int64_t groups : {1, 2}) {
    for (int64_t chunk : {16, 32}) {
      for (bool flags : {false, true}) {
        Config c;
        c.groups = groups, c.chunk = chunk;
        c.length = chunk == 16 ? 37 : 70;
        c.has_D = c.has_z = c.has_bias = c.has_init = flags;
        c.has_seq = !flags || groups == 2;
        c.D_per_head_dim = groups == 2;
        if (groups == 2 && flags) c.dt_min = 0.2, c.dt_max = 0.9;
        configs.push_back(c);
      }
    }
  }
  int index = 0;
  for (const Config& c : configs) {
    SCOPED_TRACE(absl::StrCat("G=", c.groups, " Q=", c.chunk, " L=", c.length, " z?", c.has_z,
                              " seq?", c.has_seq, " clamp ", c.dt_min, "..", c.dt_max));
    ASSERT_OK_AND_ASSIGN(Operands o, MakeOperands(c, 100 + 20 * index++));
    ASSERT_OK_AND_ASSIGN(Outputs chunked, RunReference(c, o, true));
    ASSERT_OK_AND_ASSIGN(Outputs seq, RunReference(c, o, false));
    EXPECT_TRUE(::lyra::testing::AllClose(chunked.y, seq.y, {1e-12, 1e-10}));
    EXPECT_TRUE(::lyra::testing::AllClose(chunked.final_state, seq.final_state, {1e-12, 1e-10}));
  }
}

// The gradients of the backward reference, called on raw params.
struct Grads {
  Tensor dx, ddt, dA, dB, dC, dD, dz, ddt_bias, dinitial_state;
};

absl::StatusOr<Grads> RunBackwardReference(const Config& c, const Operands& o, const Tensor& dy,
                                           const Tensor& dfinal) {
  cuda::SsdBackwardParams bp;
  bp.forward = ForwardParams(c, o);
  const DType pd = ParamDType(c.dtype);
  Grads g;
  LYRA_ASSIGN_OR_RETURN(g.dx, Tensor::Empty(o.x.shape(), c.dtype));
  LYRA_ASSIGN_OR_RETURN(g.ddt, Tensor::Empty(o.dt.shape(), c.dtype));
  LYRA_ASSIGN_OR_RETURN(g.dA, Tensor::Empty(o.A.shape(), pd));
  LYRA_ASSIGN_OR_RETURN(g.dB, Tensor::Empty(o.B.shape(), c.dtype));
  LYRA_ASSIGN_OR_RETURN(g.dC, Tensor::Empty(o.C.shape(), c.dtype));
  bp.dy = dy.data();
  bp.dy_stride_b = dy.stride(0), bp.dy_stride_l = dy.stride(1), bp.dy_stride_h = dy.stride(2);
  bp.dy_stride_p = dy.stride(3);
  if (dfinal.defined()) {
    bp.dfinal_state = dfinal.data();
    bp.dfinal_state_stride_b = dfinal.stride(0), bp.dfinal_state_stride_h = dfinal.stride(1);
    bp.dfinal_state_stride_p = dfinal.stride(2), bp.dfinal_state_stride_n = dfinal.stride(3);
  }
  bp.dx = g.dx.data();
  bp.dx_stride_b = g.dx.stride(0), bp.dx_stride_l = g.dx.stride(1);
  bp.dx_stride_h = g.dx.stride(2), bp.dx_stride_p = g.dx.stride(3);
  bp.ddt = g.ddt.data();
  bp.ddt_stride_b = g.ddt.stride(0), bp.ddt_stride_l = g.ddt.stride(1);
  bp.ddt_stride_h = g.ddt.stride(2);
  bp.dA = g.dA.data(), bp.dA_stride = 1;
  bp.dB = g.dB.data();
  bp.dB_stride_b = g.dB.stride(0), bp.dB_stride_l = g.dB.stride(1);
  bp.dB_stride_g = g.dB.stride(2), bp.dB_stride_n = g.dB.stride(3);
  bp.dC = g.dC.data();
  bp.dC_stride_b = g.dC.stride(0), bp.dC_stride_l = g.dC.stride(1);
  bp.dC_stride_g = g.dC.stride(2), bp.dC_stride_n = g.dC.stride(3);
  if (o.D.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dD, Tensor::Empty(o.D.shape(), pd));
    bp.dD = g.dD.data(), bp.dD_stride_h = g.dD.stride(0);
    bp.dD_stride_p = g.dD.dim() == 2 ? g.dD.stride(1) : 0;
  }
  if (o.z.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dz, Tensor::Empty(o.z.shape(), c.dtype));
    bp.dz = g.dz.data();
    bp.dz_stride_b = g.dz.stride(0), bp.dz_stride_l = g.dz.stride(1);
    bp.dz_stride_h = g.dz.stride(2), bp.dz_stride_p = g.dz.stride(3);
  }
  if (o.dt_bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.ddt_bias, Tensor::Empty(o.dt_bias.shape(), pd));
    bp.ddt_bias = g.ddt_bias.data(), bp.ddt_bias_stride = 1;
  }
  if (o.initial_state.defined()) {
    LYRA_ASSIGN_OR_RETURN(g.dinitial_state, Tensor::Empty(o.initial_state.shape(), pd));
    const Tensor& d = g.dinitial_state;
    bp.dinitial_state = d.data();
    bp.dinitial_state_stride_b = d.stride(0), bp.dinitial_state_stride_h = d.stride(1);
    bp.dinitial_state_stride_p = d.stride(2), bp.dinitial_state_stride_n = d.stride(3);
  }
  LYRA_RETURN_IF_ERROR(cuda::SsdBackwardReference(bp));
  return g;
}

// <y, dy> + <final_state, dfinal> of the sequential reference.
double Loss(const Config& c, const Operands& o, const std::vector<double>& dy,
            const std::vector<double>& dfinal) {
  absl::StatusOr<Outputs> r = RunReference(c, o, /*chunked=*/false);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return NAN;
  const std::vector<double> y = *r->y.ToDoubles(), f = *r->final_state.ToDoubles();
  double loss = 0;
  for (size_t i = 0; i < y.size(); ++i) loss += y[i] * dy[i];
  for (size_t i = 0; i < f.size(); ++i) loss += f[i] * dfinal[i];
  return loss;
}

// The backward reference against central differences of the sequential forward, element by
// element of every input (f64, contiguous operands).
TEST(SsdReferenceTest, BackwardMatchesFiniteDifferences) {
  std::vector<Config> configs;
  {
    Config c;  // everything, G = 2 of H = 4, a reset, clamping
    c.batch = 2, c.length = 11, c.heads = 4, c.head_dim = 2, c.dstate = 3, c.groups = 2;
    c.has_seq = true, c.dt_min = 0.15, c.dt_max = 0.8, c.D_per_head_dim = true;
    configs.push_back(c);
  }
  {
    Config c;  // no optional input, no softplus, G = 1
    c.batch = 1, c.length = 9, c.heads = 2, c.head_dim = 3, c.dstate = 2, c.groups = 1;
    c.has_D = c.has_z = c.has_bias = c.has_init = false, c.softplus = false;
    configs.push_back(c);
  }
  int index = 0;
  for (const Config& c : configs) {
    SCOPED_TRACE(absl::StrCat("config ", index));
    ASSERT_OK_AND_ASSIGN(Operands o, MakeOperands(c, 500 + 30 * index++));
    ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor(o.x.shape(), DType::kF64, 7));
    ASSERT_OK_AND_ASSIGN(Tensor dfinal,
                         RandomTensor({c.batch, c.heads, c.head_dim, c.dstate}, DType::kF64, 8));
    ASSERT_OK_AND_ASSIGN(Grads g, RunBackwardReference(c, o, dy, dfinal));
    const std::vector<double> dyv = *dy.ToDoubles(), dfv = *dfinal.ToDoubles();
    const std::vector<std::pair<Tensor*, Tensor*>> pairs = {
        {&o.x, &g.dx}, {&o.dt, &g.ddt}, {&o.A, &g.dA}, {&o.B, &g.dB},
        {&o.C, &g.dC}, {&o.D, &g.dD}, {&o.z, &g.dz}, {&o.dt_bias, &g.ddt_bias},
        {&o.initial_state, &g.dinitial_state}};
    const char* names[] = {"x", "dt", "A", "B", "C", "D", "z", "dt_bias", "initial_state"};
    for (size_t k = 0; k < pairs.size(); ++k) {
      Tensor* input = pairs[k].first;
      ASSERT_EQ(input->defined(), pairs[k].second->defined()) << names[k];
      if (!input->defined()) continue;
      const std::vector<double> analytic = *pairs[k].second->ToDoubles();
      double* data = input->data<double>();
      std::vector<double> numeric(analytic.size());
      constexpr double kEps = 1e-6;
      for (size_t i = 0; i < analytic.size(); ++i) {
        const double keep = data[i];
        data[i] = keep + kEps;
        const double up = Loss(c, o, dyv, dfv);
        data[i] = keep - kEps;
        const double down = Loss(c, o, dyv, dfv);
        data[i] = keep;
        numeric[i] = (up - down) / (2 * kEps);
      }
      EXPECT_TRUE(::lyra::testing::AllClose(analytic, numeric, {1e-7, 1e-6})) << names[k];
    }
  }
}

}  // namespace
}  // namespace lyra
