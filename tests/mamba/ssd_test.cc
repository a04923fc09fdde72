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

}  // namespace
}  // namespace lyra
