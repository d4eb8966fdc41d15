// Minimal command-line parsing shared by the tools: --key value / --flag options and
// positional arguments, with one-line errors that name the option (and the closest valid one).
#pragma once
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace lowbit::tools {

class Args {
 public:
  // value_options take a value; flag_options do not.
  Args(int argc, char** argv, std::set<std::string> value_options, std::set<std::string> flag_options);
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  int64_t get_int(const std::string& name, int64_t fallback) const;
  double get_double(const std::string& name, double fallback) const;
  bool flag(const std::string& name) const { return flags_.count(name) != 0; }
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> flags_;
  std::vector<std::string> positional_;
};

// An error message for the user: lowbit::Error's "source.cpp:123: " prefix removed.
std::string user_message(const char* what);

// A tool's main(): a short OpenMP spin before threads sleep (set before libgomp loads: the tool
// re-executes itself once, unless the user set OMP_WAIT_POLICY or GOMP_SPINCOUNT), stdout
// line-buffered (log lines appear as they happen through a pipe or tee), then run(argc, argv);
// an exception becomes "<tool>: error: <message>" on stderr and exit code 1.
int tool_main(const char* tool, int (*run)(int, char**), int argc, char** argv);

// One start-up line: the CPU, its ISA level (and LOWBIT_MAX_CPU_ISA's cap), the build baseline,
// threads, and the kernel each GEMM family runs (f32 / bf16 GEMM backend and ISA, integer GEMM).
void print_kernels_line(std::FILE* to = stdout);

// "\n", "\t" and "\\" escapes in a command-line string.
std::string unescape(const std::string& s);

}  // namespace lowbit::tools
