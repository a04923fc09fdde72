#include "cuda/allocator.h"

#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"

namespace lyra::cuda {
namespace {

constexpr size_t kSmallGranularity = 512;
constexpr size_t kLargeThreshold = size_t{1} << 20;  // 1 MiB
constexpr int kLargeSubdivisions = 16;               // per power of two above the threshold
// A cached block may serve a request up to this factor smaller than the block.
constexpr size_t kReuseSlackNumerator = 9;
constexpr size_t kReuseSlackDenominator = 8;
constexpr int kMaxDevices = 64;

void UpdatePeak(int64_t& peak, int64_t value) {
  if (value > peak) peak = value;
}

}  // namespace

std::string FormatMemoryStats(const MemoryStats& s) {
  constexpr double kMiB = 1024.0 * 1024.0;
  return absl::StrFormat(
      "allocated %.1f MiB (peak %.1f), reserved %.1f MiB (peak %.1f), %d allocations, "
      "%d cache hits, %d cudaMalloc, %d cudaFree",
      s.allocated_bytes / kMiB, s.peak_allocated_bytes / kMiB, s.reserved_bytes / kMiB,
      s.peak_reserved_bytes / kMiB, s.num_allocations, s.num_cache_hits, s.num_device_mallocs,
      s.num_device_frees);
}

size_t CachingAllocator::RoundSize(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes < kLargeThreshold) {
    return (bytes + kSmallGranularity - 1) / kSmallGranularity * kSmallGranularity;
  }
  // Step = (largest power of two <= bytes) / 16.
  size_t power = size_t{1} << (63 - __builtin_clzll(bytes));
  size_t step = power / kLargeSubdivisions;
  return (bytes + step - 1) / step * step;
}

CachingAllocator& CachingAllocator::ForDevice(int device) {
  static std::array<CachingAllocator*, kMaxDevices> allocators{};
  static std::mutex mu;
  LYRA_CHECK(device >= 0 && device < kMaxDevices) << "device index " << device;
  std::lock_guard<std::mutex> lock(mu);
  if (allocators[device] == nullptr) allocators[device] = new CachingAllocator(device);
  return *allocators[device];
}

absl::StatusOr<void*> CachingAllocator::Allocate(size_t bytes) {
  const size_t size = RoundSize(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.num_allocations++;
  void* ptr = nullptr;
  auto it = free_blocks_.lower_bound(size);
  if (it != free_blocks_.end() &&
      it->first * kReuseSlackDenominator <= size * kReuseSlackNumerator) {
    ptr = it->second;
    free_blocks_.erase(it);
    stats_.num_cache_hits++;
  } else {
    LYRA_RETURN_IF_ERROR(CheckGpu(device_));
    DeviceGuard guard(device_);
    cudaError_t error = cudaMalloc(&ptr, size);
    if (error == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      LYRA_RETURN_IF_ERROR(ReleaseCachedLocked());
      error = cudaMalloc(&ptr, size);
    }
    if (error != cudaSuccess) {
      cudaGetLastError();
      return absl::ResourceExhaustedError(absl::StrCat(
          "cuda:", device_, ": cannot allocate ", bytes, " bytes (", cudaGetErrorString(error),
          "); ", FormatMemoryStats(stats_)));
    }
    stats_.num_device_mallocs++;
    all_blocks_[ptr] = size;
    stats_.reserved_bytes += size;
    UpdatePeak(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  }
  const size_t block_size = all_blocks_.at(ptr);
  live_blocks_[ptr] = Block{block_size, bytes};
  stats_.allocated_bytes += block_size;
  stats_.requested_bytes += bytes;
  UpdatePeak(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  UpdatePeak(stats_.peak_requested_bytes, stats_.requested_bytes);
  return ptr;
}

void CachingAllocator::Free(void* ptr) {
  if (ptr == nullptr) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_blocks_.find(ptr);
  LYRA_CHECK(it != live_blocks_.end()) << "Free of a pointer this allocator did not hand out";
  stats_.allocated_bytes -= it->second.size;
  stats_.requested_bytes -= it->second.requested;
  free_blocks_.emplace(it->second.size, ptr);
  live_blocks_.erase(it);
}

MemoryStats CachingAllocator::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::ResetPeakStats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_requested_bytes = stats_.requested_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

absl::Status CachingAllocator::EmptyCache() {
  std::lock_guard<std::mutex> lock(mu_);
  return ReleaseCachedLocked();
}

absl::Status CachingAllocator::ReleaseCachedLocked() {
  if (free_blocks_.empty()) return absl::OkStatus();
  DeviceGuard guard(device_);
  // Blocks may still be read by queued work: wait for the device before returning them.
  LYRA_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  for (auto& [size, ptr] : free_blocks_) {
    LYRA_CUDA_RETURN_IF_ERROR(cudaFree(ptr));
    stats_.num_device_frees++;
    stats_.reserved_bytes -= size;
    all_blocks_.erase(ptr);
  }
  free_blocks_.clear();
  return absl::OkStatus();
}

namespace {
std::atomic<int64_t> host_allocated{0};
std::atomic<int64_t> host_peak{0};
}  // namespace

void* HostAllocate(size_t bytes) {
  constexpr size_t kAlign = 64;
  size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  if (rounded == 0) rounded = kAlign;
  void* ptr = std::aligned_alloc(kAlign, rounded);
  if (ptr == nullptr) return nullptr;
  int64_t now = host_allocated.fetch_add(static_cast<int64_t>(bytes)) + bytes;
  int64_t peak = host_peak.load();
  while (now > peak && !host_peak.compare_exchange_weak(peak, now)) {
  }
  return ptr;
}

void HostFree(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  std::free(ptr);
  host_allocated.fetch_sub(static_cast<int64_t>(bytes));
}

HostMemoryStats GetHostMemoryStats() { return {host_allocated.load(), host_peak.load()}; }

void ResetHostPeakStats() { host_peak.store(host_allocated.load()); }

}  // namespace lyra::cuda
