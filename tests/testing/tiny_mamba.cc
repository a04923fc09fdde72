#include "tests/testing/tiny_mamba.h"

#include "base/status_macros.h"
#include "tensor/elementwise.h"
#include "tensor/tensor.h"
#include "tests/testing/testing.h"

namespace lyra::testing {

mamba::MambaConfig TinyMamba1Config(bool tie, bool use_bias) {
  mamba::MambaConfig c;
  c.vocab_size = 16;
  c.hidden_size = 8;
  c.state_size = 4;
  c.num_hidden_layers = 2;
  c.expand = 2;
  c.intermediate_size = 16;
  c.conv_kernel = 4;
  c.use_bias = use_bias;
  c.use_conv_bias = true;
  c.time_step_rank = 2;
  c.tie_word_embeddings = tie;
  return c;
}

mamba::MambaConfig TinyMamba2Config(bool tie, bool use_bias) {
  mamba::MambaConfig c;
  c.version = 2;
  c.vocab_size = 24;
  c.hidden_size = 8;
  c.expand = 2;
  c.intermediate_size = 16;
  c.num_heads = 4;
  c.head_dim = 4;
  c.n_groups = 2;
  c.state_size = 4;
  c.chunk_size = 16;
  c.num_hidden_layers = 2;
  c.conv_kernel = 4;
  c.use_bias = use_bias;
  c.use_conv_bias = true;
  c.tie_word_embeddings = tie;
  c.norm_group_size = 16;
  c.norm_epsilon = 1e-5;
  return c;
}

absl::Status PerturbParameters(nn::Module& module, uint64_t first_seed, double amplitude) {
  uint64_t seed = first_seed;
  for (auto& [name, p] : module.NamedParameters()) {
    LYRA_ASSIGN_OR_RETURN(Tensor noise,
                          RandomTensor(p.shape(), p.dtype(), seed++, -amplitude, amplitude));
    LYRA_ASSIGN_OR_RETURN(Tensor sum, Add(p.data(), noise));
    LYRA_RETURN_IF_ERROR(p.data().CopyFrom(sum));
  }
  return absl::OkStatus();
}

}  // namespace lyra::testing
