// The branch-free element functions the fused fake-quant kernels and the codecs share
// (quant/element_round.h, quant/block_codecs.h) against the definitions they replace: E2M1 /
// E4M3 / E5M2 / f16 rounding against the engine codecs (decode(encode(t)), and encode(value) ==
// encode(t)), and the GGUF Q4_0 / Q8_0 codes and masks against ggml's trunc / roundf
// formulation. Dense sweeps: every float around every grid value and every midpoint (ties),
// every top-16-bit pattern with edge low bits, random bit patterns and special values. (A
// one-off sweep over all 2^32 floats found no difference either; it takes minutes, so it is not
// part of the suite.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "lowbit/quant/block_codecs.h"
#include "lowbit/quant/element_round.h"

namespace lowbit::quant {
namespace {

uint32_t bits(float f) { return f32_bits(f); }

struct Grid {
  const char* name;
  float max;
  float (*round)(float);
  float (*reference)(float);  // decode(encode(t)) with the engine codec
  uint32_t (*code)(float);    // engine code of t
  std::vector<float> values;  // positive grid values in increasing order, 0 first
};

float ref_e2m1(float t) { return fp4_e2m1_bits_to_f32(f32_to_fp4_e2m1_bits(t)); }
float ref_e4m3(float t) { return fp8_e4m3_bits_to_f32(f32_to_fp8_e4m3_bits(t)); }
float ref_e5m2(float t) { return fp8_e5m2_bits_to_f32(f32_to_fp8_e5m2_bits(t)); }
float ref_f16(float t) { return f16_bits_to_f32(f32_to_f16_bits(t)); }
uint32_t code_e2m1(float t) { return f32_to_fp4_e2m1_bits(t); }
uint32_t code_e4m3(float t) { return f32_to_fp8_e4m3_bits(t); }
uint32_t code_e5m2(float t) { return f32_to_fp8_e5m2_bits(t); }
uint32_t code_f16(float t) { return f32_to_f16_bits(t); }

std::vector<Grid> grids() {
  std::vector<Grid> g = {
      {"e2m1", 6.0f, e2m1_round, ref_e2m1, code_e2m1, {}},
      {"e4m3", 448.0f, e4m3_round, ref_e4m3, code_e4m3, {}},
      {"e5m2", 57344.0f, e5m2_round, ref_e5m2, code_e5m2, {}},
      {"f16", 65504.0f, f16_round, ref_f16, code_f16, {}},
  };
  for (int c = 0; c < 8; ++c) g[0].values.push_back(fp4_e2m1_bits_to_f32(static_cast<uint8_t>(c)));
  for (int c = 0; c < 0x7F; ++c) g[1].values.push_back(fp8_e4m3_bits_to_f32(static_cast<uint8_t>(c)));
  for (int c = 0; c < 0x7C; ++c) g[2].values.push_back(fp8_e5m2_bits_to_f32(static_cast<uint8_t>(c)));
  for (int c = 0; c < 0x7C00; ++c) g[3].values.push_back(f16_bits_to_f32(static_cast<uint16_t>(c)));
  return g;
}

// Checks t and -t (when within the grid's max); returns false after reporting a mismatch.
bool check(const Grid& g, float t) {
  for (float v : {t, -t}) {
    if (!(std::fabs(v) <= g.max)) continue;
    const float got = g.round(v), want = g.reference(v);
    if (bits(got) != bits(want)) {
      ADD_FAILURE() << g.name << " round(" << v << " = 0x" << std::hex << bits(v) << ") = " << got << ", codec gives "
                    << want;
      return false;
    }
    if (g.code(got) != g.code(v)) {
      ADD_FAILURE() << g.name << ": the value " << got << " of " << v << " does not encode to its code";
      return false;
    }
  }
  return true;
}

TEST(ElementRound, EqualsTheEngineCodecsAroundEveryGridValueAndTie) {
  for (const Grid& g : grids()) {
    SCOPED_TRACE(g.name);
    std::vector<float> anchors;
    for (size_t i = 0; i < g.values.size(); ++i) {
      anchors.push_back(g.values[i]);
      if (i + 1 < g.values.size()) anchors.push_back((g.values[i] + g.values[i + 1]) / 2);  // exact in f32
    }
    for (float a : anchors) {
      float lo = a, hi = a;
      for (int k = 0; k < 8; ++k) {
        ASSERT_TRUE(check(g, lo));
        ASSERT_TRUE(check(g, hi));
        lo = std::nextafter(lo, 0.0f);
        hi = std::nextafter(hi, g.max);
      }
    }
  }
}

TEST(ElementRound, EqualsTheEngineCodecsOnBitPatterns) {
  const uint32_t lows[] = {0x0000, 0x0001, 0x0FFF, 0x1000, 0x1001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x5A3C};
  std::mt19937 rng(7);
  for (const Grid& g : grids()) {
    SCOPED_TRACE(g.name);
    for (uint32_t hi = 0; hi < 0x8000; ++hi)  // the sign is covered by check()
      for (uint32_t lo : lows) ASSERT_TRUE(check(g, f32_from_bits(hi << 16 | lo)));
    for (int i = 0; i < 200000; ++i) ASSERT_TRUE(check(g, f32_from_bits(static_cast<uint32_t>(rng()) & 0x7FFFFFFFu)));
    const float specials[] = {0.0f, std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::min(), g.max,
                              std::nextafter(g.max, 0.0f)};
    for (float t : specials) ASSERT_TRUE(check(g, t));
    EXPECT_TRUE(std::signbit(g.round(-0.0f)));
    EXPECT_TRUE(std::isnan(g.round(std::numeric_limits<float>::quiet_NaN())));
  }
  // f16 overflows to +-inf as the codec does (65520 is the first value that rounds past 65504).
  for (float t : {65519.996f, 65520.0f, 1e6f, 3e38f, std::numeric_limits<float>::infinity()}) {
    EXPECT_EQ(bits(f16_round(t)), bits(ref_f16(t))) << t;
    EXPECT_EQ(bits(f16_round(-t)), bits(ref_f16(-t))) << -t;
  }
}

// ggml's formulation, as block_codecs.h had it: Q4_0 min(15, trunc(v)) with clipping to
// [0, 15] and NaN -> 8; Q8_0 roundf(v) with clipping to +-127 and NaN -> 0.
int ref_q4_0(float v, bool* kept) {
  *kept = !(v >= 16.0f || v < 0.0f);
  if (v != v) return 8;
  if (v >= 16.0f) return 15;
  if (v < 0.0f) return 0;
  return std::min(15, static_cast<int>(std::trunc(v)));
}
int ref_q8_0(float v, bool* kept) {
  *kept = !(v >= 127.5f || v <= -127.5f);
  if (v != v) return 0;
  if (v >= 127.5f) return 127;
  if (v <= -127.5f) return -127;
  return static_cast<int>(std::roundf(v));
}

void check_gguf(float v) {
  bool kept4 = false, kept8 = false;
  const int w4 = ref_q4_0(v, &kept4), w8 = ref_q8_0(v, &kept8);
  const float e4 = q4_0_element(v), e8 = q8_0_element(v);
  EXPECT_EQ(code_of_element(Format::gguf_q4_0, e4), w4) << v;
  EXPECT_EQ(e4 - 8.0f, static_cast<float>(w4 - 8)) << v;
  EXPECT_EQ(q4_0_kept(v), kept4) << v;
  EXPECT_EQ(static_cast<int8_t>(code_of_element(Format::gguf_q8_0, e8)), w8) << v;
  EXPECT_EQ(bits(e8), bits(static_cast<float>(w8))) << v;  // integer codes: never -0
  EXPECT_EQ(q8_0_kept(v), kept8) << v;
}

TEST(ElementRound, GgufCodesAndMasksEqualGgmlsFormulas) {
  for (int k = -2400; k <= 2400; ++k) {  // every multiple of 1/16 in [-150, 150]: ties included
    const float v = static_cast<float>(k) / 16.0f;
    check_gguf(v);
    check_gguf(std::nextafter(v, -INFINITY));
    check_gguf(std::nextafter(v, INFINITY));
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1e30f, -1e30f, inf, -inf, std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()})
    check_gguf(v);
  std::mt19937 rng(11);
  for (int i = 0; i < 200000; ++i) check_gguf(f32_from_bits(static_cast<uint32_t>(rng())));
}

}  // namespace
}  // namespace lowbit::quant
