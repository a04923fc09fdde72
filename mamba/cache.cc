#include "mamba/cache.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace lyra::mamba {

absl::StatusOr<MambaCache> MambaCache::Zeros(const MambaConfig& config, int64_t batch,
                                             DType conv_dtype, Device device) {
  LYRA_RETURN_IF_ERROR(config.Validate());
  if (batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("MambaCache::Zeros: batch must be >= 1, got ",
                                                   batch));
  }
  if (!IsFloating(conv_dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("MambaCache::Zeros: conv dtype ",
                                                   DTypeName(conv_dtype), " is not floating"));
  }
  const DType state_dtype = conv_dtype == DType::kF64 ? DType::kF64 : DType::kF32;
  // Mamba-1: conv over the D channels, state [B, D, N]. Mamba-2: conv over x, B and C
  // (D + 2GN channels), state [B, H, P, N].
  const bool v2 = config.version == 2;
  const int64_t conv_channels =
      v2 ? config.intermediate_size + 2 * config.n_groups * config.state_size
         : config.intermediate_size;
  const Shape ssm_shape =
      v2 ? Shape{batch, config.num_heads, config.head_dim, config.state_size}
         : Shape{batch, config.intermediate_size, config.state_size};
  MambaCache cache;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    MambaLayerState s;
    LYRA_ASSIGN_OR_RETURN(
        s.conv_state,
        Tensor::Zeros({batch, conv_channels, config.conv_kernel - 1}, conv_dtype, device));
    LYRA_ASSIGN_OR_RETURN(s.ssm_state, Tensor::Zeros(ssm_shape, state_dtype, device));
    cache.layers_.push_back(std::move(s));
  }
  return cache;
}

int64_t MambaCache::batch() const {
  if (layers_.empty() || !layers_[0].ssm_state.defined()) return 0;
  return layers_[0].ssm_state.size(0);
}

void MambaCache::Reset() {
  layers_.clear();
  seqlen_offset_ = 0;
}

absl::Status MambaCache::CheckFor(int num_layers, int64_t batch) const {
  if (empty()) {
    return absl::FailedPreconditionError(
        "MambaCache is empty: run Prefill first (or start from MambaCache::Zeros)");
  }
  if (this->num_layers() != num_layers) {
    return absl::FailedPreconditionError(absl::StrCat(
        "MambaCache holds ", this->num_layers(), " layers; the model has ", num_layers));
  }
  for (int i = 0; i < num_layers; ++i) {
    if (!layers_[i].defined()) {
      return absl::FailedPreconditionError(
          absl::StrCat("MambaCache layer ", i, " has no state"));
    }
  }
  if (this->batch() != batch) {
    return absl::FailedPreconditionError(absl::StrCat("MambaCache holds a batch of ",
                                                      this->batch(), "; the input has ", batch));
  }
  return absl::OkStatus();
}

void MambaCache::SetLayers(std::vector<MambaLayerState> layers, int64_t tokens) {
  layers_ = std::move(layers);
  seqlen_offset_ += tokens;
}

}  // namespace lyra::mamba
