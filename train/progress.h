// A terminal progress bar for long-running commands:
//   train [##########..........]  150/300  loss 2.412  48.2k tok/s  ETA 3s
// On a terminal it redraws one line; otherwise (CI logs, files) it prints a plain line at every
// 10% so logs stay short.
#ifndef LYRA_TRAIN_PROGRESS_H_
#define LYRA_TRAIN_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace lyra::train {

class ProgressBar {
 public:
  ProgressBar(std::string label, int64_t total, FILE* out = stderr);
  // Reports that `done` of `total` units are finished; `tokens` processed so far and a short
  // status text (e.g. "loss 2.41") go on the line.
  void Update(int64_t done, int64_t tokens, const std::string& status);
  // Ends the line.
  void Finish();

 private:
  std::string label_;
  int64_t total_;
  FILE* out_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace lyra::train

#endif  // LYRA_TRAIN_PROGRESS_H_
