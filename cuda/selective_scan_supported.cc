// The "is this supported" predicates of the selective scan (cuda/selective_scan.h): every limit
// of the reference and the kernels lives here.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/selective_scan.h"

namespace lyra::cuda {
namespace {

absl::Status CheckCommon(absl::string_view op, int64_t batch, int64_t dim, int64_t dstate,
                         int64_t groups, DType dtype, DType bc_dtype, bool cuda) {
  if (batch < 0 || dim < 0 || dstate < 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": negative size (B = ", batch, ", D = ",
                                                   dim, ", N = ", dstate, ")"));
  }
  if (groups < 1 || dim % groups != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": groups G = ", groups, " must be >= 1 and divide D = ", dim));
  }
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": u must be floating-point, got ", DTypeName(dtype)));
  }
  const bool bc_ok = dtype == DType::kF64 ? bc_dtype == DType::kF64
                                          : (bc_dtype == DType::kF32 || bc_dtype == dtype);
  if (!bc_ok) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": B and C must be f32 or u's dtype ",
                                                   DTypeName(dtype), " (f64 with f64), got ",
                                                   DTypeName(bc_dtype)));
  }
  if (dstate < 1 || dstate > kSelectiveScanMaxState) {
    if (dstate == 0 && (batch == 0 || dim == 0)) return absl::OkStatus();
    return absl::UnimplementedError(absl::StrCat(op, ": state size N = ", dstate,
                                                 " outside the supported [1, ",
                                                 kSelectiveScanMaxState, "]"));
  }
  if (cuda && dtype == DType::kF64) {
    return absl::UnimplementedError(absl::StrCat(op, ": f64 runs on the CPU only"));
  }
  if (cuda && batch > 65535) {
    return absl::UnimplementedError(
        absl::StrCat(op, ": batch B = ", batch, " exceeds the CUDA grid limit 65535"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SelectiveScanSupported(const SelectiveScanParams& p, bool cuda) {
  constexpr absl::string_view kOp = "SelectiveScan";
  if (p.length < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": negative length L = ", p.length));
  }
  LYRA_RETURN_IF_ERROR(
      CheckCommon(kOp, p.batch, p.dim, p.dstate, p.groups, p.dtype, p.bc_dtype, cuda));
  if (p.u == nullptr || p.delta == nullptr || p.A == nullptr || p.B == nullptr ||
      p.C == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": u, delta, A, B and C are required"));
  }
  if (cuda) {
    const bool unit_l = p.u_stride_l == 1 && p.delta_stride_l == 1 && p.B_stride_l == 1 &&
                        p.C_stride_l == 1 && (p.z == nullptr || p.z_stride_l == 1) &&
                        (p.y == nullptr || p.y_stride_l == 1);
    if (!unit_l) {
      return absl::UnimplementedError(
          absl::StrCat(kOp, ": the CUDA kernels need unit stride along L"));
    }
  }
  return absl::OkStatus();
}

absl::Status SelectiveScanBackwardSupported(const SelectiveScanBackwardParams& bp, bool cuda) {
  constexpr absl::string_view kOp = "SelectiveScanBackward";
  const SelectiveScanParams& p = bp.forward;
  SelectiveScanParams forward = p;
  forward.y = nullptr;
  LYRA_RETURN_IF_ERROR(SelectiveScanSupported(forward, cuda));
  if (bp.dy == nullptr || bp.du == nullptr || bp.ddelta == nullptr || bp.dA == nullptr ||
      bp.dB == nullptr || bp.dC == nullptr || (p.D != nullptr && bp.dD == nullptr) ||
      (p.z != nullptr && bp.dz == nullptr) ||
      (p.delta_bias != nullptr && bp.ddelta_bias == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": dy and the gradient of every given input are required"));
  }
  if (cuda) {
    if (bp.chunk_states == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(kOp, ": the CUDA backward needs the forward's chunk states"));
    }
    const bool unit_l = bp.dy_stride_l == 1 && bp.du_stride_l == 1 && bp.ddelta_stride_l == 1 &&
                        bp.dB_stride_l == 1 && bp.dC_stride_l == 1 &&
                        (bp.dz == nullptr || bp.dz_stride_l == 1);
    if (!unit_l) {
      return absl::UnimplementedError(
          absl::StrCat(kOp, ": the CUDA kernels need unit stride along L"));
    }
  }
  return absl::OkStatus();
}

absl::Status SelectiveStateUpdateSupported(const SelectiveStateUpdateParams& p, bool cuda) {
  constexpr absl::string_view kOp = "SelectiveStateUpdate";
  LYRA_RETURN_IF_ERROR(
      CheckCommon(kOp, p.batch, p.dim, p.dstate, p.groups, p.dtype, p.bc_dtype, cuda));
  if (p.state == nullptr || p.x == nullptr || p.dt == nullptr || p.A == nullptr ||
      p.B == nullptr || p.C == nullptr || p.y == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": state, x, dt, A, B, C and y are required"));
  }
  return absl::OkStatus();
}

}  // namespace lyra::cuda
