// The "is this supported" predicates of the causal conv1d kernels (cuda/conv1d.h); linked into
// both the CPU reference and the CUDA launchers, which validate with them.
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/conv1d.h"

namespace lyra::cuda {
namespace {

// Grid limits of the CUDA kernels: blockIdx.z runs over B and blockIdx.y over L tiles of
// kCudaTileL positions (the tile length of cuda/conv1d_kernels.cuh).
constexpr int64_t kMaxGridYZ = 65535;
constexpr int64_t kCudaTileL = 64;

absl::Status CheckCommon(absl::string_view op, int64_t batch, int64_t channels, int64_t length,
                         int width, DType dtype, DType weight_dtype, bool cuda) {
  if (batch < 0 || channels < 0 || length < 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": negative size (B = ", batch, ", D = ",
                                                   channels, ", L = ", length, ")"));
  }
  if (!IsFloating(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": x must be a floating-point tensor, got ", DTypeName(dtype)));
  }
  if (weight_dtype != DType::kF32 && weight_dtype != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(op,
                                                   ": weight and bias must be f32 or x's dtype ",
                                                   DTypeName(dtype), ", got ",
                                                   DTypeName(weight_dtype)));
  }
  if (width < 1 || width > kCausalConv1dMaxWidth) {
    return absl::UnimplementedError(absl::StrCat(op, ": kernel width ", width,
                                                 " is outside the supported range [1, ",
                                                 kCausalConv1dMaxWidth, "]"));
  }
  if (cuda && dtype == DType::kF64) {
    return absl::UnimplementedError(absl::StrCat(op, ": f64 runs on the CPU only"));
  }
  if (cuda && (batch > kMaxGridYZ || length > kMaxGridYZ * kCudaTileL)) {
    return absl::UnimplementedError(absl::StrCat(op, ": B = ", batch, ", L = ", length,
                                                 " exceed the CUDA grid (B <= ", kMaxGridYZ,
                                                 ", L <= ", kMaxGridYZ * kCudaTileL, ")"));
  }
  return absl::OkStatus();
}

absl::Status Require(absl::string_view op, const void* ptr, absl::string_view name) {
  if (ptr == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": missing ", name, " pointer"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CausalConv1dSupported(const CausalConv1dParams& p, bool cuda) {
  constexpr absl::string_view kOp = "CausalConv1d";
  LYRA_RETURN_IF_ERROR(CheckCommon(kOp, p.batch, p.channels, p.length, p.width, p.dtype,
                                   p.weight_dtype, cuda));
  LYRA_RETURN_IF_ERROR(Require(kOp, p.x, "x"));
  LYRA_RETURN_IF_ERROR(Require(kOp, p.weight, "weight"));
  LYRA_RETURN_IF_ERROR(Require(kOp, p.y, "y"));
  return absl::OkStatus();
}

absl::Status CausalConv1dBackwardSupported(const CausalConv1dBackwardParams& p, bool cuda) {
  constexpr absl::string_view kOp = "CausalConv1dBackward";
  const CausalConv1dParams& f = p.forward;
  LYRA_RETURN_IF_ERROR(
      CheckCommon(kOp, f.batch, f.channels, f.length, f.width, f.dtype, f.weight_dtype, cuda));
  LYRA_RETURN_IF_ERROR(Require(kOp, f.x, "x"));
  LYRA_RETURN_IF_ERROR(Require(kOp, f.weight, "weight"));
  LYRA_RETURN_IF_ERROR(Require(kOp, p.dy, "dy"));
  LYRA_RETURN_IF_ERROR(Require(kOp, p.dx, "dx"));
  LYRA_RETURN_IF_ERROR(Require(kOp, p.dweight, "dweight"));
  if ((f.bias == nullptr) != (p.dbias == nullptr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": dbias must be given exactly when bias is"));
  }
  if (p.dinitial_state != nullptr && f.initial_state == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": dinitial_state without an initial state"));
  }
  return absl::OkStatus();
}

absl::Status CausalConv1dUpdateSupported(const CausalConv1dUpdateParams& p, bool cuda) {
  constexpr absl::string_view kOp = "CausalConv1dUpdate";
  LYRA_RETURN_IF_ERROR(
      CheckCommon(kOp, p.batch, p.channels, /*length=*/1, p.width, p.dtype, p.weight_dtype,
                  /*cuda=*/false));
  if (cuda && p.dtype == DType::kF64) {
    return absl::UnimplementedError(absl::StrCat(kOp, ": f64 runs on the CPU only"));
  }
  LYRA_RETURN_IF_ERROR(Require(kOp, p.x, "x"));
  LYRA_RETURN_IF_ERROR(Require(kOp, p.weight, "weight"));
  LYRA_RETURN_IF_ERROR(Require(kOp, p.y, "y"));
  if (p.width > 1) LYRA_RETURN_IF_ERROR(Require(kOp, p.conv_state, "conv_state"));
  return absl::OkStatus();
}

}  // namespace lyra::cuda
