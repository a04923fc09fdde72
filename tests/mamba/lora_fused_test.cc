// LoRA adapters inside the fused Mamba paths (mamba/mamba_inner.h): the fused node with adapter
// factors equals the same math composed of separate differentiable ops (values and every
// gradient, the factors' included, in f64; dropout with the same masks), passes a f64
// finite-difference check, replays its dropout masks, and every adapter of every fused target
// changes the output and receives a gradient (f32, f16 and bf16 autocast; CPU, and CUDA on a GPU
// machine), for the Mamba-1 node and for every LoRA target of the Mamba-1 and Mamba-2 models.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "mamba/cache.h"
#include "mamba/mamba_inner.h"
#include "mamba/model.h"
#include "mamba/selective_scan.h"
#include "nn/autocast.h"
#include "nn/conv1d.h"
#include "nn/dropout.h"
#include "nn/lora/lora.h"
#include "nn/lora/lora_factors.h"
#include "tensor/elementwise.h"
#include "tensor/random.h"
#include "tests/testing/testing.h"
#include "tests/testing/tiny_mamba.h"

namespace lyra::mamba {
namespace {

using autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

struct Case {
  int64_t b, l, m, d, n, r, k;
  bool conv_bias, out_bias;
};

// Which adapters are on, their ranks, and dropout.
struct Adapters {
  bool x = false, dt = false, out = false;
  double p = 0;           // dropout probability
  bool training = false;  // dropout acts only while training
  bool shared_generator = true;  // one generator for all three adapters (else one each)
};

constexpr int64_t kRankX = 3, kRankDt = 2, kRankOut = 3;
constexpr double kScaleX = 0.7, kScaleDt = 1.3, kScaleOut = 0.5;

// The node's 16 inputs: the 10 of mamba_inner_test, then A / B of x_proj, dt_proj, out_proj.
std::vector<Tensor> MakeInputs(const Case& c, DType dtype, uint64_t seed) {
  auto rnd = [&](const Shape& s, DType t, double lo, double hi) {
    return RandomTensor(s, t, seed++, lo, hi).value();
  };
  const DType f = dtype == DType::kF64 ? DType::kF64 : DType::kF32;
  std::vector<Tensor> in(16);
  in[0] = rnd({c.b, c.l, 2 * c.d}, dtype, -1, 1);
  in[1] = rnd({c.d, 1, c.k}, dtype, -0.5, 0.5);
  if (c.conv_bias) in[2] = rnd({c.d}, dtype, -0.2, 0.2);
  in[3] = rnd({c.r + 2 * c.n, c.d}, dtype, -0.5, 0.5);
  in[4] = rnd({c.d, c.r}, dtype, -0.5, 0.5);
  in[5] = rnd({c.d}, f, -1, 0);
  in[6] = rnd({c.d, c.n}, f, -0.5, 1);
  in[7] = rnd({c.d}, f, 0.5, 1.5);
  in[8] = rnd({c.m, c.d}, dtype, -0.5, 0.5);
  if (c.out_bias) in[9] = rnd({c.m}, dtype, -0.1, 0.1);
  in[10] = rnd({kRankX, c.d}, dtype, -0.5, 0.5);
  in[11] = rnd({c.r + 2 * c.n, kRankX}, dtype, -0.5, 0.5);
  in[12] = rnd({kRankDt, c.r}, dtype, -0.5, 0.5);
  in[13] = rnd({c.d, kRankDt}, dtype, -0.5, 0.5);
  in[14] = rnd({kRankOut, c.d}, dtype, -0.5, 0.5);
  in[15] = rnd({c.m, kRankOut}, dtype, -0.5, 0.5);
  return in;
}

// The adapters' factors as the fused node receives them; the generators they draw from.
struct Factors {
  Generator gen[3] = {Generator(17), Generator(18), Generator(19)};
  nn::LoraFactors x, dt, out;
  MambaInnerWeights Weights(const std::vector<Variable>& v) const {
    MambaInnerWeights w{v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]};
    if (x.A.defined()) w.x_proj_lora = &x;
    if (dt.A.defined()) w.dt_proj_lora = &dt;
    if (out.A.defined()) w.out_proj_lora = &out;
    return w;
  }
};

void MakeFactors(const std::vector<Variable>& v, const Adapters& a, Factors& f) {
  auto make = [&](int i, double scale, int g) {
    return nn::LoraFactors{v[i], v[i + 1], scale, a.p, a.training,
                           &f.gen[a.shared_generator ? 0 : g]};
  };
  f.x = a.x ? make(10, kScaleX, 0) : nn::LoraFactors{};
  f.dt = a.dt ? make(12, kScaleDt, 1) : nn::LoraFactors{};
  f.out = a.out ? make(14, kScaleOut, 2) : nn::LoraFactors{};
}

// x [rows, in] -> scale · (dropout(x) Aᵀ) Bᵀ, from separate ops (nn::functional::Dropout).
absl::StatusOr<Variable> LoraTerm(const Variable& x, const nn::LoraFactors& f) {
  using namespace autograd;
  Variable in = x;
  if (f.training && f.dropout > 0) {
    LYRA_ASSIGN_OR_RETURN(in, nn::functional::Dropout(x, f.dropout, *f.generator));
  }
  LYRA_ASSIGN_OR_RETURN(Variable a_t, Transpose(f.A, 0, 1));
  LYRA_ASSIGN_OR_RETURN(Variable b_t, Transpose(f.B, 0, 1));
  LYRA_ASSIGN_OR_RETURN(Variable t, Matmul(in, a_t));
  LYRA_ASSIGN_OR_RETURN(Variable u, Matmul(t, b_t));
  return MulScalar(u, f.scale);
}

// The same math from separate autograd ops (mamba_inner_test's composition plus the adapters).
absl::StatusOr<Variable> Composed(const std::vector<Variable>& v, const Case& c,
                                  const Factors& f) {
  using namespace autograd;
  const int64_t bl = c.b * c.l;
  LYRA_ASSIGN_OR_RETURN(Variable x, Narrow(v[0], 2, 0, c.d));
  LYRA_ASSIGN_OR_RETURN(x, Transpose(x, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable z, Narrow(v[0], 2, c.d, c.d));
  LYRA_ASSIGN_OR_RETURN(z, Transpose(z, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable xc, nn::CausalConv1d(x, v[1], v[2], Conv1dActivation::kSilu));
  LYRA_ASSIGN_OR_RETURN(Variable xc_flat, Transpose(xc, 1, 2));
  LYRA_ASSIGN_OR_RETURN(xc_flat, Reshape(xc_flat, {bl, c.d}));
  LYRA_ASSIGN_OR_RETURN(Variable wx, Transpose(v[3], 0, 1));
  LYRA_ASSIGN_OR_RETURN(Variable x_dbl, Matmul(xc_flat, wx));
  if (f.x.A.defined()) {
    LYRA_ASSIGN_OR_RETURN(Variable term, LoraTerm(xc_flat, f.x));
    LYRA_ASSIGN_OR_RETURN(x_dbl, Add(x_dbl, term));
  }
  LYRA_ASSIGN_OR_RETURN(Variable dt, Narrow(x_dbl, 1, 0, c.r));
  auto channels_first = [&](int64_t start) -> absl::StatusOr<Variable> {
    LYRA_ASSIGN_OR_RETURN(Variable cols, Narrow(x_dbl, 1, start, c.n));
    LYRA_ASSIGN_OR_RETURN(cols, Reshape(cols, {c.b, c.l, c.n}));
    return Transpose(cols, 1, 2);
  };
  LYRA_ASSIGN_OR_RETURN(Variable bm, channels_first(c.r));
  LYRA_ASSIGN_OR_RETURN(Variable cm, channels_first(c.r + c.n));
  LYRA_ASSIGN_OR_RETURN(Variable wdt, Transpose(v[4], 0, 1));
  LYRA_ASSIGN_OR_RETURN(Variable delta, Matmul(dt, wdt));
  if (f.dt.A.defined()) {
    LYRA_ASSIGN_OR_RETURN(Variable term, LoraTerm(dt, f.dt));
    LYRA_ASSIGN_OR_RETURN(delta, Add(delta, term));
  }
  LYRA_ASSIGN_OR_RETURN(delta, Reshape(delta, {c.b, c.l, c.d}));
  LYRA_ASSIGN_OR_RETURN(delta, Transpose(delta, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable a, Exp(v[6]));
  LYRA_ASSIGN_OR_RETURN(a, Neg(a));
  LYRA_ASSIGN_OR_RETURN(SelectiveScanOutputs scan,
                        SelectiveScan(xc, delta, a, bm, cm, v[7], z, v[5], Variable(), Tensor()));
  LYRA_ASSIGN_OR_RETURN(Variable y, Transpose(scan.y, 1, 2));
  LYRA_ASSIGN_OR_RETURN(y, Reshape(y, {bl, c.d}));
  LYRA_ASSIGN_OR_RETURN(Variable wo, Transpose(v[8], 0, 1));
  LYRA_ASSIGN_OR_RETURN(Variable out, Matmul(y, wo));
  if (v[9].defined()) {
    LYRA_ASSIGN_OR_RETURN(out, Add(out, v[9]));
  }
  if (f.out.A.defined()) {
    LYRA_ASSIGN_OR_RETURN(Variable term, LoraTerm(y, f.out));
    LYRA_ASSIGN_OR_RETURN(out, Add(out, term));
  }
  return Reshape(out, {c.b, c.l, c.m});
}

struct LoraRun {
  std::vector<double> out;
  std::vector<std::vector<double>> grads;  // empty for an undefined or unused input
  uint64_t offsets[3] = {0, 0, 0};         // the generators' offsets afterwards
};

// Forward (fused or composed), then backward of sum(out * w) with fixed weights w.
absl::StatusOr<LoraRun> Evaluate(const std::vector<Tensor>& in, const Case& c, const Adapters& a,
                             bool fused, Device device) {
  std::vector<Variable> v;
  for (const Tensor& t : in) {
    if (!t.defined()) {
      v.emplace_back();
      continue;
    }
    LYRA_ASSIGN_OR_RETURN(Tensor moved, t.To(device));
    v.emplace_back(moved, true);
  }
  Factors f;
  MakeFactors(v, a, f);
  LYRA_ASSIGN_OR_RETURN(Variable out,
                        fused ? MambaInner(v[0], f.Weights(v)) : Composed(v, c, f));
  LYRA_ASSIGN_OR_RETURN(Tensor w, RandomTensor(out.shape(), out.dtype(), 99, 0.5, 1.5));
  LYRA_ASSIGN_OR_RETURN(w, w.To(device));
  LYRA_ASSIGN_OR_RETURN(Variable weighted, autograd::Mul(out, Variable(w)));
  LYRA_ASSIGN_OR_RETURN(Variable s, autograd::Sum(weighted));
  LYRA_RETURN_IF_ERROR(s.Backward());
  LoraRun r;
  LYRA_ASSIGN_OR_RETURN(r.out, out.data().ToDoubles());
  const bool used[16] = {true, true, true, true, true, true, true, true, true, true,
                         a.x, a.x, a.dt, a.dt, a.out, a.out};
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].defined() || !used[i]) {
      r.grads.emplace_back();
      continue;
    }
    if (!v[i].grad().defined()) {
      return absl::InternalError(absl::StrCat("input ", i, " got no gradient"));
    }
    LYRA_ASSIGN_OR_RETURN(std::vector<double> g, v[i].grad().ToDoubles());
    r.grads.push_back(std::move(g));
  }
  for (int g = 0; g < 3; ++g) r.offsets[g] = f.gen[g].offset();
  return r;
}

const char* kNames[] = {"xz",          "conv.weight",     "conv.bias",     "x_proj.weight",
                        "dt_proj.weight", "dt_proj.bias", "A_log",         "D",
                        "out_proj.weight", "out_proj.bias", "x_proj.lora_A", "x_proj.lora_B",
                        "dt_proj.lora_A", "dt_proj.lora_B", "out_proj.lora_A", "out_proj.lora_B"};

void ExpectClose(const LoraRun& a, const LoraRun& b, Tolerance tol, const std::string& what) {
  EXPECT_TRUE(AllClose(a.out, b.out, tol)) << what << ": output";
  ASSERT_EQ(a.grads.size(), b.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i) {
    EXPECT_EQ(a.grads[i].empty(), b.grads[i].empty()) << what << ": " << kNames[i];
    EXPECT_TRUE(AllClose(a.grads[i], b.grads[i], tol)) << what << ": gradient of " << kNames[i];
  }
}

const Case kCases[] = {
    {2, 7, 6, 8, 4, 3, 4, true, false},
    {1, 5, 4, 6, 3, 2, 3, false, true},
    {2, 1, 5, 4, 2, 2, 4, true, true},
};

struct Named {
  const char* name;
  Adapters adapters;
};
const Named kAdapterSets[] = {
    {"x_proj", {true, false, false}},
    {"dt_proj", {false, true, false}},
    {"out_proj", {false, false, true}},
    {"all", {true, true, true}},
    {"all, dropout 0.3 in eval (no mask)", {true, true, true, 0.3, false}},
    {"all, dropout 0.3 training, one generator", {true, true, true, 0.3, true, true}},
    {"all, dropout 0.5 training, three generators", {true, true, true, 0.5, true, false}},
    {"x_proj + out_proj, dropout 0.25", {true, false, true, 0.25, true, true}},
};

TEST(LoraFusedTest, FusedEqualsComposedInF64) {
  for (const Case& c : kCases) {
    const std::vector<Tensor> in = MakeInputs(c, DType::kF64, 1);
    for (const Named& set : kAdapterSets) {
      SCOPED_TRACE(set.name);
      ASSERT_OK_AND_ASSIGN(LoraRun fused, Evaluate(in, c, set.adapters, true, Device::Cpu()));
      ASSERT_OK_AND_ASSIGN(LoraRun composed, Evaluate(in, c, set.adapters, false, Device::Cpu()));
      ExpectClose(fused, composed, {1e-12, 1e-10}, set.name);
      // The fused node reserves exactly the Philox blocks the composed dropouts draw.
      for (int g = 0; g < 3; ++g) EXPECT_EQ(fused.offsets[g], composed.offsets[g]) << g;
    }
  }
}

TEST(LoraFusedTest, AdaptersChangeTheOutput) {
  const Case c = kCases[0];
  const std::vector<Tensor> in = MakeInputs(c, DType::kF64, 3);
  ASSERT_OK_AND_ASSIGN(LoraRun base, Evaluate(in, c, Adapters{}, true, Device::Cpu()));
  for (const Named& set : kAdapterSets) {
    ASSERT_OK_AND_ASSIGN(LoraRun adapted, Evaluate(in, c, set.adapters, true, Device::Cpu()));
    double moved = 0;
    for (size_t i = 0; i < base.out.size(); ++i) {
      moved = std::max(moved, std::fabs(adapted.out[i] - base.out[i]));
    }
    EXPECT_GT(moved, 1e-5) << set.name;
  }
}

TEST(LoraFusedTest, GradCheckF64) {
  const Case c = {1, 4, 3, 4, 2, 2, 3, true, true};
  const std::vector<Tensor> in = MakeInputs(c, DType::kF64, 5);
  for (const Adapters& a : {Adapters{true, true, true}, Adapters{true, true, true, 0.4, true}}) {
    autograd::GradCheckOptions options;
    options.atol = 1e-6;
    options.rtol = 1e-5;
    autograd::GradCheckResult r = autograd::GradCheck(
        [&](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
          Factors f;  // fresh generators: every probe draws the same masks
          MakeFactors(v, a, f);
          return MambaInner(v[0], f.Weights(v));
        },
        in, options);
    EXPECT_TRUE(r.ok) << "dropout " << a.p << ": " << r.message;
  }
}

TEST(LoraFusedTest, DropoutReplaysItsMask) {
  const Case c = kCases[0];
  const std::vector<Tensor> in = MakeInputs(c, DType::kF64, 7);
  const Adapters a{true, true, true, 0.5, true};
  ASSERT_OK_AND_ASSIGN(LoraRun first, Evaluate(in, c, a, true, Device::Cpu()));
  ASSERT_OK_AND_ASSIGN(LoraRun second, Evaluate(in, c, a, true, Device::Cpu()));
  EXPECT_EQ(first.out, second.out);
  for (size_t i = 0; i < first.grads.size(); ++i) EXPECT_EQ(first.grads[i], second.grads[i]);

  // Two forwards from one generator draw different masks; each backward uses its own.
  std::vector<Variable> v;
  for (const Tensor& t : in) v.emplace_back(t.defined() ? Variable(t, true) : Variable());
  Factors f;
  MakeFactors(v, a, f);
  ASSERT_OK_AND_ASSIGN(Variable y1, MambaInner(v[0], f.Weights(v)));
  const uint64_t after_first = f.gen[0].offset();
  EXPECT_GT(after_first, 0u);
  ASSERT_OK_AND_ASSIGN(Variable y2, MambaInner(v[0], f.Weights(v)));
  EXPECT_EQ(f.gen[0].offset(), 2 * after_first);
  ASSERT_OK_AND_ASSIGN(std::vector<double> o1, y1.data().ToDoubles());
  ASSERT_OK_AND_ASSIGN(std::vector<double> o2, y2.data().ToDoubles());
  EXPECT_NE(o1, o2);
  EXPECT_EQ(o1, first.out);
  // The backward of the first call alone (its mask, not the second's) equals the first run.
  ASSERT_OK_AND_ASSIGN(Tensor w, RandomTensor(y1.shape(), y1.dtype(), 99, 0.5, 1.5));
  ASSERT_OK_AND_ASSIGN(Variable weighted, autograd::Mul(y1, Variable(w)));
  ASSERT_OK_AND_ASSIGN(Variable s, autograd::Sum(weighted));
  ASSERT_OK(s.Backward());
  for (int i : {10, 11, 12, 13, 14, 15}) {
    ASSERT_OK_AND_ASSIGN(std::vector<double> g, v[i].grad().ToDoubles());
    EXPECT_TRUE(AllClose(g, first.grads[i], {1e-14, 1e-12})) << kNames[i];
  }
}

TEST(LoraFusedTest, ErrorsNameTheAdapter) {
  const Case c = kCases[0];
  std::vector<Tensor> in = MakeInputs(c, DType::kF64, 9);
  in[11] = RandomTensor({c.r + 2 * c.n + 1, kRankX}, DType::kF64, 1).value();
  std::vector<Variable> v;
  for (const Tensor& t : in) v.emplace_back(t.defined() ? Variable(t, true) : Variable());
  Factors f;
  MakeFactors(v, Adapters{true, false, false}, f);
  EXPECT_STATUS_IS(MambaInner(v[0], f.Weights(v)), absl::StatusCode::kInvalidArgument,
                   "x_proj LoRA");
  in = MakeInputs(c, DType::kF64, 9);
  v.clear();
  for (const Tensor& t : in) v.emplace_back(t.defined() ? Variable(t, true) : Variable());
  MakeFactors(v, Adapters{false, true, false, 0.2, true}, f);
  f.dt.generator = nullptr;
  EXPECT_STATUS_IS(MambaInner(v[0], f.Weights(v)), absl::StatusCode::kInvalidArgument,
                   "generator");
}

// FP32 masters under autocast (f32: no region): perturbing one adapter's B moves the output, and
// every factor of every adapter receives a non-zero FP32 gradient.
void ExpectEveryAdapterActs(DType compute, Device device) {
  SCOPED_TRACE(DTypeName(compute));
  const Case c = {2, 33, 16, 24, 8, 4, 4, true, true};
  std::vector<Tensor> in = MakeInputs(c, DType::kF32, 21);
  std::vector<Variable> masters;
  for (const Tensor& t : in) {
    if (!t.defined()) {
      masters.emplace_back();
      continue;
    }
    masters.emplace_back(t.To(device).value(), true);
  }
  auto forward = [&](const std::vector<Variable>& m) -> absl::StatusOr<Tensor> {
    nn::AutocastGuard autocast(compute);
    std::vector<Variable> v(m.size());
    for (size_t i = 0; i < m.size(); ++i) {
      if (!m[i].defined()) continue;
      // The projections and the input in the compute dtype; A_log, D, dt bias stay f32; the
      // factors go to the node as masters (it casts them).
      const bool cast = i == 0 || i == 1 || i == 2 || i == 3 || i == 4 || i == 8 || i == 9;
      if (cast) {
        LYRA_ASSIGN_OR_RETURN(v[i], i == 0 ? nn::ComputeInput(m[i]) : nn::ComputeWeight(m[i]));
      } else {
        v[i] = m[i];
      }
    }
    Factors f;
    MakeFactors(v, Adapters{true, true, true, 0.1, true}, f);
    LYRA_ASSIGN_OR_RETURN(Variable out, MambaInner(v[0], f.Weights(v)));
    if (out.dtype() != compute) return absl::InternalError("output not in the compute dtype");
    LYRA_ASSIGN_OR_RETURN(Variable o32, autograd::Cast(out, DType::kF32));
    LYRA_ASSIGN_OR_RETURN(Variable s, autograd::Sum(o32));
    LYRA_RETURN_IF_ERROR(s.Backward());
    return out.data().To(DType::kF32);
  };
  ASSERT_OK_AND_ASSIGN(Tensor base, forward(masters));
  for (int i : {10, 11, 12, 13, 14, 15}) {
    ASSERT_TRUE(masters[i].grad().defined()) << kNames[i];
    EXPECT_EQ(masters[i].grad().dtype(), DType::kF32) << kNames[i];
    ASSERT_OK_AND_ASSIGN(std::vector<double> g, masters[i].grad().ToDoubles());
    double norm = 0;
    for (double x : g) norm += x * x;
    EXPECT_TRUE(std::isfinite(norm) && norm > 0) << kNames[i] << " gradient is zero or not finite";
  }
  for (int b : {11, 13, 15}) {
    std::vector<Variable> moved = masters;
    ASSERT_OK_AND_ASSIGN(Tensor shifted, AddScalar(masters[b].data(), 1.0));
    moved[b] = Variable(shifted, true);
    for (Variable& m : moved) {
      if (m.defined()) m = Variable(m.data(), true);
    }
    ASSERT_OK_AND_ASSIGN(Tensor out, forward(moved));
    ASSERT_OK_AND_ASSIGN(std::vector<double> o, out.ToDoubles());
    ASSERT_OK_AND_ASSIGN(std::vector<double> o0, base.ToDoubles());
    double diff = 0;
    for (size_t j = 0; j < o.size(); ++j) diff = std::max(diff, std::fabs(o[j] - o0[j]));
    EXPECT_GT(diff, 1e-2) << "perturbing " << kNames[b] << " left the output unchanged";
  }
}

TEST(LoraFusedTest, EveryAdapterActsUnderAutocastCpu) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    ExpectEveryAdapterActs(dtype, Device::Cpu());
  }
}

TEST(LoraFusedTest, EveryAdapterActsUnderAutocastCuda) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    ExpectEveryAdapterActs(dtype, Device::Cuda(0));
  }
}

// CUDA against the CPU with every adapter and dropout: the masks are the same on both devices.
TEST(LoraFusedTest, CudaMatchesCpu) {
  LYRA_REQUIRE_GPU();
  const Adapters a{true, true, true, 0.2, true};
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    const Case c = {2, 300, 32, 48, 16, 4, 4, true, true};
    const std::vector<Tensor> in = MakeInputs(c, dtype, 11);
    ASSERT_OK_AND_ASSIGN(LoraRun cpu, Evaluate(in, c, a, true, Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(LoraRun gpu, Evaluate(in, c, a, true, Device::Cuda(0)));
    const Tolerance tol = dtype == DType::kF32 ? Tolerance{1e-4, 1e-3} : Tolerance{5e-2, 5e-2};
    ExpectClose(gpu, cpu, tol, std::string(DTypeName(dtype)));
    for (int g = 0; g < 3; ++g) EXPECT_EQ(gpu.offsets[g], cpu.offsets[g]);
  }
}

// --- the model: every target of the Mamba-1 and Mamba-2 fused paths -------------------------------------

// A tiny Mamba-1 (or Mamba-2) model (tests/testing/tiny_mamba.h; in/out_proj biases when
// untied) with the "all" preset (in_proj, x_proj, dt_proj, out_proj, embeddings; Mamba-2:
// in_proj, out_proj, embeddings) injected and every factor moved to random non-zero values
// (PEFT initialises B, or an embedding's A, to zero), in `dtype` on `device`.
absl::StatusOr<std::unique_ptr<MambaForCausalLM>> AdaptedModel(DType dtype, Device device,
                                                                bool tie = true,
                                                                int version = 1) {
  Generator gen(3);
  LYRA_ASSIGN_OR_RETURN(
      std::unique_ptr<MambaForCausalLM> model,
      MambaForCausalLM::Create(version == 1 ? ::lyra::testing::TinyMamba1Config(tie, !tie)
                                            : ::lyra::testing::TinyMamba2Config(tie, !tie),
                               gen, DType::kF32));
  // dt_proj's bias as initialised gives dt in [0.001, 0.1], where the output barely depends on
  // delta; dt ~ softplus(U(-0.5, 0.5)) makes the dt_proj adapter's effect clearly measurable.
  for (auto& [name, p] : model->NamedParameters()) {
    if (name.size() > 12 && name.compare(name.size() - 12, 12, "dt_proj.bias") == 0) {
      LYRA_ASSIGN_OR_RETURN(Tensor v, RandomTensor(p.shape(), p.dtype(), 77, -0.5, 0.5));
      LYRA_RETURN_IF_ERROR(p.data().CopyFrom(v));
    }
  }
  LYRA_ASSIGN_OR_RETURN(nn::LoraConfig config, nn::LoraConfig::Preset("all", version));
  config.r = 2;
  config.lora_alpha = 3;
  LYRA_RETURN_IF_ERROR(nn::InjectLora(*model, config, gen).status());
  uint64_t seed = 500;
  for (auto& [key, p] : nn::PeftAdapterParameters(*model, "default")) {
    LYRA_ASSIGN_OR_RETURN(Tensor v, RandomTensor(p.shape(), p.dtype(), ++seed, -0.6, 0.6));
    LYRA_RETURN_IF_ERROR(p.data().CopyFrom(v));
  }
  LYRA_RETURN_IF_ERROR(model->To(dtype));
  LYRA_RETURN_IF_ERROR(model->To(device));
  return model;
}

const std::vector<int64_t> kIds = {1, 5, 9, 2, 14, 7, 3, 0, 11, 6, 4, 13, 8, 15};

// Forward (the fused node), Prefill (the composed stateful path) and Step decoding agree with
// every adapter active, and the adapters change the logits.
TEST(LoraFusedModelTest, FusedComposedAndStepAgreeF64) {
  for (int version : {1, 2}) {
  for (bool tie : {true, false}) {
    SCOPED_TRACE(::testing::Message() << "Mamba-" << version << ", tie " << tie);
    ASSERT_OK_AND_ASSIGN(auto model, AdaptedModel(DType::kF64, Device::Cpu(), tie, version));
    ASSERT_OK_AND_ASSIGN(Tensor ids, Tensor::FromVector<int64_t>(kIds, {2, 7}));
    ASSERT_OK_AND_ASSIGN(Variable fused, model->Forward(ids));
    MambaCache cache;
    ASSERT_OK_AND_ASSIGN(Tensor prefill, model->Prefill(ids, cache));
    EXPECT_TRUE(AllClose(prefill, fused.data(), {1e-12, 1e-10})) << "prefill, tie " << tie;
    ASSERT_OK_AND_ASSIGN(MambaCache steps, MambaCache::Zeros(model->config(), 2, DType::kF64));
    for (int64_t t = 0; t < 7; ++t) {
      ASSERT_OK_AND_ASSIGN(Tensor col, ids.Select(1, t));
      ASSERT_OK_AND_ASSIGN(Tensor token, col.Contiguous());
      ASSERT_OK_AND_ASSIGN(Tensor step, model->Step(token, steps));
      ASSERT_OK_AND_ASSIGN(Tensor want, fused.data().Select(1, t));
      EXPECT_TRUE(AllClose(step, want, {1e-12, 1e-10})) << "step " << t;
    }
    ASSERT_OK(nn::DisableAdapters(*model));
    ASSERT_OK_AND_ASSIGN(Variable base, model->Forward(ids));
    ASSERT_OK_AND_ASSIGN(Tensor diff, Sub(base.data(), fused.data()));
    ASSERT_OK_AND_ASSIGN(std::vector<double> d, diff.ToDoubles());
    double moved = 0;
    for (double x : d) moved = std::max(moved, std::fabs(x));
    EXPECT_GT(moved, 1e-3) << "the adapters change nothing";
  }
  }
}

// Merging the adapters into the base weights gives the unmerged adapter's forward.
TEST(LoraFusedModelTest, MergedEqualsUnmergedF64) {
  ASSERT_OK_AND_ASSIGN(auto model, AdaptedModel(DType::kF64, Device::Cpu(), /*tie=*/false));
  ASSERT_OK_AND_ASSIGN(Tensor ids, Tensor::FromVector<int64_t>(kIds, {2, 7}));
  ASSERT_OK_AND_ASSIGN(Variable unmerged, model->Forward(ids));
  ASSERT_OK(nn::MergeAdapter(*model));
  ASSERT_OK_AND_ASSIGN(Variable merged, model->Forward(ids));
  EXPECT_TRUE(AllClose(merged.data(), unmerged.data(), {1e-12, 1e-10}));
  ASSERT_OK(nn::UnmergeAdapter(*model));
  ASSERT_OK_AND_ASSIGN(Variable again, model->Forward(ids));
  EXPECT_TRUE(AllClose(again.data(), unmerged.data(), {1e-12, 1e-10}));
}

// Under autocast with FP32 masters: every adapter tensor receives a finite non-zero FP32
// gradient from the loss, and perturbing one target's B alone (every layer) moves the logits.
void ExpectEveryModelTargetActs(DType compute, Device device, int version) {
  SCOPED_TRACE(::testing::Message() << "Mamba-" << version << " " << DTypeName(compute));
  ASSERT_OK_AND_ASSIGN(auto model, AdaptedModel(DType::kF32, device, /*tie=*/true, version));
  model->Train();
  ASSERT_OK_AND_ASSIGN(Tensor ids_cpu, Tensor::FromVector<int64_t>(kIds, {2, 7}));
  ASSERT_OK_AND_ASSIGN(Tensor ids, ids_cpu.To(device));
  auto logits = [&]() -> absl::StatusOr<Tensor> {
    nn::AutocastGuard autocast(compute);
    LYRA_ASSIGN_OR_RETURN(Variable out, model->Forward(ids));
    return out.data().To(DType::kF32);
  };
  {
    nn::AutocastGuard autocast(compute);
    ASSERT_OK_AND_ASSIGN(Variable loss, model->Loss(ids));
    ASSERT_OK(loss.Backward());
  }
  const auto adapter = nn::PeftAdapterParameters(*model, "default");
  // embeddings + (4 or 2) linears x 2 layers, A and B each
  ASSERT_EQ(adapter.size(), 2u + 2u * (version == 1 ? 4u : 2u) * 2u);
  for (const auto& [key, p] : adapter) {
    ASSERT_TRUE(p.grad().defined()) << key;
    EXPECT_EQ(p.grad().dtype(), DType::kF32) << key;
    ASSERT_OK_AND_ASSIGN(std::vector<double> g, p.grad().ToDoubles());
    double norm = 0;
    for (double x : g) norm += x * x;
    EXPECT_TRUE(std::isfinite(norm) && norm > 0) << key << ": zero or non-finite gradient";
  }
  ASSERT_OK_AND_ASSIGN(Tensor base, logits());
  ASSERT_OK_AND_ASSIGN(std::vector<double> b0, base.ToDoubles());
  const std::vector<std::string> targets =
      version == 1 ? std::vector<std::string>{"in_proj", "x_proj", "dt_proj", "out_proj",
                                              "embeddings"}
                   : std::vector<std::string>{"in_proj", "out_proj", "embeddings"};
  for (const std::string& target : targets) {
    const std::string b_key =
        target == "embeddings" ? "embeddings.lora_embedding_B" : target + ".lora_B.weight";
    std::vector<std::pair<Variable, Tensor>> saved;
    for (const auto& [key, p] : adapter) {
      if (key.size() < b_key.size() || key.compare(key.size() - b_key.size(), b_key.size(),
                                                   b_key) != 0) {
        continue;
      }
      ASSERT_OK_AND_ASSIGN(Tensor copy, p.data().Clone());
      ASSERT_OK_AND_ASSIGN(Tensor shifted, AddScalar(p.data(), 2.0));
      ASSERT_OK(p.data().CopyFrom(shifted));
      saved.emplace_back(p, copy);
    }
    ASSERT_FALSE(saved.empty()) << target;
    ASSERT_OK_AND_ASSIGN(Tensor moved_logits, logits());
    ASSERT_OK_AND_ASSIGN(std::vector<double> b1, moved_logits.ToDoubles());
    double moved = 0;
    for (size_t i = 0; i < b0.size(); ++i) moved = std::max(moved, std::fabs(b1[i] - b0[i]));
    EXPECT_GT(moved, 2e-3) << "perturbing " << target << "'s lora_B left the logits unchanged";
    for (auto& [p, copy] : saved) ASSERT_OK(p.data().CopyFrom(copy));
  }
}

TEST(LoraFusedModelTest, EveryTargetActsUnderAutocastCpu) {
  for (int version : {1, 2}) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      ExpectEveryModelTargetActs(dtype, Device::Cpu(), version);
    }
  }
}

TEST(LoraFusedModelTest, EveryTargetActsUnderAutocastCuda) {
  LYRA_REQUIRE_GPU();
  for (int version : {1, 2}) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
      ExpectEveryModelTargetActs(dtype, Device::Cuda(0), version);
    }
  }
}

}  // namespace
}  // namespace lyra::mamba
