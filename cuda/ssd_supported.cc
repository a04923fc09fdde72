// The "is this supported" predicates of the Mamba-2 SSD (cuda/ssd.h): every limit of the
// references and the kernels lives here.
//
// InvalidArgument: negative sizes, G not dividing H, a chunk that is not a power of two in
// [16, 256], dt_min > dt_max (or NaN), a missing required pointer, a non-floating dtype.
// Unimplemented: P or N above kSsdMaxDim (or N = 0 with a non-empty output), f64 on CUDA, and on
// CUDA non-unit strides along P (x, z, y, dy, dx, dz) or N (B, C, dB, dC) and states that are not
// contiguous (B, H, P, N). Sizes of zero are otherwise accepted (the tensor layer handles them).
// Strides of dimensions of size 1 are never looked at.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/ssd.h"

namespace lyra::cuda {
namespace {

// Sizes and options shared by the scan and the state update.
struct Common {
  int64_t batch, heads, head_dim, dstate, groups;
  double dt_min, dt_max;
  DType dtype;
  bool empty;  // no output element (y has a zero size)
};

absl::Status CheckCommon(absl::string_view op, const Common& c, bool cuda) {
  if (c.batch < 0 || c.heads < 0 || c.head_dim < 0 || c.dstate < 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": negative size (B = ", c.batch, ", H = ",
                                                   c.heads, ", P = ", c.head_dim, ", N = ",
                                                   c.dstate, ")"));
  }
  if (c.groups < 1 || c.heads % c.groups != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": groups G = ", c.groups, " must be >= 1 and divide H = ", c.heads));
  }
  if (!(c.dt_min <= c.dt_max)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": dt_min = ", c.dt_min,
                                                   " must not exceed dt_max = ", c.dt_max));
  }
  if (!IsFloating(c.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": x must be floating-point, got ", DTypeName(c.dtype)));
  }
  if (c.head_dim > kSsdMaxDim || c.dstate > kSsdMaxDim || (c.dstate == 0 && !c.empty)) {
    return absl::UnimplementedError(absl::StrCat(op, ": head dim P = ", c.head_dim,
                                                 " and state size N = ", c.dstate,
                                                 " must lie in [1, ", kSsdMaxDim, "]"));
  }
  if (cuda && c.dtype == DType::kF64) {
    return absl::UnimplementedError(absl::StrCat(op, ": f64 runs on the CPU only"));
  }
  return absl::OkStatus();
}

// Whether a stride is unit, or does not matter because the dimension has at most one element.
bool Unit(int64_t stride, int64_t size) { return stride == 1 || size <= 1; }

// Whether a (B, H, P, N) state with these strides is contiguous (null pointers pass).
bool ContiguousState(const void* ptr, int64_t sb, int64_t sh, int64_t sp, int64_t sn,
                     int64_t batch, int64_t heads, int64_t head_dim, int64_t dstate) {
  if (ptr == nullptr) return true;
  return (sn == 1 || dstate <= 1) && (sp == dstate || head_dim <= 1) &&
         (sh == head_dim * dstate || heads <= 1) && (sb == heads * head_dim * dstate || batch <= 1);
}

absl::Status CheckForward(absl::string_view op, const SsdParams& p, bool cuda, bool need_y) {
  if (p.length < 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": negative length L = ", p.length));
  }
  if (p.chunk < 16 || p.chunk > 256 || (p.chunk & (p.chunk - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": chunk Q = ", p.chunk, " must be a power of two in [16, 256]"));
  }
  const bool empty = p.batch == 0 || p.length == 0 || p.heads == 0 || p.head_dim == 0;
  LYRA_RETURN_IF_ERROR(CheckCommon(op, {p.batch, p.heads, p.head_dim, p.dstate, p.groups,
                                        p.dt_min, p.dt_max, p.dtype, empty},
                                   cuda));
  if (p.x == nullptr || p.dt == nullptr || p.A == nullptr || p.B == nullptr || p.C == nullptr ||
      (need_y && p.y == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": x, dt, A, B, C", need_y ? " and y" : "", " are required"));
  }
  if (cuda) {
    const int64_t P = p.head_dim, N = p.dstate;
    const bool unit = Unit(p.x_stride_p, P) && (p.z == nullptr || Unit(p.z_stride_p, P)) &&
                      (p.y == nullptr || Unit(p.y_stride_p, P)) && Unit(p.B_stride_n, N) &&
                      Unit(p.C_stride_n, N);
    if (!unit) {
      return absl::UnimplementedError(absl::StrCat(
          op, ": the CUDA kernels need unit stride along P (x, z, y) and N (B, C)"));
    }
    const bool contiguous =
        ContiguousState(p.initial_state, p.initial_state_stride_b, p.initial_state_stride_h,
                        p.initial_state_stride_p, p.initial_state_stride_n, p.batch, p.heads,
                        P, N) &&
        ContiguousState(p.final_state, p.final_state_stride_b, p.final_state_stride_h,
                        p.final_state_stride_p, p.final_state_stride_n, p.batch, p.heads, P, N);
    if (!contiguous) {
      return absl::UnimplementedError(
          absl::StrCat(op, ": the CUDA kernels need contiguous (B, H, P, N) states"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SsdSupported(const SsdParams& p, bool cuda) {
  return CheckForward("Ssd", p, cuda, /*need_y=*/true);
}

absl::Status SsdBackwardSupported(const SsdBackwardParams& bp, bool cuda) {
  constexpr absl::string_view kOp = "SsdBackward";
  const SsdParams& p = bp.forward;
  LYRA_RETURN_IF_ERROR(CheckForward(kOp, p, cuda, /*need_y=*/false));
  if (bp.dy == nullptr || bp.dx == nullptr || bp.ddt == nullptr || bp.dA == nullptr ||
      bp.dB == nullptr || bp.dC == nullptr || (p.D != nullptr && bp.dD == nullptr) ||
      (p.z != nullptr && bp.dz == nullptr) || (p.dt_bias != nullptr && bp.ddt_bias == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": dy and the gradient of every given input are required"));
  }
  if (cuda) {
    const int64_t P = p.head_dim, N = p.dstate;
    const bool unit = Unit(bp.dy_stride_p, P) && Unit(bp.dx_stride_p, P) &&
                      (bp.dz == nullptr || Unit(bp.dz_stride_p, P)) && Unit(bp.dB_stride_n, N) &&
                      Unit(bp.dC_stride_n, N);
    if (!unit) {
      return absl::UnimplementedError(absl::StrCat(
          kOp, ": the CUDA kernels need unit stride along P (dy, dx, dz) and N (dB, dC)"));
    }
    const bool contiguous =
        ContiguousState(bp.dfinal_state, bp.dfinal_state_stride_b, bp.dfinal_state_stride_h,
                        bp.dfinal_state_stride_p, bp.dfinal_state_stride_n, p.batch, p.heads, P,
                        N) &&
        ContiguousState(bp.dinitial_state, bp.dinitial_state_stride_b,
                        bp.dinitial_state_stride_h, bp.dinitial_state_stride_p,
                        bp.dinitial_state_stride_n, p.batch, p.heads, P, N);
    if (!contiguous) {
      return absl::UnimplementedError(
          absl::StrCat(kOp, ": the CUDA kernels need contiguous (B, H, P, N) states"));
    }
  }
  return absl::OkStatus();
}

absl::Status SsdStateUpdateSupported(const SsdStateUpdateParams& p, bool cuda) {
  constexpr absl::string_view kOp = "SsdStateUpdate";
  const bool empty = p.batch == 0 || p.heads == 0 || p.head_dim == 0;
  LYRA_RETURN_IF_ERROR(CheckCommon(kOp, {p.batch, p.heads, p.head_dim, p.dstate, p.groups,
                                         p.dt_min, p.dt_max, p.dtype, empty},
                                    cuda));
  if (p.state == nullptr || p.x == nullptr || p.dt == nullptr || p.A == nullptr ||
      p.B == nullptr || p.C == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": state, x, dt, A, B, C and y are required"));
  }
  if (cuda) {
    const int64_t P = p.head_dim, N = p.dstate;
    const bool unit = Unit(p.x_stride_p, P) && (p.z == nullptr || Unit(p.z_stride_p, P)) &&
                      Unit(p.y_stride_p, P) && Unit(p.B_stride_n, N) && Unit(p.C_stride_n, N);
    if (!unit) {
      return absl::UnimplementedError(absl::StrCat(
          kOp, ": the CUDA kernel needs unit stride along P (x, z, y) and N (B, C)"));
    }
    // One warp per (b, h, p) row, 8 rows per block, blocks along grid x (< 2^31).
    if (p.batch * p.heads * P > (int64_t{1} << 33)) {
      return absl::UnimplementedError(absl::StrCat(kOp, ": B H P = ", p.batch * p.heads * P,
                                                   " rows exceed the CUDA grid limit"));
    }
    if (!ContiguousState(p.state, p.state_stride_b, p.state_stride_h, p.state_stride_p,
                         p.state_stride_n, p.batch, p.heads, P, N)) {
      return absl::UnimplementedError(
          absl::StrCat(kOp, ": the CUDA kernel needs a contiguous (B, H, P, N) state"));
    }
  }
  return absl::OkStatus();
}

}  // namespace lyra::cuda
