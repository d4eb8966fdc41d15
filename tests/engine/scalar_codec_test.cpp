// Edge values of the scalar codecs in engine/scalar_types.h, written from the format
// definitions (IEEE 754 binary16, bfloat16, OCP OFP8 E4M3FN / E5M2, OCP MX E2M1) rather than
// from the codecs' own output. docs/dtypes.md has the same numbers in table form.
// The exhaustive comparisons against CUDA / F16C live in tests/slow/dtype_exhaustive_test.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "lowbit/engine/scalar_types.h"

namespace lowbit {
namespace {

float p2(int e) { return std::ldexp(1.0f, e); }  // 2^e, exact
const float kInf = std::numeric_limits<float>::infinity();
const float kNaN = std::numeric_limits<float>::quiet_NaN();

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Same value and same sign (so +0 and -0 differ).
void expect_same(float got, float want, const char* what, unsigned code) {
  EXPECT_TRUE(got == want && std::signbit(got) == std::signbit(want))
      << what << " code 0x" << std::hex << code << ": got " << got << ", want " << want;
}

// ---------------------------------------------------------------------------------------------
// FP4 E2M1: 1 sign, 2 exponent (bias 1), 1 mantissa; no inf, no NaN.
// ---------------------------------------------------------------------------------------------

TEST(CodecFp4E2M1, DecodesAll16Codes) {
  // Positive half: e=0 subnormals 0, 0.5; e=1: 1, 1.5; e=2: 2, 3; e=3: 4, 6.
  const float positive[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (unsigned code = 0; code < 16; ++code) {
    const float mag = positive[code & 7u];
    const float want = (code & 8u) ? -mag : mag;
    expect_same(fp4_e2m1_bits_to_f32(static_cast<uint8_t>(code)), want, "fp4 decode", code);
  }
}

TEST(CodecFp4E2M1, DecodeIgnoresHighNibble) {
  EXPECT_EQ(fp4_e2m1_bits_to_f32(0xF3), 1.5f);  // low nibble 0x3
  EXPECT_EQ(fp4_e2m1_bits_to_f32(0x3F), -6.0f);  // low nibble 0xF
}

TEST(CodecFp4E2M1, EncodesEveryValueExactly) {
  const float positive[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (unsigned i = 0; i < 8; ++i) {
    EXPECT_EQ(f32_to_fp4_e2m1_bits(positive[i]), i) << positive[i];
    EXPECT_EQ(f32_to_fp4_e2m1_bits(-positive[i]), 8u + i) << -positive[i];
  }
}

TEST(CodecFp4E2M1, TiesRoundToEvenCode) {
  struct Case { float x; uint8_t code; };
  const Case cases[] = {
      {0.25f, 0x0},  // 0 | 0.5   -> 0   (code 0 even)
      {0.75f, 0x2},  // 0.5 | 1   -> 1.0
      {1.25f, 0x2},  // 1 | 1.5   -> 1.0
      {1.75f, 0x4},  // 1.5 | 2   -> 2.0
      {2.5f, 0x4},   // 2 | 3     -> 2.0
      {3.5f, 0x6},   // 3 | 4     -> 4.0
      {5.0f, 0x6},   // 4 | 6     -> 4.0
      {-0.75f, 0xA}, {-2.5f, 0xC}, {-5.0f, 0xE},
  };
  for (const Case& c : cases) EXPECT_EQ(f32_to_fp4_e2m1_bits(c.x), c.code) << c.x;
}

TEST(CodecFp4E2M1, JustOffTiesRoundToNearest) {
  EXPECT_EQ(f32_to_fp4_e2m1_bits(std::nextafter(0.25f, 1.0f)), 0x1);  // -> 0.5
  EXPECT_EQ(f32_to_fp4_e2m1_bits(std::nextafter(0.25f, 0.0f)), 0x0);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(std::nextafter(1.25f, 2.0f)), 0x3);  // -> 1.5
  EXPECT_EQ(f32_to_fp4_e2m1_bits(std::nextafter(5.0f, 6.0f)), 0x7);   // -> 6
  EXPECT_EQ(f32_to_fp4_e2m1_bits(std::nextafter(5.0f, 0.0f)), 0x6);   // -> 4
  EXPECT_EQ(f32_to_fp4_e2m1_bits(0.1f), 0x0);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(-0.1f), 0x8);  // -0
}

TEST(CodecFp4E2M1, SaturatesToSix) {
  EXPECT_EQ(f32_to_fp4_e2m1_bits(6.5f), 0x7);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(7.0f), 0x7);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(1e30f), 0x7);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(kInf), 0x7);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(-100.0f), 0xF);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(-kInf), 0xF);
}

TEST(CodecFp4E2M1, NaNGivesDocumentedCode) {
  // E2M1 has no NaN; the codec's documented stand-in is kFp4NaNCode = 0x7 (+6) for either sign.
  EXPECT_EQ(kFp4NaNCode, 0x7);
  EXPECT_EQ(fp4_e2m1_bits_to_f32(kFp4NaNCode), 6.0f);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(kNaN), kFp4NaNCode);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(-kNaN), kFp4NaNCode);
  EXPECT_EQ(f32_to_fp4_e2m1_bits(float_of(0x7F800001u)), kFp4NaNCode);  // signaling
}

TEST(CodecFp4E2M1, ResultFitsInLowNibble) {
  const float xs[] = {-kInf, -6.0f, -0.0f, 0.0f, 0.3f, 6.0f, kInf, kNaN, -kNaN};
  for (float x : xs) EXPECT_LT(f32_to_fp4_e2m1_bits(x), 16) << x;
}

// ---------------------------------------------------------------------------------------------
// FP8 E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa; S.1111.111 is NaN, no inf.
// ---------------------------------------------------------------------------------------------

TEST(CodecFp8E4M3, DecodesKeyCodes) {
  struct Case { uint8_t code; float value; };
  const Case cases[] = {
      {0x00, 0.0f},          {0x80, -0.0f},
      {0x01, p2(-9)},        // min subnormal 0.001 * 2^-6
      {0x07, 7 * p2(-9)},    // max subnormal
      {0x08, p2(-6)},        // min normal
      {0x38, 1.0f},          // exponent field 7 = bias
      {0x3C, 1.5f},
      {0x77, 240.0f},        // 1.111 * 2^7
      {0x78, 256.0f},
      {0x7E, 448.0f},        // max finite 1.110 * 2^8 (1.111 * 2^8 is NaN)
      {0xFE, -448.0f},       {0x81, -p2(-9)},
  };
  for (const Case& c : cases) expect_same(fp8_e4m3_bits_to_f32(c.code), c.value, "e4m3 decode", c.code);
  EXPECT_TRUE(std::isnan(fp8_e4m3_bits_to_f32(0x7F)));
  EXPECT_TRUE(std::isnan(fp8_e4m3_bits_to_f32(0xFF)));
  // Exponent field 15 with mantissa != 111 is an ordinary finite value (no inf in E4M3FN).
  EXPECT_EQ(fp8_e4m3_bits_to_f32(0x78), 256.0f);
  EXPECT_EQ(fp8_e4m3_bits_to_f32(0x7D), 416.0f);
}

TEST(CodecFp8E4M3, EncodesKeyValues) {
  EXPECT_EQ(f32_to_fp8_e4m3_bits(0.0f), 0x00);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(-0.0f), 0x80);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(1.0f), 0x38);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(-1.5f), 0xBC);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(p2(-9)), 0x01);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(p2(-6)), 0x08);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(448.0f), 0x7E);
}

TEST(CodecFp8E4M3, TiesRoundToEvenCode) {
  EXPECT_EQ(f32_to_fp8_e4m3_bits(1.0625f), 0x38);   // 1 | 1.125 -> 1 (mantissa 000)
  EXPECT_EQ(f32_to_fp8_e4m3_bits(1.1875f), 0x3A);   // 1.125 | 1.25 -> 1.25 (010)
  EXPECT_EQ(f32_to_fp8_e4m3_bits(-1.1875f), 0xBA);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(248.0f), 0x78);    // 240 | 256 -> 256 (binade carry)
  EXPECT_EQ(f32_to_fp8_e4m3_bits(std::nextafter(1.0625f, 2.0f)), 0x39);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(std::nextafter(1.1875f, 0.0f)), 0x39);
}

TEST(CodecFp8E4M3, Subnormals) {
  EXPECT_EQ(f32_to_fp8_e4m3_bits(p2(-10)), 0x00);  // half the min subnormal: tie -> 0
  EXPECT_EQ(f32_to_fp8_e4m3_bits(-p2(-10)), 0x80);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(std::nextafter(p2(-10), 1.0f)), 0x01);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(3 * p2(-10)), 0x02);   // 1 | 2 (x 2^-9) -> 2
  EXPECT_EQ(f32_to_fp8_e4m3_bits(5 * p2(-10)), 0x02);   // 2 | 3 -> 2
  EXPECT_EQ(f32_to_fp8_e4m3_bits(15 * p2(-10)), 0x08);  // max subnormal 7 | min normal 8 -> 8
  EXPECT_EQ(f32_to_fp8_e4m3_bits(float_of(0x00000001u)), 0x00);  // f32 min subnormal
}

TEST(CodecFp8E4M3, SaturatesTo448) {
  EXPECT_EQ(f32_to_fp8_e4m3_bits(460.0f), 0x7E);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(464.0f), 0x7E);  // 448 + ulp/2: the odd neighbour 480 would be NaN
  EXPECT_EQ(f32_to_fp8_e4m3_bits(500.0f), 0x7E);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(1e30f), 0x7E);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(kInf), 0x7E);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(-500.0f), 0xFE);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(-kInf), 0xFE);
}

TEST(CodecFp8E4M3, NaNKeepsSign) {
  EXPECT_EQ(f32_to_fp8_e4m3_bits(kNaN), 0x7F);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(-kNaN), 0xFF);
  EXPECT_EQ(f32_to_fp8_e4m3_bits(float_of(0x7F800001u)), 0x7F);
}

// ---------------------------------------------------------------------------------------------
// FP8 E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa; IEEE-style inf and NaN.
// ---------------------------------------------------------------------------------------------

TEST(CodecFp8E5M2, DecodesKeyCodes) {
  struct Case { uint8_t code; float value; };
  const Case cases[] = {
      {0x00, 0.0f},       {0x80, -0.0f},
      {0x01, p2(-16)},    // min subnormal 0.01 * 2^-14
      {0x03, 3 * p2(-16)},
      {0x04, p2(-14)},    // min normal
      {0x3C, 1.0f},
      {0x3E, 1.5f},
      {0x7B, 57344.0f},   // max finite 1.11 * 2^15
      {0xFB, -57344.0f},
      {0x7C, kInf},       {0xFC, -kInf},
  };
  for (const Case& c : cases) expect_same(fp8_e5m2_bits_to_f32(c.code), c.value, "e5m2 decode", c.code);
  for (uint8_t c : {0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF})
    EXPECT_TRUE(std::isnan(fp8_e5m2_bits_to_f32(c))) << "code " << int(c);
}

TEST(CodecFp8E5M2, EncodesWithTiesAndSubnormals) {
  EXPECT_EQ(f32_to_fp8_e5m2_bits(1.0f), 0x3C);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(-0.0f), 0x80);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(1.125f), 0x3C);        // 1 | 1.25 -> 1
  EXPECT_EQ(f32_to_fp8_e5m2_bits(1.375f), 0x3E);        // 1.25 | 1.5 -> 1.5
  EXPECT_EQ(f32_to_fp8_e5m2_bits(1.875f), 0x40);        // 1.75 | 2 -> 2
  EXPECT_EQ(f32_to_fp8_e5m2_bits(p2(-17)), 0x00);       // half min subnormal
  EXPECT_EQ(f32_to_fp8_e5m2_bits(std::nextafter(p2(-17), 1.0f)), 0x01);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(3 * p2(-17)), 0x02);   // 1 | 2 (x 2^-16) -> 2
  EXPECT_EQ(f32_to_fp8_e5m2_bits(7 * p2(-17)), 0x04);   // max sub 3 | min normal 4 -> 4
}

TEST(CodecFp8E5M2, OverflowsToInf) {
  EXPECT_EQ(f32_to_fp8_e5m2_bits(57344.0f), 0x7B);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(std::nextafter(61440.0f, 0.0f)), 0x7B);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(61440.0f), 0x7C);   // 57344 + ulp/2: tie goes to even 2^16 -> inf
  EXPECT_EQ(f32_to_fp8_e5m2_bits(1e6f), 0x7C);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(kInf), 0x7C);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(-61440.0f), 0xFC);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(-kInf), 0xFC);
}

TEST(CodecFp8E5M2, NaNKeepsSign) {
  EXPECT_EQ(f32_to_fp8_e5m2_bits(kNaN), 0x7F);
  EXPECT_EQ(f32_to_fp8_e5m2_bits(-kNaN), 0xFF);
}

// ---------------------------------------------------------------------------------------------
// bf16: 1 sign, 8 exponent (bias 127), 7 mantissa.
// ---------------------------------------------------------------------------------------------

TEST(CodecBf16, DecodesKeyCodes) {
  expect_same(bf16_bits_to_f32(0x3F80), 1.0f, "bf16", 0x3F80);
  expect_same(bf16_bits_to_f32(0x8000), -0.0f, "bf16", 0x8000);
  expect_same(bf16_bits_to_f32(0x0001), p2(-133), "bf16", 0x0001);              // min subnormal
  expect_same(bf16_bits_to_f32(0x0080), p2(-126), "bf16", 0x0080);              // min normal
  expect_same(bf16_bits_to_f32(0x7F7F), (2.0f - p2(-7)) * p2(127), "bf16", 0x7F7F);  // max finite
  expect_same(bf16_bits_to_f32(0x7F80), kInf, "bf16", 0x7F80);
  expect_same(bf16_bits_to_f32(0xFF80), -kInf, "bf16", 0xFF80);
  EXPECT_TRUE(std::isnan(bf16_bits_to_f32(0x7FC0)));
  EXPECT_TRUE(std::isnan(bf16_bits_to_f32(0x7F81)));
}

TEST(CodecBf16, TiesRoundToEven) {
  EXPECT_EQ(f32_to_bf16_bits(1.0f + p2(-8)), 0x3F80);       // 1 | 1+2^-7 -> 1
  EXPECT_EQ(f32_to_bf16_bits(1.0f + 3 * p2(-8)), 0x3F82);   // 1+2^-7 | 1+2^-6 -> even
  EXPECT_EQ(f32_to_bf16_bits(std::nextafter(1.0f + p2(-8), 2.0f)), 0x3F81);
  EXPECT_EQ(f32_to_bf16_bits(-(1.0f + p2(-8))), 0xBF80);
  EXPECT_EQ(f32_to_bf16_bits(2.0f - p2(-8)), 0x4000);       // 1.1111111 | 2 -> 2 (carry)
}

TEST(CodecBf16, SubnormalsAndOverflow) {
  EXPECT_EQ(f32_to_bf16_bits(p2(-133)), 0x0001);
  EXPECT_EQ(f32_to_bf16_bits(p2(-134)), 0x0000);            // tie -> 0
  EXPECT_EQ(f32_to_bf16_bits(3 * p2(-134)), 0x0002);        // tie 1 | 2 -> 2
  EXPECT_EQ(f32_to_bf16_bits(float_of(0x00000001u)), 0x0000);
  EXPECT_EQ(f32_to_bf16_bits(-float_of(0x00000001u)), 0x8000);
  const float threshold = (2.0f - p2(-8)) * p2(127);         // max + ulp/2
  EXPECT_EQ(f32_to_bf16_bits(std::nextafter(threshold, 0.0f)), 0x7F7F);
  EXPECT_EQ(f32_to_bf16_bits(threshold), 0x7F80);
  EXPECT_EQ(f32_to_bf16_bits(std::numeric_limits<float>::max()), 0x7F80);
  EXPECT_EQ(f32_to_bf16_bits(kInf), 0x7F80);
  EXPECT_EQ(f32_to_bf16_bits(-kInf), 0xFF80);
}

TEST(CodecBf16, NaNStaysQuietNaN) {
  for (uint32_t nan : {0x7FC00000u, 0x7F800001u, 0x7FFFFFFFu, 0xFF800001u}) {
    const uint16_t b = f32_to_bf16_bits(float_of(nan));
    EXPECT_EQ(b & 0x7F80u, 0x7F80u) << std::hex << nan;
    EXPECT_NE(b & 0x0040u, 0u) << "quiet bit " << std::hex << nan;
    EXPECT_EQ(b & 0x8000u, (nan >> 16) & 0x8000u) << "sign " << std::hex << nan;
  }
}

// ---------------------------------------------------------------------------------------------
// f16 (IEEE binary16): 1 sign, 5 exponent (bias 15), 10 mantissa.
// ---------------------------------------------------------------------------------------------

TEST(CodecF16, DecodesKeyCodes) {
  expect_same(f16_bits_to_f32(0x3C00), 1.0f, "f16", 0x3C00);
  expect_same(f16_bits_to_f32(0x8000), -0.0f, "f16", 0x8000);
  expect_same(f16_bits_to_f32(0x0001), p2(-24), "f16", 0x0001);          // min subnormal
  expect_same(f16_bits_to_f32(0x03FF), 1023 * p2(-24), "f16", 0x03FF);   // max subnormal
  expect_same(f16_bits_to_f32(0x0400), p2(-14), "f16", 0x0400);          // min normal
  expect_same(f16_bits_to_f32(0x7BFF), 65504.0f, "f16", 0x7BFF);         // max finite
  expect_same(f16_bits_to_f32(0xFBFF), -65504.0f, "f16", 0xFBFF);
  expect_same(f16_bits_to_f32(0x7C00), kInf, "f16", 0x7C00);
  expect_same(f16_bits_to_f32(0xFC00), -kInf, "f16", 0xFC00);
  EXPECT_TRUE(std::isnan(f16_bits_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_bits_to_f32(0x7C01)));
}

TEST(CodecF16, OverflowAt65520) {
  EXPECT_EQ(f32_to_f16_bits(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16_bits(65519.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16_bits(std::nextafter(65520.0f, 0.0f)), 0x7BFF);
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7C00);  // 65504 + ulp/2: tie to even 2^16 -> inf
  EXPECT_EQ(f32_to_f16_bits(-65520.0f), 0xFC00);
  EXPECT_EQ(f32_to_f16_bits(1e5f), 0x7C00);
  EXPECT_EQ(f32_to_f16_bits(std::numeric_limits<float>::max()), 0x7C00);
  EXPECT_EQ(f32_to_f16_bits(kInf), 0x7C00);
  EXPECT_EQ(f32_to_f16_bits(-kInf), 0xFC00);
}

TEST(CodecF16, TiesRoundToEven) {
  EXPECT_EQ(f32_to_f16_bits(1.0f + p2(-11)), 0x3C00);
  EXPECT_EQ(f32_to_f16_bits(1.0f + 3 * p2(-11)), 0x3C02);
  EXPECT_EQ(f32_to_f16_bits(std::nextafter(1.0f + p2(-11), 2.0f)), 0x3C01);
  EXPECT_EQ(f32_to_f16_bits(2.0f - p2(-11)), 0x4000);  // carry into the exponent
  EXPECT_EQ(f32_to_f16_bits(-(1.0f + p2(-11))), 0xBC00);
}

TEST(CodecF16, Subnormals) {
  EXPECT_EQ(f32_to_f16_bits(p2(-24)), 0x0001);
  EXPECT_EQ(f32_to_f16_bits(p2(-25)), 0x0000);             // tie -> 0
  EXPECT_EQ(f32_to_f16_bits(-p2(-25)), 0x8000);
  EXPECT_EQ(f32_to_f16_bits(std::nextafter(p2(-25), 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16_bits(3 * p2(-25)), 0x0002);         // 1 | 2 -> 2
  EXPECT_EQ(f32_to_f16_bits(1023 * p2(-24)), 0x03FF);
  EXPECT_EQ(f32_to_f16_bits(2047 * p2(-25)), 0x0400);      // max sub | min normal -> min normal
  EXPECT_EQ(f32_to_f16_bits(p2(-14)), 0x0400);
  EXPECT_EQ(f32_to_f16_bits(float_of(0x00000001u)), 0x0000);
  EXPECT_EQ(f32_to_f16_bits(-0.0f), 0x8000);
}

TEST(CodecF16, NaNStaysQuietNaN) {
  for (uint32_t nan : {0x7FC00000u, 0x7F800001u, 0x7FFFFFFFu, 0xFFC00000u}) {
    const uint16_t h = f32_to_f16_bits(float_of(nan));
    EXPECT_EQ(h & 0x7C00u, 0x7C00u) << std::hex << nan;
    EXPECT_NE(h & 0x0200u, 0u) << "quiet bit " << std::hex << nan;
    EXPECT_EQ(h & 0x8000u, (nan >> 16) & 0x8000u) << "sign " << std::hex << nan;
  }
}

// ---------------------------------------------------------------------------------------------
// Storage wrappers go through the same codecs.
// ---------------------------------------------------------------------------------------------

TEST(CodecStorageTypes, WrapTheCodecs) {
  EXPECT_EQ(BFloat16(1.0f).bits, 0x3F80);
  EXPECT_EQ(Half(65520.0f).bits, 0x7C00);
  EXPECT_EQ(Float8E4M3(500.0f).bits, 0x7E);
  EXPECT_EQ(Float8E5M2(-kInf).bits, 0xFC);
  EXPECT_EQ(static_cast<float>(Float8E4M3(0.1f)), 0.1015625f);  // 13 * 2^-7, nearest to 0.1
  EXPECT_EQ(convert<float>(Half(1.5f)), 1.5f);
  EXPECT_EQ(convert<BFloat16>(Half(3.0f)).bits, 0x4040);
}

}  // namespace
}  // namespace lowbit
