#include "cli.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include <omp.h>
#include <unistd.h>

#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/cpu/isa.h"
#include "lowbit/engine/error.h"
#include "lowbit/engine/text.h"
#include "lowbit/quant/scaled_matmul.h"

namespace lowbit::tools {

Args::Args(int argc, char** argv, std::set<std::string> value_options, std::set<std::string> flag_options) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a == "--") {
      positional_.push_back(a);
      continue;
    }
    const std::string name = a.substr(2);
    if (flag_options.count(name)) {
      flags_.insert(name);
    } else if (value_options.count(name)) {
      LOWBIT_CHECK(i + 1 < argc, "option --", name, " needs a value");
      values_[name] = argv[++i];
    } else {
      std::vector<std::string> all(value_options.begin(), value_options.end());
      all.insert(all.end(), flag_options.begin(), flag_options.end());
      const std::string best = closest_match(name, all);
      LOWBIT_FAIL("unknown option --", name, best.empty() ? "" : " (did you mean --" + best + "?)");
    }
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  const auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  return get(name).value_or(fallback);
}

int64_t Args::get_int(const std::string& name, int64_t fallback) const {
  const auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long long r = std::strtoll(v->c_str(), &end, 10);
  LOWBIT_CHECK(!v->empty() && end && *end == '\0', "option --", name, " must be an integer, got '", *v, "'");
  return r;
}

double Args::get_double(const std::string& name, double fallback) const {
  const auto v = get(name);
  if (!v) return fallback;
  char* end = nullptr;
  const double r = std::strtod(v->c_str(), &end);
  LOWBIT_CHECK(!v->empty() && end && *end == '\0', "option --", name, " must be a number, got '", *v, "'");
  return r;
}

std::string user_message(const char* what) { return error_text(what); }

namespace {

// libgomp's threads spin GOMP_SPINCOUNT iterations at a barrier before they sleep (300,000 by
// default, ~0.1-1 ms): on a machine where another process holds a core, the spinning thread keeps
// its core while its partner waits for one, and a step took 15x longer (bench/README.md
// "Contention"). A short spin keeps the idle-machine speed and degrades gracefully. libgomp reads
// its variables when it loads, so they are set here and the tool re-executes itself once; any
// OMP_WAIT_POLICY or GOMP_SPINCOUNT the user set is kept as it is.
constexpr const char* kSpinCount = "3000";

void set_openmp_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT") || std::getenv("LOWBIT_OMP_REEXEC")) return;
  setenv("GOMP_SPINCOUNT", kSpinCount, 1);
  setenv("LOWBIT_OMP_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: run on with libgomp's defaults
}

}  // namespace

void print_kernels_line(std::FILE* to) {
  std::fprintf(to, "cpu: %s | %d threads | gemm %s | int8/int4 gemm: %s\n", cpu::isa_description().c_str(),
              omp_get_max_threads(), cpu::gemm_kernels_description().c_str(),
              quant::integer_kernel_description().c_str());
}

int tool_main(const char* tool, int (*run)(int, char**), int argc, char** argv) {
  set_openmp_wait_policy(argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s\n", tool, user_message(e.what()).c_str());
    return 1;
  }
}

std::string unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace lowbit::tools
