// Status helpers used across Lyra (Abseil 20220623 has no public RETURN_IF_ERROR).
//
//   LYRA_RETURN_IF_ERROR(DoThing());                 // returns the Status if it is not OK
//   LYRA_ASSIGN_OR_RETURN(Tensor t, MakeTensor());   // unwraps a StatusOr or returns its Status
//   LYRA_CHECK(index < size) << "...";               // internal invariant: aborts if false
//
// LYRA_CHECK is for programmer errors inside the library that user input cannot reach; every
// error a user can cause is a Status.
#ifndef LYRA_BASE_STATUS_MACROS_H_
#define LYRA_BASE_STATUS_MACROS_H_

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define LYRA_CONCAT_INNER_(a, b) a##b
#define LYRA_CONCAT_(a, b) LYRA_CONCAT_INNER_(a, b)

#define LYRA_RETURN_IF_ERROR(expr)                          \
  do {                                                      \
    ::absl::Status lyra_status_ = (expr);                   \
    if (!lyra_status_.ok()) return lyra_status_;            \
  } while (0)

#define LYRA_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#define LYRA_ASSIGN_OR_RETURN(lhs, rexpr) \
  LYRA_ASSIGN_OR_RETURN_IMPL_(LYRA_CONCAT_(lyra_statusor_, __LINE__), lhs, rexpr)

namespace lyra::internal {

// Collects a message and aborts in its destructor; the target of LYRA_CHECK.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": LYRA_CHECK failed: " << condition << " ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace lyra::internal

#define LYRA_CHECK(condition) \
  if (condition) {            \
  } else                      \
    ::lyra::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

// Aborts if a Status is not OK; for internal calls that cannot fail on valid input.
#define LYRA_CHECK_OK(expr)                                      \
  do {                                                           \
    ::absl::Status lyra_check_status_ = (expr);                  \
    LYRA_CHECK(lyra_check_status_.ok()) << lyra_check_status_;   \
  } while (0)

#endif  // LYRA_BASE_STATUS_MACROS_H_
