// Matmul throughput: Lyra's Matmul on CUDA against direct cuBLASLt and cublasGemmEx calls on the
// same shapes and buffers (so Lyra can be reported as a fraction of raw cuBLAS), and Lyra's CPU
// reference.
//
// Napkin math: C[m, n] = A[m, k] @ B[k, n] costs 2 * m * n * k FLOPs (a multiply and an add per
// term of each of the m * n dot products), times the batch. The "TFLOP/s" counter is that count
// over the GPU time between two CUDA events around one call, averaged over the iterations. The
// bytes moved, (m*k + k*n + m*n) * element size, are small next to the FLOPs for every shape
// here (8192^3 bf16: 1.1e12 FLOPs over 4e8 bytes), so these are compute-bound: an H200 peaks at
// about 990 dense TFLOP/s in bf16, 495 in TF32 and 67 in plain f32 (FMA units).
//
// Each timed call is preceded by a write of 2x the L2 size (outside the timed region) so no run
// starts with its operands in L2, and every benchmark warms up (handles, workspace, descriptor
// cache, clocks) before timing. No host sync happens between the two events.
//
//   bazel run -c opt --config=opt //benchmarks:matmul_benchmark
//   ... -- --benchmark_filter='bf16'
#include <benchmark/benchmark.h>
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/blas.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"
#include "cuda/stream.h"
#include "tensor/matmul.h"
#include "tensor/tensor.h"

namespace lyra {
namespace {

struct MatmulShape {
  const char* name;
  int64_t m, k, n;
};

// 8192^3 is the usual peak-throughput square; the others are mamba-130m's in_proj
// (d_model 768 -> 2 * d_inner 3072) and out_proj (d_inner 1536 -> 768) on 16384 tokens
// (e.g. batch 8 x length 2048).
constexpr MatmulShape kShapes[] = {
    {"8192x8192x8192", 8192, 8192, 8192},
    {"mamba-130m_in_proj_16384x768x3072", 16384, 768, 3072},
    {"mamba-130m_out_proj_16384x1536x768", 16384, 1536, 768},
};

struct Precision {
  const char* name;
  DType dtype;
  bool tf32;
};

constexpr Precision kPrecisions[] = {
    {"bf16", DType::kBF16, false},
    {"f32", DType::kF32, false},
    {"f32_tf32", DType::kF32, true},
};

constexpr int kWarmupCalls = 3;
constexpr int64_t kRawWorkspaceBytes = cuda::kBlasWorkspaceBytes;

// Uniform values in [-1, 1) from a fixed LCG, as a tensor of `dtype` on `device`.
absl::StatusOr<Tensor> RandomOperand(const Shape& shape, DType dtype, Device device,
                                     uint64_t seed) {
  std::vector<float> values(NumElements(shape));
  uint64_t state = seed * 6364136223846793005ull + 1442695040888963407ull;
  for (float& v : values) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    v = static_cast<float>(static_cast<double>(state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
  }
  LYRA_ASSIGN_OR_RETURN(Tensor t, Tensor::FromVector(values, shape, device));
  return t.To(dtype);
}

struct GpuOperands {
  Tensor a;    // [m, k]
  Tensor b;    // [k, n]
  Tensor out;  // [m, n], for the raw cuBLAS calls
};

// Built once per (shape, dtype) and kept: 8192^2 operands take a while to generate.
absl::StatusOr<GpuOperands*> Operands(const MatmulShape& shape, DType dtype) {
  static auto* cache = new std::map<std::tuple<int64_t, int64_t, int64_t, DType>, GpuOperands>;
  const auto key = std::make_tuple(shape.m, shape.k, shape.n, dtype);
  auto it = cache->find(key);
  if (it != cache->end()) return &it->second;
  GpuOperands ops;
  LYRA_ASSIGN_OR_RETURN(ops.a, RandomOperand({shape.m, shape.k}, dtype, Device::Cuda(0), 1));
  LYRA_ASSIGN_OR_RETURN(ops.b, RandomOperand({shape.k, shape.n}, dtype, Device::Cuda(0), 2));
  LYRA_ASSIGN_OR_RETURN(ops.out, Tensor::Zeros({shape.m, shape.n}, dtype, Device::Cuda(0)));
  return &cache->emplace(key, std::move(ops)).first->second;
}

// A device buffer of twice the L2 size, written before each timed call to evict the operands.
absl::StatusOr<std::pair<void*, size_t>> L2FlushBuffer() {
  static void* buffer = nullptr;
  static size_t bytes = 0;
  if (buffer == nullptr) {
    LYRA_ASSIGN_OR_RETURN(cuda::GpuProperties props, cuda::GetGpuProperties(0));
    bytes = static_cast<size_t>(2 * props.l2_cache_bytes);
    LYRA_CUDA_RETURN_IF_ERROR(cudaMalloc(&buffer, bytes));
  }
  return std::make_pair(buffer, bytes);
}

// Times `call` (which enqueues one matmul on `stream`) with CUDA events; reports TFLOP/s.
void TimeGpu(benchmark::State& state, const MatmulShape& shape,
             const std::function<absl::Status()>& call) {
  const cudaStream_t stream = cuda::CurrentStream(0);
  const auto fail = [&](const absl::Status& s) { state.SkipWithError(s.ToString().c_str()); };
  absl::StatusOr<std::pair<void*, size_t>> flush = L2FlushBuffer();
  if (!flush.ok()) return fail(flush.status());
  for (int i = 0; i < kWarmupCalls; ++i) {
    if (absl::Status s = call(); !s.ok()) return fail(s);
  }
  if (absl::Status s = cuda::Synchronize(0); !s.ok()) return fail(s);
  absl::StatusOr<cuda::Event> start = cuda::Event::Create(0);
  absl::StatusOr<cuda::Event> stop = cuda::Event::Create(0);
  if (!start.ok()) return fail(start.status());
  if (!stop.ok()) return fail(stop.status());

  double total_seconds = 0;
  for (auto _ : state) {
    cudaMemsetAsync(flush->first, 0, flush->second, stream);
    absl::Status s = start->Record(stream);
    if (s.ok()) s = call();
    if (s.ok()) s = stop->Record(stream);
    if (s.ok()) s = stop->Synchronize();
    absl::StatusOr<float> ms = s.ok() ? stop->ElapsedMsSince(*start) : absl::StatusOr<float>(s);
    if (!ms.ok()) return fail(ms.status());
    state.SetIterationTime(*ms / 1e3);
    total_seconds += *ms / 1e3;
  }
  const double flops = 2.0 * shape.m * shape.n * shape.k;
  state.counters["TFLOP/s"] = flops * state.iterations() / total_seconds / 1e12;
}

absl::Status NeedGpu() {
  if (!cuda::HasGpu()) return absl::FailedPreconditionError("no GPU: " + cuda::NoGpuReason());
  return absl::OkStatus();
}

// Lyra's Matmul, allocating its output from the caching allocator as a caller would.
void BM_Lyra(benchmark::State& state, MatmulShape shape, Precision precision) {
  if (absl::Status s = NeedGpu(); !s.ok()) return state.SkipWithError(s.ToString().c_str());
  absl::StatusOr<GpuOperands*> ops = Operands(shape, precision.dtype);
  if (!ops.ok()) return state.SkipWithError(ops.status().ToString().c_str());
  const bool previous_tf32 = AllowTf32();
  SetAllowTf32(precision.tf32);
  TimeGpu(state, shape, [&]() { return Matmul((*ops)->a, (*ops)->b).status(); });
  SetAllowTf32(previous_tf32);
}

cudaDataType_t CudaType(DType dtype) { return dtype == DType::kBF16 ? CUDA_R_16BF : CUDA_R_32F; }
cublasComputeType_t ComputeType(const Precision& p) {
  return p.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}

// Row-major C = A B issued directly as column-major C^T (n x m) = B^T (n x k) A^T (k x m): the
// row-major buffers of B and A are exactly those column-major matrices, so no transposes.
struct RawLt {
  cublasLtHandle_t handle = nullptr;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulAlgo_t algo{};
  void* workspace = nullptr;

  absl::Status Init(const MatmulShape& s, const Precision& p) {
    const cudaDataType_t type = CudaType(p.dtype);
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&desc, ComputeType(p), CUDA_R_32F));
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&b, type, s.n, s.k, s.n));
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&a, type, s.k, s.m, s.k));
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&c, type, s.n, s.m, s.n));
    LYRA_CUDA_RETURN_IF_ERROR(cudaMalloc(&workspace, kRawWorkspaceBytes));
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t bytes = kRawWorkspaceBytes;
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof(bytes)));
    cublasLtMatmulHeuristicResult_t result{};
    int returned = 0;
    LYRA_CUBLAS_RETURN_IF_ERROR(
        cublasLtMatmulAlgoGetHeuristic(handle, desc, b, a, c, c, pref, 1, &result, &returned));
    if (returned == 0) return absl::UnimplementedError("cuBLASLt heuristic found no algorithm");
    algo = result.algo;
    return absl::OkStatus();
  }

  absl::Status Run(const GpuOperands& ops, cudaStream_t stream) const {
    const float alpha = 1, beta = 0;
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(handle, desc, &alpha, ops.b.data(), b,
                                               ops.a.data(), a, &beta, ops.out.data(), c,
                                               ops.out.data(), c, &algo, workspace,
                                               kRawWorkspaceBytes, stream));
    return absl::OkStatus();
  }

  ~RawLt() {
    if (workspace != nullptr) cudaFree(workspace);
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
    if (handle != nullptr) cublasLtDestroy(handle);
  }
};

void BM_CublasLt(benchmark::State& state, MatmulShape shape, Precision precision) {
  if (absl::Status s = NeedGpu(); !s.ok()) return state.SkipWithError(s.ToString().c_str());
  absl::StatusOr<GpuOperands*> ops = Operands(shape, precision.dtype);
  if (!ops.ok()) return state.SkipWithError(ops.status().ToString().c_str());
  RawLt lt;
  if (absl::Status s = lt.Init(shape, precision); !s.ok()) {
    return state.SkipWithError(s.ToString().c_str());
  }
  const cudaStream_t stream = cuda::CurrentStream(0);
  TimeGpu(state, shape, [&]() { return lt.Run(**ops, stream); });
}

void BM_CublasGemmEx(benchmark::State& state, MatmulShape shape, Precision precision) {
  if (absl::Status s = NeedGpu(); !s.ok()) return state.SkipWithError(s.ToString().c_str());
  absl::StatusOr<GpuOperands*> ops = Operands(shape, precision.dtype);
  if (!ops.ok()) return state.SkipWithError(ops.status().ToString().c_str());
  cublasHandle_t handle = nullptr;
  if (cublasStatus_t s = cublasCreate(&handle); s != CUBLAS_STATUS_SUCCESS) {
    return state.SkipWithError(cublasGetStatusString(s));
  }
  const cudaStream_t stream = cuda::CurrentStream(0);
  cublasSetStream(handle, stream);
  const cudaDataType_t type = CudaType(precision.dtype);
  const int m = static_cast<int>(shape.m), n = static_cast<int>(shape.n);
  const int k = static_cast<int>(shape.k);
  TimeGpu(state, shape, [&]() -> absl::Status {
    const float alpha = 1, beta = 0;
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha,
                                             (*ops)->b.data(), type, n, (*ops)->a.data(), type,
                                             k, &beta, (*ops)->out.data(), type, n,
                                             ComputeType(precision), CUBLAS_GEMM_DEFAULT));
    return absl::OkStatus();
  });
  cublasDestroy(handle);
}

// Lyra's CPU reference (single thread): the speed CPU training of small models gets.
void BM_LyraCpu(benchmark::State& state, DType dtype) {
  const int64_t size = state.range(0);
  absl::StatusOr<Tensor> a = RandomOperand({size, size}, dtype, Device::Cpu(), 1);
  absl::StatusOr<Tensor> b = RandomOperand({size, size}, dtype, Device::Cpu(), 2);
  if (!a.ok() || !b.ok()) return state.SkipWithError("could not build the operands");
  for (auto _ : state) {
    absl::StatusOr<Tensor> out = Matmul(*a, *b);
    if (!out.ok()) return state.SkipWithError(out.status().ToString().c_str());
    benchmark::DoNotOptimize(out->data());
  }
  const double flops = 2.0 * size * size * size;
  state.counters["FLOP/s"] =
      benchmark::Counter(flops * state.iterations(), benchmark::Counter::kIsRate);
}

[[maybe_unused]] const bool kRegistered = [] {
  for (const MatmulShape& shape : kShapes) {
    for (const Precision& precision : kPrecisions) {
      const std::string suffix = absl::StrCat(precision.name, "/", shape.name);
      benchmark::RegisterBenchmark(("lyra/" + suffix).c_str(), BM_Lyra, shape, precision)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("cublaslt/" + suffix).c_str(), BM_CublasLt, shape, precision)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(("cublas_gemmex/" + suffix).c_str(), BM_CublasGemmEx, shape,
                                   precision)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::RegisterBenchmark("lyra_cpu/f32", BM_LyraCpu, DType::kF32)
      ->Arg(128)
      ->Arg(512)
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("lyra_cpu/bf16", BM_LyraCpu, DType::kBF16)
      ->Arg(512)
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
}  // namespace lyra
