// The fused Mamba-1 inner path (one autograd node, recomputing in the backward) equals the same
// computation composed of separate differentiable ops: values and every input's gradient, in f64
// on the CPU (and a finite-difference check), and CUDA against the CPU.
#include "mamba/mamba_inner.h"

#include <gtest/gtest.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "mamba/selective_scan.h"
#include "nn/conv1d.h"
#include "tests/testing/testing.h"

namespace lyra::mamba {
namespace {

using autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::RandomTensor;

struct Case {
  int64_t b, l, m, d, n, r, k;
  bool conv_bias, out_bias;
};

struct Inputs {
  Tensor xz, conv_w, conv_b, x_proj, dt_proj, dt_bias, a_log, dskip, out_w, out_b;
  std::vector<Tensor> All() const {
    return {xz, conv_w, conv_b, x_proj, dt_proj, dt_bias, a_log, dskip, out_w, out_b};
  }
};

Inputs MakeInputs(const Case& c, DType dtype, uint64_t seed) {
  auto rnd = [&](const Shape& s, DType t, double lo, double hi) {
    return RandomTensor(s, t, seed++, lo, hi).value();
  };
  Inputs in;
  in.xz = rnd({c.b, c.l, 2 * c.d}, dtype, -1, 1);
  in.conv_w = rnd({c.d, 1, c.k}, dtype, -0.5, 0.5);
  if (c.conv_bias) in.conv_b = rnd({c.d}, dtype, -0.2, 0.2);
  in.x_proj = rnd({c.r + 2 * c.n, c.d}, dtype, -0.5, 0.5);
  in.dt_proj = rnd({c.d, c.r}, dtype, -0.5, 0.5);
  const DType f = dtype == DType::kF64 ? DType::kF64 : DType::kF32;
  in.dt_bias = rnd({c.d}, f, -1, 0);
  in.a_log = rnd({c.d, c.n}, f, -0.5, 1);
  in.dskip = rnd({c.d}, f, 0.5, 1.5);
  in.out_w = rnd({c.m, c.d}, dtype, -0.5, 0.5);
  if (c.out_bias) in.out_b = rnd({c.m}, dtype, -0.1, 0.1);
  return in;
}

MambaInnerWeights Weights(const std::vector<Variable>& v) {
  return {v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]};
}

// The same math from separate autograd ops.
absl::StatusOr<Variable> Composed(const std::vector<Variable>& v, const Case& c) {
  using namespace autograd;
  const int64_t bl = c.b * c.l;
  LYRA_ASSIGN_OR_RETURN(Variable x, Narrow(v[0], 2, 0, c.d));
  LYRA_ASSIGN_OR_RETURN(x, Transpose(x, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable z, Narrow(v[0], 2, c.d, c.d));
  LYRA_ASSIGN_OR_RETURN(z, Transpose(z, 1, 2));
  LYRA_ASSIGN_OR_RETURN(Variable xc,
                        nn::CausalConv1d(x, v[1], v[2], Conv1dActivation::kSilu));
  LYRA_ASSIGN_OR_RETURN(Variable xc_flat, Transpose(xc, 1, 2));
  LYRA_ASSIGN_OR_RETURN(xc_flat, Reshape(xc_flat, {bl, c.d}));
  LYRA_ASSIGN_OR_RETURN(Variable wx, Transpose(v[3], 0, 1));
  LYRA_ASSIGN_OR_RETURN(Variable x_dbl, Matmul(xc_flat, wx));
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
  return Reshape(out, {c.b, c.l, c.m});
}

struct InnerRun {
  std::vector<double> out;
  std::vector<std::vector<double>> grads;
};

// Forward, then backward of sum(out * w) with fixed weights w.
absl::StatusOr<InnerRun> Evaluate(const Inputs& in, const Case& c, bool fused, Device device) {
  std::vector<Variable> v;
  for (const Tensor& t : in.All()) {
    if (!t.defined()) {
      v.emplace_back();
      continue;
    }
    LYRA_ASSIGN_OR_RETURN(Tensor moved, t.To(device));
    v.emplace_back(moved, true);
  }
  LYRA_ASSIGN_OR_RETURN(Variable out, fused ? MambaInner(v[0], Weights(v)) : Composed(v, c));
  LYRA_ASSIGN_OR_RETURN(Tensor w, RandomTensor(out.shape(), out.dtype(), 99, 0.5, 1.5));
  LYRA_ASSIGN_OR_RETURN(w, w.To(device));
  LYRA_ASSIGN_OR_RETURN(Variable weighted, autograd::Mul(out, Variable(w)));
  LYRA_ASSIGN_OR_RETURN(Variable s, autograd::Sum(weighted));
  LYRA_RETURN_IF_ERROR(s.Backward());
  InnerRun r;
  LYRA_ASSIGN_OR_RETURN(r.out, out.data().ToDoubles());
  for (const Variable& x : v) {
    if (!x.defined()) {
      r.grads.emplace_back();
      continue;
    }
    if (!x.grad().defined()) return absl::InternalError("an input got no gradient");
    LYRA_ASSIGN_OR_RETURN(std::vector<double> g, x.grad().ToDoubles());
    r.grads.push_back(std::move(g));
  }
  return r;
}

const char* kNames[] = {"xz", "conv.weight", "conv.bias", "x_proj.weight", "dt_proj.weight",
                        "dt_proj.bias", "A_log", "D", "out_proj.weight", "out_proj.bias"};

void ExpectClose(const InnerRun& a, const InnerRun& b, ::lyra::testing::Tolerance tol) {
  EXPECT_TRUE(AllClose(a.out, b.out, tol)) << "output";
  for (size_t i = 0; i < a.grads.size(); ++i) {
    EXPECT_TRUE(AllClose(a.grads[i], b.grads[i], tol)) << "gradient of " << kNames[i];
  }
}

const Case kCases[] = {
    {2, 7, 6, 8, 4, 3, 4, true, false},
    {1, 5, 4, 6, 3, 2, 3, false, true},
    {2, 1, 5, 4, 2, 2, 4, true, true},
};

TEST(MambaInnerTest, FusedEqualsComposedInF64) {
  for (const Case& c : kCases) {
    const Inputs in = MakeInputs(c, DType::kF64, 1);
    ASSERT_OK_AND_ASSIGN(InnerRun fused, Evaluate(in, c, true, Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(InnerRun composed, Evaluate(in, c, false, Device::Cpu()));
    ExpectClose(fused, composed, {1e-12, 1e-10});
  }
}

TEST(MambaInnerTest, GradCheckF64) {
  const Case c = kCases[0];
  const Inputs in = MakeInputs(c, DType::kF64, 5);
  autograd::GradCheckOptions options;
  options.atol = 1e-6;
  options.rtol = 1e-5;
  autograd::GradCheckResult r = autograd::GradCheck(
      [&](const std::vector<Variable>& v) { return MambaInner(v[0], Weights(v)); }, in.All(),
      options);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(MambaInnerTest, ShapeErrorsNameTheWeight) {
  const Case c = kCases[0];
  Inputs in = MakeInputs(c, DType::kF64, 7);
  in.x_proj = RandomTensor({c.r + 2 * c.n, c.d + 1}, DType::kF64, 1).value();
  std::vector<Variable> v;
  for (const Tensor& t : in.All()) v.emplace_back(t.defined() ? Variable(t, true) : Variable());
  EXPECT_STATUS_IS(MambaInner(v[0], Weights(v)), absl::StatusCode::kInvalidArgument,
                   "x_proj.weight");
}

TEST(MambaInnerTest, CudaMatchesCpu) {
  LYRA_REQUIRE_GPU();
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const Case c = {2, 300, 32, 48, 16, 4, 4, true, false};
    const Inputs in = MakeInputs(c, dtype, 11);
    ASSERT_OK_AND_ASSIGN(InnerRun cpu, Evaluate(in, c, true, Device::Cpu()));
    ASSERT_OK_AND_ASSIGN(InnerRun gpu, Evaluate(in, c, true, Device::Cuda(0)));
    const ::lyra::testing::Tolerance tol =
        dtype == DType::kF32 ? ::lyra::testing::Tolerance{1e-4, 1e-3}
                             : ::lyra::testing::Tolerance{5e-2, 5e-2};
    ExpectClose(gpu, cpu, tol);
  }
}

}  // namespace
}  // namespace lyra::mamba
