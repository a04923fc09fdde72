// Where a tensor lives: the CPU, or GPU n ("cuda:n").
#ifndef LYRA_TENSOR_DEVICE_H_
#define LYRA_TENSOR_DEVICE_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lyra {

enum class DeviceType : uint8_t { kCpu, kCuda };

struct Device {
  DeviceType type = DeviceType::kCpu;
  int index = 0;

  static constexpr Device Cpu() { return Device{DeviceType::kCpu, 0}; }
  static constexpr Device Cuda(int index = 0) { return Device{DeviceType::kCuda, index}; }

  bool is_cpu() const { return type == DeviceType::kCpu; }
  bool is_cuda() const { return type == DeviceType::kCuda; }
  bool operator==(const Device& o) const {
    return type == o.type && (type == DeviceType::kCpu || index == o.index);
  }
  bool operator!=(const Device& o) const { return !(*this == o); }

  // "cpu" or "cuda:0".
  std::string ToString() const;
};

// Parses "cpu", "cuda" (= cuda:0) and "cuda:N".
absl::StatusOr<Device> ParseDevice(absl::string_view text);

inline std::ostream& operator<<(std::ostream& os, const Device& d) { return os << d.ToString(); }
template <typename Sink>
void AbslStringify(Sink& sink, const Device& d) {
  sink.Append(d.ToString());
}

}  // namespace lyra

#endif  // LYRA_TENSOR_DEVICE_H_
