#include "cuda/multi_tensor.h"

#include <cstring>
#include <utility>

#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/cuda_check.h"

namespace lyra::cuda {

int32_t AppendChunks(int32_t tensor, int64_t numel, int64_t chunk_elements,
                     std::vector<TensorChunk>& chunks) {
  LYRA_CHECK(chunk_elements > 0 && chunk_elements % 4 == 0 && chunk_elements < (int64_t{1} << 31))
      << "chunk size " << chunk_elements;
  LYRA_CHECK(numel >= 0) << "numel " << numel;
  if (numel == 0) {
    chunks.push_back(TensorChunk{tensor, 0, 0});
    return 1;
  }
  int32_t appended = 0;
  for (int64_t start = 0; start < numel; start += chunk_elements) {
    const int64_t length = numel - start < chunk_elements ? numel - start : chunk_elements;
    chunks.push_back(TensorChunk{tensor, static_cast<int32_t>(length), start});
    ++appended;
  }
  return appended;
}

DeviceTable::~DeviceTable() { Release(); }

DeviceTable::DeviceTable(DeviceTable&& other) noexcept
    : device_(other.device_),
      ptr_(other.ptr_),
      capacity_(other.capacity_),
      mirrors_host_(other.mirrors_host_),
      host_(std::move(other.host_)) {
  other.ptr_ = nullptr;
  other.capacity_ = 0;
  other.mirrors_host_ = false;
}

DeviceTable& DeviceTable::operator=(DeviceTable&& other) noexcept {
  if (this != &other) {
    Release();
    device_ = other.device_;
    ptr_ = other.ptr_;
    capacity_ = other.capacity_;
    mirrors_host_ = other.mirrors_host_;
    host_ = std::move(other.host_);
    other.ptr_ = nullptr;
    other.capacity_ = 0;
    other.mirrors_host_ = false;
  }
  return *this;
}

void DeviceTable::Release() {
  if (ptr_ != nullptr) CachingAllocator::ForDevice(device_).Free(ptr_);
  ptr_ = nullptr;
  capacity_ = 0;
  mirrors_host_ = false;
  host_.clear();
}

absl::Status DeviceTable::Reserve(int device, size_t bytes) {
  if (ptr_ != nullptr && device == device_ && bytes <= capacity_) return absl::OkStatus();
  Release();
  LYRA_ASSIGN_OR_RETURN(void* ptr, CachingAllocator::ForDevice(device).Allocate(bytes));
  device_ = device;
  ptr_ = ptr;
  capacity_ = bytes;
  return absl::OkStatus();
}

absl::Status DeviceTable::Upload(int device, const void* data, size_t bytes,
                                 cudaStream_t stream) {
  const bool same = ptr_ != nullptr && device == device_ && mirrors_host_ &&
                    host_.size() == bytes &&
                    (bytes == 0 || std::memcmp(host_.data(), data, bytes) == 0);
  if (same) return absl::OkStatus();
  LYRA_RETURN_IF_ERROR(Reserve(device, bytes));
  if (bytes > 0) {
    LYRA_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(ptr_, data, bytes, cudaMemcpyHostToDevice, stream));
  }
  const auto* begin = static_cast<const uint8_t*>(data);
  host_.assign(begin, begin + bytes);
  mirrors_host_ = true;
  return absl::OkStatus();
}

absl::Status DeviceTable::EnsureZeroed(int device, size_t bytes, cudaStream_t stream) {
  if (ptr_ != nullptr && device == device_ && bytes <= capacity_ && !mirrors_host_) {
    return absl::OkStatus();
  }
  LYRA_RETURN_IF_ERROR(Reserve(device, bytes));
  LYRA_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(ptr_, 0, capacity_, stream));
  mirrors_host_ = false;
  host_.clear();
  return absl::OkStatus();
}

}  // namespace lyra::cuda
