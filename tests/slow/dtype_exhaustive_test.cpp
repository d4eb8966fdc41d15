// Exhaustive and randomized checks of the scalar codecs in engine/scalar_types.h against
// references that share no code with them:
//
//  * Definition: value tables built with std::ldexp from each format's (E, M, bias, special
//    codes) as written in the specs (IEEE 754 binary16, bfloat16, OCP OFP8 E4M3FN / E5M2,
//    OCP MX E2M1), and encoding by nearest-value search in double with ties to the even code.
//    Always runs.
//  * F16C: the x86 _cvtss_sh / _cvtsh_ss instructions (round-to-nearest-even immediate) for
//    f16. Runs when the CPU has F16C (the functions are compiled with target("f16c"), so no
//    -march flag is needed).
//  * CUDA: the host conversion functions in cuda_fp16.h / cuda_bf16.h / cuda_fp8.h /
//    cuda_fp4.h. Needs LOWBIT_HAVE_CUDA_HEADERS (set by tests/CMakeLists.txt with the include
//    path); otherwise those tests GTEST_SKIP.
//
// NaN: against CUDA only NaN-ness is compared, because CUDA canonicalizes (fp8 -> 0x7F,
// f16 -> 0x7FFF, bf16 -> 0x7FFF, always positive) while our codecs keep the sign (and for
// f16/bf16 the top payload bits); both are NaN encodings of the format. The exact codes our
// header documents (fp8 0x7F|sign, fp4 kFp4NaNCode, f16/bf16 quiet NaN with the sign kept)
// are checked in the Definition tests. See docs/dtypes.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LOWBIT_TEST_X86 1
#endif

#if defined(LOWBIT_HAVE_CUDA_HEADERS)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp4.h>
#include <cuda_fp8.h>
#endif

#include "lowbit/engine/scalar_types.h"

namespace lowbit {
namespace {

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::string describe(float x) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.9g (0x%08x)", static_cast<double>(x), bits_of(x));
  return buf;
}
std::string hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

// Counts mismatches and keeps the first few for the failure message.
struct Mismatches {
  uint64_t count = 0;
  std::vector<std::string> examples;
  void add(const std::string& what) {
    ++count;
    if (examples.size() < 12) examples.push_back(what);
  }
  void merge(const Mismatches& o) {
    count += o.count;
    for (const auto& e : o.examples)
      if (examples.size() < 12) examples.push_back(e);
  }
  std::string report() const {
    std::ostringstream os;
    os << count << " mismatches; first ones:";
    for (const auto& e : examples) os << "\n  " << e;
    return os.str();
  }
};

// Runs body(begin, end, mismatches) over [0, n) split across the hardware threads.
void parallel_ranges(uint64_t n, Mismatches& out,
                     const std::function<void(uint64_t, uint64_t, Mismatches&)>& body) {
  const unsigned nt = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  std::vector<Mismatches> parts(nt);
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < nt; ++t) {
    const uint64_t b = n * t / nt, e = n * (t + 1) / nt;
    threads.emplace_back([&, b, e, t] { body(b, e, parts[t]); });
  }
  for (auto& th : threads) th.join();
  for (const auto& p : parts) out.merge(p);
}

// ---------------------------------------------------------------------------------------------
// Format definitions and our codecs
// ---------------------------------------------------------------------------------------------

enum class Fmt { bf16, f16, e4m3, e5m2, e2m1 };
constexpr Fmt kAllFmts[] = {Fmt::bf16, Fmt::f16, Fmt::e4m3, Fmt::e5m2, Fmt::e2m1};

struct FormatSpec {
  const char* name;
  int E, M;
  // Special codes:
  //   ieee: all-ones exponent is inf (mantissa 0) or NaN (mantissa != 0): f16, bf16, E5M2.
  //   fn:   "finite + NaN" E4M3FN: only S.1111.111 is NaN, no inf.
  //   none: every code is finite (E2M1).
  enum Specials { ieee, fn, none } specials;
  bool saturates;  // overflow (and inf input) saturates to +-max finite instead of inf
};

FormatSpec spec(Fmt f) {
  switch (f) {
    case Fmt::bf16: return {"bf16", 8, 7, FormatSpec::ieee, false};
    case Fmt::f16: return {"f16", 5, 10, FormatSpec::ieee, false};
    case Fmt::e4m3: return {"fp8_e4m3", 4, 3, FormatSpec::fn, true};
    case Fmt::e5m2: return {"fp8_e5m2", 5, 2, FormatSpec::ieee, false};
    case Fmt::e2m1: return {"fp4_e2m1", 2, 1, FormatSpec::none, true};
  }
  return {};
}

uint32_t our_encode(Fmt f, float x) {
  switch (f) {
    case Fmt::bf16: return f32_to_bf16_bits(x);
    case Fmt::f16: return f32_to_f16_bits(x);
    case Fmt::e4m3: return f32_to_fp8_e4m3_bits(x);
    case Fmt::e5m2: return f32_to_fp8_e5m2_bits(x);
    case Fmt::e2m1: return f32_to_fp4_e2m1_bits(x);
  }
  return 0;
}
float our_decode(Fmt f, uint32_t c) {
  switch (f) {
    case Fmt::bf16: return bf16_bits_to_f32(static_cast<uint16_t>(c));
    case Fmt::f16: return f16_bits_to_f32(static_cast<uint16_t>(c));
    case Fmt::e4m3: return fp8_e4m3_bits_to_f32(static_cast<uint8_t>(c));
    case Fmt::e5m2: return fp8_e5m2_bits_to_f32(static_cast<uint8_t>(c));
    case Fmt::e2m1: return fp4_e2m1_bits_to_f32(static_cast<uint8_t>(c));
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Definition reference: value table from (E, M, bias) and nearest-even search.
// ---------------------------------------------------------------------------------------------

class DefinitionRef {
 public:
  explicit DefinitionRef(Fmt f) : s_(spec(f)) {
    bits_ = 1 + s_.E + s_.M;
    sign_bit_ = 1u << (s_.E + s_.M);
    const int bias = (1 << (s_.E - 1)) - 1;
    // Non-negative finite codes are 0 .. n-1 in every format here, in increasing value order.
    for (uint32_t code = 0; code < sign_bit_; ++code) {
      if (kind(code) != Kind::finite) break;
      const uint32_t e = code >> s_.M, m = code & ((1u << s_.M) - 1);
      const double v =
          e == 0 ? std::ldexp(static_cast<double>(m), 1 - bias - s_.M)
                 : std::ldexp(static_cast<double>((1u << s_.M) + m), static_cast<int>(e) - bias - s_.M);
      values_.push_back(v);
    }
    max_code_ = static_cast<uint32_t>(values_.size() - 1);
    const double max = values_.back(), prev = values_[values_.size() - 2];
    overflow_threshold_ = max + (max - prev) / 2;  // max + half an ulp of the top binade
    inf_code_ = ((1u << s_.E) - 1) << s_.M;  // meaningful for ieee formats only
  }

  enum class Kind { finite, inf, nan };
  Kind kind(uint32_t code) const {
    const uint32_t mag = code & (sign_bit_ - 1);
    const uint32_t e = mag >> s_.M, m = mag & ((1u << s_.M) - 1);
    const uint32_t exp_ones = (1u << s_.E) - 1;
    switch (s_.specials) {
      case FormatSpec::ieee:
        if (e == exp_ones) return m == 0 ? Kind::inf : Kind::nan;
        return Kind::finite;
      case FormatSpec::fn: return (e == exp_ones && m == (1u << s_.M) - 1) ? Kind::nan : Kind::finite;
      case FormatSpec::none: return Kind::finite;
    }
    return Kind::finite;
  }

  // Decoded value of a code (NaN codes decode to NaN).
  double value(uint32_t code) const {
    const double sign = (code & sign_bit_) ? -1.0 : 1.0;
    switch (kind(code)) {
      case Kind::nan: return std::numeric_limits<double>::quiet_NaN();
      case Kind::inf: return sign * std::numeric_limits<double>::infinity();
      case Kind::finite: return sign * values_[code & (sign_bit_ - 1)];
    }
    return 0;
  }

  // Expected code for a non-NaN input: round to nearest, ties to the even code; overflow to
  // inf (at or above max + ulp/2, where the tie goes to the even, out-of-range neighbour) or
  // saturation to max finite. Callers handle NaN inputs. `cursor` (optional) remembers the
  // last table position so monotone sweeps don't repeat the search.
  uint32_t encode(float x, uint32_t* cursor = nullptr) const {
    const uint32_t sign = std::signbit(x) ? sign_bit_ : 0u;
    const double a = std::fabs(static_cast<double>(x));
    if (s_.saturates) {
      if (a >= values_.back()) return sign | max_code_;
    } else if (a >= overflow_threshold_) {
      return sign | inf_code_;
    }
    const uint32_t lo = floor_index(a, cursor);  // values_[lo] <= a < values_[lo + 1]
    if (values_[lo] == a || lo == max_code_) return sign | lo;  // exact, or in (max, threshold)
    const uint32_t hi = lo + 1;
    // a - lo vs hi - a  <=>  2a vs lo + hi; both sides are exact in double (2a is a doubled
    // float; lo + hi has at most M + 2 significant bits since hi - lo is one ulp of lo).
    const double twice = 2 * a, sum = values_[lo] + values_[hi];
    if (twice < sum) return sign | lo;
    if (twice > sum) return sign | hi;
    return sign | ((lo & 1u) == 0 ? lo : hi);
  }

  const FormatSpec& fmt() const { return s_; }
  int bits() const { return bits_; }
  uint32_t num_codes() const { return 1u << bits_; }
  uint32_t sign_bit() const { return sign_bit_; }
  uint32_t max_code() const { return max_code_; }
  double max_finite() const { return values_.back(); }
  double overflow_threshold() const { return overflow_threshold_; }
  const std::vector<double>& values() const { return values_; }

 private:
  // Index of the largest table value <= a (a >= 0 and values_[0] == 0).
  uint32_t floor_index(double a, uint32_t* cursor) const {
    const uint32_t n = static_cast<uint32_t>(values_.size());
    if (cursor && *cursor < n && values_[*cursor] <= a) {
      uint32_t i = *cursor;
      while (i + 1 < n && values_[i + 1] <= a) ++i;
      return *cursor = i;
    }
    // Branch-free binary search.
    const double* base = values_.data();
    for (uint32_t len = n; len > 1;) {
      const uint32_t half = len / 2;
      base = base[half] <= a ? base + half : base;
      len -= half;
    }
    const uint32_t i = static_cast<uint32_t>(base - values_.data());
    if (cursor) *cursor = i;
    return i;
  }

  FormatSpec s_;
  int bits_ = 0;
  uint32_t sign_bit_ = 0, max_code_ = 0, inf_code_ = 0;
  double overflow_threshold_ = 0;
  std::vector<double> values_;  // non-negative finite values, indexed by code
};

const DefinitionRef& def_ref(Fmt f) {
  static const DefinitionRef refs[] = {DefinitionRef(Fmt::bf16), DefinitionRef(Fmt::f16),
                                       DefinitionRef(Fmt::e4m3), DefinitionRef(Fmt::e5m2),
                                       DefinitionRef(Fmt::e2m1)};
  return refs[static_cast<int>(f)];
}

// Checks our encode of x against the definition. NaN inputs must give the code our header
// documents: fp8 0x7F|sign, fp4 kFp4NaNCode, f16/bf16 a quiet NaN with the input's sign.
void check_encode_vs_definition(Fmt f, float x, Mismatches& mm, uint32_t* cursor = nullptr) {
  const DefinitionRef& ref = def_ref(f);
  const uint32_t got = our_encode(f, x);
  if (std::isnan(x)) {
    const uint32_t sign = std::signbit(x) ? ref.sign_bit() : 0u;
    bool ok;
    switch (f) {
      case Fmt::e4m3:
      case Fmt::e5m2: ok = got == (sign | 0x7Fu); break;
      case Fmt::e2m1: ok = got == kFp4NaNCode; break;
      default: {
        const uint32_t quiet_bit = 1u << (ref.fmt().M - 1);
        ok = ref.kind(got) == DefinitionRef::Kind::nan && (got & quiet_bit) && (got & ref.sign_bit()) == sign;
      }
    }
    if (!ok)
      mm.add(std::string(ref.fmt().name) + " encode(" + describe(x) + ") = " + hex(got) +
             ", not the documented NaN code");
    return;
  }
  const uint32_t want = ref.encode(x, cursor);
  if (got != want)
    mm.add(std::string(ref.fmt().name) + " encode(" + describe(x) + ") = " + hex(got) + ", definition says " +
           hex(want));
}

// Special f32 inputs for a format, derived from its definition table: every representable
// value, every exact tie between adjacent values and the floats just below/above it, the
// subnormal/normal boundaries, the overflow threshold and its neighbours, and f32 specials.
// Both signs.
std::vector<float> special_inputs(Fmt f) {
  const DefinitionRef& ref = def_ref(f);
  const auto& v = ref.values();
  std::vector<float> pos;
  auto add_around = [&](double d) {
    const float x = static_cast<float>(d);
    if (static_cast<double>(x) != d) return;  // only exactly representable points
    pos.push_back(x);
    pos.push_back(std::nextafter(x, 0.0f));
    pos.push_back(std::nextafter(x, std::numeric_limits<float>::infinity()));
  };
  for (size_t i = 0; i < v.size(); ++i) {
    add_around(v[i]);
    if (i + 1 < v.size()) add_around((v[i] + v[i + 1]) / 2);  // exact tie
  }
  add_around(v[1] / 2);  // half of the min subnormal: ties to 0
  add_around(v[1] / 4);
  add_around(ref.overflow_threshold());
  add_around(ref.max_finite() * 2);
  add_around(ref.max_finite() * 4);
  const float f32_specials[] = {0.0f,
                                float_of(0x00000001u),  // f32 min subnormal
                                float_of(0x007FFFFFu),  // f32 max subnormal
                                float_of(0x00800000u),  // f32 min normal
                                std::numeric_limits<float>::max(),
                                std::numeric_limits<float>::infinity(),
                                float_of(0x7FC00000u),  // quiet NaN
                                float_of(0x7F800001u),  // signaling NaN, smallest payload
                                float_of(0x7FA00000u),  // signaling NaN
                                float_of(0x7FFFFFFFu),  // quiet NaN, full payload
                                float_of(0x7FC02000u)};  // quiet NaN with f16-visible payload
  for (float s : f32_specials) pos.push_back(s);
  std::vector<float> all;
  for (float x : pos) {
    all.push_back(x);
    all.push_back(-x);
  }
  return all;
}

// ---------------------------------------------------------------------------------------------
// Definition tests (always run)
// ---------------------------------------------------------------------------------------------

TEST(DtypeCodecVsDefinition, DecodeEveryCode) {
  for (Fmt f : kAllFmts) {
    const DefinitionRef& ref = def_ref(f);
    Mismatches mm;
    for (uint32_t c = 0; c < ref.num_codes(); ++c) {
      const float got = our_decode(f, c);
      const double want = ref.value(c);
      if (std::isnan(want)) {
        if (!std::isnan(got) || std::signbit(got) != ((c & ref.sign_bit()) != 0))
          mm.add(std::string(ref.fmt().name) + " decode(" + hex(c) + ") = " + describe(got) +
                 ", want NaN with the code's sign");
      } else if (!(static_cast<double>(got) == want && std::signbit(got) == std::signbit(want))) {
        mm.add(std::string(ref.fmt().name) + " decode(" + hex(c) + ") = " + describe(got) +
               ", definition says " + std::to_string(want));
      }
    }
    EXPECT_EQ(mm.count, 0u) << ref.fmt().name << ": " << mm.report();
  }
}

TEST(DtypeCodecVsDefinition, EncodeOfEveryDecodedValueRoundTrips) {
  for (Fmt f : kAllFmts) {
    const DefinitionRef& ref = def_ref(f);
    Mismatches mm;
    for (uint32_t c = 0; c < ref.num_codes(); ++c) {
      if (ref.kind(c) == DefinitionRef::Kind::nan) continue;
      const float x = static_cast<float>(ref.value(c));  // exact: every format fits in f32
      const uint32_t got = our_encode(f, x);
      if (got != c)
        mm.add(std::string(ref.fmt().name) + " encode(" + describe(x) + ") = " + hex(got) + ", want " +
               hex(c));
    }
    EXPECT_EQ(mm.count, 0u) << ref.fmt().name << ": " << mm.report();
  }
}

TEST(DtypeCodecVsDefinition, EncodeSpecialValues) {
  for (Fmt f : kAllFmts) {
    Mismatches mm;
    const auto inputs = special_inputs(f);
    for (float x : inputs) check_encode_vs_definition(f, x, mm);
    EXPECT_EQ(mm.count, 0u) << spec(f).name << " (" << inputs.size() << " inputs): " << mm.report();
  }
}

constexpr uint64_t kRandomCount = uint64_t{1} << 26;

// The i-th random f32 bit pattern of the sweep (counter-based so threads can split it).
uint32_t random_bits(uint64_t i) {
  uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x243F6A8885A308D3ull;  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
}

TEST(DtypeCodecVsDefinition, EncodeRandomBitPatterns) {
  for (Fmt f : kAllFmts) {
    Mismatches mm;
    parallel_ranges(kRandomCount, mm, [f](uint64_t b, uint64_t e, Mismatches& m) {
      for (uint64_t i = b; i < e; ++i) check_encode_vs_definition(f, float_of(random_bits(i)), m);
    });
    EXPECT_EQ(mm.count, 0u) << spec(f).name << ": " << mm.report();
  }
}

// Every f32 (both signs) from a quarter of the min subnormal to four times the overflow
// threshold of the format; everything below rounds to +-0 and everything above overflows,
// which the random and special-value tests cover.
struct DenseRange {
  uint32_t lo, hi;  // f32 magnitude bit patterns [lo, hi)
};
DenseRange dense_range(Fmt f) {
  const DefinitionRef& ref = def_ref(f);
  return {bits_of(static_cast<float>(ref.values()[1] / 4)),
          bits_of(static_cast<float>(ref.overflow_threshold() * 4))};
}

TEST(DtypeCodecVsDefinition, DenseSweepFp8Fp4) {
  for (Fmt f : {Fmt::e4m3, Fmt::e5m2, Fmt::e2m1}) {
    const DenseRange r = dense_range(f);
    Mismatches mm;
    parallel_ranges(r.hi - r.lo, mm, [f, r](uint64_t b, uint64_t e, Mismatches& m) {
      uint32_t cursor = 0;  // magnitudes increase along the sweep
      for (uint64_t i = b; i < e; ++i) {
        const uint32_t u = r.lo + static_cast<uint32_t>(i);
        check_encode_vs_definition(f, float_of(u), m, &cursor);
        check_encode_vs_definition(f, float_of(u | 0x80000000u), m, &cursor);
      }
    });
    EXPECT_EQ(mm.count, 0u) << spec(f).name << ": " << mm.report();
  }
}

// ---------------------------------------------------------------------------------------------
// F16C reference for f16
// ---------------------------------------------------------------------------------------------

#if defined(LOWBIT_TEST_X86)
__attribute__((target("f16c"))) uint16_t f16c_encode(float x) {
  return static_cast<uint16_t>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float f16c_decode(uint16_t h) { return _cvtsh_ss(h); }
bool have_f16c() { return __builtin_cpu_supports("f16c"); }
#else
uint16_t f16c_encode(float) { return 0; }
float f16c_decode(uint16_t) { return 0; }
bool have_f16c() { return false; }
#endif

#define REQUIRE_F16C() \
  if (!have_f16c()) GTEST_SKIP() << "CPU has no F16C instructions (x86 only)"

TEST(DtypeCodecVsF16C, DecodeAll65536) {
  REQUIRE_F16C();
  Mismatches mm;
  for (uint32_t c = 0; c < 65536; ++c) {
    const float got = f16_bits_to_f32(static_cast<uint16_t>(c));
    const float want = f16c_decode(static_cast<uint16_t>(c));
    if (std::isnan(want)) {
      // F16C quiets signaling NaNs; ours widens the bits (payload kept, quiet bit as stored).
      // Require NaN, the same sign and the same payload apart from the quiet bit.
      const uint32_t quiet = 0x00400000u;
      if (!std::isnan(got) || (bits_of(got) | quiet) != (bits_of(want) | quiet))
        mm.add("decode(" + hex(c) + ") = " + describe(got) + ", F16C gives " + describe(want));
    } else if (bits_of(got) != bits_of(want)) {
      mm.add("decode(" + hex(c) + ") = " + describe(got) + ", F16C gives " + describe(want));
    }
  }
  EXPECT_EQ(mm.count, 0u) << mm.report();
}

TEST(DtypeCodecVsF16C, EncodeRoundTripOfAllFiniteValues) {
  REQUIRE_F16C();
  Mismatches mm;
  for (uint32_t c = 0; c < 65536; ++c) {
    if ((c & 0x7C00u) == 0x7C00u && (c & 0x3FFu) != 0) continue;  // NaN
    const float x = f16c_decode(static_cast<uint16_t>(c));
    const uint32_t got = f32_to_f16_bits(x), want = f16c_encode(x);
    if (want != c || got != want)
      mm.add("encode(" + describe(x) + ") = " + hex(got) + ", F16C gives " + hex(want) + ", code " + hex(c));
  }
  EXPECT_EQ(mm.count, 0u) << mm.report();
}

// F16C and our encoder both quiet NaNs and keep the sign and top 9 payload bits, so the
// comparison is bit-exact including NaN.
void check_f16_vs_f16c(float x, Mismatches& mm) {
  const uint32_t got = f32_to_f16_bits(x), want = f16c_encode(x);
  if (got != want) mm.add("f16 encode(" + describe(x) + ") = " + hex(got) + ", F16C gives " + hex(want));
}

TEST(DtypeCodecVsF16C, EncodeSpecialValues) {
  REQUIRE_F16C();
  Mismatches mm;
  for (float x : special_inputs(Fmt::f16)) check_f16_vs_f16c(x, mm);
  EXPECT_EQ(mm.count, 0u) << mm.report();
}

TEST(DtypeCodecVsF16C, EncodeRandomBitPatterns) {
  REQUIRE_F16C();
  Mismatches mm;
  parallel_ranges(kRandomCount, mm, [](uint64_t b, uint64_t e, Mismatches& m) {
    for (uint64_t i = b; i < e; ++i) check_f16_vs_f16c(float_of(random_bits(i)), m);
  });
  EXPECT_EQ(mm.count, 0u) << mm.report();
}

// All f32 (both signs) from 2^-26 (below half the min subnormal) up to 2^17 (above the
// overflow threshold 65520), plus the magnitudes below and above (inf and NaNs included)
// with a stride.
TEST(DtypeCodecVsF16C, DenseSweepF16Range) {
  REQUIRE_F16C();
  const uint32_t lo = bits_of(std::ldexp(1.0f, -26)), hi = bits_of(std::ldexp(1.0f, 17));
  Mismatches mm;
  parallel_ranges(hi - lo, mm, [lo](uint64_t b, uint64_t e, Mismatches& m) {
    for (uint64_t i = b; i < e; ++i) {
      const uint32_t u = lo + static_cast<uint32_t>(i);
      check_f16_vs_f16c(float_of(u), m);
      check_f16_vs_f16c(float_of(u | 0x80000000u), m);
    }
  });
  for (uint32_t u = 0; u < lo; u += 4099) check_f16_vs_f16c(float_of(u), mm);
  for (uint64_t u = hi; u <= 0x7FFFFFFFu; u += 997) check_f16_vs_f16c(float_of(static_cast<uint32_t>(u)), mm);
  EXPECT_EQ(mm.count, 0u) << mm.report();
}

// ---------------------------------------------------------------------------------------------
// CUDA header reference (host code paths of cuda_fp16/bf16/fp8/fp4.h)
// ---------------------------------------------------------------------------------------------

#if defined(LOWBIT_HAVE_CUDA_HEADERS)
#define REQUIRE_CUDA_HEADERS() (void)0

float cuda_half_raw_to_f32(__half_raw h) { return __half2float(__half(h)); }

uint32_t cuda_encode(Fmt f, float x) {
  switch (f) {
    case Fmt::bf16: return static_cast<__nv_bfloat16_raw>(__float2bfloat16_rn(x)).x;
    case Fmt::f16: return static_cast<__half_raw>(__float2half_rn(x)).x;
    case Fmt::e4m3: return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
    // __NV_NOSAT: finite overflow (>= 61440 = max + ulp/2) and inf give 0x7C (inf), which is
    // the IEEE-style rule our header documents for E5M2. (__NV_SATFINITE would give 0x7B.)
    case Fmt::e5m2: return __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2);
    case Fmt::e2m1: return __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest);
  }
  return 0;
}
float cuda_decode(Fmt f, uint32_t c) {
  switch (f) {
    case Fmt::bf16: {
      __nv_bfloat16_raw r;
      r.x = static_cast<unsigned short>(c);
      return __bfloat162float(__nv_bfloat16(r));
    }
    case Fmt::f16: {
      __half_raw r;
      r.x = static_cast<unsigned short>(c);
      return cuda_half_raw_to_f32(r);
    }
    case Fmt::e4m3:
      return cuda_half_raw_to_f32(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(c), __NV_E4M3));
    case Fmt::e5m2:
      return cuda_half_raw_to_f32(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(c), __NV_E5M2));
    case Fmt::e2m1:
      return cuda_half_raw_to_f32(__nv_cvt_fp4_to_halfraw(static_cast<__nv_fp4_storage_t>(c), __NV_E2M1));
  }
  return 0;
}

void check_encode_vs_cuda(Fmt f, float x, Mismatches& mm) {
  const uint32_t got = our_encode(f, x), want = cuda_encode(f, x);
  if (got == want) return;
  const DefinitionRef& ref = def_ref(f);
  if (std::isnan(x)) {
    // CUDA returns a canonical positive NaN (fp8 0x7F, f16/bf16 0x7FFF); fp4 has no NaN and
    // both sides use +6 (0x7). Compare NaN-ness; exact codes are checked by the Definition tests.
    const bool fp4 = f == Fmt::e2m1;
    if (!fp4 && ref.kind(got) == DefinitionRef::Kind::nan && ref.kind(want) == DefinitionRef::Kind::nan)
      return;
  }
  mm.add(std::string(ref.fmt().name) + " encode(" + describe(x) + ") = " + hex(got) + ", CUDA gives " +
         hex(want));
}
#else
#define REQUIRE_CUDA_HEADERS() \
  GTEST_SKIP() << "built without LOWBIT_HAVE_CUDA_HEADERS (CUDA toolkit headers not found)"
#endif

TEST(DtypeCodecVsCuda, DecodeEveryCode) {
  REQUIRE_CUDA_HEADERS();
#if defined(LOWBIT_HAVE_CUDA_HEADERS)
  for (Fmt f : kAllFmts) {
    const DefinitionRef& ref = def_ref(f);
    Mismatches mm;
    for (uint32_t c = 0; c < ref.num_codes(); ++c) {
      const float got = our_decode(f, c), want = cuda_decode(f, c);
      // CUDA's NaN decode is canonical (positive, 0x7FFF); compare NaN-ness only.
      const bool ok = std::isnan(want) ? std::isnan(got) : bits_of(got) == bits_of(want);
      if (!ok)
        mm.add(std::string(ref.fmt().name) + " decode(" + hex(c) + ") = " + describe(got) + ", CUDA gives " +
               describe(want));
    }
    EXPECT_EQ(mm.count, 0u) << ref.fmt().name << ": " << mm.report();
  }
#endif
}

TEST(DtypeCodecVsCuda, EncodeOfEveryDecodedValueRoundTrips) {
  REQUIRE_CUDA_HEADERS();
#if defined(LOWBIT_HAVE_CUDA_HEADERS)
  for (Fmt f : kAllFmts) {
    const DefinitionRef& ref = def_ref(f);
    Mismatches mm;
    for (uint32_t c = 0; c < ref.num_codes(); ++c) {
      const float x = cuda_decode(f, c);
      if (std::isnan(x)) continue;
      const uint32_t got = our_encode(f, x), want = cuda_encode(f, x);
      if (got != c || want != c)
        mm.add(std::string(ref.fmt().name) + " code " + hex(c) + " -> " + describe(x) + " -> ours " +
               hex(got) + ", CUDA " + hex(want));
    }
    EXPECT_EQ(mm.count, 0u) << ref.fmt().name << ": " << mm.report();
  }
#endif
}

TEST(DtypeCodecVsCuda, EncodeSpecialValues) {
  REQUIRE_CUDA_HEADERS();
#if defined(LOWBIT_HAVE_CUDA_HEADERS)
  for (Fmt f : kAllFmts) {
    Mismatches mm;
    for (float x : special_inputs(f)) check_encode_vs_cuda(f, x, mm);
    EXPECT_EQ(mm.count, 0u) << spec(f).name << ": " << mm.report();
  }
#endif
}

TEST(DtypeCodecVsCuda, EncodeRandomBitPatterns) {
  REQUIRE_CUDA_HEADERS();
#if defined(LOWBIT_HAVE_CUDA_HEADERS)
  for (Fmt f : kAllFmts) {
    Mismatches mm;
    parallel_ranges(kRandomCount, mm, [f](uint64_t b, uint64_t e, Mismatches& m) {
      for (uint64_t i = b; i < e; ++i) check_encode_vs_cuda(f, float_of(random_bits(i)), m);
    });
    EXPECT_EQ(mm.count, 0u) << spec(f).name << ": " << mm.report();
  }
#endif
}

TEST(DtypeCodecVsCuda, DenseSweepFp8Fp4) {
  REQUIRE_CUDA_HEADERS();
#if defined(LOWBIT_HAVE_CUDA_HEADERS)
  for (Fmt f : {Fmt::e4m3, Fmt::e5m2, Fmt::e2m1}) {
    const DenseRange r = dense_range(f);
    Mismatches mm;
    parallel_ranges(r.hi - r.lo, mm, [f, r](uint64_t b, uint64_t e, Mismatches& m) {
      for (uint64_t i = b; i < e; ++i) {
        const uint32_t u = r.lo + static_cast<uint32_t>(i);
        check_encode_vs_cuda(f, float_of(u), m);
        check_encode_vs_cuda(f, float_of(u | 0x80000000u), m);
      }
    });
    EXPECT_EQ(mm.count, 0u) << spec(f).name << ": " << mm.report();
  }
#endif
}

}  // namespace
}  // namespace lowbit
