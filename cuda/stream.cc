#include "cuda/stream.h"

#include <array>
#include <mutex>

#include "base/status_macros.h"
#include "cuda/cuda_check.h"
#include "cuda/device.h"

namespace lyra::cuda {
namespace {

constexpr int kMaxGpus = 64;

// One default stream per device, created on first use and kept for the process's life.
cudaStream_t DefaultStream(int device) {
  static std::array<cudaStream_t, kMaxGpus> streams{};
  static std::array<std::once_flag, kMaxGpus> once;
  LYRA_CHECK(device >= 0 && device < GpuCount()) << "no GPU " << device;
  std::call_once(once[device], [device] {
    int previous = 0;
    cudaGetDevice(&previous);
    cudaSetDevice(device);
    // A blocking stream: it orders with the legacy default stream, so a stray synchronous
    // cudaMemcpy by a user still sees our results.
    cudaError_t error = cudaStreamCreateWithFlags(&streams[device], cudaStreamDefault);
    LYRA_CHECK(error == cudaSuccess) << cudaGetErrorString(error);
    cudaSetDevice(previous);
  });
  return streams[device];
}

thread_local std::array<cudaStream_t, kMaxGpus> override_streams{};

}  // namespace

cudaStream_t CurrentStream(int device) {
  LYRA_CHECK(device >= 0 && device < kMaxGpus) << "device index " << device;
  if (override_streams[device] != nullptr) return override_streams[device];
  return DefaultStream(device);
}

absl::Status Synchronize(int device) {
  LYRA_RETURN_IF_ERROR(CheckGpu(device));
  LYRA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(CurrentStream(device)));
  return absl::OkStatus();
}

StreamGuard::StreamGuard(int device, cudaStream_t stream) : device_(device) {
  LYRA_CHECK(device >= 0 && device < kMaxGpus) << "device index " << device;
  previous_ = override_streams[device];
  override_streams[device] = stream;
}

StreamGuard::~StreamGuard() { override_streams[device_] = previous_; }

absl::StatusOr<Stream> Stream::Create(int device) {
  LYRA_RETURN_IF_ERROR(SetDevice(device));
  cudaStream_t stream;
  LYRA_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return Stream(device, stream);
}

Stream::Stream(Stream&& other) noexcept : device_(other.device_), stream_(other.stream_) {
  other.stream_ = nullptr;
}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    device_ = other.device_;
    stream_ = other.stream_;
    other.stream_ = nullptr;
  }
  return *this;
}

Stream::~Stream() {
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status Stream::Synchronize() const {
  LYRA_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  return absl::OkStatus();
}

absl::StatusOr<Event> Event::Create(int device) {
  LYRA_RETURN_IF_ERROR(SetDevice(device));
  cudaEvent_t event;
  LYRA_CUDA_RETURN_IF_ERROR(cudaEventCreate(&event));
  return Event(event);
}

Event::Event(Event&& other) noexcept : event_(other.event_) { other.event_ = nullptr; }

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) cudaEventDestroy(event_);
    event_ = other.event_;
    other.event_ = nullptr;
  }
  return *this;
}

Event::~Event() {
  if (event_ != nullptr) cudaEventDestroy(event_);
}

absl::Status Event::Record(cudaStream_t stream) {
  LYRA_CUDA_RETURN_IF_ERROR(cudaEventRecord(event_, stream));
  return absl::OkStatus();
}

absl::Status Event::Synchronize() const {
  LYRA_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(event_));
  return absl::OkStatus();
}

absl::StatusOr<float> Event::ElapsedMsSince(const Event& start) const {
  float ms = 0;
  LYRA_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start.event_, event_));
  return ms;
}

}  // namespace lyra::cuda
