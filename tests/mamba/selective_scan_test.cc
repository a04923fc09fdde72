// Tests of the Mamba-1 selective scan (mamba/selective_scan.h, cuda/selective_scan.h):
//   - the CPU reference against an independent naive f64 loop written here;
//   - GradCheck (f64 central differences) of every input through the autograd node, with and
//     without each optional input, G = 1 and 2, seq_idx, initial state and dfinal_state;
//   - packed seq_idx == separate runs, chunked calls == one call, step updates == the scan;
//   - argument errors; and on a GPU: CUDA forward / backward against the CPU reference over
//     dtypes, shapes (odd D, L not a multiple of the chunk, N from 1 to 256, G = 1, 2) and flags,
//     the naive baseline kernel, determinism, and the same identities as on the CPU.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "autograd/variable.h"
#include "cuda/device.h"
#include "cuda/selective_scan.h"
#include "cuda/stream.h"
#include "gtest/gtest.h"
#include "mamba/selective_scan.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"

namespace lyra::mamba {
namespace {

using ::lyra::autograd::GradCheck;
using ::lyra::autograd::GradCheckOptions;
using ::lyra::autograd::GradCheckResult;
using ::lyra::autograd::Variable;
using ::lyra::testing::RandomTensor;

struct Config {
  std::string name;
  int64_t batch = 2, dim = 4, length = 9, dstate = 3, groups = 1;
  DType dtype = DType::kF64;
  bool bc_f32 = false;  // B, C in f32 with 16-bit u
  bool bc_3d = false;   // B, C given as [B, N, L]
  bool has_D = true, has_z = true, has_bias = true, has_init = false, has_seq = false;
  bool softplus = true;
};

DType ParamDType(DType d) { return d == DType::kF64 ? DType::kF64 : DType::kF32; }

// seq_idx [B, L]: documents of random lengths (row b has b + 1 boundaries at most).
absl::StatusOr<Tensor> MakeSeqIdx(int64_t batch, int64_t length, uint64_t seed) {
  std::vector<int32_t> v(batch * length);
  uint64_t state = seed * 2654435761u + 1;
  for (int64_t b = 0; b < batch; ++b) {
    int32_t doc = 0;
    for (int64_t t = 0; t < length; ++t) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      if (t > 0 && (state >> 33) % 5 == 0) ++doc;
      v[b * length + t] = doc;
    }
  }
  return Tensor::FromVector(v, {batch, length});
}

absl::StatusOr<SelectiveScanInputs> MakeInputs(const Config& c, uint64_t seed) {
  SelectiveScanInputs in;
  const DType pd = ParamDType(c.dtype);
  const DType bcd = c.bc_f32 ? DType::kF32 : c.dtype;
  LYRA_ASSIGN_OR_RETURN(in.u, RandomTensor({c.batch, c.dim, c.length}, c.dtype, seed + 1));
  // Without softplus delta is used as given: keep it positive (a decaying state).
  LYRA_ASSIGN_OR_RETURN(in.delta, RandomTensor({c.batch, c.dim, c.length}, c.dtype, seed + 2,
                                               c.softplus ? -1.0 : 0.05, 1.0));
  LYRA_ASSIGN_OR_RETURN(Tensor a_log, RandomTensor({c.dim, c.dstate}, DType::kF64, seed + 3,
                                                   -1.0, 1.5));
  std::vector<double> a;
  LYRA_ASSIGN_OR_RETURN(a, a_log.ToDoubles());
  for (double& v : a) v = -std::exp(v);
  LYRA_ASSIGN_OR_RETURN(in.A, Tensor::FromDoubles(a, {c.dim, c.dstate}, pd));
  const Shape bc = c.bc_3d ? Shape{c.batch, c.dstate, c.length}
                           : Shape{c.batch, c.groups, c.dstate, c.length};
  LYRA_ASSIGN_OR_RETURN(in.B, RandomTensor(bc, bcd, seed + 4));
  LYRA_ASSIGN_OR_RETURN(in.C, RandomTensor(bc, bcd, seed + 5));
  if (c.has_D) {
    LYRA_ASSIGN_OR_RETURN(in.D, RandomTensor({c.dim}, pd, seed + 6));
  }
  if (c.has_z) {
    LYRA_ASSIGN_OR_RETURN(in.z, RandomTensor({c.batch, c.dim, c.length}, c.dtype, seed + 7,
                                             -2.0, 2.0));
  }
  if (c.has_bias) {
    LYRA_ASSIGN_OR_RETURN(in.delta_bias, RandomTensor({c.dim}, pd, seed + 8,
                                                      c.softplus ? -4.0 : 0.0,
                                                      c.softplus ? -1.0 : 0.2));
  }
  if (c.has_init) {
    LYRA_ASSIGN_OR_RETURN(in.initial_state,
                          RandomTensor({c.batch, c.dim, c.dstate}, pd, seed + 9));
  }
  if (c.has_seq) {
    LYRA_ASSIGN_OR_RETURN(in.seq_idx, MakeSeqIdx(c.batch, c.length, seed + 10));
  }
  in.delta_softplus = c.softplus;
  return in;
}

absl::StatusOr<SelectiveScanInputs> ToDevice(const SelectiveScanInputs& in, Device device) {
  SelectiveScanInputs out = in;
  for (Tensor* t : {&out.u, &out.delta, &out.A, &out.B, &out.C, &out.D, &out.z, &out.delta_bias,
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
  absl::StatusOr<std::vector<double>> v = cpu->ToDoubles();
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *v : std::vector<double>();
}

// ||a - b|| / ||b|| (+inf on NaN or a size mismatch).
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

#define EXPECT_NEAR_NORM(actual, expected, tol)                          \
  do {                                                                   \
    const double err_ = NormRelError((actual), (expected));              \
    EXPECT_TRUE(err_ <= (tol)) << #actual << " rel. error " << err_;     \
  } while (0)

// An independent f64 loop of the math (mamba_ssm's selective_scan_ref / HF slow_forward), with
// its own indexing of contiguous buffers.
struct Naive {
  std::vector<double> y, final_state;
};
Naive NaiveScan(const Config& c, const SelectiveScanInputs& in) {
  const int64_t Bt = c.batch, D = c.dim, L = c.length, N = c.dstate, G = c.groups;
  const std::vector<double> u = Doubles(in.u), dl = Doubles(in.delta), A = Doubles(in.A),
                            Bm = Doubles(in.B), Cm = Doubles(in.C);
  const std::vector<double> Dv = c.has_D ? Doubles(in.D) : std::vector<double>(D, 0.0);
  const std::vector<double> z = c.has_z ? Doubles(in.z) : std::vector<double>();
  const std::vector<double> bias = c.has_bias ? Doubles(in.delta_bias) : std::vector<double>(D, 0);
  const std::vector<double> h0 =
      c.has_init ? Doubles(in.initial_state) : std::vector<double>(Bt * D * N, 0.0);
  std::vector<double> seq;
  if (c.has_seq) seq = Doubles(in.seq_idx);
  Naive r;
  r.y.resize(Bt * D * L);
  r.final_state.resize(Bt * D * N);
  for (int64_t b = 0; b < Bt; ++b) {
    for (int64_t d = 0; d < D; ++d) {
      const int64_t g = d / (D / G);
      std::vector<double> h(h0.begin() + (b * D + d) * N, h0.begin() + (b * D + d + 1) * N);
      for (int64_t t = 0; t < L; ++t) {
        if (c.has_seq && t > 0 && seq[b * L + t] != seq[b * L + t - 1]) {
          std::fill(h.begin(), h.end(), 0.0);
        }
        double delta = dl[(b * D + d) * L + t] + bias[d];
        if (c.softplus) delta = delta > 20 ? delta : std::log(1 + std::exp(delta));
        const double uv = u[(b * D + d) * L + t];
        double y = Dv[d] * uv;
        for (int64_t n = 0; n < N; ++n) {
          const double bv = Bm[((b * G + g) * N + n) * L + t];
          const double cv = Cm[((b * G + g) * N + n) * L + t];
          h[n] = std::exp(delta * A[d * N + n]) * h[n] + delta * bv * uv;
          y += cv * h[n];
        }
        if (c.has_z) {
          const double zv = z[(b * D + d) * L + t];
          y *= zv / (1 + std::exp(-zv));
        }
        r.y[(b * D + d) * L + t] = y;
      }
      for (int64_t n = 0; n < N; ++n) r.final_state[(b * D + d) * N + n] = h[n];
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// CPU reference

TEST(SelectiveScanReferenceTest, MatchesNaiveLoopF64) {
  int index = 0;
  for (bool flags : {false, true}) {
    for (int64_t groups : {1, 2}) {
      for (bool seq : {false, true}) {
        Config c;
        c.batch = 2, c.dim = 6, c.length = 37, c.dstate = 5, c.groups = groups;
        c.has_D = c.has_z = c.has_bias = c.has_init = flags;
        c.softplus = flags || groups == 2;
        c.has_seq = seq;
        SCOPED_TRACE(absl::StrCat("flags=", flags, " G=", groups, " seq=", seq));
        ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, MakeInputs(c, 100 + index++));
        ASSERT_OK_AND_ASSIGN(SelectiveScanResult r, SelectiveScanForward(in));
        const Naive n = NaiveScan(c, in);
        EXPECT_TRUE(::lyra::testing::AllClose(Doubles(r.y), n.y, {1e-12, 1e-10}));
        EXPECT_TRUE(
            ::lyra::testing::AllClose(Doubles(r.final_state), n.final_state, {1e-12, 1e-10}));
        EXPECT_FALSE(r.chunk_states.defined());
      }
    }
  }
}

TEST(SelectiveScanReferenceTest, LowPrecisionMatchesF64) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    Config c;
    c.batch = 2, c.dim = 5, c.length = 70, c.dstate = 16, c.dtype = dtype, c.has_init = true;
    ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, MakeInputs(c, 7));
    ASSERT_OK_AND_ASSIGN(SelectiveScanResult r, SelectiveScanForward(in));
    ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in64, MakeInputs(c, 7));
    // The same (rounded) values in f64.
    for (Tensor* t : {&in64.u, &in64.delta, &in64.A, &in64.B, &in64.C, &in64.D, &in64.z,
                      &in64.delta_bias, &in64.initial_state}) {
      ASSERT_OK_AND_ASSIGN(*t, t->To(DType::kF64));
    }
    ASSERT_OK_AND_ASSIGN(SelectiveScanResult r64, SelectiveScanForward(in64));
    EXPECT_NEAR_NORM(r.y, r64.y, dtype == DType::kF32 ? 1e-5 : 1e-2);
    EXPECT_NEAR_NORM(r.final_state, r64.final_state, 1e-5);
  }
}

TEST(SelectiveScanReferenceTest, EmptySequenceKeepsTheInitialState) {
  Config c;
  c.length = 0, c.has_init = true;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, MakeInputs(c, 3));
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult r, SelectiveScanForward(in));
  EXPECT_EQ(r.y.numel(), 0);
  EXPECT_TRUE(::lyra::testing::AllClose(r.final_state, in.initial_state, {0, 0}));
}

// Packed documents with seq_idx equal separate scans of each document.
void CheckPackedEqualsSeparate(Device device, DType dtype, int64_t dstate) {
  Config c;
  c.batch = 1, c.dim = 7, c.length = 150, c.dstate = dstate, c.dtype = dtype, c.has_init = true;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, 11));
  const std::vector<int64_t> starts = {0, 40, 41, 107, 150};
  std::vector<int32_t> seq(c.length);
  for (size_t k = 0; k + 1 < starts.size(); ++k) {
    for (int64_t t = starts[k]; t < starts[k + 1]; ++t) seq[t] = 3 + static_cast<int>(k);
  }
  ASSERT_OK_AND_ASSIGN(cpu.seq_idx, Tensor::FromVector(seq, {1, c.length}));
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, ToDevice(cpu, device));
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult packed, SelectiveScanForward(in));
  for (size_t k = 0; k + 1 < starts.size(); ++k) {
    const int64_t t0 = starts[k], len = starts[k + 1] - t0;
    SelectiveScanInputs part = in;
    part.seq_idx = Tensor();
    if (k > 0) part.initial_state = Tensor();  // later documents start from zero
    for (Tensor* t : {&part.u, &part.delta, &part.z, &part.B, &part.C}) {
      ASSERT_OK_AND_ASSIGN(*t, t->Narrow(t->dim() - 1, t0, len));
    }
    ASSERT_OK_AND_ASSIGN(SelectiveScanResult r, SelectiveScanForward(part));
    ASSERT_OK_AND_ASSIGN(Tensor y_part, packed.y.Narrow(2, t0, len));
    EXPECT_TRUE(::lyra::testing::AllClose(r.y, y_part, {1e-6, 1e-5})) << "document " << k;
    if (k + 2 == starts.size()) {
      EXPECT_TRUE(::lyra::testing::AllClose(r.final_state, packed.final_state, {1e-6, 1e-5}));
    }
  }
}

// Two calls, the second starting from the first's final state, equal one call.
void CheckChunkedEqualsWhole(Device device, DType dtype, int64_t split, int64_t length) {
  Config c;
  c.batch = 2, c.dim = 9, c.length = length, c.dstate = 16, c.dtype = dtype, c.has_init = true;
  c.groups = 3;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, 21));
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, ToDevice(cpu, device));
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult whole, SelectiveScanForward(in));
  SelectiveScanInputs first = in, second = in;
  for (int half = 0; half < 2; ++half) {
    SelectiveScanInputs& part = half == 0 ? first : second;
    const int64_t t0 = half == 0 ? 0 : split, len = half == 0 ? split : length - split;
    for (Tensor* t : {&part.u, &part.delta, &part.z, &part.B, &part.C}) {
      ASSERT_OK_AND_ASSIGN(*t, t->Narrow(t->dim() - 1, t0, len));
    }
  }
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult r1, SelectiveScanForward(first));
  second.initial_state = r1.final_state;
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult r2, SelectiveScanForward(second));
  ASSERT_OK_AND_ASSIGN(Tensor y1, whole.y.Narrow(2, 0, split));
  ASSERT_OK_AND_ASSIGN(Tensor y2, whole.y.Narrow(2, split, length - split));
  const ::lyra::testing::Tolerance tol =
      dtype == DType::kF64 ? ::lyra::testing::Tolerance{1e-12, 1e-10}
                           : ::lyra::testing::Tolerance{2e-5, 2e-5};
  EXPECT_TRUE(::lyra::testing::AllClose(r1.y, y1, tol));
  if (dtype == DType::kF64 || dtype == DType::kF32) {
    EXPECT_TRUE(::lyra::testing::AllClose(r2.y, y2, tol));
  } else {
    EXPECT_NEAR_NORM(r2.y, y2, 1e-2);  // one rounding of y apart at most
  }
  EXPECT_TRUE(::lyra::testing::AllClose(r2.final_state, whole.final_state, {1e-5, 1e-5}));
}

// SelectiveStateUpdate applied column by column equals the scan.
void CheckStepEqualsScan(Device device, DType dtype, int64_t groups, bool bc_3d) {
  Config c;
  c.batch = 3, c.dim = 6, c.length = 12, c.dstate = 16, c.dtype = dtype, c.groups = groups;
  c.has_init = true, c.bc_3d = bc_3d;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, 31));
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, ToDevice(cpu, device));
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult scan, SelectiveScanForward(in));
  ASSERT_OK_AND_ASSIGN(Tensor state, in.initial_state.Clone());
  for (int64_t t = 0; t < c.length; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor x, in.u.Select(2, t));
    ASSERT_OK_AND_ASSIGN(Tensor dt, in.delta.Select(2, t));
    ASSERT_OK_AND_ASSIGN(Tensor z, in.z.Select(2, t));
    ASSERT_OK_AND_ASSIGN(Tensor B, in.B.Select(in.B.dim() - 1, t));
    ASSERT_OK_AND_ASSIGN(Tensor C, in.C.Select(in.C.dim() - 1, t));
    ASSERT_OK_AND_ASSIGN(Tensor y, SelectiveStateUpdate(state, x, dt, in.A, B, C, in.D, z,
                                                        in.delta_bias, c.softplus));
    ASSERT_OK_AND_ASSIGN(Tensor y_scan, scan.y.Select(2, t));
    if (dtype == DType::kF64) {
      EXPECT_TRUE(::lyra::testing::AllClose(y, y_scan, {1e-12, 1e-10})) << "t = " << t;
    } else {
      EXPECT_TRUE(::lyra::testing::AllClose(y, y_scan, {2e-5, 2e-5})) << "t = " << t;
    }
  }
  EXPECT_TRUE(::lyra::testing::AllClose(state, scan.final_state,
                                        dtype == DType::kF64 ? ::lyra::testing::Tolerance{1e-12, 1e-10}
                                                             : ::lyra::testing::Tolerance{2e-5, 2e-5}));
}

TEST(SelectiveScanReferenceTest, PackedEqualsSeparate) {
  CheckPackedEqualsSeparate(Device::Cpu(), DType::kF64, 4);
}
TEST(SelectiveScanReferenceTest, ChunkedEqualsWhole) {
  CheckChunkedEqualsWhole(Device::Cpu(), DType::kF64, 17, 50);
}
TEST(SelectiveScanReferenceTest, StepUpdateEqualsScan) {
  CheckStepEqualsScan(Device::Cpu(), DType::kF64, 1, true);
  CheckStepEqualsScan(Device::Cpu(), DType::kF64, 2, false);
  CheckStepEqualsScan(Device::Cpu(), DType::kF32, 3, false);
}

// ---------------------------------------------------------------------------------------------
// Gradients

// The optional inputs present in a GradCheck run.
struct GradCase {
  std::string name;
  Config config;
  bool check_final_state = false;  // differentiate final_state (dfinal_state) instead of y
};

std::vector<Tensor> InputList(const SelectiveScanInputs& in) {
  return {in.u, in.delta, in.A, in.B, in.C, in.D, in.z, in.delta_bias, in.initial_state};
}

TEST(SelectiveScanGradTest, GradCheckF64) {
  std::vector<GradCase> cases;
  {
    GradCase g{"all inputs, G = 2, seq_idx", {}, false};
    g.config.dim = 4, g.config.groups = 2, g.config.has_init = true, g.config.has_seq = true;
    cases.push_back(g);
  }
  {
    GradCase g{"final state, initial state, G = 1", {}, true};
    g.config.has_init = true;
    cases.push_back(g);
  }
  {
    GradCase g{"final state with seq_idx", {}, true};
    g.config.has_init = true, g.config.has_seq = true, g.config.groups = 2;
    cases.push_back(g);
  }
  {
    GradCase g{"no optional inputs, no softplus, 3-d B / C", {}, false};
    g.config.has_D = g.config.has_z = g.config.has_bias = false;
    g.config.softplus = false, g.config.bc_3d = true;
    cases.push_back(g);
  }
  {
    GradCase g{"D only", {}, false};
    g.config.has_z = g.config.has_bias = false;
    cases.push_back(g);
  }
  {
    GradCase g{"z and bias, no D, N = 1", {}, false};
    g.config.has_D = false, g.config.dstate = 1;
    cases.push_back(g);
  }
  int index = 0;
  for (const GradCase& gc : cases) {
    SCOPED_TRACE(gc.name);
    ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, MakeInputs(gc.config, 200 + 10 * index++));
    std::vector<Tensor> all = InputList(in);
    std::vector<int> slot;  // which input each GradCheck argument is
    std::vector<Tensor> args;
    for (int i = 0; i < static_cast<int>(all.size()); ++i) {
      if (all[i].defined()) {
        slot.push_back(i);
        args.push_back(all[i]);
      }
    }
    const Tensor seq = in.seq_idx;
    const bool softplus = in.delta_softplus, final_state = gc.check_final_state;
    GradCheckOptions options;
    options.atol = 1e-7, options.rtol = 1e-5;
    GradCheckResult r = GradCheck(
        [&](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
          std::vector<Variable> full(9);
          for (size_t k = 0; k < slot.size(); ++k) full[slot[k]] = v[k];
          LYRA_ASSIGN_OR_RETURN(SelectiveScanOutputs o,
                                SelectiveScan(full[0], full[1], full[2], full[3], full[4],
                                              full[5], full[6], full[7], full[8], seq, softplus));
          return final_state ? o.final_state : o.y;
        },
        args, options);
    EXPECT_TRUE(r.ok) << r.message;
  }
}

TEST(SelectiveScanGradTest, GradientReachesEveryInputAndOnlyThoseRequiringIt) {
  Config c;
  c.has_init = true, c.groups = 2, c.dim = 4;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, MakeInputs(c, 5));
  std::vector<Tensor> all = InputList(in);
  for (int skip = -1; skip < 9; skip += 3) {
    std::vector<Variable> v;
    for (int i = 0; i < 9; ++i) v.push_back(Variable(all[i], /*requires_grad=*/i != skip));
    ASSERT_OK_AND_ASSIGN(SelectiveScanOutputs o, SelectiveScan(v[0], v[1], v[2], v[3], v[4], v[5],
                                                               v[6], v[7], v[8], Tensor()));
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

TEST(SelectiveScanGradTest, LowPrecisionBackwardMatchesF64) {
  Config c;
  c.batch = 2, c.dim = 6, c.length = 33, c.dstate = 8, c.dtype = DType::kBF16, c.has_init = true;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, MakeInputs(c, 9));
  ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor({2, 6, 33}, DType::kBF16, 99));
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads g, SelectiveScanBackward(in, dy));
  SelectiveScanInputs in64 = in;
  for (Tensor* t : {&in64.u, &in64.delta, &in64.A, &in64.B, &in64.C, &in64.D, &in64.z,
                    &in64.delta_bias, &in64.initial_state}) {
    ASSERT_OK_AND_ASSIGN(*t, t->To(DType::kF64));
  }
  ASSERT_OK_AND_ASSIGN(Tensor dy64, dy.To(DType::kF64));
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads g64, SelectiveScanBackward(in64, dy64));
  EXPECT_NEAR_NORM(g.du, g64.du, 1e-2);
  EXPECT_NEAR_NORM(g.ddelta, g64.ddelta, 1e-2);
  EXPECT_NEAR_NORM(g.dz, g64.dz, 1e-2);
  EXPECT_NEAR_NORM(g.dB, g64.dB, 1e-2);
  EXPECT_NEAR_NORM(g.dC, g64.dC, 1e-2);
  EXPECT_NEAR_NORM(g.dA, g64.dA, 1e-4);
  EXPECT_NEAR_NORM(g.dD, g64.dD, 1e-4);
  EXPECT_NEAR_NORM(g.ddelta_bias, g64.ddelta_bias, 1e-4);
  EXPECT_NEAR_NORM(g.dinitial_state, g64.dinitial_state, 1e-4);
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(SelectiveScanErrorsTest, RejectsBadArguments) {
  Config c;
  c.dtype = DType::kF32;
  ASSERT_OK_AND_ASSIGN(const SelectiveScanInputs good, MakeInputs(c, 1));
  ASSERT_OK(SelectiveScanForward(good).status());
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.delta, in.delta.Narrow(2, 0, 4));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "delta");
  }
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.delta, in.delta.To(DType::kBF16));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "delta");
  }
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.A, in.A.To(DType::kBF16));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "A");
  }
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.B, RandomTensor({2, 3, 3, 9}, DType::kF32, 1));  // G = 3 ∤ D = 4
    ASSERT_OK_AND_ASSIGN(in.C, RandomTensor({2, 3, 3, 9}, DType::kF32, 2));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "G = 3");
  }
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.C, RandomTensor({2, 1, 3, 8}, DType::kF32, 2));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "C");
  }
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.B, in.B.To(DType::kF16));
    ASSERT_OK_AND_ASSIGN(in.C, in.C.To(DType::kF16));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "B");
  }
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.D, RandomTensor({5}, DType::kF32, 3));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "D");
  }
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.initial_state, RandomTensor({2, 4, 3}, DType::kBF16, 3));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument,
                     "initial_state");
  }
  {
    SelectiveScanInputs in = good;
    ASSERT_OK_AND_ASSIGN(in.seq_idx, RandomTensor({2, 9}, DType::kF32, 3));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "seq_idx");
  }
  {
    SelectiveScanInputs in = good;
    in.A = Tensor();
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kInvalidArgument, "");
  }
  {
    Config big = c;
    big.dstate = 257, big.length = 2;
    ASSERT_OK_AND_ASSIGN(SelectiveScanInputs in, MakeInputs(big, 4));
    EXPECT_STATUS_IS(SelectiveScanForward(in), absl::StatusCode::kUnimplemented, "257");
    ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor({2, 4, 2}, DType::kF32, 5));
    EXPECT_STATUS_IS(SelectiveScanBackward(in, dy), absl::StatusCode::kUnimplemented, "257");
  }
  {
    ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor({2, 4, 9}, DType::kBF16, 5));
    EXPECT_STATUS_IS(SelectiveScanBackward(good, dy), absl::StatusCode::kInvalidArgument, "dy");
    ASSERT_OK_AND_ASSIGN(Tensor dy32, RandomTensor({2, 4, 9}, DType::kF32, 5));
    ASSERT_OK_AND_ASSIGN(Tensor bad_final, RandomTensor({2, 4, 2}, DType::kF32, 5));
    EXPECT_STATUS_IS(SelectiveScanBackward(good, dy32, bad_final),
                     absl::StatusCode::kInvalidArgument, "dfinal_state");
  }
  {
    ASSERT_OK_AND_ASSIGN(Tensor state, Tensor::Zeros({2, 4, 3}, DType::kF32));
    ASSERT_OK_AND_ASSIGN(Tensor x, RandomTensor({2, 4}, DType::kF32, 1));
    ASSERT_OK_AND_ASSIGN(Tensor B, RandomTensor({2, 3}, DType::kF32, 2));
    ASSERT_OK_AND_ASSIGN(Tensor bad_B, RandomTensor({2, 4}, DType::kF32, 2));
    ASSERT_OK(SelectiveStateUpdate(state, x, x, good.A, B, B, good.D, x, good.delta_bias).status());
    EXPECT_STATUS_IS(
        SelectiveStateUpdate(state, x, x, good.A, bad_B, bad_B, good.D, x, good.delta_bias),
        absl::StatusCode::kInvalidArgument, "B");
    ASSERT_OK_AND_ASSIGN(Tensor bad_state, Tensor::Zeros({2, 4, 3}, DType::kBF16));
    EXPECT_STATUS_IS(
        SelectiveStateUpdate(bad_state, x, x, good.A, B, B, good.D, x, good.delta_bias),
        absl::StatusCode::kInvalidArgument, "state");
  }
}

// ---------------------------------------------------------------------------------------------
// CUDA

Tensor ToCpu(const Tensor& t) {
  absl::StatusOr<Tensor> c = t.To(Device::Cpu());
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : Tensor();
}

// Tolerances of CUDA vs the CPU reference on the same inputs (both f32 arithmetic; the outputs
// are rounded to the dtype, the sums run in other orders).
double OutTol(DType dtype) { return dtype == DType::kF32 ? 2e-5 : 1e-2; }
double SumTol(DType dtype) { return dtype == DType::kF32 ? 1e-4 : 5e-3; }

void CheckCudaMatchesCpu(const Config& c, uint64_t seed) {
  SCOPED_TRACE(absl::StrCat(c.name, " ", DTypeName(c.dtype), " B=", c.batch, " D=", c.dim,
                            " L=", c.length, " N=", c.dstate, " G=", c.groups,
                            " bc_f32=", c.bc_f32, " D?", c.has_D, " z?", c.has_z,
                            " bias?", c.has_bias, " init?", c.has_init, " seq?", c.has_seq,
                            " softplus=", c.softplus));
  const Device gpu = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, seed));
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs dev, ToDevice(cpu, gpu));
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult r_cpu, SelectiveScanForward(cpu));
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult r_gpu, SelectiveScanForward(dev));
  EXPECT_NEAR_NORM(r_gpu.y, r_cpu.y, OutTol(c.dtype));
  EXPECT_NEAR_NORM(r_gpu.final_state, r_cpu.final_state, 1e-4);
  ASSERT_TRUE(r_gpu.chunk_states.defined());

  ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor({c.batch, c.dim, c.length}, c.dtype, seed + 50));
  ASSERT_OK_AND_ASSIGN(Tensor dfinal,
                       RandomTensor({c.batch, c.dim, c.dstate}, DType::kF32, seed + 51));
  ASSERT_OK_AND_ASSIGN(Tensor dy_gpu, dy.To(gpu));
  ASSERT_OK_AND_ASSIGN(Tensor dfinal_gpu, dfinal.To(gpu));
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads g_cpu, SelectiveScanBackward(cpu, dy, dfinal));
  // With the saved chunk states, and without (the backward recomputes them).
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads g_gpu,
                       SelectiveScanBackward(dev, dy_gpu, dfinal_gpu, r_gpu.chunk_states));
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads g_gpu2, SelectiveScanBackward(dev, dy_gpu, dfinal_gpu));
  for (const SelectiveScanGrads* g : {&g_gpu, &g_gpu2}) {
    EXPECT_NEAR_NORM(g->du, g_cpu.du, OutTol(c.dtype));
    EXPECT_NEAR_NORM(g->ddelta, g_cpu.ddelta, OutTol(c.dtype));
    EXPECT_NEAR_NORM(g->dB, g_cpu.dB, OutTol(c.bc_f32 ? DType::kF32 : c.dtype) + SumTol(c.dtype));
    EXPECT_NEAR_NORM(g->dC, g_cpu.dC, OutTol(c.bc_f32 ? DType::kF32 : c.dtype) + SumTol(c.dtype));
    EXPECT_NEAR_NORM(g->dA, g_cpu.dA, SumTol(c.dtype));
    if (c.has_D) EXPECT_NEAR_NORM(g->dD, g_cpu.dD, SumTol(c.dtype));
    if (c.has_z) EXPECT_NEAR_NORM(g->dz, g_cpu.dz, OutTol(c.dtype));
    if (c.has_bias) EXPECT_NEAR_NORM(g->ddelta_bias, g_cpu.ddelta_bias, SumTol(c.dtype));
    if (c.has_init) EXPECT_NEAR_NORM(g->dinitial_state, g_cpu.dinitial_state, 1e-4);
  }
}

TEST(SelectiveScanCudaTest, ForwardAndBackwardMatchReference) {
  LYRA_REQUIRE_GPU();
  int index = 0;
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (int64_t L : {1, 7, 300, 2048 + 5}) {
      for (int64_t N : {1, 16, 64, 256}) {
        ++index;
        Config c;
        c.name = "grid";
        c.dtype = dtype;
        c.length = L;
        c.dstate = N;
        c.groups = (index % 2) ? 1 : 2;
        c.dim = (N >= 64 ? 10 : 38) * c.groups + (c.groups == 1 ? 1 : 0);  // odd with G = 1
        c.batch = L > 1000 && N > 16 ? 1 : 2;
        c.bc_f32 = dtype != DType::kF32 && (index % 3 == 0);
        c.has_D = index % 4 != 1;
        c.has_z = index % 5 != 2;
        c.has_bias = index % 3 != 1;
        c.has_init = index % 2 == 0;
        c.has_seq = index % 3 == 2;
        c.softplus = index % 7 != 3;
        c.bc_3d = c.groups == 1 && index % 5 == 0;
        CheckCudaMatchesCpu(c, 1000 + 97 * index);
      }
    }
  }
}

TEST(SelectiveScanCudaTest, RealConfigs) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.name = "mamba-130m";  // D = 1536, N = 16, bf16 activations, z, D, dt_bias
  c.batch = 1, c.dim = 1536, c.length = 260, c.dstate = 16, c.dtype = DType::kBF16;
  CheckCudaMatchesCpu(c, 5);
  c.name = "mamba-130m f32 B/C, packed";
  c.bc_f32 = true, c.has_seq = true, c.has_init = true, c.length = 129;
  CheckCudaMatchesCpu(c, 6);
  c.name = "mamba-2.8b-like, f32";  // D = 5120 (a slice of it), N = 16
  c.dtype = DType::kF32, c.bc_f32 = false, c.dim = 640, c.length = 77, c.has_seq = false;
  CheckCudaMatchesCpu(c, 7);
}

TEST(SelectiveScanCudaTest, NaiveKernelMatchesReference) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    Config c;
    c.dtype = dtype, c.batch = 2, c.dim = 33, c.length = 131, c.dstate = 16, c.has_init = true;
    c.has_seq = true, c.groups = 3;
    ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, 3));
    ASSERT_OK_AND_ASSIGN(SelectiveScanInputs dev, ToDevice(cpu, Device::Cuda(0)));
    ASSERT_OK_AND_ASSIGN(SelectiveScanResult ref, SelectiveScanForward(cpu));
    ASSERT_OK_AND_ASSIGN(SelectiveScanResult fast, SelectiveScanForward(dev));
    // The naive kernel on the same (contiguous) device buffers, into fresh outputs.
    cuda::SelectiveScanParams p;
    ASSERT_OK_AND_ASSIGN(Tensor y, Tensor::Empty(dev.u.shape(), dtype, dev.u.device()));
    ASSERT_OK_AND_ASSIGN(Tensor fs, Tensor::Empty({2, 33, 16}, DType::kF32, dev.u.device()));
    p.batch = 2, p.dim = 33, p.length = 131, p.dstate = 16, p.groups = 3;
    p.dtype = dtype, p.bc_dtype = dtype;
    p.u = dev.u.data(), p.u_stride_b = 33 * 131, p.u_stride_d = 131, p.u_stride_l = 1;
    p.delta = dev.delta.data(), p.delta_stride_b = 33 * 131, p.delta_stride_d = 131;
    p.delta_stride_l = 1;
    p.z = dev.z.data(), p.z_stride_b = 33 * 131, p.z_stride_d = 131, p.z_stride_l = 1;
    p.A = dev.A.data(), p.A_stride_d = 16, p.A_stride_n = 1;
    p.B = dev.B.data(), p.B_stride_b = 3 * 16 * 131, p.B_stride_g = 16 * 131;
    p.B_stride_n = 131, p.B_stride_l = 1;
    p.C = dev.C.data(), p.C_stride_b = 3 * 16 * 131, p.C_stride_g = 16 * 131;
    p.C_stride_n = 131, p.C_stride_l = 1;
    p.D = dev.D.data(), p.D_stride = 1;
    p.delta_bias = dev.delta_bias.data(), p.delta_bias_stride = 1;
    p.initial_state = dev.initial_state.data();
    p.initial_state_stride_b = 33 * 16, p.initial_state_stride_d = 16;
    p.initial_state_stride_n = 1;
    p.seq_idx = dev.seq_idx.data<int32_t>(), p.seq_idx_stride_b = 131, p.seq_idx_stride_l = 1;
    p.y = y.data(), p.y_stride_b = 33 * 131, p.y_stride_d = 131, p.y_stride_l = 1;
    p.final_state = fs.data(), p.final_state_stride_b = 33 * 16, p.final_state_stride_d = 16;
    p.final_state_stride_n = 1;
    ASSERT_OK(cuda::SelectiveScanNaiveCuda(p, cuda::CurrentStream(0)));
    EXPECT_NEAR_NORM(y, ref.y, OutTol(dtype));
    EXPECT_NEAR_NORM(fs, ref.final_state, 1e-4);
    EXPECT_NEAR_NORM(fast.y, ref.y, OutTol(dtype));
  }
}

TEST(SelectiveScanCudaTest, BackwardIsDeterministic) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.dtype = DType::kBF16, c.batch = 2, c.dim = 200, c.length = 1000, c.dstate = 16;
  c.has_init = true;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, 8));
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs dev, ToDevice(cpu, Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor({2, 200, 1000}, DType::kBF16, 9));
  ASSERT_OK_AND_ASSIGN(dy, dy.To(Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads a, SelectiveScanBackward(dev, dy));
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads b, SelectiveScanBackward(dev, dy));
  for (auto [x, y] : {std::pair{&a.dB, &b.dB}, {&a.dC, &b.dC}, {&a.dA, &b.dA}, {&a.dD, &b.dD},
                      {&a.ddelta_bias, &b.ddelta_bias}, {&a.du, &b.du}}) {
    EXPECT_TRUE(::lyra::testing::AllClose(*x, *y, {0, 0}));
  }
}

TEST(SelectiveScanCudaTest, IdentitiesHoldOnCuda) {
  LYRA_REQUIRE_GPU();
  CheckPackedEqualsSeparate(Device::Cuda(0), DType::kF32, 16);
  CheckPackedEqualsSeparate(Device::Cuda(0), DType::kF32, 64);
  CheckChunkedEqualsWhole(Device::Cuda(0), DType::kF32, 64, 200);
  CheckChunkedEqualsWhole(Device::Cuda(0), DType::kF32, 37, 150);
  CheckChunkedEqualsWhole(Device::Cuda(0), DType::kBF16, 100, 300);
  CheckStepEqualsScan(Device::Cuda(0), DType::kF32, 2, false);
  CheckStepEqualsScan(Device::Cuda(0), DType::kBF16, 1, true);
}

TEST(SelectiveScanCudaTest, NonContiguousInputs) {
  LYRA_REQUIRE_GPU();
  // u, delta, z as transposed [B, L, D] buffers and B, C as a slice: the tensor layer copies.
  Config c;
  c.dtype = DType::kF32, c.batch = 2, c.dim = 24, c.length = 70, c.dstate = 16;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, 12));
  SelectiveScanInputs dev;
  ASSERT_OK_AND_ASSIGN(dev, ToDevice(cpu, Device::Cuda(0)));
  for (Tensor* t : {&dev.u, &dev.delta, &dev.z}) {
    ASSERT_OK_AND_ASSIGN(Tensor bld, t->Transpose(1, 2));
    ASSERT_OK_AND_ASSIGN(bld, bld.Contiguous());
    ASSERT_OK_AND_ASSIGN(*t, bld.Transpose(1, 2));
  }
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult r_cpu, SelectiveScanForward(cpu));
  ASSERT_OK_AND_ASSIGN(SelectiveScanResult r_gpu, SelectiveScanForward(dev));
  EXPECT_NEAR_NORM(r_gpu.y, r_cpu.y, 2e-5);
  ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor({2, 24, 70}, DType::kF32, 13));
  ASSERT_OK_AND_ASSIGN(Tensor dy_gpu, dy.To(Device::Cuda(0)));
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads g_cpu, SelectiveScanBackward(cpu, dy));
  ASSERT_OK_AND_ASSIGN(SelectiveScanGrads g_gpu, SelectiveScanBackward(dev, dy_gpu));
  EXPECT_NEAR_NORM(g_gpu.du, g_cpu.du, 2e-5);
  EXPECT_NEAR_NORM(g_gpu.dB, g_cpu.dB, 1e-4);
}

TEST(SelectiveScanCudaTest, AutogradMatchesCpu) {
  LYRA_REQUIRE_GPU();
  Config c;
  c.dtype = DType::kF32, c.batch = 2, c.dim = 12, c.length = 90, c.dstate = 16, c.has_init = true;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, 14));
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs dev, ToDevice(cpu, Device::Cuda(0)));
  std::vector<std::vector<Tensor>> grads;
  for (const SelectiveScanInputs* in : {&cpu, &dev}) {
    std::vector<Variable> v;
    for (const Tensor& t : InputList(*in)) v.push_back(Variable(t, true));
    ASSERT_OK_AND_ASSIGN(SelectiveScanOutputs o, SelectiveScan(v[0], v[1], v[2], v[3], v[4], v[5],
                                                               v[6], v[7], v[8], Tensor()));
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
    EXPECT_NEAR_NORM(grads[1][i], grads[0][i], 1e-4);
  }
}

TEST(SelectiveScanCudaTest, RejectsF64AndMixedDevices) {
  LYRA_REQUIRE_GPU();
  Config c;
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs cpu, MakeInputs(c, 15));
  ASSERT_OK_AND_ASSIGN(SelectiveScanInputs dev, ToDevice(cpu, Device::Cuda(0)));
  EXPECT_STATUS_IS(SelectiveScanForward(dev), absl::StatusCode::kUnimplemented, "f64");
  SelectiveScanInputs mixed = cpu;
  ASSERT_OK_AND_ASSIGN(mixed.u, cpu.u.To(Device::Cuda(0)));
  EXPECT_STATUS_IS(SelectiveScanForward(mixed), absl::StatusCode::kInvalidArgument, "device");
}

}  // namespace
}  // namespace lyra::mamba
