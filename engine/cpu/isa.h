// The CPU's vector ISA, detected at run time, and the cap LOWBIT_MAX_CPU_ISA puts on it.
//
// Kernels that have several versions (the integer GEMM, bf16 widening, oneDNN's JIT kernels)
// ask `isa_allows(level)` and take the best one allowed, so a binary built for a portable
// baseline still uses AVX-512 where the CPU has it, and a test can force the smaller paths on
// a machine that has the bigger ones:
//
//   LOWBIT_MAX_CPU_ISA=avx2 ctest ...   (also caps oneDNN: ONEDNN_MAX_CPU_ISA is set from it
//                                        unless the user set that one)
//
// Levels are ordered; each includes the ones below it:
//   generic      what the build's compile-time baseline gives (no run-time vector kernels)
//   avx2         AVX2 + FMA + F16C (x86-64-v3)
//   avx512       AVX-512 F/BW/DQ/VL (x86-64-v4; oneDNN's avx512_core)
//   avx512_vnni  + AVX512_VNNI (vpdpbusd)
//   avx512_bf16  + AVX512_BF16 (vdpbf16ps)
// Code compiled for the build's baseline (LOWBIT_NATIVE) is not affected by the cap.
#pragma once
#include <string>

namespace lowbit::cpu {

enum class Isa { generic = 0, avx2, avx512, avx512_vnni, avx512_bf16 };

const char* isa_name(Isa isa);
// Parses a level name (case-insensitive; oneDNN's spellings avx512_core, avx512_core_vnni,
// avx512_core_bf16 and "all" are accepted); throws an Error naming `what` otherwise.
Isa parse_isa(const std::string& name, const char* what);

// The highest level this CPU supports.
Isa detected_isa();
// detected_isa() capped by LOWBIT_MAX_CPU_ISA (read once; a bad value throws an Error naming
// the variable) and by set_isa_cap().
Isa max_isa();
inline bool isa_allows(Isa level) { return static_cast<int>(level) <= static_cast<int>(max_isa()); }
// Lowers (or restores, up to the detected level and the environment's cap) the level the
// dispatchers may pick, for this process. Tests use it to run each kernel path; oneDNN's cap
// is fixed at its first use and is not changed by this.
void set_isa_cap(Isa cap);
// Applies the environment's cap to oneDNN (sets ONEDNN_MAX_CPU_ISA unless already set). Called
// by the GEMM front end before oneDNN's first use.
void apply_isa_cap_to_onednn();

// The build's compile-time baseline: "native", "x86-64-v3", ...
const char* build_march();

// One line: the CPU, its ISA level and the cap, the build baseline.
std::string isa_description();

// The CPU's model name (from /proc/cpuinfo; "unknown" if unreadable).
std::string cpu_model_name();

// Restores the previous cap on exit (tests).
class IsaCapGuard {
 public:
  explicit IsaCapGuard(Isa cap);
  ~IsaCapGuard();
  IsaCapGuard(const IsaCapGuard&) = delete;
  IsaCapGuard& operator=(const IsaCapGuard&) = delete;

 private:
  Isa prev_;
};

}  // namespace lowbit::cpu
