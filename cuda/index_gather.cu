// IndexGather kernels instantiated for every element size (1, 2, 4, 8 bytes): a gather only moves
// bytes, so bool, integer and float tensors share them (see index_kernels.cuh).
#include "cuda/index_kernels.cuh"

namespace lyra::cuda {
LYRA_INDEX_GATHER_INSTANTIATE(uint8_t)
LYRA_INDEX_GATHER_INSTANTIATE(uint16_t)
LYRA_INDEX_GATHER_INSTANTIATE(uint32_t)
LYRA_INDEX_GATHER_INSTANTIATE(uint64_t)
}  // namespace lyra::cuda
