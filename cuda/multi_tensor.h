// Multi-tensor apply: one kernel launch over many tensors.
//
// A fused optimizer step or gradient norm touches hundreds of tensors of very different sizes (a
// [50280, 768] embedding next to 768-element norm weights). A launch per tensor costs a few
// microseconds each and leaves the GPU idle on the small ones; instead every tensor is cut into
// chunks of at most kMultiTensorChunkElements elements and ONE launch runs one block per chunk.
// The launch reads two tables from device memory:
//
//   tensors[i]  the op's per-tensor descriptor (pointers, sizes, ...), a struct the op defines
//   chunks[c]   TensorChunk {tensor index, first element, element count}, tensor by tensor
//
// A chunk never spans two tensors, and chunk starts are multiples of kMultiTensorChunkElements (a
// multiple of 4), so a chunk of a 16-byte-aligned tensor may use 16-byte vector accesses. A
// tensor of zero elements gets one chunk of length 0, so per-tensor bookkeeping (AdamW's step
// counter) still runs for it.
//
// The tables live in DeviceTable buffers that are re-uploaded only when their bytes change: a
// training step whose tensors keep their addresses issues no copies after the first step, so the
// whole step can be captured in a CUDA graph once one warm-up step has uploaded the tables.
#ifndef LYRA_CUDA_MULTI_TENSOR_H_
#define LYRA_CUDA_MULTI_TENSOR_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lyra::cuda {

// Elements per chunk: 64K f32 = 256 KiB of each operand, so a 130M-parameter model is ~2000
// blocks (many waves on 132 SMs) and one block's bookkeeping is amortised over 64K elements.
inline constexpr int64_t kMultiTensorChunkElements = int64_t{1} << 16;

struct TensorChunk {
  int32_t tensor = 0;  // index into the op's tensor table
  int32_t length = 0;  // elements in this chunk, <= the chunk size
  int64_t start = 0;   // first element of the chunk within its tensor
};

// Appends the chunks of tensor `tensor` (of `numel` elements) to `chunks`; returns how many were
// appended (at least 1). `chunk_elements` must be a positive multiple of 4 below 2^31.
int32_t AppendChunks(int32_t tensor, int64_t numel, int64_t chunk_elements,
                     std::vector<TensorChunk>& chunks);

// A device buffer holding a copy of a host table (or a zero-filled scratch array) for a
// multi-tensor launch. Memory comes from the device's caching allocator and is freed in stream
// order (the allocator's contract). Move-only.
class DeviceTable {
 public:
  DeviceTable() = default;
  ~DeviceTable();
  DeviceTable(DeviceTable&& other) noexcept;
  DeviceTable& operator=(DeviceTable&& other) noexcept;
  DeviceTable(const DeviceTable&) = delete;
  DeviceTable& operator=(const DeviceTable&) = delete;

  // Makes the buffer on GPU `device` hold `bytes` bytes of `data`: a cudaMemcpyAsync on `stream`
  // if they differ from the last upload (or the buffer is new or too small), nothing otherwise.
  // The host bytes may be changed as soon as this returns (pageable copies are staged). The
  // device must be current.
  absl::Status Upload(int device, const void* data, size_t bytes, cudaStream_t stream);
  // Makes the buffer hold at least `bytes` bytes that are zero now: memset on `stream` when it is
  // (re)allocated, nothing otherwise. For scratch counters that kernels leave zero when done.
  absl::Status EnsureZeroed(int device, size_t bytes, cudaStream_t stream);

  // The device pointer (null before the first Upload / EnsureZeroed).
  void* data() const { return ptr_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  absl::Status Reserve(int device, size_t bytes);
  void Release();

  int device_ = -1;
  void* ptr_ = nullptr;
  size_t capacity_ = 0;
  bool mirrors_host_ = false;      // host_ holds the buffer's current bytes
  std::vector<uint8_t> host_;      // the bytes last uploaded
};

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_MULTI_TENSOR_H_
