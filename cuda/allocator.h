// The caching device allocator.
//
// cudaMalloc and cudaFree are slow and synchronize the device, so freed blocks are kept in
// per-device pools and handed out again; in a training loop's steady state no cudaMalloc happens.
//
// Size classes: requests are rounded up to 512 bytes below 1 MiB, and above that to 1/16 of their
// power of two (at most 6.25% waste). A free block is reused for a request of the same or a
// slightly smaller class (up to 1/8 larger than asked). When cudaMalloc fails, every cached block
// is released and the allocation tried once more before ResourceExhausted is returned.
//
// Blocks are reused in stream order: all of a device's work runs on its current stream
// (cuda/stream.h), so a block freed by one op may be reused by the next op queued after it.
//
// Statistics (MemoryStats) count bytes in blocks handed out ("allocated") and bytes obtained from
// cudaMalloc ("reserved"), with peaks since the last ResetPeakStats(). Peak allocated bytes per
// token is the memory figure of training reports.
#ifndef LYRA_CUDA_ALLOCATOR_H_
#define LYRA_CUDA_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lyra::cuda {

struct MemoryStats {
  int64_t allocated_bytes = 0;       // in blocks currently handed out (rounded sizes)
  int64_t peak_allocated_bytes = 0;
  int64_t requested_bytes = 0;       // as asked for by callers (unrounded)
  int64_t peak_requested_bytes = 0;
  int64_t reserved_bytes = 0;        // obtained from cudaMalloc: handed out plus cached
  int64_t peak_reserved_bytes = 0;
  int64_t num_allocations = 0;       // calls to Allocate
  int64_t num_cache_hits = 0;        // of those, served from the cache
  int64_t num_device_mallocs = 0;    // cudaMalloc calls
  int64_t num_device_frees = 0;      // cudaFree calls
};

std::string FormatMemoryStats(const MemoryStats& stats);

class CachingAllocator {
 public:
  // The allocator of GPU `device` (CHECK-fails on an index outside [0, 64)).
  static CachingAllocator& ForDevice(int device);

  // A block of at least `bytes` bytes (256-byte aligned) on this device. bytes == 0 gives a
  // valid non-null pointer to a minimal block.
  absl::StatusOr<void*> Allocate(size_t bytes);
  // Returns a block from Allocate to the cache. Passing anything else is a programmer error.
  void Free(void* ptr);

  MemoryStats Stats() const;
  // Peaks restart from the current values.
  void ResetPeakStats();
  // Releases every cached (free) block to the driver.
  absl::Status EmptyCache();

  // The size class `bytes` rounds to.
  static size_t RoundSize(size_t bytes);

 private:
  explicit CachingAllocator(int device) : device_(device) {}
  absl::Status ReleaseCachedLocked();

  struct Block {
    size_t size;       // rounded size
    size_t requested;  // caller's size
  };

  int device_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_blocks_;          // size -> pointer
  std::unordered_map<void*, Block> live_blocks_;      // handed out
  std::unordered_map<void*, size_t> all_blocks_;      // every cudaMalloc'd block, size
  MemoryStats stats_;
};

// Host memory used by CPU tensors: current and peak bytes (aligned allocations, no cache).
struct HostMemoryStats {
  int64_t allocated_bytes = 0;
  int64_t peak_allocated_bytes = 0;
};
void* HostAllocate(size_t bytes);  // 64-byte aligned; nullptr on failure
void HostFree(void* ptr, size_t bytes);
HostMemoryStats GetHostMemoryStats();
void ResetHostPeakStats();

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_ALLOCATOR_H_
