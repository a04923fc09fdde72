// Causal depthwise Conv1d (nn/conv1d.h, cuda/conv1d.h): the CPU reference against a naive f64
// loop written independently (left padding, then a plain sliding dot product), f64 gradient
// checks of the autograd node, packed sequences against separate ones, the single-step update
// against the full forward, final states, argument errors, the module; and on a GPU the CUDA
// kernels against the CPU reference over dtype x weight dtype x layout x length x flags.
#include "nn/conv1d.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/gradcheck.h"
#include "autograd/node.h"
#include "autograd/ops.h"
#include "cuda/conv1d.h"
#include "cuda/stream.h"
#include "nn/autocast.h"
#include "tests/testing/testing.h"

namespace lyra {
namespace {

using ::lyra::autograd::GradCheck;
using ::lyra::autograd::GradCheckResult;
using ::lyra::autograd::Variable;
using ::lyra::testing::AllClose;
using ::lyra::testing::DefaultTolerance;
using ::lyra::testing::RandomTensor;
using ::lyra::testing::Tolerance;

constexpr Conv1dActivation kSilu = Conv1dActivation::kSilu;
constexpr Conv1dActivation kIdentity = Conv1dActivation::kIdentity;

// How x (and dy) sit in memory: [B, D, L] contiguous, a [B, L, D] buffer transposed, or a
// window of a longer [B, D, L + 3] buffer.
enum class Layout { kChannelFirst, kChannelLast, kSliced };

std::string LayoutName(Layout l) {
  switch (l) {
    case Layout::kChannelFirst: return "channel_first";
    case Layout::kChannelLast: return "channel_last";
    case Layout::kSliced: return "sliced";
  }
  return "?";
}

// A [B, D, L] tensor of random values in `layout` on `device` (the same values everywhere).
absl::StatusOr<Tensor> MakeSequence(int64_t b, int64_t d, int64_t l, DType dtype, Layout layout,
                                    Device device, uint64_t seed) {
  switch (layout) {
    case Layout::kChannelFirst: {
      LYRA_ASSIGN_OR_RETURN(Tensor t, RandomTensor({b, d, l}, dtype, seed));
      return t.To(device);
    }
    case Layout::kChannelLast: {
      LYRA_ASSIGN_OR_RETURN(Tensor t, RandomTensor({b, l, d}, dtype, seed));
      LYRA_ASSIGN_OR_RETURN(t, t.To(device));
      return t.Transpose(1, 2);
    }
    case Layout::kSliced: {
      LYRA_ASSIGN_OR_RETURN(Tensor t, RandomTensor({b, d, l + 3}, dtype, seed));
      LYRA_ASSIGN_OR_RETURN(t, t.To(device));
      return t.Narrow(2, 1, l);
    }
  }
  return absl::InternalError("layout");
}

// Document ids per row: runs of pseudo-random lengths 1..9, a different pattern per row.
absl::StatusOr<Tensor> MakeSeqIdx(int64_t b, int64_t l, uint64_t seed) {
  std::vector<int32_t> ids(b * l);
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (int64_t i = 0; i < b; ++i) {
    int32_t doc = 0;
    int64_t left = 0;
    for (int64_t t = 0; t < l; ++t) {
      if (left == 0) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        left = 1 + static_cast<int64_t>((state >> 33) % 9);
        if (t > 0) ++doc;
      }
      --left;
      ids[i * l + t] = doc;
    }
  }
  return Tensor::FromVector(ids, {b, l});
}

// The inputs of one forward, on the CPU.
struct Inputs {
  Tensor x;              // [B, D, L]
  Tensor weight;         // [D, 1, K] or [D, K]
  Tensor bias;           // [D] or undefined
  Tensor seq_idx;        // [B, L] or undefined
  Tensor initial_state;  // [B, D, K-1] or undefined
};

struct Naive {
  std::vector<double> y;            // [B, D, L]
  std::vector<double> final_state;  // [B, D, K-1]
};

// The convolution as torch writes it: pad each row on the left with K-1 columns (the initial
// state or zeros), then y[t] = act(bias + sum_k w[k] * padded[t + k]), skipping padded columns of
// another document than t's (the padding belongs to document seq[0]).
absl::StatusOr<Naive> NaiveConv(const Inputs& in, Conv1dActivation act) {
  const int64_t B = in.x.size(0), D = in.x.size(1), L = in.x.size(2);
  const int64_t K = in.weight.size(-1);
  LYRA_ASSIGN_OR_RETURN(std::vector<double> x, in.x.ToDoubles());
  LYRA_ASSIGN_OR_RETURN(std::vector<double> w, in.weight.ToDoubles());
  std::vector<double> bias(D, 0.0), init(B * D * (K - 1), 0.0);
  std::vector<int32_t> seq(B * L, 0);
  if (in.bias.defined()) {
    LYRA_ASSIGN_OR_RETURN(bias, in.bias.ToDoubles());
  }
  if (in.initial_state.defined()) {
    LYRA_ASSIGN_OR_RETURN(init, in.initial_state.ToDoubles());
  }
  if (in.seq_idx.defined()) {
    LYRA_ASSIGN_OR_RETURN(seq, in.seq_idx.ToVector<int32_t>());
  }
  Naive out;
  out.y.assign(B * D * L, 0.0);
  out.final_state.assign(B * D * (K - 1), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t d = 0; d < D; ++d) {
      std::vector<double> padded(K - 1 + L);
      std::vector<int32_t> padded_seq(K - 1 + L);
      for (int64_t j = 0; j < K - 1; ++j) {
        padded[j] = init[(b * D + d) * (K - 1) + j];
        padded_seq[j] = L > 0 ? seq[b * L] : 0;
      }
      for (int64_t t = 0; t < L; ++t) {
        padded[K - 1 + t] = x[(b * D + d) * L + t];
        padded_seq[K - 1 + t] = seq[b * L + t];
      }
      for (int64_t t = 0; t < L; ++t) {
        double acc = bias[d];
        for (int64_t k = 0; k < K; ++k) {
          if (padded_seq[t + k] == padded_seq[K - 1 + t]) acc += w[d * K + k] * padded[t + k];
        }
        if (act == kSilu) acc = acc / (1 + std::exp(-acc));
        out.y[(b * D + d) * L + t] = acc;
      }
      for (int64_t j = 0; j < K - 1; ++j) {
        out.final_state[(b * D + d) * (K - 1) + j] = padded[L + j];
      }
    }
  }
  return out;
}

absl::StatusOr<Inputs> MakeInputs(int64_t B, int64_t D, int64_t L, int64_t K, DType dtype,
                                  DType weight_dtype, Layout layout, bool bias, bool seq,
                                  bool init, uint64_t seed, bool weight_3d = true) {
  Inputs in;
  LYRA_ASSIGN_OR_RETURN(in.x, MakeSequence(B, D, L, dtype, layout, Device::Cpu(), seed));
  const Shape w_shape = weight_3d ? Shape{D, 1, K} : Shape{D, K};
  LYRA_ASSIGN_OR_RETURN(in.weight, RandomTensor(w_shape, weight_dtype, seed + 1, -0.6, 0.6));
  if (bias) {
    LYRA_ASSIGN_OR_RETURN(in.bias, RandomTensor({D}, weight_dtype, seed + 2, -0.5, 0.5));
  }
  if (seq) {
    LYRA_ASSIGN_OR_RETURN(in.seq_idx, MakeSeqIdx(B, L, seed + 3));
  }
  if (init) {
    LYRA_ASSIGN_OR_RETURN(in.initial_state, RandomTensor({B, D, K - 1}, dtype, seed + 4));
  }
  return in;
}

absl::StatusOr<Inputs> ToDevice(const Inputs& in, Device device, Layout layout) {
  Inputs out;
  // Keep x's layout on the device: rebuild the view over a moved buffer.
  switch (layout) {
    case Layout::kChannelFirst: {
      LYRA_ASSIGN_OR_RETURN(out.x, in.x.To(device));
      break;
    }
    case Layout::kChannelLast: {
      LYRA_ASSIGN_OR_RETURN(Tensor t, in.x.Transpose(1, 2));
      LYRA_ASSIGN_OR_RETURN(t, t.Contiguous());
      LYRA_ASSIGN_OR_RETURN(t, t.To(device));
      LYRA_ASSIGN_OR_RETURN(out.x, t.Transpose(1, 2));
      break;
    }
    case Layout::kSliced: {
      LYRA_ASSIGN_OR_RETURN(Tensor t, Tensor::Zeros({in.x.size(0), in.x.size(1),
                                                     in.x.size(2) + 3},
                                                    in.x.dtype(), device));
      LYRA_ASSIGN_OR_RETURN(out.x, t.Narrow(2, 1, in.x.size(2)));
      LYRA_RETURN_IF_ERROR(out.x.CopyFrom(in.x));
      break;
    }
  }
  LYRA_ASSIGN_OR_RETURN(out.weight, in.weight.To(device));
  for (auto [src, dst] : {std::pair{&in.bias, &out.bias}, std::pair{&in.seq_idx, &out.seq_idx},
                          std::pair{&in.initial_state, &out.initial_state}}) {
    if (src->defined()) {
      LYRA_ASSIGN_OR_RETURN(*dst, src->To(device));
    }
  }
  return out;
}

absl::StatusOr<Tensor> Forward(const Inputs& in, Conv1dActivation act, Tensor* final_state) {
  return CausalConv1d(in.x, in.weight, in.bias, act, in.seq_idx, in.initial_state, final_state);
}

// --- CPU reference against the naive f64 loop -------------------------------------------------

TEST(CausalConv1dReferenceTest, MatchesNaiveLoopF64) {
  int seed = 0;
  for (int64_t K : {1, 2, 3, 4, 8}) {
    for (int64_t L : {1, 2, 3, 4, 5, 17}) {
      for (int flags = 0; flags < 16; ++flags) {
        const bool silu = flags & 1, bias = flags & 2, seq = flags & 4, init = flags & 8;
        ++seed;
        const Layout layout = static_cast<Layout>(seed % 3);
        const bool weight_3d = seed % 2 == 0;
        SCOPED_TRACE(absl::StrCat("K=", K, " L=", L, " silu=", silu, " bias=", bias,
                                  " seq=", seq, " init=", init, " ", LayoutName(layout)));
        ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(2, 5, L, K, DType::kF64, DType::kF64, layout,
                                                   bias, seq, init, seed, weight_3d));
        const Conv1dActivation act = silu ? kSilu : kIdentity;
        Tensor final_state;
        ASSERT_OK_AND_ASSIGN(Tensor y, Forward(in, act, &final_state));
        ASSERT_OK_AND_ASSIGN(Naive naive, NaiveConv(in, act));
        ASSERT_OK_AND_ASSIGN(std::vector<double> yv, y.ToDoubles());
        EXPECT_TRUE(AllClose(yv, naive.y, DefaultTolerance(DType::kF64)));
        ASSERT_EQ(final_state.shape(), (Shape{2, 5, K - 1}));
        ASSERT_OK_AND_ASSIGN(std::vector<double> fv, final_state.ToDoubles());
        EXPECT_TRUE(AllClose(fv, naive.final_state, {0, 0}));
      }
    }
  }
}

TEST(CausalConv1dReferenceTest, LowPrecisionDTypesMatchNaiveLoop) {
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (DType weight_dtype : {DType::kF32, dtype}) {
      for (Layout layout : {Layout::kChannelFirst, Layout::kChannelLast}) {
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " weight ", DTypeName(weight_dtype), " ",
                                  LayoutName(layout)));
        ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(3, 7, 33, 4, dtype, weight_dtype, layout,
                                                   true, true, true, 11));
        ASSERT_OK_AND_ASSIGN(Tensor y, Forward(in, kSilu, nullptr));
        EXPECT_EQ(y.dtype(), dtype);
        ASSERT_OK_AND_ASSIGN(Naive naive, NaiveConv(in, kSilu));
        ASSERT_OK_AND_ASSIGN(std::vector<double> yv, y.ToDoubles());
        EXPECT_TRUE(AllClose(yv, naive.y, DefaultTolerance(dtype)));
      }
    }
  }
}

TEST(CausalConv1dReferenceTest, OutputKeepsTheInputLayout) {
  ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(2, 6, 9, 4, DType::kF32, DType::kF32,
                                             Layout::kChannelLast, true, false, false, 3));
  ASSERT_OK_AND_ASSIGN(Tensor y, Forward(in, kIdentity, nullptr));
  EXPECT_EQ(y.shape(), (Shape{2, 6, 9}));
  EXPECT_EQ(y.stride(1), 1);  // channel-last like x
  EXPECT_EQ(y.stride(2), 6);
  ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor({2, 6, 9}, DType::kF32, 4));
  ASSERT_OK_AND_ASSIGN(CausalConv1dGrads g, CausalConv1dBackward(in.x, in.weight, in.bias, dy,
                                                                 kIdentity));
  EXPECT_EQ(g.dx.stride(1), 1);
  EXPECT_EQ(g.dweight.shape(), (Shape{6, 1, 4}));
  EXPECT_FALSE(g.dinitial_state.defined());
}

TEST(CausalConv1dReferenceTest, FinalStateReachesIntoTheInitialState) {
  // L < K - 1: the state after the sequence is (the tail of the initial state, then all of x).
  ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(1, 2, 2, 5, DType::kF32, DType::kF32,
                                             Layout::kChannelFirst, false, false, true, 5));
  Tensor final_state;
  ASSERT_OK_AND_ASSIGN(Tensor y, Forward(in, kIdentity, &final_state));
  ASSERT_OK_AND_ASSIGN(std::vector<double> init, in.initial_state.ToDoubles());
  ASSERT_OK_AND_ASSIGN(std::vector<double> x, in.x.ToDoubles());
  ASSERT_OK_AND_ASSIGN(std::vector<double> fs, final_state.ToDoubles());
  // Channel 0: init [i0 i1 i2 i3], x [x0 x1] -> final [i2 i3 x0 x1].
  EXPECT_EQ(fs[0], init[2]);
  EXPECT_EQ(fs[1], init[3]);
  EXPECT_EQ(fs[2], x[0]);
  EXPECT_EQ(fs[3], x[1]);
  // Without an initial state the missing columns are zeros.
  in.initial_state = Tensor();
  ASSERT_OK_AND_ASSIGN(y, Forward(in, kIdentity, &final_state));
  ASSERT_OK_AND_ASSIGN(fs, final_state.ToDoubles());
  EXPECT_EQ(fs[0], 0.0);
  EXPECT_EQ(fs[1], 0.0);
  EXPECT_EQ(fs[2], x[0]);
}

TEST(CausalConv1dReferenceTest, EmptySequence) {
  ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(2, 3, 0, 4, DType::kF32, DType::kF32,
                                             Layout::kChannelFirst, true, false, true, 6));
  Tensor final_state;
  ASSERT_OK_AND_ASSIGN(Tensor y, Forward(in, kSilu, &final_state));
  EXPECT_EQ(y.shape(), (Shape{2, 3, 0}));
  EXPECT_TRUE(AllClose(final_state, in.initial_state, {0, 0}));  // nothing entered the state
  ASSERT_OK_AND_ASSIGN(Tensor dy, Tensor::Zeros({2, 3, 0}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(CausalConv1dGrads g, CausalConv1dBackward(in.x, in.weight, in.bias, dy,
                                                                 kSilu, Tensor(),
                                                                 in.initial_state));
  ASSERT_OK_AND_ASSIGN(Tensor zeros_w, Tensor::Zeros({3, 1, 4}, DType::kF32));
  EXPECT_TRUE(AllClose(g.dweight, zeros_w, {0, 0}));
  ASSERT_OK_AND_ASSIGN(std::vector<double> db, g.dbias.ToDoubles());
  for (double v : db) EXPECT_EQ(v, 0.0);
  ASSERT_OK_AND_ASSIGN(std::vector<double> ds, g.dinitial_state.ToDoubles());
  for (double v : ds) EXPECT_EQ(v, 0.0);
}

// --- Packed sequences, single-step updates -----------------------------------------------------

// Each document of a packed row, convolved alone, gives the packed result's columns.
void ExpectPackedEqualsSeparate(Device device, DType dtype, Layout layout) {
  constexpr int64_t kD = 67, kL = 130, kK = 4;
  ASSERT_OK_AND_ASSIGN(Inputs cpu, MakeInputs(2, kD, kL, kK, dtype, DType::kF32, layout, true,
                                              true, true, 21));
  ASSERT_OK_AND_ASSIGN(Inputs in, ToDevice(cpu, device, layout));
  ASSERT_OK_AND_ASSIGN(Tensor y, Forward(in, kSilu, nullptr));
  ASSERT_OK_AND_ASSIGN(std::vector<int32_t> seq, cpu.seq_idx.ToVector<int32_t>());
  for (int64_t b = 0; b < 2; ++b) {
    int64_t start = 0;
    while (start < kL) {
      int64_t end = start;
      while (end < kL && seq[b * kL + end] == seq[b * kL + start]) ++end;
      SCOPED_TRACE(absl::StrCat("row ", b, " document [", start, ", ", end, ")"));
      Inputs doc;
      ASSERT_OK_AND_ASSIGN(Tensor xb, in.x.Narrow(0, b, 1));
      ASSERT_OK_AND_ASSIGN(doc.x, xb.Narrow(2, start, end - start));
      doc.weight = in.weight;
      doc.bias = in.bias;
      if (start == 0) {  // the initial state continues the first document
        ASSERT_OK_AND_ASSIGN(doc.initial_state, in.initial_state.Narrow(0, b, 1));
      }
      ASSERT_OK_AND_ASSIGN(Tensor y_doc, Forward(doc, kSilu, nullptr));
      ASSERT_OK_AND_ASSIGN(Tensor yb, y.Narrow(0, b, 1));
      ASSERT_OK_AND_ASSIGN(Tensor y_packed, yb.Narrow(2, start, end - start));
      EXPECT_TRUE(AllClose(y_packed, y_doc, DefaultTolerance(dtype)));
      start = end;
    }
  }
}

TEST(CausalConv1dReferenceTest, PackedEqualsSeparate) {
  ExpectPackedEqualsSeparate(Device::Cpu(), DType::kF64, Layout::kChannelFirst);
  ExpectPackedEqualsSeparate(Device::Cpu(), DType::kF32, Layout::kChannelLast);
}

// Feeding x one column at a time through CausalConv1dUpdate gives the full forward's columns,
// and leaves the state equal to the forward's final state.
void ExpectStepsEqualForward(Device device, DType dtype, DType weight_dtype, int64_t K,
                             bool bias) {
  constexpr int64_t kB = 3, kD = 37, kL = 9;
  SCOPED_TRACE(absl::StrCat(device.ToString(), " ", DTypeName(dtype), " weight ",
                            DTypeName(weight_dtype), " K=", K, " bias=", bias));
  ASSERT_OK_AND_ASSIGN(Inputs cpu, MakeInputs(kB, kD, kL, K, dtype, weight_dtype,
                                              Layout::kChannelFirst, bias, false, true, 31));
  ASSERT_OK_AND_ASSIGN(Inputs in, ToDevice(cpu, device, Layout::kChannelFirst));
  Tensor final_state;
  ASSERT_OK_AND_ASSIGN(Tensor y, Forward(in, kSilu, &final_state));
  ASSERT_OK_AND_ASSIGN(Tensor state, in.initial_state.Clone());
  for (int64_t t = 0; t < kL; ++t) {
    ASSERT_OK_AND_ASSIGN(Tensor x_t, in.x.Select(2, t));
    ASSERT_OK_AND_ASSIGN(Tensor y_t, CausalConv1dUpdate(x_t, state, in.weight, in.bias, kSilu));
    ASSERT_OK_AND_ASSIGN(Tensor y_col, y.Select(2, t));
    EXPECT_TRUE(AllClose(y_t, y_col, DefaultTolerance(dtype))) << "column " << t;
  }
  EXPECT_TRUE(AllClose(state, final_state, {0, 0}));
}

TEST(CausalConv1dReferenceTest, StepUpdateEqualsForward) {
  for (int64_t K : {1, 2, 4, 8}) {
    ExpectStepsEqualForward(Device::Cpu(), DType::kF64, DType::kF64, K, true);
  }
  ExpectStepsEqualForward(Device::Cpu(), DType::kBF16, DType::kF32, 4, false);
  ExpectStepsEqualForward(Device::Cpu(), DType::kF16, DType::kF16, 4, true);
}

// --- Gradients ------------------------------------------------------------------------------

TEST(CausalConv1dGradTest, GradCheckF64) {
  int seed = 100;
  for (int64_t K : {1, 2, 4}) {
    for (int flags = 0; flags < 8; ++flags) {
      const bool silu = flags & 1, seq = flags & 2, init = (flags & 4) && K > 1;
      SCOPED_TRACE(absl::StrCat("K=", K, " silu=", silu, " seq=", seq, " init=", init));
      ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(2, 3, 11, K, DType::kF64, DType::kF64,
                                                 Layout::kChannelLast, true, seq, init, ++seed));
      const Tensor seq_idx = in.seq_idx;
      const Conv1dActivation act = silu ? kSilu : kIdentity;
      std::vector<Tensor> inputs = {in.x, in.weight, in.bias};
      if (init) inputs.push_back(in.initial_state);
      GradCheckResult r = GradCheck(
          [&](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
            return nn::CausalConv1d(v[0], v[1], v[2], act, seq_idx,
                                    v.size() > 3 ? v[3] : Variable());
          },
          inputs);
      EXPECT_TRUE(r.ok) << r.message << " (max abs error " << r.max_abs_error << ")";
    }
  }
}

TEST(CausalConv1dGradTest, GradCheckWithoutBiasAnd2dWeight) {
  ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(1, 4, 6, 3, DType::kF64, DType::kF64,
                                             Layout::kChannelFirst, false, false, false, 7,
                                             /*weight_3d=*/false));
  GradCheckResult r = GradCheck(
      [](const std::vector<Variable>& v) -> absl::StatusOr<Variable> {
        return nn::CausalConv1d(v[0], v[1], Variable(), kSilu);
      },
      {in.x, in.weight});
  EXPECT_TRUE(r.ok) << r.message;
}

// Low-precision backward on the CPU against the f64 backward of the same (rounded) values.
TEST(CausalConv1dGradTest, LowPrecisionBackwardMatchesF64) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(DTypeName(dtype));
    ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(2, 5, 40, 4, dtype, DType::kF32,
                                               Layout::kChannelFirst, true, true, true, 41));
    ASSERT_OK_AND_ASSIGN(Tensor dy, RandomTensor({2, 5, 40}, dtype, 42));
    ASSERT_OK_AND_ASSIGN(CausalConv1dGrads g,
                         CausalConv1dBackward(in.x, in.weight, in.bias, dy, kSilu, in.seq_idx,
                                              in.initial_state));
    Inputs in64;
    ASSERT_OK_AND_ASSIGN(in64.x, in.x.To(DType::kF64));
    ASSERT_OK_AND_ASSIGN(in64.weight, in.weight.To(DType::kF64));
    ASSERT_OK_AND_ASSIGN(in64.bias, in.bias.To(DType::kF64));
    ASSERT_OK_AND_ASSIGN(in64.initial_state, in.initial_state.To(DType::kF64));
    ASSERT_OK_AND_ASSIGN(Tensor dy64, dy.To(DType::kF64));
    ASSERT_OK_AND_ASSIGN(CausalConv1dGrads e,
                         CausalConv1dBackward(in64.x, in64.weight, in64.bias, dy64, kSilu,
                                              in.seq_idx, in64.initial_state));
    const Tolerance tol = DefaultTolerance(dtype);
    EXPECT_TRUE(AllClose(g.dx, e.dx, tol));
    EXPECT_TRUE(AllClose(g.dinitial_state, e.dinitial_state, tol));
    const Tolerance sum_tol = {1e-4, 1e-4};  // f32 sums over B * L = 80 terms
    EXPECT_TRUE(AllClose(g.dweight, e.dweight, sum_tol));
    EXPECT_TRUE(AllClose(g.dbias, e.dbias, sum_tol));
  }
}

TEST(CausalConv1dGradTest, GradientReachesEveryInput) {
  ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(2, 3, 5, 4, DType::kF32, DType::kF32,
                                             Layout::kChannelFirst, true, false, true, 51));
  Variable x(in.x, true), w(in.weight, true), b(in.bias, true), s(in.initial_state, true);
  ASSERT_OK_AND_ASSIGN(Variable y, nn::CausalConv1d(x, w, b, kSilu, Tensor(), s));
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "CausalConv1d");
  ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(y));
  ASSERT_OK(loss.Backward());
  for (const Variable* v : {&x, &w, &b, &s}) {
    ASSERT_TRUE(v->grad().defined()) << v->Describe();
    EXPECT_EQ(v->grad().shape(), v->shape());
  }
}

// --- Errors -----------------------------------------------------------------------------------

TEST(CausalConv1dErrorsTest, RejectsBadArguments) {
  const absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
  ASSERT_OK_AND_ASSIGN(Inputs in, MakeInputs(2, 3, 5, 4, DType::kF32, DType::kF32,
                                             Layout::kChannelFirst, true, true, true, 61));
  ASSERT_OK_AND_ASSIGN(Tensor w_bad_d, Tensor::Zeros({4, 1, 4}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1d(in.x, w_bad_d, in.bias, kIdentity), kInvalid, "weight");
  ASSERT_OK_AND_ASSIGN(Tensor w_bad_mid, Tensor::Zeros({3, 2, 4}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1d(in.x, w_bad_mid, in.bias, kIdentity), kInvalid, "[D, 1, K]");
  ASSERT_OK_AND_ASSIGN(Tensor w_f16, Tensor::Zeros({3, 1, 4}, DType::kF16));
  EXPECT_STATUS_IS(CausalConv1d(in.x, w_f16, Tensor(), kIdentity), kInvalid, "f32 or x's dtype");
  ASSERT_OK_AND_ASSIGN(Tensor w_wide, Tensor::Zeros({3, 1, 9}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1d(in.x, w_wide, in.bias, kIdentity),
                   absl::StatusCode::kUnimplemented, "kernel width 9");
  ASSERT_OK_AND_ASSIGN(Tensor bias_bad, Tensor::Zeros({4}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1d(in.x, in.weight, bias_bad, kIdentity), kInvalid, "bias");
  ASSERT_OK_AND_ASSIGN(Tensor bias_f64, Tensor::Zeros({3}, DType::kF64));
  EXPECT_STATUS_IS(CausalConv1d(in.x, in.weight, bias_f64, kIdentity), kInvalid, "dtype");
  ASSERT_OK_AND_ASSIGN(Tensor seq_i64, Tensor::Zeros({2, 5}, DType::kI64));
  EXPECT_STATUS_IS(CausalConv1d(in.x, in.weight, in.bias, kIdentity, seq_i64), kInvalid,
                   "seq_idx");
  ASSERT_OK_AND_ASSIGN(Tensor seq_short, Tensor::Zeros({2, 4}, DType::kI32));
  EXPECT_STATUS_IS(CausalConv1d(in.x, in.weight, in.bias, kIdentity, seq_short), kInvalid,
                   "i32[2, 5]");
  ASSERT_OK_AND_ASSIGN(Tensor state_bad, Tensor::Zeros({2, 3, 4}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1d(in.x, in.weight, in.bias, kIdentity, Tensor(), state_bad),
                   kInvalid, "initial_state");
  ASSERT_OK_AND_ASSIGN(Tensor x2d, Tensor::Zeros({3, 5}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1d(x2d, in.weight, in.bias, kIdentity), kInvalid, "[B, D, L]");
  ASSERT_OK_AND_ASSIGN(Tensor x_int, Tensor::Zeros({2, 3, 5}, DType::kI32));
  EXPECT_STATUS_IS(CausalConv1d(x_int, in.weight, in.bias, kIdentity), kInvalid,
                   "floating-point");
  EXPECT_STATUS_IS(CausalConv1d(Tensor(), in.weight, in.bias, kIdentity), kInvalid,
                   "undefined");
  ASSERT_OK_AND_ASSIGN(Tensor dy_bad, Tensor::Zeros({2, 3, 6}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1dBackward(in.x, in.weight, in.bias, dy_bad, kIdentity), kInvalid,
                   "dy");

  ASSERT_OK_AND_ASSIGN(Tensor x_t, Tensor::Zeros({2, 3}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor conv_state_bad, Tensor::Zeros({2, 3, 4}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1dUpdate(x_t, conv_state_bad, in.weight, in.bias, kIdentity),
                   kInvalid, "conv_state");
  ASSERT_OK_AND_ASSIGN(Tensor conv_state_f16, Tensor::Zeros({2, 3, 3}, DType::kF16));
  EXPECT_STATUS_IS(CausalConv1dUpdate(x_t, conv_state_f16, in.weight, in.bias, kIdentity),
                   kInvalid, "conv_state");
  ASSERT_OK_AND_ASSIGN(Tensor conv_state_wide, Tensor::Zeros({2, 3, 8}, DType::kF32));
  EXPECT_STATUS_IS(CausalConv1dUpdate(x_t, conv_state_wide, w_wide, in.bias, kIdentity),
                   absl::StatusCode::kUnimplemented, "kernel width 9");

  Generator gen(1);
  EXPECT_STATUS_IS(nn::Conv1d::Create(0, 4, true, gen), kInvalid, "channels");
  EXPECT_STATUS_IS(nn::Conv1d::Create(8, 9, true, gen), absl::StatusCode::kUnimplemented,
                   "kernel_size 9");
  EXPECT_STATUS_IS(nn::Conv1d::Create(8, 4, true, gen, DType::kI32), kInvalid, "floating");
}

// --- Module -----------------------------------------------------------------------------------

TEST(Conv1dModuleTest, ParametersInitAndForward) {
  Generator gen(7);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<nn::Conv1d> conv,
                       nn::Conv1d::Create(16, 4, /*bias=*/true, gen));
  const auto named = conv->NamedParameters();
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0].first, "weight");
  EXPECT_EQ(named[0].second.shape(), (Shape{16, 1, 4}));
  EXPECT_EQ(named[1].first, "bias");
  EXPECT_EQ(named[1].second.shape(), (Shape{16}));
  for (const auto& [name, p] : named) {
    ASSERT_OK_AND_ASSIGN(std::vector<double> v, p.data().ToDoubles());
    for (double e : v) {
      EXPECT_TRUE(e >= -0.5 && e < 0.5) << name << " " << e;  // bound 1 / sqrt(4)
    }
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<nn::Conv1d> no_bias,
                       nn::Conv1d::Create(16, 4, /*bias=*/false, gen));
  EXPECT_EQ(no_bias->NamedParameters().size(), 1u);
  EXPECT_FALSE(no_bias->bias().defined());

  ASSERT_OK_AND_ASSIGN(Tensor xt, RandomTensor({2, 16, 10}, DType::kF32, 8));
  Variable x(xt);
  Tensor final_state;
  ASSERT_OK_AND_ASSIGN(Variable y, conv->Forward(x, kSilu, Tensor(), Variable(), &final_state));
  ASSERT_OK_AND_ASSIGN(Tensor expected, CausalConv1d(xt, conv->weight().data(),
                                                     conv->bias().data(), kSilu));
  EXPECT_TRUE(AllClose(y.data(), expected, {0, 0}));
  EXPECT_EQ(final_state.shape(), (Shape{2, 16, 3}));

  // Step continues from the final state exactly like a longer forward.
  ASSERT_OK_AND_ASSIGN(Tensor x_next, RandomTensor({2, 16}, DType::kF32, 9));
  ASSERT_OK_AND_ASSIGN(Tensor y_next, conv->Step(x_next, final_state, kSilu));
  ASSERT_OK_AND_ASSIGN(Tensor x_col, x_next.Unsqueeze(2));
  ASSERT_OK_AND_ASSIGN(Tensor longer, Tensor::Empty({2, 16, 11}, DType::kF32));
  ASSERT_OK_AND_ASSIGN(Tensor head, longer.Narrow(2, 0, 10));
  ASSERT_OK(head.CopyFrom(xt));
  ASSERT_OK_AND_ASSIGN(Tensor tail, longer.Narrow(2, 10, 1));
  ASSERT_OK(tail.CopyFrom(x_col));
  ASSERT_OK_AND_ASSIGN(Tensor y_long, CausalConv1d(longer, conv->weight().data(),
                                                   conv->bias().data(), kSilu));
  ASSERT_OK_AND_ASSIGN(Tensor y_last, y_long.Select(2, 10));
  EXPECT_TRUE(AllClose(y_next, y_last, DefaultTolerance(DType::kF32)));
}

TEST(Conv1dModuleTest, AutocastKeepsMasterWeightsFp32) {
  Generator gen(3);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<nn::Conv1d> conv,
                       nn::Conv1d::Create(8, 4, /*bias=*/true, gen));
  ASSERT_OK_AND_ASSIGN(Tensor xt, RandomTensor({2, 8, 12}, DType::kF32, 4));
  Variable x(xt, true);
  Variable y;
  {
    nn::AutocastGuard autocast(DType::kBF16);
    ASSERT_OK_AND_ASSIGN(y, conv->Forward(x, kSilu));
  }
  EXPECT_EQ(y.dtype(), DType::kBF16);
  ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(y));
  ASSERT_OK(loss.Backward());
  ASSERT_TRUE(conv->weight().grad().defined());
  EXPECT_EQ(conv->weight().grad().dtype(), DType::kF32);
  EXPECT_EQ(conv->bias().grad().dtype(), DType::kF32);
  EXPECT_EQ(x.grad().dtype(), DType::kF32);
}

// --- CUDA against the CPU reference -----------------------------------------------------------

// Tolerance of a sum over n terms of size ~1 (dweight, dbias): rounding grows like sqrt(n).
Tolerance SumTolerance(DType dtype, int64_t n) {
  const Tolerance base = DefaultTolerance(dtype == DType::kF64 ? DType::kF64 : DType::kF32);
  const Tolerance out = DefaultTolerance(dtype);
  return {std::max(out.abs, base.abs * 4 * std::sqrt(static_cast<double>(n))),
          std::max(out.rel, base.rel)};
}

TEST(CausalConv1dCudaTest, ForwardAndBackwardMatchReference) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  int index = 0;
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16}) {
    for (DType weight_dtype : {DType::kF32, dtype}) {
      if (dtype == DType::kF32 && weight_dtype != DType::kF32) continue;
      for (Layout layout : {Layout::kChannelFirst, Layout::kChannelLast, Layout::kSliced}) {
        for (int64_t L : {1, 3, 4, 5, 127, 2048}) {
          ++index;
          const int64_t K = (index % 5 == 0) ? 2 : (index % 7 == 0) ? 8 : 4;
          const bool silu = index & 1, bias = index & 2, seq = index & 4, init = index & 8;
          const int64_t D = (index % 2) ? 67 : 131;
          SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " weight ", DTypeName(weight_dtype), " ",
                                    LayoutName(layout), " L=", L, " D=", D, " K=", K,
                                    " silu=", silu, " bias=", bias, " seq=", seq,
                                    " init=", init));
          ASSERT_OK_AND_ASSIGN(Inputs cpu, MakeInputs(2, D, L, K, dtype, weight_dtype, layout,
                                                      bias, seq, init, 1000 + index));
          ASSERT_OK_AND_ASSIGN(Inputs dev, ToDevice(cpu, gpu, layout));
          const Conv1dActivation act = silu ? kSilu : kIdentity;
          Tensor fs_cpu, fs_gpu;
          ASSERT_OK_AND_ASSIGN(Tensor y_cpu, Forward(cpu, act, &fs_cpu));
          ASSERT_OK_AND_ASSIGN(Tensor y_gpu, Forward(dev, act, &fs_gpu));
          EXPECT_TRUE(AllClose(y_gpu, y_cpu, DefaultTolerance(dtype)));
          EXPECT_TRUE(AllClose(fs_gpu, fs_cpu, {0, 0}));

          ASSERT_OK_AND_ASSIGN(Tensor dy_cpu,
                               MakeSequence(2, D, L, dtype, layout, Device::Cpu(), 77 + index));
          ASSERT_OK_AND_ASSIGN(Tensor dy_gpu,
                               MakeSequence(2, D, L, dtype, layout, gpu, 77 + index));
          ASSERT_OK_AND_ASSIGN(CausalConv1dGrads g_cpu,
                               CausalConv1dBackward(cpu.x, cpu.weight, cpu.bias, dy_cpu, act,
                                                    cpu.seq_idx, cpu.initial_state));
          ASSERT_OK_AND_ASSIGN(CausalConv1dGrads g_gpu,
                               CausalConv1dBackward(dev.x, dev.weight, dev.bias, dy_gpu, act,
                                                    dev.seq_idx, dev.initial_state));
          EXPECT_TRUE(AllClose(g_gpu.dx, g_cpu.dx, DefaultTolerance(dtype)));
          EXPECT_TRUE(AllClose(g_gpu.dweight, g_cpu.dweight, SumTolerance(weight_dtype, 2 * L)));
          if (bias) {
            EXPECT_TRUE(AllClose(g_gpu.dbias, g_cpu.dbias, SumTolerance(weight_dtype, 2 * L)));
          }
          if (init) {
            EXPECT_TRUE(
                AllClose(g_gpu.dinitial_state, g_cpu.dinitial_state, DefaultTolerance(dtype)));
          }
        }
      }
    }
  }
}

TEST(CausalConv1dCudaTest, BackwardIsDeterministic) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(Inputs cpu, MakeInputs(4, 300, 3000, 4, DType::kBF16, DType::kF32,
                                              Layout::kChannelLast, true, false, false, 5));
  ASSERT_OK_AND_ASSIGN(Inputs dev, ToDevice(cpu, gpu, Layout::kChannelLast));
  ASSERT_OK_AND_ASSIGN(Tensor dy, MakeSequence(4, 300, 3000, DType::kBF16, Layout::kChannelLast,
                                               gpu, 6));
  ASSERT_OK_AND_ASSIGN(CausalConv1dGrads a,
                       CausalConv1dBackward(dev.x, dev.weight, dev.bias, dy, kSilu));
  ASSERT_OK_AND_ASSIGN(CausalConv1dGrads b,
                       CausalConv1dBackward(dev.x, dev.weight, dev.bias, dy, kSilu));
  EXPECT_TRUE(AllClose(a.dweight, b.dweight, {0, 0}));
  EXPECT_TRUE(AllClose(a.dbias, b.dbias, {0, 0}));
  EXPECT_TRUE(AllClose(a.dx, b.dx, {0, 0}));
}

TEST(CausalConv1dCudaTest, PackedEqualsSeparate) {
  LYRA_REQUIRE_GPU();
  ExpectPackedEqualsSeparate(Device::Cuda(0), DType::kF32, Layout::kChannelFirst);
  ExpectPackedEqualsSeparate(Device::Cuda(0), DType::kBF16, Layout::kChannelLast);
}

TEST(CausalConv1dCudaTest, StepUpdateEqualsForward) {
  LYRA_REQUIRE_GPU();
  for (int64_t K : {1, 2, 4, 8}) {
    ExpectStepsEqualForward(Device::Cuda(0), DType::kF32, DType::kF32, K, true);
  }
  ExpectStepsEqualForward(Device::Cuda(0), DType::kBF16, DType::kF32, 4, true);
  ExpectStepsEqualForward(Device::Cuda(0), DType::kF16, DType::kF16, 4, false);
}

// The version-1 kernel kept for the benchmark computes the same as the reference.
TEST(CausalConv1dCudaTest, NaiveKernelMatchesReference) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(Inputs cpu, MakeInputs(2, 67, 131, 4, DType::kBF16, DType::kF32,
                                              Layout::kChannelFirst, true, true, true, 9));
  ASSERT_OK_AND_ASSIGN(Inputs dev, ToDevice(cpu, gpu, Layout::kChannelFirst));
  Tensor fs_cpu;
  ASSERT_OK_AND_ASSIGN(Tensor y_cpu, Forward(cpu, kSilu, &fs_cpu));
  ASSERT_OK_AND_ASSIGN(Tensor y, Tensor::Empty({2, 67, 131}, DType::kBF16, gpu));
  ASSERT_OK_AND_ASSIGN(Tensor fs, Tensor::Empty({2, 67, 3}, DType::kBF16, gpu));
  cuda::CausalConv1dParams p;
  p.batch = 2;
  p.channels = 67;
  p.length = 131;
  p.width = 4;
  p.silu = true;
  p.x = dev.x.data();
  p.dtype = DType::kBF16;
  p.x_stride_b = 67 * 131;
  p.x_stride_d = 131;
  p.x_stride_l = 1;
  p.weight = dev.weight.data();
  p.weight_dtype = DType::kF32;
  p.weight_stride_d = 4;
  p.weight_stride_k = 1;
  p.bias = dev.bias.data();
  p.bias_stride = 1;
  p.seq_idx = dev.seq_idx.data<int32_t>();
  p.seq_idx_stride_b = 131;
  p.seq_idx_stride_l = 1;
  p.initial_state = dev.initial_state.data();
  p.initial_state_stride_b = 67 * 3;
  p.initial_state_stride_d = 3;
  p.initial_state_stride_k = 1;
  p.y = y.data();
  p.y_stride_b = 67 * 131;
  p.y_stride_d = 131;
  p.y_stride_l = 1;
  p.final_state = fs.data();
  p.final_state_stride_b = 67 * 3;
  p.final_state_stride_d = 3;
  p.final_state_stride_k = 1;
  ASSERT_OK(cuda::CausalConv1dNaiveCuda(p, cuda::CurrentStream(0)));
  EXPECT_TRUE(AllClose(y, y_cpu, DefaultTolerance(DType::kBF16)));
  EXPECT_TRUE(AllClose(fs, fs_cpu, {0, 0}));
}

TEST(CausalConv1dCudaTest, ModuleGradientsMatchCpu) {
  LYRA_REQUIRE_GPU();
  Generator gen(11);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<nn::Conv1d> conv,
                       nn::Conv1d::Create(67, 4, /*bias=*/true, gen));
  ASSERT_OK_AND_ASSIGN(Tensor xt, RandomTensor({2, 67, 50}, DType::kF32, 12));
  std::vector<Tensor> grads_cpu;
  for (Device device : {Device::Cpu(), Device::Cuda(0)}) {
    ASSERT_OK(conv->To(device));
    ASSERT_OK_AND_ASSIGN(Tensor x_dev, xt.To(device));
    ASSERT_OK_AND_ASSIGN(Variable y, conv->Forward(Variable(x_dev), kSilu));
    ASSERT_OK_AND_ASSIGN(Variable loss, autograd::Sum(y));
    ASSERT_OK(loss.Backward());
    if (device.is_cpu()) {
      grads_cpu = {conv->weight().grad(), conv->bias().grad()};
    } else {
      EXPECT_TRUE(AllClose(conv->weight().grad(), grads_cpu[0], SumTolerance(DType::kF32, 100)));
      EXPECT_TRUE(AllClose(conv->bias().grad(), grads_cpu[1], SumTolerance(DType::kF32, 100)));
    }
  }
}

TEST(CausalConv1dCudaTest, RejectsF64AndMixedDevices) {
  LYRA_REQUIRE_GPU();
  const Device gpu = Device::Cuda(0);
  ASSERT_OK_AND_ASSIGN(Inputs cpu, MakeInputs(1, 3, 5, 4, DType::kF64, DType::kF64,
                                              Layout::kChannelFirst, true, false, false, 1));
  ASSERT_OK_AND_ASSIGN(Inputs dev, ToDevice(cpu, gpu, Layout::kChannelFirst));
  EXPECT_STATUS_IS(Forward(dev, kIdentity, nullptr), absl::StatusCode::kUnimplemented, "f64");
  EXPECT_STATUS_IS(CausalConv1d(dev.x, cpu.weight, dev.bias, kIdentity),
                   absl::StatusCode::kInvalidArgument, "device");
}

}  // namespace
}  // namespace lyra
