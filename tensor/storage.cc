#include "tensor/storage.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "cuda/allocator.h"
#include "cuda/device.h"

namespace lyra {

absl::StatusOr<std::shared_ptr<Storage>> Storage::Allocate(size_t bytes, Device device) {
  if (device.is_cpu()) {
    void* data = cuda::HostAllocate(bytes);
    if (data == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes of host memory"));
    }
    return std::shared_ptr<Storage>(
        new Storage(data, bytes, device, [data, bytes] { cuda::HostFree(data, bytes); }));
  }
  LYRA_RETURN_IF_ERROR(cuda::CheckGpu(device.index));
  cuda::CachingAllocator& allocator = cuda::CachingAllocator::ForDevice(device.index);
  LYRA_ASSIGN_OR_RETURN(void* data, allocator.Allocate(bytes));
  return std::shared_ptr<Storage>(
      new Storage(data, bytes, device, [&allocator, data] { allocator.Free(data); }));
}

std::shared_ptr<Storage> Storage::Wrap(void* data, size_t bytes, Device device,
                                       std::function<void()> release) {
  return std::shared_ptr<Storage>(new Storage(data, bytes, device, std::move(release)));
}

Storage::~Storage() {
  if (release_) release_();
}

}  // namespace lyra
