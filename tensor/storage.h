// A reference-counted byte buffer on one device: CPU memory (64-byte aligned), memory from the
// CUDA caching allocator, or foreign memory with its own release (e.g. a memory-mapped file).
#ifndef LYRA_TENSOR_STORAGE_H_
#define LYRA_TENSOR_STORAGE_H_

#include <cstddef>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "tensor/device.h"

namespace lyra {

class Storage {
 public:
  // `bytes` of uninitialized memory on `device`. ResourceExhausted when it cannot be had;
  // FailedPrecondition for a GPU that does not exist.
  static absl::StatusOr<std::shared_ptr<Storage>> Allocate(size_t bytes, Device device);
  // Wraps memory owned elsewhere; `release` runs when the last reference goes.
  static std::shared_ptr<Storage> Wrap(void* data, size_t bytes, Device device,
                                       std::function<void()> release);

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Storage(void* data, size_t bytes, Device device, std::function<void()> release)
      : data_(data), bytes_(bytes), device_(device), release_(std::move(release)) {}

  void* data_;
  size_t bytes_;
  Device device_;
  std::function<void()> release_;
};

}  // namespace lyra

#endif  // LYRA_TENSOR_STORAGE_H_
