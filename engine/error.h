// One error channel: LOWBIT_CHECK throws lowbit::Error carrying file:line and a message
// built from whatever the call site streams in (op name, shapes, dtypes, devices).
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace lowbit {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An Error's message without the "path/file.cpp:47: " prefix of LOWBIT_CHECK (for users).
inline std::string error_text(const char* what) {
  const std::string m = what;
  const size_t colon = m.find(": ");
  if (colon == std::string::npos) return m;
  const std::string head = m.substr(0, colon);
  const size_t line = head.rfind(':');
  const bool located = line != std::string::npos && line + 1 < head.size() &&
                       head.find_first_not_of("0123456789", line + 1) == std::string::npos &&
                       (head.find(".cpp:") != std::string::npos || head.find(".h:") != std::string::npos);
  return located ? m.substr(colon + 2) : m;
}

namespace detail {
template <class... Args>
[[noreturn]] void throw_error(const char* file, int line, const char* cond, const Args&... args) {
  std::ostringstream os;
  os << file << ":" << line << ": ";
  if constexpr (sizeof...(Args) > 0) {
    (os << ... << args);
  } else {
    os << "check failed: " << cond;
  }
  throw Error(os.str());
}
}  // namespace detail

}  // namespace lowbit

#define LOWBIT_CHECK(cond, ...)                                                     \
  do {                                                                              \
    if (!(cond)) ::lowbit::detail::throw_error(__FILE__, __LINE__, #cond, ##__VA_ARGS__); \
  } while (0)

#define LOWBIT_FAIL(...) ::lowbit::detail::throw_error(__FILE__, __LINE__, "", ##__VA_ARGS__)
