#include "cuda/blas.h"

#include <array>
#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"

namespace lyra::cuda {
namespace {

constexpr int kMaxGpus = 64;  // as cuda/stream.cc and cuda/allocator.cc

std::atomic<bool> allow_tf32{false};

// The registries below are leaked on purpose: handles and workspaces live for the process, and
// threads exiting during static destruction still return their handles safely.

struct LtHandles {
  std::mutex mu;
  std::array<cublasLtHandle_t, kMaxGpus> handles{};
};
LtHandles& Lt() {
  static LtHandles* lt = new LtHandles;
  return *lt;
}

// cuBLAS handles no thread holds, per device.
struct CublasPool {
  std::mutex mu;
  std::array<std::vector<cublasHandle_t>, kMaxGpus> free;
};
CublasPool& Pool() {
  static CublasPool* pool = new CublasPool;
  return *pool;
}

// The calling thread's cuBLAS handles; back to the pool when the thread exits.
struct ThreadCublasHandles {
  std::array<cublasHandle_t, kMaxGpus> handles{};
  ~ThreadCublasHandles() {
    CublasPool& pool = Pool();
    std::lock_guard<std::mutex> lock(pool.mu);
    for (int d = 0; d < kMaxGpus; ++d) {
      if (handles[d] != nullptr) pool.free[d].push_back(handles[d]);
    }
  }
};
thread_local ThreadCublasHandles thread_cublas;

struct Workspaces {
  std::mutex mu;
  absl::flat_hash_map<std::pair<int, cudaStream_t>, void*> by_stream;
};
Workspaces& AllWorkspaces() {
  static Workspaces* w = new Workspaces;
  return *w;
}

// The device must be current.
absl::StatusOr<cublasLtHandle_t> LtHandle(int device) {
  LtHandles& lt = Lt();
  std::lock_guard<std::mutex> lock(lt.mu);
  if (lt.handles[device] == nullptr) {
    cublasLtHandle_t handle = nullptr;
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtCreate(&handle));
    lt.handles[device] = handle;
  }
  return lt.handles[device];
}

// The device must be current.
absl::StatusOr<cublasHandle_t> ThreadCublasHandle(int device) {
  cublasHandle_t& mine = thread_cublas.handles[device];
  if (mine != nullptr) return mine;
  {
    CublasPool& pool = Pool();
    std::lock_guard<std::mutex> lock(pool.mu);
    if (!pool.free[device].empty()) {
      mine = pool.free[device].back();
      pool.free[device].pop_back();
      return mine;
    }
  }
  cublasHandle_t handle = nullptr;
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle));
  // f16/bf16 GEMMs must accumulate in f32 all the way, split-K reductions included. TF32 is
  // chosen per call through the compute type, not through the math mode.
  const cublasStatus_t mode = cublasSetMathMode(
      handle, static_cast<cublasMath_t>(CUBLAS_DEFAULT_MATH |
                                        CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
  if (mode != CUBLAS_STATUS_SUCCESS) {
    cublasDestroy(handle);
    return CublasStatus(mode, "cublasSetMathMode", __FILE__, __LINE__);
  }
  mine = handle;
  return mine;
}

absl::StatusOr<void*> Workspace(int device, cudaStream_t stream) {
  Workspaces& w = AllWorkspaces();
  std::lock_guard<std::mutex> lock(w.mu);
  auto it = w.by_stream.find({device, stream});
  if (it != w.by_stream.end()) return it->second;
  LYRA_ASSIGN_OR_RETURN(void* workspace,
                        CachingAllocator::ForDevice(device).Allocate(kBlasWorkspaceBytes));
  w.by_stream.emplace(std::make_pair(device, stream), workspace);
  return workspace;
}

}  // namespace

absl::StatusOr<BlasContext> GetBlasContext(int device, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(CheckGpu(device));
  LYRA_CHECK(device < kMaxGpus) << "GPU index " << device;
  DeviceGuard guard(device);
  BlasContext ctx;
  ctx.stream = stream;
  ctx.workspace_bytes = kBlasWorkspaceBytes;
  LYRA_ASSIGN_OR_RETURN(ctx.lt, LtHandle(device));
  LYRA_ASSIGN_OR_RETURN(ctx.workspace, Workspace(device, stream));
  LYRA_ASSIGN_OR_RETURN(ctx.cublas, ThreadCublasHandle(device));
  // cublasSetStream resets the workspace to cuBLAS's own pool, so the workspace comes second.
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasSetStream(ctx.cublas, stream));
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasSetWorkspace(ctx.cublas, ctx.workspace, ctx.workspace_bytes));
  return ctx;
}

void SetAllowTf32(bool allow) { allow_tf32.store(allow, std::memory_order_relaxed); }
bool AllowTf32() { return allow_tf32.load(std::memory_order_relaxed); }

}  // namespace lyra::cuda
