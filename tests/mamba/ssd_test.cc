// Tests of the Mamba-2 SSD (cuda/ssd.h, mamba/ssd.h):
//   - the chunked CPU reference against the sequential one (f64, ~1e-12) over G = 1, 2, 3, odd P
//     and N, L not a multiple of the chunk, Q = 16 / 32, with and without z, D per head or per
//     head dim, a clamping dt range, seq_idx resets (also right at a chunk boundary), initial
//     state; chunk_states against prefix runs;
//   - the backward reference against central differences, and GradCheck of the autograd node
//     Ssd for every input (a loss on y and final_state);
//   - packed documents (seq_idx, SeqIdxFromCuSeqlens) == separate runs, two halves with the
//     carried state == one run, the step update == one column of the scan, f32 / bf16 vs f64;
//   - argument errors; and on a GPU (LYRA_REQUIRE_GPU): SsdForward / SsdBackward / SsdStateUpdate
//     through the mamba/ssd.cc dispatch against the CPU reference in f32, f16, bf16.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/variable.h"
#include "cuda/ssd.h"
#include "gtest/gtest.h"
#include "mamba/ssd.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"

namespace lyra::mamba {
namespace {

using ::lyra::autograd::GradCheck;
using ::lyra::autograd::GradCheckOptions;
using ::lyra::autograd::GradCheckResult;
using ::lyra::autograd::Variable;
using ::lyra::testing::AllClose;
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

// The operands of a case: mamba::SsdInputs (tensors and options) so that the tensor layer and
// the raw references read the same data.
using Operands = mamba::SsdInputs;

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
  o.dt_softplus = c.softplus, o.dt_min = c.dt_min, o.dt_max = c.dt_max, o.chunk = c.chunk;
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

// Documents of the given start offsets packed into every row of a [B, L] seq_idx.
absl::StatusOr<Tensor> SeqIdxFromStarts(int64_t batch, int64_t length,
                                        const std::vector<int64_t>& starts) {
  std::vector<int32_t> v(batch * length);
  for (int64_t b = 0; b < batch; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < length; ++t) {
      if (std::find(starts.begin(), starts.end(), t) != starts.end() && t > 0) ++doc;
      v[b * length + t] = doc;
    }
  }
  return Tensor::FromVector(v, {batch, length});
}

TEST(SsdReferenceTest, ChunkedEqualsSequentialF64) {
  std::vector<Config> configs;
  int variant = 0;
  for (int64_t groups : {1, 2, 3}) {
    for (int64_t chunk : {16, 32}) {
      for (int64_t length : {1, 37, 64, 70}) {
        ++variant;
        Config c;
        c.groups = groups, c.chunk = chunk, c.length = length;
        c.heads = groups == 3 ? 6 : 4;
        c.head_dim = variant % 2 ? 3 : 5;
        c.dstate = variant % 3 ? 5 : 7;
        c.has_D = variant % 4 != 1, c.D_per_head_dim = variant % 3 == 0;
        c.has_z = variant % 2 == 0, c.has_bias = variant % 5 != 2;
        c.has_init = variant % 3 != 2, c.has_seq = variant % 2 == 1;
        c.softplus = variant % 7 != 4;
        if (variant % 4 == 2) c.dt_min = 0.2, c.dt_max = 0.9;  // clamps some dt' on both sides
        configs.push_back(c);
      }
    }
  }
  int index = 0;
  for (const Config& c : configs) {
    SCOPED_TRACE(absl::StrCat("G=", c.groups, " Q=", c.chunk, " L=", c.length, " P=", c.head_dim,
                              " N=", c.dstate, " z?", c.has_z, " D?", c.has_D,
                              " D per p?", c.D_per_head_dim, " init?", c.has_init, " seq?",
                              c.has_seq, " softplus=", c.softplus, " clamp ", c.dt_min, "..",
                              c.dt_max));
    ASSERT_OK_AND_ASSIGN(Operands o, MakeOperands(c, 100 + 20 * index++));
    ASSERT_OK_AND_ASSIGN(Outputs chunked, RunReference(c, o, true));
    ASSERT_OK_AND_ASSIGN(Outputs seq, RunReference(c, o, false));
    EXPECT_TRUE(AllClose(chunked.y, seq.y, {1e-12, 1e-10}));
    EXPECT_TRUE(AllClose(chunked.final_state, seq.final_state, {1e-12, 1e-10}));
  }
}

// chunk_states[:, c] is the state after the first c Q steps (before chunk c's reset), which is
// the final state of a run over that prefix; resets at chunk boundaries included.
TEST(SsdReferenceTest, ChunkStatesAreThePrefixStates) {
  Config c;
  c.batch = 2, c.length = 75, c.chunk = 16, c.heads = 4, c.groups = 2, c.head_dim = 3;
  c.dstate = 4, c.has_seq = true;
  ASSERT_OK_AND_ASSIGN(Operands o, MakeOperands(c, 7));
  ASSERT_OK_AND_ASSIGN(o.seq_idx, SeqIdxFromStarts(c.batch, c.length, {16, 20, 47, 48, 64}));
  ASSERT_OK_AND_ASSIGN(Outputs full, RunReference(c, o, true));
  const int64_t n_chunks = cuda::SsdNumChunks(c.length, c.chunk);
  ASSERT_EQ(n_chunks, 5);
  for (int64_t k = 0; k < n_chunks; ++k) {
    SCOPED_TRACE(absl::StrCat("chunk ", k));
    ASSERT_OK_AND_ASSIGN(Tensor entry, full.chunk_states.Select(1, k));
    if (k == 0) {
      EXPECT_TRUE(AllClose(entry, o.initial_state, {0, 0}));
      continue;
    }
    Config pc = c;
    pc.length = k * c.chunk;
    Operands prefix = o;
    for (Tensor* t : {&prefix.x, &prefix.dt, &prefix.B, &prefix.C, &prefix.z, &prefix.seq_idx}) {
      ASSERT_OK_AND_ASSIGN(*t, t->Narrow(1, 0, pc.length));
    }
    ASSERT_OK_AND_ASSIGN(Outputs r, RunReference(pc, prefix, false));
    EXPECT_TRUE(AllClose(entry, r.final_state, {1e-12, 1e-10}));
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
      EXPECT_TRUE(AllClose(analytic, numeric, {1e-7, 1e-6})) << names[k];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Tensor level (mamba/ssd.h) on the CPU

absl::StatusOr<Operands> ToDevice(const Operands& in, Device device) {
  Operands out = in;
  for (Tensor* t : {&out.x, &out.dt, &out.A, &out.B, &out.C, &out.D, &out.z, &out.dt_bias,
                    &out.initial_state, &out.seq_idx}) {
    if (t->defined()) {
      LYRA_ASSIGN_OR_RETURN(*t, t->To(device));
    }
  }
  return out;
}

std::vector<double> Doubles(const Tensor& t) {
  absl::StatusOr<Tensor> cpu = t.To(Device::Cpu());
  EXPECT_TRUE(cpu.ok()) << cpu.status();
  if (!cpu.ok()) return {};
  absl::StatusOr<std::vector<double>> v = cpu->ToDoubles();
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::vector<double>();
}

// ||a - b|| / ||b|| (+inf on a non-finite value or a size mismatch).
double NormRelError(const Tensor& actual, const Tensor& expected) {
  const std::vector<double> a = Doubles(actual), b = Doubles(expected);
  if (a.size() != b.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

#define EXPECT_NEAR_NORM(actual, expected, tol)                      \
  do {                                                               \
    const double err_ = NormRelError((actual), (expected));          \
    EXPECT_TRUE(err_ <= (tol)) << #actual << " rel. error " << err_; \
  } while (0)

TEST(SsdForwardTest, MatchesSequentialReferenceWithAnyStrides) {
  Config c;
  c.batch = 2, c.length = 41, c.heads = 6, c.groups = 3, c.head_dim = 5, c.dstate = 7;
  c.has_seq = true, c.D_per_head_dim = true, c.chunk = 16;
  ASSERT_OK_AND_ASSIGN(Operands o, MakeOperands(c, 3));
  ASSERT_OK_AND_ASSIGN(Outputs seq, RunReference(c, o, false));
  ASSERT_OK_AND_ASSIGN(SsdResult r, SsdForward(o));
  EXPECT_TRUE(AllClose(r.y, seq.y, {1e-12, 1e-10}));
  EXPECT_TRUE(AllClose(r.final_state, seq.final_state, {1e-12, 1e-10}));
  EXPECT_FALSE(r.chunk_states.defined());  // CUDA only
  // The same values behind transposed / sliced strides.
  Operands strided = o;
  for (Tensor* t : {&strided.x, &strided.z, &strided.B, &strided.C, &strided.initial_state}) {
    ASSERT_OK_AND_ASSIGN(Tensor tr, t->Transpose(1, 3));
    ASSERT_OK_AND_ASSIGN(tr, tr.Contiguous());
    ASSERT_OK_AND_ASSIGN(*t, tr.Transpose(1, 3));
    ASSERT_FALSE(t->is_contiguous());
  }
  ASSERT_OK_AND_ASSIGN(Tensor dt2, Tensor::Empty({c.batch, c.length, c.heads, 2}, c.dtype));
  ASSERT_OK_AND_ASSIGN(Tensor dt_slot, dt2.Select(3, 1));
  ASSERT_OK(dt_slot.CopyFrom(o.dt));
  strided.dt = dt_slot;
  ASSERT_OK_AND_ASSIGN(SsdResult rs, SsdForward(strided));
  EXPECT_TRUE(AllClose(rs.y, r.y, {0, 0}));
  EXPECT_TRUE(AllClose(rs.final_state, r.final_state, {0, 0}));
  // The backward sees the same strides.
  ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor(o.x.shape(), c.dtype, 4));
  ASSERT_OK_AND_ASSIGN(SsdGrads g, SsdBackward(o, dy));
  ASSERT_OK_AND_ASSIGN(SsdGrads gs, SsdBackward(strided, dy));
  for (auto [a, b] : {std::pair{&g.dx, &gs.dx}, {&g.ddt, &gs.ddt}, {&g.dB, &gs.dB},
                      {&g.dC, &gs.dC}, {&g.dA, &gs.dA}, {&g.dinitial_state, &gs.dinitial_state}}) {
    EXPECT_TRUE(AllClose(*a, *b, {0, 0}));
  }
}

// Packed documents (seq_idx from cu_seqlens) equal separate runs; the first document starts
// from initial_state, the others from zero. Documents start at chunk boundaries (16, 32) too.
void CheckPackedEqualsSeparate(Device device, DType dtype, int64_t chunk, double tol) {
  Config c;
  c.batch = 1, c.length = 70, c.chunk = chunk, c.heads = 4, c.groups = 2, c.head_dim = 5;
  c.dstate = 6, c.dtype = dtype;
  if (dtype != DType::kF64) c.head_dim = 16, c.dstate = 16;
  ASSERT_OK_AND_ASSIGN(Operands cpu, MakeOperands(c, 11));
  const std::vector<int64_t> starts = {0, 16, 17, 32, 51, 70};
  std::vector<int64_t> cu(starts.begin(), starts.end());
  ASSERT_OK_AND_ASSIGN(Tensor cu_seqlens, Tensor::FromVector(cu, {6}));
  ASSERT_OK_AND_ASSIGN(Operands in, ToDevice(cpu, device));
  ASSERT_OK_AND_ASSIGN(in.seq_idx, SeqIdxFromCuSeqlens(cu_seqlens, c.length, device));
  ASSERT_OK_AND_ASSIGN(SsdResult packed, SsdForward(in));
  for (size_t k = 0; k + 1 < starts.size(); ++k) {
    SCOPED_TRACE(absl::StrCat("document ", k));
    const int64_t t0 = starts[k], len = starts[k + 1] - t0;
    Operands part = in;
    part.seq_idx = Tensor();
    if (k > 0) part.initial_state = Tensor();
    for (Tensor* t : {&part.x, &part.dt, &part.z, &part.B, &part.C}) {
      ASSERT_OK_AND_ASSIGN(*t, t->Narrow(1, t0, len));
    }
    ASSERT_OK_AND_ASSIGN(SsdResult r, SsdForward(part));
    ASSERT_OK_AND_ASSIGN(Tensor y_part, packed.y.Narrow(1, t0, len));
    EXPECT_TRUE(AllClose(r.y, y_part, {tol, tol}));
    if (k + 2 == starts.size()) {
      EXPECT_TRUE(AllClose(r.final_state, packed.final_state, {tol, tol}));
    }
  }
}

// Two calls, the second starting from the first's final state, equal one call.
void CheckSplitEqualsWhole(Device device, DType dtype, int64_t split, double tol) {
  Config c;
  c.batch = 2, c.length = 67, c.chunk = 16, c.heads = 6, c.groups = 3, c.head_dim = 3;
  c.dstate = 5, c.dtype = dtype, c.D_per_head_dim = true;
  if (dtype != DType::kF64) c.head_dim = 32, c.dstate = 16;
  ASSERT_OK_AND_ASSIGN(Operands cpu, MakeOperands(c, 21));
  ASSERT_OK_AND_ASSIGN(Operands in, ToDevice(cpu, device));
  ASSERT_OK_AND_ASSIGN(SsdResult whole, SsdForward(in));
  Operands first = in, second = in;
  for (Tensor* t : {&first.x, &first.dt, &first.z, &first.B, &first.C}) {
    ASSERT_OK_AND_ASSIGN(*t, t->Narrow(1, 0, split));
  }
  for (Tensor* t : {&second.x, &second.dt, &second.z, &second.B, &second.C}) {
    ASSERT_OK_AND_ASSIGN(*t, t->Narrow(1, split, c.length - split));
  }
  ASSERT_OK_AND_ASSIGN(SsdResult r1, SsdForward(first));
  second.initial_state = r1.final_state;
  ASSERT_OK_AND_ASSIGN(SsdResult r2, SsdForward(second));
  ASSERT_OK_AND_ASSIGN(Tensor y1, whole.y.Narrow(1, 0, split));
  ASSERT_OK_AND_ASSIGN(Tensor y2, whole.y.Narrow(1, split, c.length - split));
  EXPECT_TRUE(AllClose(r1.y, y1, {tol, tol}));
  if (IsHalf(dtype)) {
    EXPECT_NEAR_NORM(r2.y, y2, 1e-2);  // a rounding of y apart at most
  } else {
    EXPECT_TRUE(AllClose(r2.y, y2, {tol, tol}));
  }
  EXPECT_TRUE(AllClose(r2.final_state, whole.final_state, {tol, tol}));
}

// SsdStateUpdate applied step by step equals the scan (each y_t is one column of it).
void CheckStepEqualsScan(Device device, DType dtype, bool per_head_dim, double tol) {
  Config c;
  c.batch = 3, c.length = 13, c.heads = 4, c.groups = 2, c.head_dim = 5, c.dstate = 7;
  c.dtype = dtype, c.D_per_head_dim = per_head_dim, c.dt_min = 0.1, c.dt_max = 1.0;
  if (dtype != DType::kF64) c.head_dim = 16, c.dstate = 40;
  ASSERT_OK_AND_ASSIGN(Operands cpu, MakeOperands(c, 31));
  ASSERT_OK_AND_ASSIGN(Operands in, ToDevice(cpu, device));
  ASSERT_OK_AND_ASSIGN(SsdResult scan, SsdForward(in));
  ASSERT_OK_AND_ASSIGN(Tensor state, in.initial_state.Clone());
  const SsdStepOptions step{c.softplus, c.dt_min, c.dt_max};
  for (int64_t t = 0; t < c.length; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor x, in.x.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor dt, in.dt.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor z, in.z.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor B, in.B.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor C, in.C.Select(1, t));
    ASSERT_OK_AND_ASSIGN(Tensor y,
                         SsdStateUpdate(state, x, dt, in.A, B, C, in.D, z, in.dt_bias, step));
    ASSERT_OK_AND_ASSIGN(Tensor y_scan, scan.y.Select(1, t));
    EXPECT_TRUE(AllClose(y, y_scan, {tol, tol})) << "t = " << t;
  }
  EXPECT_TRUE(AllClose(state, scan.final_state, {tol, tol}));
}

TEST(SsdForwardTest, PackedEqualsSeparate) {
  CheckPackedEqualsSeparate(Device::Cpu(), DType::kF64, 16, 1e-12);
  CheckPackedEqualsSeparate(Device::Cpu(), DType::kF64, 32, 1e-12);
}
TEST(SsdForwardTest, SplitEqualsWhole) {
  CheckSplitEqualsWhole(Device::Cpu(), DType::kF64, 21, 1e-12);
  CheckSplitEqualsWhole(Device::Cpu(), DType::kF64, 32, 1e-12);
  CheckSplitEqualsWhole(Device::Cpu(), DType::kF32, 21, 2e-5);
}
TEST(SsdStateUpdateTest, StepsEqualTheScan) {
  CheckStepEqualsScan(Device::Cpu(), DType::kF64, false, 1e-12);
  CheckStepEqualsScan(Device::Cpu(), DType::kF64, true, 1e-12);
  CheckStepEqualsScan(Device::Cpu(), DType::kF32, true, 2e-5);
}

TEST(SsdStateUpdateTest, StridedStateIsUpdatedInPlace) {
  Config c;
  c.batch = 2, c.length = 1, c.heads = 2, c.groups = 1, c.head_dim = 3, c.dstate = 4;
  ASSERT_OK_AND_ASSIGN(Operands in, MakeOperands(c, 41));
  ASSERT_OK_AND_ASSIGN(SsdResult scan, SsdForward(in));
  // The state as a transposed view of a [B, H, N, P] buffer.
  ASSERT_OK_AND_ASSIGN(Tensor buffer, in.initial_state.Transpose(2, 3));
  ASSERT_OK_AND_ASSIGN(buffer, buffer.Contiguous());
  ASSERT_OK_AND_ASSIGN(Tensor state, buffer.Transpose(2, 3));
  ASSERT_OK_AND_ASSIGN(Tensor x, in.x.Select(1, 0));
  ASSERT_OK_AND_ASSIGN(Tensor dt, in.dt.Select(1, 0));
  ASSERT_OK_AND_ASSIGN(Tensor z, in.z.Select(1, 0));
  ASSERT_OK_AND_ASSIGN(Tensor B, in.B.Select(1, 0));
  ASSERT_OK_AND_ASSIGN(Tensor C, in.C.Select(1, 0));
  ASSERT_OK_AND_ASSIGN(Tensor y, SsdStateUpdate(state, x, dt, in.A, B, C, in.D, z, in.dt_bias));
  ASSERT_OK_AND_ASSIGN(Tensor y_scan, scan.y.Select(1, 0));
  EXPECT_TRUE(AllClose(y, y_scan, {1e-12, 1e-12}));
  EXPECT_TRUE(AllClose(state, scan.final_state, {1e-12, 1e-12}));
}

TEST(SsdForwardTest, LowPrecisionMatchesF64) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    Config c;
    c.batch = 2, c.length = 50, c.heads = 4, c.groups = 2, c.head_dim = 8, c.dstate = 16;
    c.dtype = dtype, c.has_seq = true;
    ASSERT_OK_AND_ASSIGN(Operands in, MakeOperands(c, 7));
    Operands in64 = in;  // the same (rounded) values in f64
    for (Tensor* t : {&in64.x, &in64.dt, &in64.A, &in64.B, &in64.C, &in64.D, &in64.z,
                      &in64.dt_bias, &in64.initial_state}) {
      ASSERT_OK_AND_ASSIGN(*t, t->To(DType::kF64));
    }
    ASSERT_OK_AND_ASSIGN(SsdResult r, SsdForward(in));
    ASSERT_OK_AND_ASSIGN(SsdResult r64, SsdForward(in64));
    // The reference computes in f64 for every dtype: only the output rounding differs.
    const double out_tol = dtype == DType::kF32 ? 1e-6 : 1e-2;
    EXPECT_NEAR_NORM(r.y, r64.y, out_tol);
    EXPECT_NEAR_NORM(r.final_state, r64.final_state, 1e-6);
    ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor(in.x.shape(), dtype, 8));
    ASSERT_OK_AND_ASSIGN(Tensor dy64, dy.To(DType::kF64));
    ASSERT_OK_AND_ASSIGN(SsdGrads g, SsdBackward(in, dy));
    ASSERT_OK_AND_ASSIGN(SsdGrads g64, SsdBackward(in64, dy64));
    EXPECT_NEAR_NORM(g.dx, g64.dx, out_tol);
    EXPECT_NEAR_NORM(g.ddt, g64.ddt, out_tol);
    EXPECT_NEAR_NORM(g.dB, g64.dB, out_tol);
    EXPECT_NEAR_NORM(g.dC, g64.dC, out_tol);
    EXPECT_NEAR_NORM(g.dz, g64.dz, out_tol);
    EXPECT_NEAR_NORM(g.dA, g64.dA, 1e-6);
    EXPECT_NEAR_NORM(g.dD, g64.dD, 1e-6);
    EXPECT_NEAR_NORM(g.ddt_bias, g64.ddt_bias, 1e-6);
    EXPECT_NEAR_NORM(g.dinitial_state, g64.dinitial_state, 1e-6);
  }
}

TEST(SsdForwardTest, EmptyInputs) {
  Config c;
  c.length = 0;
  ASSERT_OK_AND_ASSIGN(Operands in, MakeOperands(c, 3));
  ASSERT_OK_AND_ASSIGN(SsdResult r, SsdForward(in));
  EXPECT_EQ(r.y.numel(), 0);
  EXPECT_TRUE(AllClose(r.final_state, in.initial_state, {0, 0}));
  ASSERT_OK_AND_ASSIGN(Tensor dy, Tensor::Zeros(in.x.shape(), c.dtype));
  ASSERT_OK_AND_ASSIGN(Tensor dfinal, RandomTensor(in.initial_state.shape(), DType::kF64, 4));
  ASSERT_OK_AND_ASSIGN(SsdGrads g, SsdBackward(in, dy, dfinal));
  EXPECT_TRUE(AllClose(g.dinitial_state, dfinal, {0, 0}));
  EXPECT_EQ(Doubles(g.dA), std::vector<double>(c.heads, 0.0));
  // P = 0 with L > 0: no output, the gradients of dt, B, C are zero.
  Config p0;
  p0.head_dim = 0;
  ASSERT_OK_AND_ASSIGN(Operands in0, MakeOperands(p0, 5));
  ASSERT_OK_AND_ASSIGN(SsdResult r0, SsdForward(in0));
  EXPECT_EQ(r0.y.numel(), 0);
  ASSERT_OK_AND_ASSIGN(Tensor dy0, Tensor::Zeros(in0.x.shape(), p0.dtype));
  ASSERT_OK_AND_ASSIGN(SsdGrads g0, SsdBackward(in0, dy0));
  EXPECT_EQ(Doubles(g0.dB), std::vector<double>(in0.B.numel(), 0.0));
  EXPECT_EQ(Doubles(g0.ddt), std::vector<double>(in0.dt.numel(), 0.0));
}

TEST(SsdForwardTest, SeqIdxFromCuSeqlens) {
  ASSERT_OK_AND_ASSIGN(Tensor cu, Tensor::FromVector(std::vector<int32_t>{0, 3, 3, 5, 7}, {5}));
  ASSERT_OK_AND_ASSIGN(Tensor seq, SeqIdxFromCuSeqlens(cu, 7, Device::Cpu()));
  EXPECT_EQ(seq.shape(), (Shape{1, 7}));
  EXPECT_EQ(seq.dtype(), DType::kI32);
  EXPECT_EQ(Doubles(seq), (std::vector<double>{0, 0, 0, 2, 2, 3, 3}));
  ASSERT_OK_AND_ASSIGN(Tensor cu64, Tensor::FromVector(std::vector<int64_t>{0, 4}, {2}));
  ASSERT_OK_AND_ASSIGN(Tensor one, SeqIdxFromCuSeqlens(cu64, 4, Device::Cpu()));
  EXPECT_EQ(Doubles(one), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_STATUS_IS(SeqIdxFromCuSeqlens(cu, 8, Device::Cpu()), absl::StatusCode::kInvalidArgument,
                   "cu_seqlens");
  ASSERT_OK_AND_ASSIGN(Tensor bad, Tensor::FromVector(std::vector<int32_t>{0, 4, 2, 7}, {4}));
  EXPECT_STATUS_IS(SeqIdxFromCuSeqlens(bad, 7, Device::Cpu()), absl::StatusCode::kInvalidArgument,
                   "decreases");
  ASSERT_OK_AND_ASSIGN(Tensor late, Tensor::FromVector(std::vector<int32_t>{1, 7}, {2}));
  EXPECT_STATUS_IS(SeqIdxFromCuSeqlens(late, 7, Device::Cpu()),
                   absl::StatusCode::kInvalidArgument, "start at 0");
  ASSERT_OK_AND_ASSIGN(Tensor f, Tensor::FromDoubles({0, 7}, {2}, DType::kF32));
  EXPECT_STATUS_IS(SeqIdxFromCuSeqlens(f, 7, Device::Cpu()), absl::StatusCode::kInvalidArgument,
                   "cu_seqlens");
}

// ---------------------------------------------------------------------------------------------
// Gradients of the autograd node

std::vector<Tensor> InputList(const Operands& in) {
  return {in.x, in.dt, in.A, in.B, in.C, in.D, in.z, in.dt_bias, in.initial_state};
}

TEST(SsdGradTest, GradCheckF64) {
  struct Case {
    std::string name;
    Config config;
  };
  std::vector<Case> cases;
  {
    Case k{"every input, G = 2, seq_idx, clamp, L over two chunks", {}};
    Config& c = k.config;
    c.batch = 2, c.length = 19, c.heads = 4, c.groups = 2, c.head_dim = 3, c.dstate = 2;
    c.has_seq = true, c.dt_min = 0.15, c.dt_max = 0.8;
    cases.push_back(k);
  }
  {
    Case k{"D per head dim, G = 1, no seq_idx", {}};
    Config& c = k.config;
    c.batch = 1, c.length = 18, c.heads = 2, c.groups = 1, c.head_dim = 2, c.dstate = 3;
    c.D_per_head_dim = true;
    cases.push_back(k);
  }
  {
    Case k{"no optional input, no softplus, G = H = 3", {}};
    Config& c = k.config;
    c.batch = 1, c.length = 17, c.heads = 3, c.groups = 3, c.head_dim = 2, c.dstate = 2;
    c.has_D = c.has_z = c.has_bias = c.has_init = false, c.softplus = false;
    cases.push_back(k);
  }
  int index = 0;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    ASSERT_OK_AND_ASSIGN(Operands in, MakeOperands(k.config, 200 + 10 * index++));
    const std::vector<Tensor> all = InputList(in);
    std::vector<int> slot;  // which input each GradCheck argument is
    std::vector<Tensor> args;
    for (int i = 0; i < static_cast<int>(all.size()); ++i) {
      if (all[i].defined()) {
        slot.push_back(i);
        args.push_back(all[i]);
      }
    }
    GradCheckOptions options;
    options.atol = 1e-7, options.rtol = 1e-5;
    GradCheckResult r = GradCheck(
        [&](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
          std::vector<Variable> full(9);
          for (size_t j = 0; j < slot.size(); ++j) full[slot[j]] = v[j];
          LYRA_ASSIGN_OR_RETURN(SsdOutputs o, Ssd(full[0], full[1], full[2], full[3], full[4],
                                                  full[5], full[6], full[7], full[8], in));
          // y and final_state flattened into one output: both gradients are checked.
          LYRA_ASSIGN_OR_RETURN(Variable y, autograd::Reshape(o.y, {-1}));
          LYRA_ASSIGN_OR_RETURN(Variable f, autograd::Reshape(o.final_state, {-1}));
          return autograd::Concat({y, f}, 0);
        },
        args, options);
    EXPECT_TRUE(r.ok) << r.message;
  }
}

TEST(SsdGradTest, GradientReachesEveryInputAndOnlyThoseRequiringIt) {
  Config c;
  c.batch = 2, c.length = 20, c.heads = 4, c.groups = 2, c.head_dim = 3, c.dstate = 4;
  ASSERT_OK_AND_ASSIGN(Operands in, MakeOperands(c, 5));
  const std::vector<Tensor> all = InputList(in);
  for (int skip = -1; skip < 9; skip += 2) {
    std::vector<Variable> v;
    for (int i = 0; i < 9; ++i) v.push_back(Variable(all[i], /*requires_grad=*/i != skip));
    ASSERT_OK_AND_ASSIGN(SsdOutputs o,
                         Ssd(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], in));
    ASSERT_OK_AND_ASSIGN(Variable sy, autograd::Sum(o.y));
    ASSERT_OK_AND_ASSIGN(Variable sf, autograd::Sum(o.final_state));
    ASSERT_OK_AND_ASSIGN(Variable s, autograd::Add(sy, sf));
    ASSERT_OK(s.Backward());
    for (int i = 0; i < 9; ++i) {
      if (i == skip) {
        EXPECT_FALSE(v[i].grad().defined()) << "input " << i;
        continue;
      }
      ASSERT_TRUE(v[i].grad().defined()) << "input " << i;
      EXPECT_EQ(v[i].grad().shape(), all[i].shape());
      double norm = 0;
      for (double x : Doubles(v[i].grad())) norm += std::abs(x);
      EXPECT_GT(norm, 0) << "input " << i;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(SsdErrorsTest, RejectsBadArguments) {
  Config c;
  c.dtype = DType::kF32;
  ASSERT_OK_AND_ASSIGN(const Operands good, MakeOperands(c, 1));
  ASSERT_OK(SsdForward(good).status());
  const auto expect_bad = [&](const Operands& in, absl::StatusCode code, const char* what) {
    EXPECT_STATUS_IS(SsdForward(in), code, what);
  };
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.x, in.x.Select(0, 0));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "x must be");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.dt, in.dt.Narrow(1, 0, 4));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "dt");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.dt, in.dt.To(DType::kBF16));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "dt");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.A, in.A.To(DType::kBF16));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "A must be");
  }
  {
    Operands in = good;  // G = 3 does not divide H = 4
    ASSERT_OK_AND_ASSIGN(in.B, RandomTensor({2, 37, 3, 5}, DType::kF32, 1));
    ASSERT_OK_AND_ASSIGN(in.C, RandomTensor({2, 37, 3, 5}, DType::kF32, 2));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "G = 3");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.B, in.B.To(DType::kF16));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "B must be");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.C, RandomTensor({2, 37, 2, 4}, DType::kF32, 2));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "C (as B)");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.D, RandomTensor({4, 2}, DType::kF32, 3));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "D ([H] or [H, P])");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.z, in.z.To(DType::kF64));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "z");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.dt_bias, RandomTensor({3}, DType::kF32, 3));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "dt_bias");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.initial_state, RandomTensor({2, 4, 3, 5}, DType::kBF16, 3));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "initial_state");
  }
  {
    Operands in = good;
    ASSERT_OK_AND_ASSIGN(in.seq_idx, RandomTensor({2, 37}, DType::kF32, 3));
    expect_bad(in, absl::StatusCode::kInvalidArgument, "seq_idx");
  }
  {
    Operands in = good;
    in.A = Tensor();
    expect_bad(in, absl::StatusCode::kInvalidArgument, "SsdForward");
  }
  {
    Operands in = good;
    in.chunk = 48;
    expect_bad(in, absl::StatusCode::kInvalidArgument, "chunk Q = 48");
    in.chunk = 512;
    expect_bad(in, absl::StatusCode::kInvalidArgument, "chunk Q = 512");
  }
  {
    Operands in = good;
    in.dt_min = 0.5, in.dt_max = 0.1;
    expect_bad(in, absl::StatusCode::kInvalidArgument, "dt_min");
  }
  {
    Config big = c;
    big.dstate = 257, big.length = 2, big.has_init = false;
    ASSERT_OK_AND_ASSIGN(Operands in, MakeOperands(big, 4));
    expect_bad(in, absl::StatusCode::kUnimplemented, "257");
    ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor(in.x.shape(), DType::kF32, 5));
    EXPECT_STATUS_IS(SsdBackward(in, dy), absl::StatusCode::kUnimplemented, "257");
  }
  {
    ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor(good.x.shape(), DType::kBF16, 5));
    EXPECT_STATUS_IS(SsdBackward(good, dy), absl::StatusCode::kInvalidArgument, "dy");
    ASSERT_OK_AND_ASSIGN(Tensor dy32, RandomTensor(good.x.shape(), DType::kF32, 5));
    ASSERT_OK_AND_ASSIGN(Tensor bad_final, RandomTensor({2, 4, 3, 4}, DType::kF32, 5));
    EXPECT_STATUS_IS(SsdBackward(good, dy32, bad_final), absl::StatusCode::kInvalidArgument,
                     "dfinal_state");
  }
  {
    ASSERT_OK_AND_ASSIGN(Tensor state, Tensor::Zeros({2, 4, 3, 5}, DType::kF32));
    ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({2, 4, 3}, DType::kF32, 1));
    ASSERT_OK_AND_ASSIGN(Tensor dt, RandomTensor({2, 4}, DType::kF32, 1));
    ASSERT_OK_AND_ASSIGN(Tensor B, RandomTensor({2, 2, 5}, DType::kF32, 2));
    ASSERT_OK(SsdStateUpdate(state, x, dt, good.A, B, B, good.D, x, good.dt_bias).status());
    ASSERT_OK_AND_ASSIGN(Tensor bad_B, RandomTensor({2, 3, 5}, DType::kF32, 2));
    EXPECT_STATUS_IS(SsdStateUpdate(state, x, dt, good.A, bad_B, bad_B, good.D, x, good.dt_bias),
                     absl::StatusCode::kInvalidArgument, "G = 3");
    ASSERT_OK_AND_ASSIGN(Tensor bad_state, Tensor::Zeros({2, 4, 3, 5}, DType::kBF16));
    EXPECT_STATUS_IS(
        SsdStateUpdate(bad_state, x, dt, good.A, B, B, good.D, x, good.dt_bias),
        absl::StatusCode::kInvalidArgument, "state");
    EXPECT_STATUS_IS(SsdStateUpdate(state, x, x, good.A, B, B, good.D, x, good.dt_bias),
                     absl::StatusCode::kInvalidArgument, "dt");
    EXPECT_STATUS_IS(
        SsdStateUpdate(state, x, dt, good.A, B, B, good.D, x, good.dt_bias, {true, 1.0, 0.5}),
        absl::StatusCode::kInvalidArgument, "dt_min");
  }
}

TEST(SsdErrorsTest, PredicatesRejectWhatTheKernelsCannotRun) {
  Config c;
  c.dtype = DType::kF32, c.head_dim = 4, c.dstate = 4;
  ASSERT_OK_AND_ASSIGN(const Operands o, MakeOperands(c, 1));
  ASSERT_OK_AND_ASSIGN(Outputs r, RunReference(c, o, true));
  cuda::SsdParams p = ForwardParams(c, o);
  p.y = r.y.data();
  p.y_stride_b = r.y.stride(0), p.y_stride_l = r.y.stride(1), p.y_stride_h = r.y.stride(2);
  p.y_stride_p = r.y.stride(3);
  ASSERT_OK(cuda::SsdSupported(p, /*cuda=*/true));
  cuda::SsdParams q = p;
  q.x_stride_p = 2;
  EXPECT_STATUS_IS(cuda::SsdSupported(q, true), absl::StatusCode::kUnimplemented, "unit stride");
  ASSERT_OK(cuda::SsdSupported(q, false));
  q = p;
  q.initial_state_stride_p = 1, q.initial_state_stride_n = 4;
  EXPECT_STATUS_IS(cuda::SsdSupported(q, true), absl::StatusCode::kUnimplemented, "contiguous");
  q = p;
  q.dtype = DType::kF64;
  EXPECT_STATUS_IS(cuda::SsdSupported(q, true), absl::StatusCode::kUnimplemented, "f64");
  q = p;
  q.groups = 3;
  EXPECT_STATUS_IS(cuda::SsdSupported(q, false), absl::StatusCode::kInvalidArgument, "G = 3");
  q = p;
  q.head_dim = 300;
  EXPECT_STATUS_IS(cuda::SsdSupported(q, false), absl::StatusCode::kUnimplemented, "P = 300");
  q = p;
  q.y = nullptr;
  EXPECT_STATUS_IS(cuda::SsdSupported(q, false), absl::StatusCode::kInvalidArgument, "required");
  q = p;
  q.batch = -1;
  EXPECT_STATUS_IS(cuda::SsdSupported(q, false), absl::StatusCode::kInvalidArgument, "negative");
  cuda::SsdBackwardParams bp;
  bp.forward = p;
  EXPECT_STATUS_IS(cuda::SsdBackwardSupported(bp, false), absl::StatusCode::kInvalidArgument,
                   "gradient");
}

// ---------------------------------------------------------------------------------------------
// CUDA, through the mamba/ssd.cc dispatch

// Tolerances (norm-wise relative error) of CUDA vs the f64-accumulating CPU reference on the
// same inputs: CUDA computes in f32 with 16-bit tensor-core products for f16 / bf16 operands
// (and TF32 splits for f32); outputs are rounded to the dtype once.
double OutTol(DType dtype) { return dtype == DType::kF32 ? 1e-4 : 2e-2; }
double SumTol(DType dtype) { return dtype == DType::kF32 ? 1e-4 : 1e-2; }

void CheckCudaMatchesCpu(const Config& c, uint64_t seed) {
  SCOPED_TRACE(absl::StrCat(c.name, " ", DTypeName(c.dtype), " B=", c.batch, " L=", c.length,
                            " H=", c.heads, " G=", c.groups, " P=", c.head_dim, " N=", c.dstate,
                            " Q=", c.chunk, " D?", c.has_D, " D per p?", c.D_per_head_dim,
                            " z?", c.has_z, " bias?", c.has_bias, " init?", c.has_init,
                            " seq?", c.has_seq, " softplus=", c.softplus, " clamp ", c.dt_min,
                            "..", c.dt_max));
  const Device gpu = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(Operands cpu, MakeOperands(c, seed));
  ASSERT_OK_AND_ASSIGN(Operands dev, ToDevice(cpu, gpu));
  ASSERT_OK_AND_ASSIGN(SsdResult r_cpu, SsdForward(cpu));
  ASSERT_OK_AND_ASSIGN(SsdResult r_gpu, SsdForward(dev));
  EXPECT_NEAR_NORM(r_gpu.y, r_cpu.y, OutTol(c.dtype));
  EXPECT_NEAR_NORM(r_gpu.final_state, r_cpu.final_state, SumTol(c.dtype));
  ASSERT_TRUE(r_gpu.chunk_states.defined());
  EXPECT_EQ(r_gpu.chunk_states.shape(),
            (Shape{c.batch, cuda::SsdNumChunks(c.length, c.chunk), c.heads, c.head_dim,
                   c.dstate}));

  ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor(cpu.x.shape(), c.dtype, seed + 50));
  ASSERT_OK_AND_ASSIGN(Tensor dfinal, RandomTensor(r_cpu.final_state.shape(),
                                                   r_cpu.final_state.dtype(), seed + 51));
  ASSERT_OK_AND_ASSIGN(Tensor dy_gpu, dy.To(gpu));
  ASSERT_OK_AND_ASSIGN(Tensor dfinal_gpu, dfinal.To(gpu));
  ASSERT_OK_AND_ASSIGN(SsdGrads g_cpu, SsdBackward(cpu, dy, dfinal));
  // With the saved chunk states, and without (the backward recomputes them).
  ASSERT_OK_AND_ASSIGN(SsdGrads g_gpu, SsdBackward(dev, dy_gpu, dfinal_gpu, r_gpu.chunk_states));
  ASSERT_OK_AND_ASSIGN(SsdGrads g_gpu2, SsdBackward(dev, dy_gpu, dfinal_gpu));
  for (const SsdGrads* g : {&g_gpu, &g_gpu2}) {
    EXPECT_NEAR_NORM(g->dx, g_cpu.dx, OutTol(c.dtype));
    EXPECT_NEAR_NORM(g->ddt, g_cpu.ddt, OutTol(c.dtype) + SumTol(c.dtype));
    EXPECT_NEAR_NORM(g->dB, g_cpu.dB, OutTol(c.dtype) + SumTol(c.dtype));
    EXPECT_NEAR_NORM(g->dC, g_cpu.dC, OutTol(c.dtype) + SumTol(c.dtype));
    EXPECT_NEAR_NORM(g->dA, g_cpu.dA, SumTol(c.dtype));
    if (c.has_D) EXPECT_NEAR_NORM(g->dD, g_cpu.dD, SumTol(c.dtype));
    if (c.has_z) EXPECT_NEAR_NORM(g->dz, g_cpu.dz, OutTol(c.dtype));
    if (c.has_bias) EXPECT_NEAR_NORM(g->ddt_bias, g_cpu.ddt_bias, SumTol(c.dtype));
    if (c.has_init) EXPECT_NEAR_NORM(g->dinitial_state, g_cpu.dinitial_state, SumTol(c.dtype));
  }
}

TEST(SsdCudaTest, ForwardAndBackwardMatchReference) {
  LYRA_REQUIRE_GPU();
  int index = 0;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t L : {1, 37, 256, 300}) {
      for (int64_t P : {16, 64}) {
        ++index;
        Config c;
        c.name = "grid";
        c.dtype = dtype, c.length = L, c.head_dim = P;
        c.dstate = index % 3 == 0 ? 128 : (index % 3 == 1 ? 16 : 64);
        c.chunk = index % 2 ? 64 : (L > 200 ? 256 : 32);
        c.groups = index % 4 == 0 ? 2 : 1;
        c.heads = c.groups * (index % 2 ? 3 : 2);
        c.batch = 2;
        c.has_D = index % 4 != 1, c.D_per_head_dim = index % 5 == 0;
        c.has_z = index % 5 != 2, c.has_bias = index % 3 != 1;
        c.has_init = index % 2 == 0, c.has_seq = index % 3 == 2;
        c.softplus = index % 7 != 3;
        if (index % 6 == 1) c.dt_min = 0.05, c.dt_max = 0.5;
        CheckCudaMatchesCpu(c, 1000 + 97 * index);
      }
    }
  }
}

TEST(SsdCudaTest, RealConfigs) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.name = "mamba2-130m (a slice of its 24 heads)";  // P = 64, N = 128, G = 1, Q = 256
  c.batch = 1, c.length = 300, c.heads = 4, c.groups = 1, c.head_dim = 64, c.dstate = 128;
  c.chunk = 256, c.dtype = DType::kBF16, c.has_init = false;
  CheckCudaMatchesCpu(c, 5);
  c.name = "mamba2-130m packed, f32";
  c.dtype = DType::kF32, c.has_seq = true, c.has_init = true, c.length = 200;
  CheckCudaMatchesCpu(c, 6);
  c.name = "codestral-like: G = 8, N = 128, P = 64 (2 heads per group)";
  c.heads = 16, c.groups = 8, c.length = 130, c.dtype = DType::kBF16, c.has_seq = false;
  CheckCudaMatchesCpu(c, 7);
}

TEST(SsdCudaTest, IdentitiesHoldOnCuda) {
  LYRA_REQUIRE_GPU();
  CheckPackedEqualsSeparate(Device::Cuda(0), DType::kF32, 16, 1e-4);
  CheckPackedEqualsSeparate(Device::Cuda(0), DType::kF32, 32, 1e-4);
  CheckSplitEqualsWhole(Device::Cuda(0), DType::kF32, 21, 1e-4);
  CheckSplitEqualsWhole(Device::Cuda(0), DType::kF32, 32, 1e-4);
  CheckStepEqualsScan(Device::Cuda(0), DType::kF32, false, 1e-4);
  CheckStepEqualsScan(Device::Cuda(0), DType::kF32, true, 1e-4);
}

TEST(SsdCudaTest, StateUpdateMatchesCpu) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t N : {1, 16, 37, 128}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " N=", N));
      Config c;
      c.batch = 3, c.length = 1, c.heads = 6, c.groups = 2, c.head_dim = 17, c.dstate = N;
      c.dtype = dtype, c.D_per_head_dim = N == 37, c.has_z = N != 16;
      if (N == 128) c.dt_min = 0.1, c.dt_max = 0.6;
      ASSERT_OK_AND_ASSIGN(Operands cpu, MakeOperands(c, 60 + N));
      ASSERT_OK_AND_ASSIGN(Operands dev, ToDevice(cpu, Device::Cuda(0)));
      const SsdStepOptions step{c.softplus, c.dt_min, c.dt_max};
      std::vector<Tensor> ys;
      std::vector<Tensor> states;
      for (const Operands* in : {&cpu, &dev}) {
        ASSERT_OK_AND_ASSIGN(Tensor state, in->initial_state.Clone());
        ASSERT_OK_AND_ASSIGN(Tensor x, in->x.Select(1, 0));
        ASSERT_OK_AND_ASSIGN(Tensor dt, in->dt.Select(1, 0));
        ASSERT_OK_AND_ASSIGN(Tensor B, in->B.Select(1, 0));
        ASSERT_OK_AND_ASSIGN(Tensor C, in->C.Select(1, 0));
        Tensor z;
        if (in->z.defined()) {
          ASSERT_OK_AND_ASSIGN(z, in->z.Select(1, 0));
        }
        ASSERT_OK_AND_ASSIGN(Tensor y,
                             SsdStateUpdate(state, x, dt, in->A, B, C, in->D, z, in->dt_bias,
                                            step));
        ys.push_back(y);
        states.push_back(state);
      }
      EXPECT_NEAR_NORM(ys[1], ys[0], dtype == DType::kF32 ? 1e-5 : 1e-2);
      EXPECT_NEAR_NORM(states[1], states[0], 1e-5);
    }
  }
}

TEST(SsdCudaTest, NonContiguousInputs) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.dtype = DType::kF32, c.batch = 2, c.length = 70, c.heads = 4, c.groups = 2;
  c.head_dim = 32, c.dstate = 16, c.chunk = 32;
  ASSERT_OK_AND_ASSIGN(Operands cpu, MakeOperands(c, 12));
  ASSERT_OK_AND_ASSIGN(Operands dev, ToDevice(cpu, Device::Cuda(0)));
  // x, z, B, C, initial_state with P / N not the innermost dimension: the tensor layer copies.
  for (Tensor* t : {&dev.x, &dev.z, &dev.B, &dev.C, &dev.initial_state}) {
    ASSERT_OK_AND_ASSIGN(Tensor tr, t->Transpose(1, 3));
    ASSERT_OK_AND_ASSIGN(tr, tr.Contiguous());
    ASSERT_OK_AND_ASSIGN(*t, tr.Transpose(1, 3));
  }
  ASSERT_OK_AND_ASSIGN(SsdResult r_cpu, SsdForward(cpu));
  ASSERT_OK_AND_ASSIGN(SsdResult r_gpu, SsdForward(dev));
  EXPECT_NEAR_NORM(r_gpu.y, r_cpu.y, OutTol(c.dtype));
  EXPECT_NEAR_NORM(r_gpu.final_state, r_cpu.final_state, SumTol(c.dtype));
  ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor(cpu.x.shape(), DType::kF32, 13));
  ASSERT_OK_AND_ASSIGN(Tensor dy_t, dy.Transpose(1, 3));
  ASSERT_OK_AND_ASSIGN(dy_t, dy_t.Contiguous());
  ASSERT_OK_AND_ASSIGN(dy_t, dy_t.To(Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor dy_gpu, dy_t.Transpose(1, 3));
  ASSERT_OK_AND_ASSIGN(SsdGrads g_cpu, SsdBackward(cpu, dy));
  ASSERT_OK_AND_ASSIGN(SsdGrads g_gpu, SsdBackward(dev, dy_gpu, {}, r_gpu.chunk_states));
  EXPECT_NEAR_NORM(g_gpu.dx, g_cpu.dx, OutTol(c.dtype));
  EXPECT_NEAR_NORM(g_gpu.dB, g_cpu.dB, OutTol(c.dtype) + SumTol(c.dtype));
  EXPECT_NEAR_NORM(g_gpu.dinitial_state, g_cpu.dinitial_state, SumTol(c.dtype));
}

TEST(SsdCudaTest, AutogradMatchesCpu) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.dtype = DType::kF32, c.batch = 2, c.length = 90, c.heads = 4, c.groups = 2;
  c.head_dim = 16, c.dstate = 16, c.chunk = 32, c.has_seq = true;
  ASSERT_OK_AND_ASSIGN(Operands cpu, MakeOperands(c, 14));
  ASSERT_OK_AND_ASSIGN(Operands dev, ToDevice(cpu, Device::Cuda(0)));
  std::vector<std::vector<Tensor>> grads;
  for (const Operands* in : {&cpu, &dev}) {
    std::vector<Variable> v;
    for (const Tensor& t : InputList(*in)) v.push_back(Variable(t, true));
    ASSERT_OK_AND_ASSIGN(SsdOutputs o,
                         Ssd(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], *in));
    ASSERT_OK_AND_ASSIGN(Variable sy, autograd::Sum(o.y));
    ASSERT_OK_AND_ASSIGN(Variable sf, autograd::Sum(o.final_state));
    ASSERT_OK_AND_ASSIGN(Variable s, autograd::Add(sy, sf));
    ASSERT_OK(s.Backward());
    std::vector<Tensor> g;
    for (const Variable& x : v) g.push_back(x.grad());
    grads.push_back(g);
  }
  for (int i = 0; i < 9; ++i) {
    SCOPED_TRACE(absl::StrCat("input ", i));
    EXPECT_NEAR_NORM(grads[1][i], grads[0][i], 2e-4);
  }
}

TEST(SsdCudaTest, RejectsF64AndMixedDevices) {
  LYRA_REQUIRE_GPU();
  Config c;
  ASSERT_OK_AND_ASSIGN(Operands cpu, MakeOperands(c, 15));
  ASSERT_OK_AND_ASSIGN(Operands dev, ToDevice(cpu, Device::Cuda(0)));
  EXPECT_STATUS_IS(SsdForward(dev), absl::StatusCode::kUnimplemented, "f64");
  Operands mixed = cpu;
  ASSERT_OK_AND_ASSIGN(mixed.x, cpu.x.To(Device::Cuda(0)));
  EXPECT_STATUS_IS(SsdForward(mixed), absl::StatusCode::kInvalidArgument, "device");
}

}  // namespace
}  // namespace lyra::mamba
