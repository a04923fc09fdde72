// The tiny Mamba configurations the model-level tests share (tests/mamba, tests/nn): small
// enough for f64 CPU runs and finite-difference checks, with every dimension distinct where the
// version allows, so that a transposed or mixed-up axis shows.
#ifndef LYRA_TESTS_TESTING_TINY_MAMBA_H_
#define LYRA_TESTS_TESTING_TINY_MAMBA_H_

#include <cstdint>

#include "absl/status/status.h"
#include "mamba/config.h"
#include "nn/module.h"

namespace lyra::testing {

// Mamba-1: M = 8, D = 16, N = 4, R = 2, K = 4, V = 16, 2 layers, conv bias; in/out_proj bias
// when `use_bias`.
mamba::MambaConfig TinyMamba1Config(bool tie = true, bool use_bias = false);

// Mamba-2: M = 8, D = 16, H = 4 heads of P = 4 in G = 2 groups, N = 4, K = 4, chunk 16, gated
// norm groups of 16, V = 24, 2 layers, conv bias; in/out_proj bias when `use_bias`.
mamba::MambaConfig TinyMamba2Config(bool tie = true, bool use_bias = false);

// Adds U(-amplitude, amplitude) noise to every parameter of `module` (in the parameter's dtype;
// RandomTensor seeds first_seed, first_seed + 1, ... in NamedParameters order), moving each off
// its structured initial value (ones, zeros, log(h + 1), ...) so that every term of the math
// shapes the output.
absl::Status PerturbParameters(nn::Module& module, uint64_t first_seed, double amplitude);

}  // namespace lyra::testing

#endif  // LYRA_TESTS_TESTING_TINY_MAMBA_H_
