#include "train/progress.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_format.h"

namespace lyra::train {
namespace {

constexpr int kBarWidth = 20;

std::string FormatRate(double per_second) {
  if (per_second >= 1e6) return absl::StrFormat("%.2fM", per_second / 1e6);
  if (per_second >= 1e3) return absl::StrFormat("%.1fk", per_second / 1e3);
  return absl::StrFormat("%.0f", per_second);
}

std::string FormatSeconds(double s) {
  if (s >= 3600) return absl::StrFormat("%dh%02dm", static_cast<int>(s / 3600),
                                        static_cast<int>(s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", static_cast<int>(s / 60),
                                      static_cast<int>(s) % 60);
  return absl::StrFormat("%.0fs", s);
}

}  // namespace

ProgressBar::ProgressBar(std::string label, int64_t total, FILE* out)
    : label_(std::move(label)),
      total_(std::max<int64_t>(total, 1)),
      out_(out),
      tty_(isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()) {}

void ProgressBar::Update(int64_t done, int64_t tokens, const std::string& status) {
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double fraction = std::clamp(static_cast<double>(done) / total_, 0.0, 1.0);
  const int filled = static_cast<int>(fraction * kBarWidth);
  const double eta = done > 0 ? elapsed * (total_ - done) / done : 0;
  const std::string line = absl::StrFormat(
      "%s [%s%s] %5d/%d  %s  %s tok/s  ETA %s", label_, std::string(filled, '#'),
      std::string(kBarWidth - filled, '.'), done, total_, status,
      FormatRate(elapsed > 0 ? tokens / elapsed : 0), FormatSeconds(eta));
  if (tty_) {
    absl::FPrintF(out_, "\r%s\x1b[K", line);
    std::fflush(out_);
    return;
  }
  const int decile = static_cast<int>(fraction * 10);
  if (decile != last_decile_) {
    last_decile_ = decile;
    absl::FPrintF(out_, "%s\n", line);
  }
}

void ProgressBar::Finish() {
  if (tty_) absl::FPrintF(out_, "\n");
  std::fflush(out_);
}

}  // namespace lyra::train
