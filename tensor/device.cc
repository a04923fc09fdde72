#include "tensor/device.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace lyra {

std::string Device::ToString() const {
  return is_cpu() ? std::string("cpu") : absl::StrCat("cuda:", index);
}

absl::StatusOr<Device> ParseDevice(absl::string_view text) {
  if (text == "cpu") return Device::Cpu();
  if (text == "cuda" || text == "gpu") return Device::Cuda(0);
  if (absl::StartsWith(text, "cuda:")) {
    int index = 0;
    if (absl::SimpleAtoi(text.substr(5), &index) && index >= 0) return Device::Cuda(index);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", text, "' (expected cpu, cuda or cuda:N)"));
}

}  // namespace lyra
