// Streams and events.
//
// Lyra runs all work of a device in stream order on one "current" stream per device (created on
// first use; a StreamGuard can substitute another, e.g. for CUDA-graph capture). The caching
// allocator relies on this: a block freed by one op can be handed to the next op at once, because
// the next op runs after it on the same stream.
#ifndef LYRA_CUDA_STREAM_H_
#define LYRA_CUDA_STREAM_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lyra::cuda {

// The stream Lyra's work on GPU `device` goes to. CHECK-fails if the device does not exist
// (callers hold a tensor on that device, so it does).
cudaStream_t CurrentStream(int device);

// Waits for all work queued on the current stream of `device`.
absl::Status Synchronize(int device);

// Makes `stream` the current stream of `device` for this thread until destruction.
class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t previous_;
};

// An owned cudaStream_t.
class Stream {
 public:
  static absl::StatusOr<Stream> Create(int device);
  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  ~Stream();
  cudaStream_t get() const { return stream_; }
  absl::Status Synchronize() const;

 private:
  Stream(int device, cudaStream_t stream) : device_(device), stream_(stream) {}
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
};

// An owned cudaEvent_t, for timing and cross-stream ordering.
class Event {
 public:
  static absl::StatusOr<Event> Create(int device);
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  ~Event();
  cudaEvent_t get() const { return event_; }
  absl::Status Record(cudaStream_t stream);
  absl::Status Synchronize() const;
  // Milliseconds from `start` to this event; both must have completed.
  absl::StatusOr<float> ElapsedMsSince(const Event& start) const;

 private:
  explicit Event(cudaEvent_t event) : event_(event) {}
  cudaEvent_t event_ = nullptr;
};

}  // namespace lyra::cuda

#endif  // LYRA_CUDA_STREAM_H_
