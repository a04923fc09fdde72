// CPU reference of the elementwise kernels: one strided loop per op, arithmetic in the compute
// type (cuda/elementwise_ops.h holds the math shared with the CUDA kernels).
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "base/dtype.h"
#include "base/status_macros.h"
#include "cuda/elementwise.h"
#include "cuda/elementwise_dispatch.h"
#include "cuda/elementwise_ops.h"

namespace lyra::cuda {
namespace {

template <typename T>
T* At(const StridedOperand& op, int64_t offset) {
  return static_cast<T*>(op.data) + offset;
}

// Converts between any two storage types through their compute types (bool: x != 0).
template <typename Out, typename In>
Out Convert(In x) {
  auto c = Load(x);
  if constexpr (std::is_same_v<Out, bool>) {
    return c != decltype(c)(0);
  } else {
    return Store<Out>(static_cast<ComputeType<Out>>(c));
  }
}

absl::Status Unsupported(absl::string_view op, DType dtype) {
  return absl::InvalidArgumentError(
      absl::StrCat(op, " does not support dtype ", DTypeName(dtype)));
}

}  // namespace

absl::string_view UnaryOpName(UnaryOp op) {
  switch (op) {
    case UnaryOp::kIdentity: return "Identity";
    case UnaryOp::kNeg: return "Neg";
    case UnaryOp::kAbs: return "Abs";
    case UnaryOp::kExp: return "Exp";
    case UnaryOp::kLog: return "Log";
    case UnaryOp::kSqrt: return "Sqrt";
    case UnaryOp::kRsqrt: return "Rsqrt";
    case UnaryOp::kTanh: return "Tanh";
    case UnaryOp::kSigmoid: return "Sigmoid";
    case UnaryOp::kSilu: return "Silu";
    case UnaryOp::kSoftplus: return "Softplus";
    case UnaryOp::kGelu: return "Gelu";
    case UnaryOp::kGeluTanh: return "GeluTanh";
    case UnaryOp::kRelu: return "Relu";
    case UnaryOp::kSquare: return "Square";
    case UnaryOp::kReciprocal: return "Reciprocal";
    case UnaryOp::kAddScalar: return "AddScalar";
    case UnaryOp::kMulScalar: return "MulScalar";
    case UnaryOp::kPowScalar: return "PowScalar";
    case UnaryOp::kRsubScalar: return "RsubScalar";
    case UnaryOp::kClamp: return "Clamp";
  }
  return "UnknownUnary";
}

absl::string_view BinaryOpName(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd: return "Add";
    case BinaryOp::kSub: return "Sub";
    case BinaryOp::kMul: return "Mul";
    case BinaryOp::kDiv: return "Div";
    case BinaryOp::kPow: return "Pow";
    case BinaryOp::kMaximum: return "Maximum";
    case BinaryOp::kMinimum: return "Minimum";
    case BinaryOp::kEq: return "Eq";
    case BinaryOp::kNe: return "Ne";
    case BinaryOp::kLt: return "Lt";
    case BinaryOp::kLe: return "Le";
    case BinaryOp::kGt: return "Gt";
    case BinaryOp::kGe: return "Ge";
    case BinaryOp::kLogicalAnd: return "LogicalAnd";
    case BinaryOp::kLogicalOr: return "LogicalOr";
    case BinaryOp::kSigmoidBackward: return "SigmoidBackward";
    case BinaryOp::kTanhBackward: return "TanhBackward";
    case BinaryOp::kSiluBackward: return "SiluBackward";
    case BinaryOp::kSoftplusBackward: return "SoftplusBackward";
    case BinaryOp::kGeluBackward: return "GeluBackward";
    case BinaryOp::kGeluTanhBackward: return "GeluTanhBackward";
    case BinaryOp::kReluBackward: return "ReluBackward";
  }
  return "UnknownBinary";
}

bool IsComparison(BinaryOp op) {
  return op == BinaryOp::kEq || op == BinaryOp::kNe || op == BinaryOp::kLt ||
         op == BinaryOp::kLe || op == BinaryOp::kGt || op == BinaryOp::kGe;
}

absl::Status UnaryReference(const UnaryParams& p) {
  const StridedOperand operands[2] = {p.x, p.y};
  if (p.op == UnaryOp::kIdentity) {
    return DispatchAll(p.x.dtype, "Cast", [&]<typename In>() -> absl::Status {
      return DispatchAll(p.y.dtype, "Cast", [&]<typename Out>() -> absl::Status {
        ForEachStrided<2>(p.shape, operands, [&](const std::array<int64_t, 2>& o) {
          *At<Out>(p.y, o[1]) = Convert<Out>(*At<const In>(p.x, o[0]));
        });
        return absl::OkStatus();
      });
    });
  }
  if (p.x.dtype != p.y.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(UnaryOpName(p.op), ": input ",
                                                   DTypeName(p.x.dtype), " but output ",
                                                   DTypeName(p.y.dtype)));
  }
  return DispatchUnaryOp(p.op, [&]<UnaryOp kOp>() -> absl::Status {
    return DispatchAll(p.x.dtype, UnaryOpName(kOp), [&]<typename T>() -> absl::Status {
      using C = ComputeType<T>;
      if constexpr (!ew::UnarySupports<kOp, C>()) {
        return Unsupported(UnaryOpName(kOp), p.x.dtype);
      } else {
        const C alpha = static_cast<C>(p.alpha), beta = static_cast<C>(p.beta);
        ForEachStrided<2>(p.shape, operands, [&](const std::array<int64_t, 2>& o) {
          *At<T>(p.y, o[1]) = Store<T>(ew::ApplyUnary<kOp, C>(Load(*At<const T>(p.x, o[0])),
                                                              alpha, beta));
        });
        return absl::OkStatus();
      }
    });
  });
}

absl::Status BinaryReference(const BinaryParams& p) {
  const StridedOperand operands[3] = {p.a, p.b, p.out};
  if (p.a.dtype != p.b.dtype) {
    return absl::InvalidArgumentError(absl::StrCat(BinaryOpName(p.op), ": operands ",
                                                   DTypeName(p.a.dtype), " and ",
                                                   DTypeName(p.b.dtype)));
  }
  return DispatchBinaryOp(p.op, [&]<BinaryOp kOp>() -> absl::Status {
    return DispatchAll(p.a.dtype, BinaryOpName(kOp), [&]<typename T>() -> absl::Status {
      using C = ComputeType<T>;
      if constexpr (!ew::BinarySupports<kOp, C>()) {
        return Unsupported(BinaryOpName(kOp), p.a.dtype);
      } else {
        using R = ew::BinaryResult<kOp, C>;
        using Out = std::conditional_t<std::is_same_v<R, bool>, bool, T>;
        if (p.out.dtype != kDTypeOf<Out>) {
          return absl::InvalidArgumentError(absl::StrCat(
              BinaryOpName(kOp), ": output dtype ", DTypeName(p.out.dtype), ", expected ",
              DTypeName(kDTypeOf<Out>)));
        }
        const C alpha = static_cast<C>(p.alpha);
        ForEachStrided<3>(p.shape, operands, [&](const std::array<int64_t, 3>& o) {
          R r = ew::ApplyBinary<kOp, C>(Load(*At<const T>(p.a, o[0])),
                                        Load(*At<const T>(p.b, o[1])), alpha);
          if constexpr (std::is_same_v<Out, bool>) {
            *At<bool>(p.out, o[2]) = r;
          } else {
            *At<T>(p.out, o[2]) = Store<T>(r);
          }
        });
        return absl::OkStatus();
      }
    });
  });
}

absl::Status WhereReference(const WhereParams& p) {
  if (p.cond.dtype != DType::kBool) return Unsupported("Where condition", p.cond.dtype);
  const StridedOperand operands[4] = {p.cond, p.a, p.b, p.out};
  return DispatchAll(p.a.dtype, "Where", [&]<typename T>() -> absl::Status {
    ForEachStrided<4>(p.shape, operands, [&](const std::array<int64_t, 4>& o) {
      *At<T>(p.out, o[3]) =
          *At<const bool>(p.cond, o[0]) ? *At<const T>(p.a, o[1]) : *At<const T>(p.b, o[2]);
    });
    return absl::OkStatus();
  });
}

absl::Status FillReference(const FillParams& p) {
  return DispatchAll(p.out.dtype, "Fill", [&]<typename T>() -> absl::Status {
    const T value = Convert<T>(p.value);
    ForEachStrided<1>(p.shape, &p.out,
                      [&](const std::array<int64_t, 1>& o) { *At<T>(p.out, o[0]) = value; });
    return absl::OkStatus();
  });
}

}  // namespace lyra::cuda
