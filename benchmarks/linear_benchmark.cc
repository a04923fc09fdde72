// Linear layer throughput in bf16 at Mamba-130M's projection shapes on 16384 tokens (e.g. batch
// 8 x length 2048): in_proj 768 -> 3072 (d_model -> 2 d_inner) and out_proj 1536 -> 768.
//
//   linear_forward:          nn::functional::Linear, one cuBLASLt call with the bias epilogue
//   matmul_forward:          plain Matmul(x, W^T): the same GEMM without a bias (the floor)
//   matmul_add_bias_forward: Matmul then a broadcast Add of the bias: what the epilogue saves
//   linear_forward_backward: Linear forward + Backward into x, W and b (dX, dW, db)
//   matmul_forward_backward: the three plain GEMMs of that step, X W^T, dY W, dY^T X (no bias)
//   linear_bias_grad:        db = Sum(dY, rows) on its own (the cost a BGRADB epilogue could
//                            fold into the dW GEMM; see nn/functional_linear.h)
//
// Napkin math, T tokens, in -> out features:
//   forward  = 2 T in out FLOPs (a multiply-add per term), + T out for the bias (negligible);
//   backward = 2 x 2 T in out (dX = dY W, dW = dY^T X) + T out (db);
//   so forward + backward = 6 T in out. in_proj: 6 * 16384 * 768 * 3072 = 232 GFLOP; an H200
//   peaks near 990 dense bf16 TFLOP/s, i.e. ~0.23 ms at peak.
//   The bias pass alone moves T out * 2 bytes (bf16 dY read, tiny write): 96 MiB for in_proj,
//   ~20 us at 4.8 TB/s; its counter is GB/s.
// "TFLOP/s" is the FLOP count above over the mean GPU time between two CUDA events around one
// call (benchmarks/gpu_benchmark.h: an L2 flush before each timed call, outside the timed
// region, and warm-up calls first for handles, workspace, cuBLASLt plans and the caching
// allocator). No host sync happens inside the timed region (the autograd engine's Backward
// enqueues work only).
//
//   bazel run -c opt --config=opt //benchmarks:linear_benchmark
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "autograd/variable.h"
#include "base/status_macros.h"
#include "benchmarks/gpu_benchmark.h"
#include "nn/functional_linear.h"
#include "tensor/elementwise.h"
#include "tensor/matmul.h"
#include "tensor/random.h"
#include "tensor/reduce.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

using autograd::Variable;

struct LinearShape {
  const char* name;
  int64_t tokens, in, out;
};

constexpr LinearShape kShapes[] = {
    {"mamba-130m_in_proj_16384x768x3072", 16384, 768, 3072},
    {"mamba-130m_out_proj_16384x1536x768", 16384, 1536, 768},
};

constexpr DType kDType = DType::kBF16;

struct Operands {
  Tensor x;   // [T, in]
  Tensor w;   // [out, in]
  Tensor b;   // [out]
  Tensor dy;  // [T, out]
};

// Built once per shape and kept.
absl::StatusOr<Operands*> GetOperands(const LinearShape& s) {
  static auto* cache = new std::map<std::string, Operands>;
  auto it = cache->find(s.name);
  if (it != cache->end()) return &it->second;
  Generator gen(1);
  const Device gpu = Device::Cuda(0);
  Operands ops;
  LYRA_ASSIGN_OR_RETURN(ops.x, Rand({s.tokens, s.in}, kDType, gpu, gen, -1, 1));
  LYRA_ASSIGN_OR_RETURN(ops.w, Rand({s.out, s.in}, kDType, gpu, gen, -0.03, 0.03));
  LYRA_ASSIGN_OR_RETURN(ops.b, Rand({s.out}, kDType, gpu, gen, -0.03, 0.03));
  LYRA_ASSIGN_OR_RETURN(ops.dy, Rand({s.tokens, s.out}, kDType, gpu, gen, -1, 1));
  return &cache->emplace(s.name, std::move(ops)).first->second;
}

// Times `call` (bench::RunTimed: warm-up, L2 flush, CUDA events); adds "TFLOP/s" from `flops`
// per call and, through RunTimed, "GB/s" from `bytes` (0: none).
void TimeGpu(benchmark::State& state, double flops, double bytes,
             const std::function<absl::Status()>& call) {
  const double ms = bench::RunTimed(state, call, bytes);
  if (ms > 0 && flops > 0) state.counters["TFLOP/s"] = flops / (ms * 1e-3) / 1e12;
}

double GemmFlops(const LinearShape& s) { return 2.0 * s.tokens * s.in * s.out; }

// Runs `body` with the shape's operands on a GPU, or skips with the reason.
void WithOperands(benchmark::State& state, const LinearShape& s,
                  const std::function<void(Operands&)>& body) {
  if (bench::SkipWithoutGpu(state)) return;
  absl::StatusOr<Operands*> ops = GetOperands(s);
  if (!ops.ok()) return bench::Fail(state, ops.status());
  body(**ops);
}

void BM_LinearForward(benchmark::State& state, LinearShape s) {
  WithOperands(state, s, [&](Operands& o) {
    Variable x(o.x), w(o.w), b(o.b);  // no grad: nothing is recorded
    TimeGpu(state, GemmFlops(s), 0, [&]() { return nn::functional::Linear(x, w, b).status(); });
  });
}

void BM_MatmulForward(benchmark::State& state, LinearShape s) {
  WithOperands(state, s, [&](Operands& o) {
    const Tensor wt = o.w.Transpose(0, 1).value();
    TimeGpu(state, GemmFlops(s), 0, [&]() { return Matmul(o.x, wt).status(); });
  });
}

void BM_MatmulAddBiasForward(benchmark::State& state, LinearShape s) {
  WithOperands(state, s, [&](Operands& o) {
    const Tensor wt = o.w.Transpose(0, 1).value();
    TimeGpu(state, GemmFlops(s), 0, [&]() -> absl::Status {
      LYRA_ASSIGN_OR_RETURN(Tensor y, Matmul(o.x, wt));
      return Add(y, o.b).status();
    });
  });
}

void BM_LinearForwardBackward(benchmark::State& state, LinearShape s) {
  WithOperands(state, s, [&](Operands& o) {
    Variable x(o.x, true), w(o.w, true), b(o.b, true);
    TimeGpu(state, 3 * GemmFlops(s), 0, [&]() -> absl::Status {
      // Gradients are dropped each step so every call writes (=) rather than accumulates.
      x.ZeroGrad();
      w.ZeroGrad();
      b.ZeroGrad();
      LYRA_ASSIGN_OR_RETURN(Variable y, nn::functional::Linear(x, w, b));
      return y.Backward(o.dy);
    });
  });
}

void BM_MatmulForwardBackward(benchmark::State& state, LinearShape s) {
  WithOperands(state, s, [&](Operands& o) {
    const Tensor wt = o.w.Transpose(0, 1).value();
    const Tensor dyt = o.dy.Transpose(0, 1).value();
    TimeGpu(state, 3 * GemmFlops(s), 0, [&]() -> absl::Status {
      LYRA_RETURN_IF_ERROR(Matmul(o.x, wt).status());   // Y = X W^T
      LYRA_RETURN_IF_ERROR(Matmul(o.dy, o.w).status());  // dX = dY W
      return Matmul(dyt, o.x).status();                  // dW = dY^T X
    });
  });
}

void BM_LinearBiasGrad(benchmark::State& state, LinearShape s) {
  WithOperands(state, s, [&](Operands& o) {
    const double bytes = static_cast<double>(s.tokens * s.out + s.out) * DTypeSize(kDType);
    TimeGpu(state, 0, bytes, [&]() { return Sum(o.dy, {0}).status(); });
  });
}

[[maybe_unused]] const bool kRegistered = [] {
  using Fn = void (*)(benchmark::State&, LinearShape);
  const std::pair<const char*, Fn> kinds[] = {
      {"linear_forward", BM_LinearForward},
      {"matmul_forward", BM_MatmulForward},
      {"matmul_add_bias_forward", BM_MatmulAddBiasForward},
      {"linear_forward_backward", BM_LinearForwardBackward},
      {"matmul_forward_backward", BM_MatmulForwardBackward},
      {"linear_bias_grad", BM_LinearBiasGrad},
  };
  for (const LinearShape& shape : kShapes) {
    for (const auto& [name, fn] : kinds) {
      benchmark::RegisterBenchmark(absl::StrCat("linear/", name, "/bf16/", shape.name).c_str(),
                                   fn, shape)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return true;
}();

}  // namespace
}  // namespace lyra
