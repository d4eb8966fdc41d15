// Run-time ISA detection and the LOWBIT_MAX_CPU_ISA cap (isa.h).
#include "lowbit/engine/cpu/isa.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>

#include "lowbit/engine/error.h"

namespace lowbit::cpu {

namespace {

struct Level {
  Isa isa;
  const char* name;
  const char* onednn;  // ONEDNN_MAX_CPU_ISA value
};
constexpr Level kLevels[] = {
    {Isa::generic, "generic", "SSE41"},
    {Isa::avx2, "avx2", "AVX2"},
    {Isa::avx512, "avx512", "AVX512_CORE"},
    {Isa::avx512_vnni, "avx512_vnni", "AVX512_CORE_VNNI"},
    {Isa::avx512_bf16, "avx512_bf16", "AVX512_CORE_BF16"},
};

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
    return Isa::generic;
  if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")))
    return Isa::avx2;
  if (!__builtin_cpu_supports("avx512vnni")) return Isa::avx512;
  if (!__builtin_cpu_supports("avx512bf16")) return Isa::avx512_vnni;
  return Isa::avx512_bf16;
#else
  return Isa::generic;
#endif
}

Isa env_cap() {
  const char* v = std::getenv("LOWBIT_MAX_CPU_ISA");
  if (v == nullptr || *v == '\0') return Isa::avx512_bf16;
  return parse_isa(v, "LOWBIT_MAX_CPU_ISA");
}

Isa lower(Isa a, Isa b) { return static_cast<int>(a) < static_cast<int>(b) ? a : b; }

// The environment's cap applied to the detected level (computed once).
Isa base_level() {
  static const Isa level = lower(detect(), env_cap());
  return level;
}

std::atomic<Isa> g_cap{Isa::avx512_bf16};

}  // namespace

const char* isa_name(Isa isa) {
  for (const Level& l : kLevels)
    if (l.isa == isa) return l.name;
  return "?";
}

Isa parse_isa(const std::string& name, const char* what) {
  std::string s = name;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "all" || s == "native") return Isa::avx512_bf16;
  if (s == "avx512_core") return Isa::avx512;
  if (s == "avx512_core_vnni") return Isa::avx512_vnni;
  if (s == "avx512_core_bf16") return Isa::avx512_bf16;
  if (s == "sse41" || s == "sse4.1") return Isa::generic;
  for (const Level& l : kLevels)
    if (s == l.name) return l.isa;
  LOWBIT_FAIL(what, "='", name, "' is not an ISA level (generic, avx2, avx512, avx512_vnni, avx512_bf16, all)");
}

Isa detected_isa() {
  static const Isa level = detect();
  return level;
}

Isa max_isa() { return lower(base_level(), g_cap.load(std::memory_order_relaxed)); }

void set_isa_cap(Isa cap) { g_cap.store(cap, std::memory_order_relaxed); }

void apply_isa_cap_to_onednn() {
  const Isa cap = base_level();  // validates LOWBIT_MAX_CPU_ISA before oneDNN starts
  if (std::getenv("LOWBIT_MAX_CPU_ISA") == nullptr || std::getenv("ONEDNN_MAX_CPU_ISA") != nullptr) return;
  for (const Level& l : kLevels)
    if (l.isa == cap) setenv("ONEDNN_MAX_CPU_ISA", l.onednn, 0);
}

std::string cpu_model_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        return v;
      }
    }
  return "unknown";
}

const char* build_march() {
#ifdef LOWBIT_MARCH_NAME
  return LOWBIT_MARCH_NAME;
#else
  return "default";
#endif
}

std::string isa_description() {
  std::string s = cpu_model_name() + ", " + isa_name(detected_isa());
  if (max_isa() != detected_isa()) s += std::string(" capped at ") + isa_name(max_isa()) + " (LOWBIT_MAX_CPU_ISA)";
  return s + "; built for -march=" + build_march();
}

IsaCapGuard::IsaCapGuard(Isa cap) : prev_(g_cap.load()) { set_isa_cap(cap); }
IsaCapGuard::~IsaCapGuard() { set_isa_cap(prev_); }

}  // namespace lowbit::cpu
