// CUDA matmul through cuBLASLt and cuBLAS (cuda/matmul.h has the math and the precision).
//
// cuBLAS is column-major; Lyra's out is usually row-major. A row-major (m x n) out read as
// column-major is out^T (n x m), and out^T = b^T a^T, so a row-major problem is issued as
//   D (n x m) = op(X) op(Y)   with X = b read so that op(X) = b^T, Y = a with op(Y) = a^T,
// and a column-major out as D (m x n) = op(a) op(b). For each input, "row-major" storage read
// as column-major is the transpose, so the op is N or T by its layout; no copy is made.
//
// Batches: the batch dimensions are coalesced across a, b and out (strided.h); the innermost
// one becomes cuBLAS's strided batch (stride 0 for a broadcast operand), chunks of at most
// kMaxBatchPerCall matrices, and the outer ones a host loop.
//
// cuBLASLt needs descriptors and an algorithm from its heuristic; both are cached per problem
// (device, dtype, compute type, ops, sizes, leading dimensions, batch strides and the operands'
// pointer alignment) in a process-wide map. The heuristic is queried with the real alignment,
// so it only returns algorithms valid for these pointers; when it returns none, or for f64,
// cublasGemmStridedBatchedEx runs instead, which handles any alignment.
//
// k == 0 makes the product empty: out = beta * out, done with the elementwise kernels.
//
// Bias: with a row-major out, D = out^T has one row per output column, which is exactly the
// layout of cuBLASLt's CUBLASLT_EPILOGUE_BIAS (a packed vector with one entry per row of D,
// broadcast over D's columns and over the batch with bias batch stride 0), so the bias costs no
// extra pass. The bias pointer lives in the matmul descriptor; a cached plan is shared across
// threads, so each fused call sets the pointer on a descriptor of its own (a host-only object,
// microseconds to make). Where the epilogue cannot run (f64, a column-major out whose D rows
// are out's rows, a strided or misaligned bias, no cuBLASLt algorithm) the bias is added
// afterwards by one broadcast elementwise kernel over the result.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/blas.h"
#include "cuda/cuda_check.h"
#include "cuda/elementwise.h"
#include "cuda/matmul.h"

namespace lyra::cuda {
namespace {

// cublasGemmStridedBatchedEx takes int sizes and leading dimensions.
constexpr int64_t kMaxBlasDim = std::numeric_limits<int32_t>::max();
// Matrices per cuBLAS call; batch indices may map to a 16-bit grid dimension.
constexpr int64_t kMaxBatchPerCall = 65535;
// Plans kept before the cache is emptied (a generation loop with growing lengths would
// otherwise add one plan per length forever).
constexpr size_t kMaxCachedPlans = 4096;
// cuBLASLt's largest alignment requirement; the heuristic's default preference.
constexpr int64_t kMaxAlignmentBytes = 256;

cudaDataType_t CudaDataType(DType dtype) {
  switch (dtype) {
    case DType::kF16: return CUDA_R_16F;
    case DType::kBF16: return CUDA_R_16BF;
    case DType::kF64: return CUDA_R_64F;
    default: return CUDA_R_32F;
  }
}

cublasComputeType_t ComputeTypeFor(DType dtype, bool allow_tf32) {
  if (dtype == DType::kF64) return CUBLAS_COMPUTE_64F;
  if (dtype == DType::kF32 && allow_tf32) return CUBLAS_COMPUTE_32F_FAST_TF32;
  return CUBLAS_COMPUTE_32F;
}

// One operand as cuBLAS reads it: stored column-major as rows x cols with leading dimension
// ld, applied as op.
struct BlasOperand {
  const void* data = nullptr;
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t ld = 0;
  const int64_t* batch_strides = nullptr;  // per batch dimension of the problem
};

// The rows x cols matrix `m` with layout `layout`, to be used as itself (transposed = false)
// or as its transpose in a column-major product.
BlasOperand ColumnMajorOperand(const MatmulOperand& m, int64_t rows, int64_t cols,
                               BlasLayout layout, bool transposed) {
  BlasOperand o;
  o.data = m.data;
  o.ld = layout.ld;
  o.batch_strides = m.batch_strides;
  // Column-major storage is the matrix itself; row-major storage is its transpose (cols x rows).
  const bool stored_transposed = layout.order == BlasOrder::kRowMajor;
  o.rows = stored_transposed ? cols : rows;
  o.cols = stored_transposed ? rows : cols;
  o.op = stored_transposed == transposed ? CUBLAS_OP_N : CUBLAS_OP_T;
  return o;
}

// D (rows x cols, column-major, ld ldd) = alpha * op(X) op(Y) + beta * D, over a batch.
struct GemmProblem {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t inner = 0;
  BlasOperand x;
  BlasOperand y;
  void* d = nullptr;
  int64_t ldd = 0;
  const int64_t* d_batch_strides = nullptr;
};

GemmProblem ToColumnMajor(const MatmulParams& p) {
  const BlasLayout a = BlasMatrixLayout(p.m, p.k, p.a.row_stride, p.a.col_stride);
  const BlasLayout b = BlasMatrixLayout(p.k, p.n, p.b.row_stride, p.b.col_stride);
  const BlasLayout out = BlasMatrixLayout(p.m, p.n, p.out.row_stride, p.out.col_stride);
  GemmProblem g;
  g.inner = p.k;
  g.d = p.out.data;
  g.ldd = out.ld;
  g.d_batch_strides = p.out.batch_strides;
  if (out.order == BlasOrder::kRowMajor) {  // D = out^T = b^T a^T
    g.rows = p.n;
    g.cols = p.m;
    g.x = ColumnMajorOperand(p.b, p.k, p.n, b, /*transposed=*/true);
    g.y = ColumnMajorOperand(p.a, p.m, p.k, a, /*transposed=*/true);
  } else {  // D = out = a b
    g.rows = p.m;
    g.cols = p.n;
    g.x = ColumnMajorOperand(p.a, p.m, p.k, a, /*transposed=*/false);
    g.y = ColumnMajorOperand(p.b, p.k, p.n, b, /*transposed=*/false);
  }
  return g;
}

// The largest power of two (<= kMaxAlignmentBytes) dividing the address of every matrix of an
// operand: its base address and each batch stride in bytes.
int64_t AlignmentBytes(const void* data, const int64_t* batch_strides, const IterShape& batch,
                       size_t element_size) {
  uint64_t bits = reinterpret_cast<uintptr_t>(data) | static_cast<uint64_t>(kMaxAlignmentBytes);
  for (int d = 0; d < batch.ndim; ++d) {
    if (batch.sizes[d] > 1) bits |= static_cast<uint64_t>(batch_strides[d]) * element_size;
  }
  return static_cast<int64_t>(bits & (~bits + 1));  // lowest set bit
}

// Everything a cuBLASLt plan depends on.
struct PlanKey {
  int device = 0;
  DType dtype = DType::kF32;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cublasOperation_t op_x = CUBLAS_OP_N, op_y = CUBLAS_OP_N;
  int64_t rows = 0, cols = 0, inner = 0;
  int64_t x_rows = 0, x_cols = 0, y_rows = 0, y_cols = 0;
  int64_t ldx = 0, ldy = 0, ldd = 0;
  int64_t batch_count = 1;
  int64_t stride_x = 0, stride_y = 0, stride_d = 0;
  int64_t align_x = 0, align_y = 0, align_d = 0;
  bool bias = false;  // CUBLASLT_EPILOGUE_BIAS (bias kBiasEpilogueAlignment-aligned)

  auto Tie() const {
    return std::make_tuple(device, dtype, compute, op_x, op_y, rows, cols, inner, x_rows, x_cols,
                           y_rows, y_cols, ldx, ldy, ldd, batch_count, stride_x, stride_y,
                           stride_d, align_x, align_y, align_d, bias);
  }
  bool operator==(const PlanKey& o) const { return Tie() == o.Tie(); }
  template <typename H>
  friend H AbslHashValue(H h, const PlanKey& k) {
    return H::combine(std::move(h), k.Tie());
  }
};

// cuBLASLt descriptors and the chosen algorithm (has_algo false: use cuBLAS instead).
struct LtPlan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t x = nullptr, y = nullptr, d = nullptr;
  bool has_algo = false;
  cublasLtMatmulAlgo_t algo{};

  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan() {
    if (d != nullptr) cublasLtMatrixLayoutDestroy(d);
    if (y != nullptr) cublasLtMatrixLayoutDestroy(y);
    if (x != nullptr) cublasLtMatrixLayoutDestroy(x);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

absl::Status SetLayout(cublasLtMatrixLayout_t* layout, cudaDataType_t type, int64_t rows,
                       int64_t cols, int64_t ld, int64_t batch_count, int64_t batch_stride) {
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(layout, type, static_cast<uint64_t>(rows),
                                                         static_cast<uint64_t>(cols), ld));
  if (batch_count > 1) {
    const int32_t count = static_cast<int32_t>(batch_count);
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
        *layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)));
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatrixLayoutSetAttribute(
        *layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
        sizeof(batch_stride)));
  }
  return absl::OkStatus();
}

// RAII for the heuristic's preference descriptor.
struct Preference {
  cublasLtMatmulPreference_t pref = nullptr;
  ~Preference() {
    if (pref != nullptr) cublasLtMatmulPreferenceDestroy(pref);
  }
};

// A matmul descriptor for `key`; with key.bias, the bias epilogue reading `bias`. The caller
// owns *desc (destroyed on error too).
absl::Status CreateMatmulDesc(const PlanKey& key, const void* bias, cublasLtMatmulDesc_t* desc) {
  const cudaDataType_t scale_type = key.dtype == DType::kF64 ? CUDA_R_64F : CUDA_R_32F;
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescCreate(desc, key.compute, scale_type));
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      *desc, CUBLASLT_MATMUL_DESC_TRANSA, &key.op_x, sizeof(key.op_x)));
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
      *desc, CUBLASLT_MATMUL_DESC_TRANSB, &key.op_y, sizeof(key.op_y)));
  if (key.bias) {
    // The bias has D's type (the attribute's default); batch stride 0 shares it by all matrices.
    const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const int64_t bias_batch_stride = 0;
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        *desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        *desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(
        *desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &bias_batch_stride,
        sizeof(bias_batch_stride)));
  }
  return absl::OkStatus();
}

// RAII for a per-call matmul descriptor.
struct OwnedDesc {
  cublasLtMatmulDesc_t desc = nullptr;
  ~OwnedDesc() {
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

// `bias` (a valid, aligned bias for key.bias plans) is only read by the heuristic.
absl::Status BuildPlan(const PlanKey& key, const BlasContext& blas, const void* bias,
                       LtPlan& plan) {
  const cudaDataType_t type = CudaDataType(key.dtype);
  LYRA_RETURN_IF_ERROR(CreateMatmulDesc(key, bias, &plan.desc));
  LYRA_RETURN_IF_ERROR(SetLayout(&plan.x, type, key.x_rows, key.x_cols, key.ldx, key.batch_count,
                                 key.stride_x));
  LYRA_RETURN_IF_ERROR(SetLayout(&plan.y, type, key.y_rows, key.y_cols, key.ldy, key.batch_count,
                                 key.stride_y));
  LYRA_RETURN_IF_ERROR(
      SetLayout(&plan.d, type, key.rows, key.cols, key.ldd, key.batch_count, key.stride_d));

  Preference pref;
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&pref.pref));
  const uint64_t workspace = blas.workspace_bytes;
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(workspace)));
  const uint32_t align_x = static_cast<uint32_t>(key.align_x);
  const uint32_t align_y = static_cast<uint32_t>(key.align_y);
  const uint32_t align_d = static_cast<uint32_t>(key.align_d);
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_x, sizeof(align_x)));
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_y, sizeof(align_y)));
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof(align_d)));
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
      pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d)));
  if (IsHalf(key.dtype)) {
    // Split-K partial sums must be reduced in f32, never in the 16-bit output type (the
    // in-place scheme also adds up in the output type).
    const uint32_t schemes = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &schemes, sizeof(schemes)));
  }

  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
      blas.lt, plan.desc, plan.x, plan.y, plan.d, plan.d, pref.pref, 1, &result, &returned);
  // No algorithm (NOT_SUPPORTED, or none returned) or a refusal of the problem: cuBLAS takes
  // over, and reports its own error if the problem is really invalid.
  if (status != CUBLAS_STATUS_SUCCESS || returned == 0 || result.state != CUBLAS_STATUS_SUCCESS) {
    plan.has_algo = false;
    return absl::OkStatus();
  }
  plan.algo = result.algo;
  plan.has_algo = true;
  return absl::OkStatus();
}

struct PlanCache {
  std::mutex mu;
  absl::flat_hash_map<PlanKey, std::shared_ptr<const LtPlan>> plans;
};
PlanCache& Plans() {
  static PlanCache* cache = new PlanCache;  // leaked: plans may be in use at exit
  return *cache;
}

absl::StatusOr<std::shared_ptr<const LtPlan>> GetPlan(const PlanKey& key,
                                                      const BlasContext& blas,
                                                      const void* bias) {
  PlanCache& cache = Plans();
  std::lock_guard<std::mutex> lock(cache.mu);
  auto it = cache.plans.find(key);
  if (it != cache.plans.end()) return it->second;
  auto plan = std::make_shared<LtPlan>();
  LYRA_RETURN_IF_ERROR(BuildPlan(key, blas, bias, *plan));
  if (cache.plans.size() >= kMaxCachedPlans) cache.plans.clear();
  cache.plans.emplace(key, plan);
  return std::shared_ptr<const LtPlan>(std::move(plan));
}

// out[..., j] += bias[j] over `shape`, whose last dimension indexes the bias; out has
// `out_strides` (elements) and `dtype`, the bias `bias_stride`.
absl::Status AddBias(const IterShape& shape, void* out, const int64_t* out_strides, DType dtype,
                     const void* bias, int64_t bias_stride, cudaStream_t stream) {
  BinaryParams add;
  add.op = BinaryOp::kAdd;
  add.shape = shape;
  add.a.data = out;
  add.a.dtype = dtype;
  for (int d = 0; d < shape.ndim; ++d) add.a.strides[d] = out_strides[d];
  add.b.data = const_cast<void*>(bias);  // read only
  add.b.dtype = dtype;
  add.b.strides[shape.ndim - 1] = bias_stride;  // 0 over every other dimension: broadcast
  add.out = add.a;
  add.alpha = 1;
  return BinaryCuda(add, stream);
}

// One cuBLAS call over key.batch_count matrices, `x`, `y`, `d` pointing at the first. With
// key.bias, adds `bias` (one entry per row of D) in the epilogue, or, when cuBLASLt has no
// algorithm, by AddBias after the cuBLAS call.
absl::Status RunGemm(const GemmProblem& g, const PlanKey& key, const BlasContext& blas,
                     const void* x, const void* y, void* d, const void* alpha, const void* beta,
                     const void* bias) {
  if (key.dtype != DType::kF64) {
    LYRA_ASSIGN_OR_RETURN(std::shared_ptr<const LtPlan> plan, GetPlan(key, blas, bias));
    if (plan->has_algo) {
      cublasLtMatmulDesc_t desc = plan->desc;
      OwnedDesc own;
      if (key.bias) {
        LYRA_RETURN_IF_ERROR(CreateMatmulDesc(key, bias, &own.desc));
        desc = own.desc;
      }
      LYRA_CUBLAS_RETURN_IF_ERROR(cublasLtMatmul(blas.lt, desc, alpha, x, plan->x, y, plan->y,
                                                 beta, d, plan->d, d, plan->d, &plan->algo,
                                                 blas.workspace, blas.workspace_bytes,
                                                 blas.stream));
      return absl::OkStatus();
    }
  }
  const cudaDataType_t type = CudaDataType(key.dtype);
  LYRA_CUBLAS_RETURN_IF_ERROR(cublasGemmStridedBatchedEx(
      blas.cublas, key.op_x, key.op_y, static_cast<int>(g.rows), static_cast<int>(g.cols),
      static_cast<int>(g.inner), alpha, x, type, static_cast<int>(g.x.ld), key.stride_x, y, type,
      static_cast<int>(g.y.ld), key.stride_y, beta, d, type, static_cast<int>(g.ldd),
      key.stride_d, static_cast<int>(key.batch_count), key.compute, CUBLAS_GEMM_DEFAULT));
  if (!key.bias) return absl::OkStatus();
  // D (rows x cols, column-major, ldd) per matrix, bias[r] added to row r.
  IterShape shape;
  shape.ndim = 3;
  shape.sizes[0] = key.batch_count;
  shape.sizes[1] = g.cols;
  shape.sizes[2] = g.rows;
  const int64_t strides[3] = {key.stride_d, g.ldd, 1};
  return AddBias(shape, d, strides, key.dtype, bias, 1, blas.stream);
}

// out = beta * out, for k == 0.
absl::Status ScaleOutput(const MatmulParams& p, cudaStream_t stream) {
  IterShape shape = p.batch;
  shape.sizes[shape.ndim++] = p.m;
  shape.sizes[shape.ndim++] = p.n;
  StridedOperand out;
  out.data = p.out.data;
  out.dtype = p.dtype;
  for (int d = 0; d < p.batch.ndim; ++d) out.strides[d] = p.out.batch_strides[d];
  out.strides[p.batch.ndim] = p.out.row_stride;
  out.strides[p.batch.ndim + 1] = p.out.col_stride;
  if (p.beta == 0) {
    FillParams fill;
    fill.shape = shape;
    fill.out = out;
    fill.value = 0;
    return FillCuda(fill, stream);
  }
  UnaryParams scale;
  scale.op = UnaryOp::kMulScalar;
  scale.shape = shape;
  scale.x = out;
  scale.y = out;
  scale.alpha = p.beta;
  return UnaryCuda(scale, stream);
}

}  // namespace

BlasLayout BlasMatrixLayout(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  const auto fits = [](int64_t ld) { return ld <= kMaxBlasDim; };
  // An empty matrix is never read or written.
  if (rows == 0 || cols == 0) return {BlasOrder::kRowMajor, std::max<int64_t>(cols, 1)};
  // Row-major: elements of a row adjacent, rows ld >= cols apart.
  if ((cols == 1 || col_stride == 1) && (rows == 1 || row_stride >= cols)) {
    const int64_t ld = rows == 1 ? std::max<int64_t>(cols, 1) : row_stride;
    if (fits(ld)) return {BlasOrder::kRowMajor, ld};
  }
  // Column-major: elements of a column adjacent, columns ld >= rows apart.
  if ((rows == 1 || row_stride == 1) && (cols == 1 || col_stride >= rows)) {
    const int64_t ld = cols == 1 ? std::max<int64_t>(rows, 1) : col_stride;
    if (fits(ld)) return {BlasOrder::kColumnMajor, ld};
  }
  return {BlasOrder::kNone, 0};
}

absl::Status MatmulCudaSupported(const MatmulParams& p) {
  if (!IsFloating(p.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Matmul: expected a floating-point dtype, got ", DTypeName(p.dtype)));
  }
  if (p.batch.ndim > kMaxDims - 2) {
    return absl::InvalidArgumentError(absl::StrCat("Matmul: ", p.batch.ndim,
                                                   " batch dimensions; at most ", kMaxDims - 2));
  }
  if (p.m > kMaxBlasDim || p.n > kMaxBlasDim || p.k > kMaxBlasDim) {
    return absl::UnimplementedError(absl::StrCat("Matmul on CUDA: m = ", p.m, ", n = ", p.n,
                                                 ", k = ", p.k, " exceed cuBLAS's limit of ",
                                                 kMaxBlasDim));
  }
  struct Named {
    const char* name;
    const MatmulOperand* operand;
    int64_t rows, cols;
  };
  const Named operands[] = {
      {"a", &p.a, p.m, p.k}, {"b", &p.b, p.k, p.n}, {"out", &p.out, p.m, p.n}};
  for (const Named& o : operands) {
    if (BlasMatrixLayout(o.rows, o.cols, o.operand->row_stride, o.operand->col_stride).order ==
        BlasOrder::kNone) {
      return absl::UnimplementedError(absl::StrCat(
          "Matmul on CUDA: ", o.name, " (", o.rows, " x ", o.cols, ", strides ",
          o.operand->row_stride, ", ", o.operand->col_stride,
          ") is neither row- nor column-major; make it contiguous"));
    }
  }
  for (int d = 0; d < p.batch.ndim; ++d) {
    if (p.batch.sizes[d] > 1 && p.out.batch_strides[d] == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "Matmul: out is broadcast over batch dimension ", d, " (stride 0, size ",
          p.batch.sizes[d], "); it must be a writable tensor"));
    }
  }
  return absl::OkStatus();
}

absl::Status MatmulCuda(const MatmulParams& p, cudaStream_t stream) {
  LYRA_RETURN_IF_ERROR(MatmulCudaSupported(p));
  if (p.m == 0 || p.n == 0 || p.batch.numel() == 0) return absl::OkStatus();
  // out[..., i, j] += bias[j] over the whole output: the unfused bias.
  const auto add_bias_everywhere = [&]() -> absl::Status {
    IterShape shape = p.batch;
    int64_t strides[kMaxDims] = {};
    for (int d = 0; d < p.batch.ndim; ++d) strides[d] = p.out.batch_strides[d];
    strides[shape.ndim] = p.out.row_stride;
    shape.sizes[shape.ndim++] = p.m;
    strides[shape.ndim] = p.out.col_stride;
    shape.sizes[shape.ndim++] = p.n;
    return AddBias(shape, p.out.data, strides, p.dtype, p.bias, p.bias_stride, stream);
  };
  if (p.k == 0) {
    LYRA_RETURN_IF_ERROR(ScaleOutput(p, stream));
    return p.bias == nullptr ? absl::OkStatus() : add_bias_everywhere();
  }

  int device = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  LYRA_ASSIGN_OR_RETURN(BlasContext blas, GetBlasContext(device, stream));
  const GemmProblem g = ToColumnMajor(p);

  // Coalesce the batch dimensions of X, Y and D; the innermost becomes the strided batch.
  IterShape batch = p.batch;
  StridedOperand batch_ops[3];
  for (int d = 0; d < batch.ndim; ++d) {
    batch_ops[0].strides[d] = g.x.batch_strides[d];
    batch_ops[1].strides[d] = g.y.batch_strides[d];
    batch_ops[2].strides[d] = g.d_batch_strides[d];
  }
  CoalesceDims(batch, batch_ops, 3);
  const int inner_dim = batch.ndim - 1;  // -1: a single matrix
  const int64_t inner_count = inner_dim >= 0 ? batch.sizes[inner_dim] : 1;
  const int outer_dims = std::max(inner_dim, 0);

  const size_t element_size = DTypeSize(p.dtype);
  PlanKey key;
  key.device = device;
  key.dtype = p.dtype;
  key.compute = ComputeTypeFor(p.dtype, p.allow_tf32);
  key.op_x = g.x.op;
  key.op_y = g.y.op;
  key.rows = g.rows;
  key.cols = g.cols;
  key.inner = g.inner;
  key.x_rows = g.x.rows;
  key.x_cols = g.x.cols;
  key.y_rows = g.y.rows;
  key.y_cols = g.y.cols;
  key.ldx = g.x.ld;
  key.ldy = g.y.ld;
  key.ldd = g.ldd;
  key.align_x = AlignmentBytes(g.x.data, batch_ops[0].strides, batch, element_size);
  key.align_y = AlignmentBytes(g.y.data, batch_ops[1].strides, batch, element_size);
  key.align_d = AlignmentBytes(g.d, batch_ops[2].strides, batch, element_size);
  // The epilogue's bias indexes D's rows: out's columns when out is row-major (g.rows == n).
  const bool out_row_major =
      BlasMatrixLayout(p.m, p.n, p.out.row_stride, p.out.col_stride).order ==
      BlasOrder::kRowMajor;
  key.bias = p.bias != nullptr && p.dtype != DType::kF64 && out_row_major &&
             (p.bias_stride == 1 || p.n == 1) &&
             reinterpret_cast<uintptr_t>(p.bias) % kBiasEpilogueAlignment == 0;

  // Scale factors in the scale type: f64 for f64, f32 otherwise.
  const double alpha64 = p.alpha, beta64 = p.beta;
  const float alpha32 = static_cast<float>(p.alpha), beta32 = static_cast<float>(p.beta);
  const bool f64 = p.dtype == DType::kF64;
  const void* alpha = f64 ? static_cast<const void*>(&alpha64) : &alpha32;
  const void* beta = f64 ? static_cast<const void*>(&beta64) : &beta32;

  const char* x_base = static_cast<const char*>(g.x.data);
  const char* y_base = static_cast<const char*>(g.y.data);
  char* d_base = static_cast<char*>(g.d);
  int64_t outer_count = 1;
  for (int d = 0; d < outer_dims; ++d) outer_count *= batch.sizes[d];
  int64_t index[kMaxDims] = {};
  for (int64_t outer = 0; outer < outer_count; ++outer) {
    int64_t x_off = 0, y_off = 0, d_off = 0;  // elements
    for (int d = 0; d < outer_dims; ++d) {
      x_off += index[d] * batch_ops[0].strides[d];
      y_off += index[d] * batch_ops[1].strides[d];
      d_off += index[d] * batch_ops[2].strides[d];
    }
    for (int64_t first = 0; first < inner_count; first += kMaxBatchPerCall) {
      key.batch_count = std::min(kMaxBatchPerCall, inner_count - first);
      const bool batched = key.batch_count > 1;
      key.stride_x = batched ? batch_ops[0].strides[inner_dim] : 0;
      key.stride_y = batched ? batch_ops[1].strides[inner_dim] : 0;
      key.stride_d = batched ? batch_ops[2].strides[inner_dim] : 0;
      const int64_t x_first = inner_dim >= 0 ? first * batch_ops[0].strides[inner_dim] : 0;
      const int64_t y_first = inner_dim >= 0 ? first * batch_ops[1].strides[inner_dim] : 0;
      const int64_t d_first = inner_dim >= 0 ? first * batch_ops[2].strides[inner_dim] : 0;
      LYRA_RETURN_IF_ERROR(RunGemm(g, key, blas,
                                   x_base + (x_off + x_first) * element_size,
                                   y_base + (y_off + y_first) * element_size,
                                   d_base + (d_off + d_first) * element_size, alpha, beta,
                                   key.bias ? p.bias : nullptr));
    }
    for (int d = outer_dims - 1; d >= 0; --d) {
      if (++index[d] < batch.sizes[d]) break;
      index[d] = 0;
    }
  }
  if (p.bias != nullptr && !key.bias) return add_bias_everywhere();
  return absl::OkStatus();
}

}  // namespace lyra::cuda
