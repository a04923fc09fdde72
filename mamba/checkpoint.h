// Mamba-1 checkpoints: Hugging Face model directories (and mamba_ssm key names) in and out.
//
// A model directory holds config.json (either layout of mamba/config.h) and the weights as
//   model.safetensors                                   one file, or
//   model.safetensors.index.json + the shards it names  {"weight_map": {"<key>": "<file>", ...}}
// Tensor names may be Hugging Face's ("backbone.embeddings.weight", the names of mamba/model.h)
// or mamba_ssm's ("backbone.embedding.weight"; the rest is identical). Weights of F32, F16,
// BF16 or F64 are converted to the requested dtype (an f64 file loaded as f64 is bit-exact).
// With tied embeddings an "lm_head.weight" in the file (mamba_ssm and some HF writers save the
// tied copy) is ignored; untied models need it.
//
//   LYRA_ASSIGN_OR_RETURN(std::unique_ptr<MambaForCausalLM> model,
//                         LoadMamba("/models/mamba-130m-hf", Device::Cpu(), DType::kF32));
//   LYRA_RETURN_IF_ERROR(SaveMamba(*model, "/tmp/out"));
//
// Errors: NotFound for a missing directory, config.json or weights file; DataLoss for a corrupt
// safetensors file or index; InvalidArgument when the weights do not fit the config (a tensor
// whose shape differs, naming the key and both shapes; missing or unexpected keys, listed) and
// for a tensor found in two shards (naming both files).
#ifndef LYRA_MAMBA_CHECKPOINT_H_
#define LYRA_MAMBA_CHECKPOINT_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "mamba/config.h"
#include "mamba/model.h"
#include "nn/module.h"
#include "tensor/device.h"

namespace lyra::mamba {

// The tensors of a model directory's weights (every shard), with mamba_ssm names mapped to
// Hugging Face names, in the files' dtypes (memory-mapped CPU tensors).
absl::StatusOr<nn::NamedTensors> ReadMambaWeights(const std::string& dir);

// Builds the model of dir/config.json on the CPU in `dtype`, loads the weights strictly (every
// parameter must be present with its shape, nothing else but a tied lm_head.weight), then moves
// it to `device`. The model is in eval mode.
absl::StatusOr<std::unique_ptr<MambaForCausalLM>> LoadMamba(const std::string& dir,
                                                            Device device = Device::Cpu(),
                                                            DType dtype = DType::kF32);

// Writes dir/config.json (config.ToHfJson()) and dir/model.safetensors (HF names, the
// parameters' dtypes, metadata {"format": "pt"}; no lm_head.weight when tied), each atomically
// (temp file + rename). Creates `dir` if needed.
absl::Status SaveMamba(const MambaForCausalLM& model, const std::string& dir);

}  // namespace lyra::mamba

#endif  // LYRA_MAMBA_CHECKPOINT_H_
