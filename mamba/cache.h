// MambaCache: the inference state of a Mamba-1 or Mamba-2 language model for step-by-step
// decoding.
//
// Per layer (dimension letters of mamba/README.md):
//   Mamba-1: conv_state [B, D, K-1]         the last K-1 inputs of the causal conv (the
//                                           activation dtype: f32, f16 / bf16 under autocast,
//                                           f64 in an f64 model), oldest first;
//            ssm_state  [B, D, N]           the selective-scan state after the last token
//                                           consumed (f32; f64 in an f64 model).
//   Mamba-2: conv_state [B, D + 2GN, K-1]   the conv over x, B and C (conv_dim channels);
//            ssm_state  [B, H, P, N]        the SSD state (f32; f64 in an f64 model).
// A cache is filled by MambaForCausalLM::Prefill (from the parallel forward's final conv and
// scan states) and advanced in place by MambaForCausalLM::Step. Unlike transformers'
// MambaCache (whose conv state holds K columns), the conv state here holds exactly the K-1
// inputs the next step needs, as mamba_ssm's causal_conv1d_update does with K-1 + 1.
//
//   MambaCache cache;                                          // empty
//   LYRA_ASSIGN_OR_RETURN(Tensor logits, model.Prefill(prompt, cache));   // [B, L, V]
//   LYRA_ASSIGN_OR_RETURN(Tensor next, model.Step(token, cache));          // [B, V]
#ifndef LYRA_MAMBA_CACHE_H_
#define LYRA_MAMBA_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "mamba/config.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

namespace lyra::mamba {

struct MambaLayerState {
  Tensor conv_state;  // [B, D, K-1]; Mamba-2: [B, D + 2GN, K-1]
  Tensor ssm_state;   // [B, D, N];   Mamba-2: [B, H, P, N]
  bool defined() const { return conv_state.defined() && ssm_state.defined(); }
};

class MambaCache {
 public:
  // An empty cache (no layers): the next Prefill starts from zero states.
  MambaCache() = default;

  // A cache of zero states for `batch` sequences (what Prefill would leave after no tokens):
  // conv states of `conv_dtype` (the model's activation dtype), ssm states of f32 (f64 when
  // conv_dtype is f64). InvalidArgument for batch < 1, a non-float dtype or an invalid config.
  static absl::StatusOr<MambaCache> Zeros(const MambaConfig& config, int64_t batch,
                                          DType conv_dtype = DType::kF32,
                                          Device device = Device::Cpu());

  bool empty() const { return layers_.empty(); }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  // B of the states (0 when empty).
  int64_t batch() const;
  // Tokens consumed since the cache was empty (prefill lengths plus steps).
  int64_t seqlen_offset() const { return seqlen_offset_; }

  MambaLayerState& layer(int i) { return layers_[i]; }
  const MambaLayerState& layer(int i) const { return layers_[i]; }
  std::vector<MambaLayerState>& layers() { return layers_; }

  // Drops every state (the cache becomes empty).
  void Reset();
  // Checks that the cache holds `num_layers` layers of batch `batch` (FailedPrecondition naming
  // what differs): used by the model before a step.
  absl::Status CheckFor(int num_layers, int64_t batch) const;

  void AddTokens(int64_t n) { seqlen_offset_ += n; }
  // Replaces all layers (Prefill), adding `tokens` to the offset.
  void SetLayers(std::vector<MambaLayerState> layers, int64_t tokens);

 private:
  std::vector<MambaLayerState> layers_;
  int64_t seqlen_offset_ = 0;
};

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_CACHE_H_
