#include "optim/loss_scaler.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "autograd/ops.h"
#include "base/status_macros.h"
#include "cuda/loss_scale.h"
#include "tensor/dispatch.h"

namespace lyra::optim {
namespace {

constexpr char kScaleKey[] = "scale";
constexpr char kGrowthTrackerKey[] = "growth_tracker";
constexpr char kNumSkippedKey[] = "num_skipped_steps";

// A tensor whose elements fill one gap-free memory range, in any dimension order: sorting the
// dimensions by stride must give the strides of a contiguous tensor.
bool IsDense(const Tensor& t) {
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, size) of dims with size > 1
  for (int d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 1) continue;
    if (t.stride(d) < 0) return false;
    dims.emplace_back(t.stride(d), t.size(d));
  }
  std::sort(dims.begin(), dims.end());
  int64_t expected = 1;
  for (const auto& [stride, size] : dims) {
    if (stride != expected) return false;
    expected *= size;
  }
  return true;
}

absl::Status CheckFlag(absl::string_view op, absl::string_view name, const Tensor& t,
                       DType dtype) {
  if (!t.defined()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is undefined"));
  }
  if (t.dtype() != dtype || t.numel() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " must be one ",
                                                   DTypeName(dtype), " element, got ",
                                                   t.Describe()));
  }
  return absl::OkStatus();
}

absl::Status CheckSameDevice(absl::string_view op, absl::string_view name, const Tensor& t,
                             Device device) {
  if (t.device() != device) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " ", t.Describe(),
                                                   " is not on ", device.ToString()));
  }
  return absl::OkStatus();
}

// The value of a key of a state dict, or InvalidArgument.
absl::StatusOr<Tensor> StateEntry(const nn::NamedTensors& state, absl::string_view key,
                                  DType dtype) {
  for (const auto& [name, tensor] : state) {
    if (name != key) continue;
    LYRA_RETURN_IF_ERROR(CheckFlag("DynamicLossScaler::LoadStateDict", key, tensor, dtype));
    return tensor;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("DynamicLossScaler::LoadStateDict: missing key \"", key, "\""));
}

}  // namespace

absl::Status UnscaleAndCheck(const std::vector<Tensor>& grads, const Tensor& scale,
                             const Tensor& found_inf) {
  constexpr absl::string_view kOp = "UnscaleAndCheck";
  LYRA_RETURN_IF_ERROR(CheckFlag(kOp, "scale", scale, DType::kF32));
  LYRA_RETURN_IF_ERROR(CheckFlag(kOp, "found_inf", found_inf, DType::kF32));
  const Device device = scale.device();
  LYRA_RETURN_IF_ERROR(CheckSameDevice(kOp, "found_inf", found_inf, device));

  struct Range {
    uintptr_t begin;
    uintptr_t end;
    size_t index;
  };
  std::vector<cuda::UnscaleTensor> tensors;
  std::vector<Range> ranges;
  tensors.reserve(grads.size());
  for (size_t k = 0; k < grads.size(); ++k) {
    const Tensor& g = grads[k];
    const std::string name = absl::StrCat("gradient ", k);
    if (!g.defined()) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": ", name, " is undefined"));
    }
    if (!IsFloating(g.dtype())) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": ", name, " ", g.Describe(), " is not floating point"));
    }
    LYRA_RETURN_IF_ERROR(CheckSameDevice(kOp, name, g, device));
    if (g.numel() == 0) continue;
    if (!IsDense(g)) {
      return absl::UnimplementedError(absl::StrCat(
          kOp, ": ", name, " ", g.Describe(), " with strides ", ShapeToString(g.strides()),
          " has gaps between its elements; make it contiguous first"));
    }
    const uintptr_t begin = reinterpret_cast<uintptr_t>(g.data());
    ranges.push_back(Range{begin, begin + g.nbytes(), k});
    tensors.push_back(cuda::UnscaleTensor{g.data(), g.numel(), g.dtype()});
  }
  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin < ranges[i - 1].end) {
      const size_t a = std::min(ranges[i - 1].index, ranges[i].index);
      const size_t b = std::max(ranges[i - 1].index, ranges[i].index);
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": gradients ", a, " ", grads[a].Describe(), " and ", b, " ",
          grads[b].Describe(), " share memory (each would be unscaled twice)"));
    }
  }
  if (tensors.empty()) return absl::OkStatus();

  cuda::UnscaleParams params;
  params.tensors = tensors.data();
  params.num_tensors = static_cast<int64_t>(tensors.size());
  params.scale = scale.data<float>();
  params.found_inf = found_inf.data<float>();
  return internal::RunKernel(device, params, &cuda::UnscaleAndCheckReference,
                             &cuda::UnscaleAndCheckCuda);
}

absl::Status UpdateScale(const Tensor& scale, const Tensor& growth_tracker,
                         const Tensor& num_skipped, const Tensor& found_inf, double growth_factor,
                         double backoff_factor, int64_t growth_interval) {
  constexpr absl::string_view kOp = "UpdateScale";
  LYRA_RETURN_IF_ERROR(CheckFlag(kOp, "scale", scale, DType::kF32));
  LYRA_RETURN_IF_ERROR(CheckFlag(kOp, "growth_tracker", growth_tracker, DType::kI64));
  LYRA_RETURN_IF_ERROR(CheckFlag(kOp, "num_skipped", num_skipped, DType::kI64));
  LYRA_RETURN_IF_ERROR(CheckFlag(kOp, "found_inf", found_inf, DType::kF32));
  const Device device = scale.device();
  LYRA_RETURN_IF_ERROR(CheckSameDevice(kOp, "growth_tracker", growth_tracker, device));
  LYRA_RETURN_IF_ERROR(CheckSameDevice(kOp, "num_skipped", num_skipped, device));
  LYRA_RETURN_IF_ERROR(CheckSameDevice(kOp, "found_inf", found_inf, device));
  cuda::UpdateScaleParams params;
  params.scale = scale.data<float>();
  params.growth_tracker = growth_tracker.data<int64_t>();
  params.num_skipped = num_skipped.data<int64_t>();
  params.found_inf = found_inf.data<float>();
  params.growth_factor = growth_factor;
  params.backoff_factor = backoff_factor;
  params.growth_interval = growth_interval;
  return internal::RunKernel(device, params, &cuda::UpdateScaleReference,
                             &cuda::UpdateScaleCuda);
}

absl::StatusOr<DynamicLossScaler> DynamicLossScaler::Create(const LossScalerOptions& options,
                                                            Device device) {
  constexpr absl::string_view kOp = "DynamicLossScaler";
  if (options.enabled) {
    if (!(options.init_scale > 0) ||
        !(options.init_scale <= std::numeric_limits<float>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": init_scale must be finite and positive in f32, got ", options.init_scale));
    }
    if (!(options.growth_factor > 1) || !std::isfinite(options.growth_factor)) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": growth_factor must be finite and > 1, got ", options.growth_factor));
    }
    if (!(options.backoff_factor > 0 && options.backoff_factor < 1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": backoff_factor must be in (0, 1), got ", options.backoff_factor));
    }
    if (options.growth_interval < 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          kOp, ": growth_interval must be >= 1, got ", options.growth_interval));
    }
  }
  DynamicLossScaler scaler(options, device);
  const double init_scale = options.enabled ? options.init_scale : 1.0;
  LYRA_ASSIGN_OR_RETURN(scaler.scale_, Tensor::Scalar(init_scale, DType::kF32, device));
  LYRA_ASSIGN_OR_RETURN(scaler.growth_tracker_, Tensor::Scalar(0, DType::kI64, device));
  LYRA_ASSIGN_OR_RETURN(scaler.num_skipped_, Tensor::Scalar(0, DType::kI64, device));
  return scaler;
}

absl::Status DynamicLossScaler::CheckDevice(absl::string_view what, const Tensor& t) const {
  if (t.device() != device_) {
    return absl::InvalidArgumentError(absl::StrCat("DynamicLossScaler: ", what, " ",
                                                   t.Describe(), " is not on the scaler's device ",
                                                   device_.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<autograd::Variable> DynamicLossScaler::Scale(const autograd::Variable& loss) const {
  if (!loss.defined()) {
    return absl::InvalidArgumentError("DynamicLossScaler::Scale: the loss is undefined");
  }
  if (!enabled()) return loss;
  LYRA_RETURN_IF_ERROR(CheckDevice("loss", loss.data()));
  if (!IsFloating(loss.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "DynamicLossScaler::Scale: the loss ", loss.data().Describe(), " is not floating point"));
  }
  autograd::Variable wide = loss;
  if (loss.dtype() != DType::kF32 && loss.dtype() != DType::kF64) {
    LYRA_ASSIGN_OR_RETURN(wide, autograd::Cast(loss, DType::kF32));
  }
  Tensor scale = scale_;
  if (wide.dtype() == DType::kF64) {
    LYRA_ASSIGN_OR_RETURN(scale, scale_.To(DType::kF64));
  }
  return autograd::Mul(wide, autograd::Variable(scale));
}

absl::StatusOr<Tensor> DynamicLossScaler::UnscaleAndCheck(
    const std::vector<autograd::Variable>& params) {
  std::vector<Tensor> grads;
  grads.reserve(params.size());
  for (const autograd::Variable& p : params) {
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  }
  return UnscaleAndCheckGrads(grads);
}

absl::StatusOr<Tensor> DynamicLossScaler::UnscaleAndCheckGrads(const std::vector<Tensor>& grads) {
  if (found_inf_.defined()) {
    return absl::FailedPreconditionError(
        "DynamicLossScaler::UnscaleAndCheck: already called since the last Update (the "
        "gradients would be unscaled twice)");
  }
  LYRA_ASSIGN_OR_RETURN(Tensor found_inf, Tensor::Scalar(0, DType::kF32, device_));
  if (enabled()) {
    for (const Tensor& g : grads) {
      if (g.defined()) LYRA_RETURN_IF_ERROR(CheckDevice("gradient", g));
    }
    LYRA_RETURN_IF_ERROR(optim::UnscaleAndCheck(grads, scale_, found_inf));
  }
  found_inf_ = found_inf;
  return found_inf;
}

absl::Status DynamicLossScaler::Update(const Tensor& found_inf) {
  found_inf_ = Tensor();
  if (!enabled()) return absl::OkStatus();
  LYRA_RETURN_IF_ERROR(CheckFlag("DynamicLossScaler::Update", "found_inf", found_inf,
                                 DType::kF32));
  LYRA_RETURN_IF_ERROR(CheckDevice("found_inf", found_inf));
  return UpdateScale(scale_, growth_tracker_, num_skipped_, found_inf, options_.growth_factor,
                     options_.backoff_factor, options_.growth_interval);
}

absl::StatusOr<bool> DynamicLossScaler::StepIfFinite(
    const std::vector<autograd::Variable>& params, const std::function<absl::Status()>& step) {
  if (!enabled()) {
    found_inf_ = Tensor();
    LYRA_RETURN_IF_ERROR(step());
    return true;
  }
  Tensor found_inf = found_inf_;
  if (!found_inf.defined()) {
    LYRA_ASSIGN_OR_RETURN(found_inf, UnscaleAndCheck(params));
  }
  LYRA_ASSIGN_OR_RETURN(const double flag, found_inf.Item());  // the step's one host sync
  const bool finite = flag == 0.0;
  if (finite) {
    const absl::Status stepped = step();
    if (!stepped.ok()) {
      found_inf_ = Tensor();  // the step is abandoned; the next one starts afresh
      return stepped;
    }
  }
  LYRA_RETURN_IF_ERROR(Update(found_inf));
  return finite;
}

absl::StatusOr<double> DynamicLossScaler::scale() const {
  if (!enabled()) return 1.0;
  return scale_.Item();
}

absl::StatusOr<int64_t> DynamicLossScaler::growth_tracker() const {
  if (!enabled()) return 0;
  LYRA_ASSIGN_OR_RETURN(std::vector<int64_t> v, growth_tracker_.ToVector<int64_t>());
  return v[0];
}

absl::StatusOr<int64_t> DynamicLossScaler::num_skipped_steps() const {
  if (!enabled()) return 0;
  LYRA_ASSIGN_OR_RETURN(std::vector<int64_t> v, num_skipped_.ToVector<int64_t>());
  return v[0];
}

absl::StatusOr<nn::NamedTensors> DynamicLossScaler::StateDict() const {
  nn::NamedTensors state;
  if (!enabled()) return state;
  LYRA_ASSIGN_OR_RETURN(Tensor scale, scale_.To(Device::Cpu()));
  LYRA_ASSIGN_OR_RETURN(Tensor tracker, growth_tracker_.To(Device::Cpu()));
  LYRA_ASSIGN_OR_RETURN(Tensor skipped, num_skipped_.To(Device::Cpu()));
  // To() of a CPU tensor may share storage: clone so the dict is a snapshot.
  LYRA_ASSIGN_OR_RETURN(scale, scale.Clone());
  LYRA_ASSIGN_OR_RETURN(tracker, tracker.Clone());
  LYRA_ASSIGN_OR_RETURN(skipped, skipped.Clone());
  state.emplace_back(kScaleKey, scale);
  state.emplace_back(kGrowthTrackerKey, tracker);
  state.emplace_back(kNumSkippedKey, skipped);
  return state;
}

absl::Status DynamicLossScaler::LoadStateDict(const nn::NamedTensors& state) {
  constexpr absl::string_view kOp = "DynamicLossScaler::LoadStateDict";
  found_inf_ = Tensor();
  if (!enabled()) return absl::OkStatus();
  if (state.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        kOp, ": the state is empty (was it saved by a disabled scaler?)"));
  }
  for (const auto& [name, tensor] : state) {
    if (name != kScaleKey && name != kGrowthTrackerKey && name != kNumSkippedKey) {
      return absl::InvalidArgumentError(absl::StrCat(kOp, ": unknown key \"", name, "\""));
    }
  }
  LYRA_ASSIGN_OR_RETURN(Tensor scale, StateEntry(state, kScaleKey, DType::kF32));
  LYRA_ASSIGN_OR_RETURN(Tensor tracker, StateEntry(state, kGrowthTrackerKey, DType::kI64));
  LYRA_ASSIGN_OR_RETURN(Tensor skipped, StateEntry(state, kNumSkippedKey, DType::kI64));
  LYRA_ASSIGN_OR_RETURN(const double scale_value, scale.Item());
  if (!(scale_value > 0) || !std::isfinite(scale_value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": scale must be finite and positive, got ", scale_value));
  }
  LYRA_ASSIGN_OR_RETURN(const double tracker_value, tracker.Item());
  LYRA_ASSIGN_OR_RETURN(const double skipped_value, skipped.Item());
  if (tracker_value < 0 || skipped_value < 0) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": growth_tracker ", tracker_value,
                                                   " and num_skipped_steps ", skipped_value,
                                                   " must be >= 0"));
  }
  // CopyFrom keeps the 0-dim shape of the state tensors whatever one-element shape was saved.
  LYRA_ASSIGN_OR_RETURN(Tensor flat_scale, scale.Reshape({}));
  LYRA_ASSIGN_OR_RETURN(Tensor flat_tracker, tracker.Reshape({}));
  LYRA_ASSIGN_OR_RETURN(Tensor flat_skipped, skipped.Reshape({}));
  LYRA_RETURN_IF_ERROR(scale_.CopyFrom(flat_scale));
  LYRA_RETURN_IF_ERROR(growth_tracker_.CopyFrom(flat_tracker));
  LYRA_RETURN_IF_ERROR(num_skipped_.CopyFrom(flat_skipped));
  return absl::OkStatus();
}

}  // namespace lyra::optim
