// Shared harness of the kernel-level SSD CUDA tests (tests/mamba/ssd_forward_cuda_test.cc,
// ssd_backward_cuda_test.cc): one problem configuration, its random inputs (contiguous, on the
// CPU, then moved), NaN-poisoned outputs, the SsdParams over them, and the norm-relative error
// both tests compare by.
#ifndef LYRA_TESTS_MAMBA_SSD_CUDA_TESTING_H_
#define LYRA_TESTS_MAMBA_SSD_CUDA_TESTING_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "base/dtype.h"
#include "cuda/ssd.h"
#include "tensor/tensor.h"

namespace lyra::cuda::ssd_testing {

enum class DMode { kNone, kPerHead, kPerHeadDim };
enum class SeqMode { kNone, kRandom, kChunkBoundary };

struct Config {
  std::string name;
  int64_t batch = 2, length = 100, heads = 4, head_dim = 64, dstate = 64, groups = 1;
  int64_t chunk = 64;
  DType dtype = DType::kF32;
  bool has_z = false, has_bias = true, softplus = true, has_init = false;
  DMode d_mode = DMode::kPerHead;
  SeqMode seq = SeqMode::kNone;
  double dt_min = 0.0, dt_max = std::numeric_limits<double>::infinity();
  // Backward only.
  bool has_dfinal = false;        // an upstream gradient of final_state
  bool give_chunk_states = true;  // pass the forward's chunk_states to the backward
};

// The forward's configuration in one line (for SCOPED_TRACE).
std::string Describe(const Config& c);

// seq_idx (B, L): random documents (a new one with probability 1/40 per step), or with
// kChunkBoundary documents starting exactly at t = chunk and t = 3 chunk (and at t = 5).
absl::StatusOr<Tensor> MakeSeqIdx(const Config& c, uint64_t seed);

// The tensors of one problem on one device, contiguous.
struct Problem {
  Tensor x, dt, A, B, C, D, z, dt_bias, initial_state, seq_idx;
};
// Random inputs on the CPU: dt around Mamba-2's initialisation, A = -exp(a_log) with a_log
// spread over [0, 2.7] across the heads, D in [0.5, 1.5].
absl::StatusOr<Problem> MakeProblem(const Config& c, uint64_t seed);
absl::StatusOr<Problem> ToDevice(const Problem& in, Device device);

// Outputs of one run: y (B, L, H, P), final_state (B, H, P, N), chunk_states (B, nc, H, P, N),
// filled with NaN so that unwritten elements fail.
struct Outputs {
  Tensor y, final_state, chunk_states;
};
absl::StatusOr<Outputs> MakeOutputs(const Config& c, Device device);

// SsdParams over contiguous tensors.
SsdParams MakeParams(const Config& c, const Problem& pr, const Outputs& o);

// The values of `t` (copied to the CPU; empty, with a test failure, on an error).
std::vector<double> Doubles(const Tensor& t);

// ||actual - expected|| / ||expected|| (+inf on a non-finite value or a size mismatch).
double NormRelError(const Tensor& actual, const Tensor& expected);

}  // namespace lyra::cuda::ssd_testing

#define EXPECT_NEAR_NORM(actual, expected, tol)                                             \
  do {                                                                                      \
    const double err_ = ::lyra::cuda::ssd_testing::NormRelError((actual), (expected));      \
    EXPECT_TRUE(err_ <= (tol)) << #actual << " rel. error " << err_ << " > " << (tol);      \
  } while (0)

#endif  // LYRA_TESTS_MAMBA_SSD_CUDA_TESTING_H_
