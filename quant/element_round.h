// Round to nearest, ties to even, onto the E2M1 / E4M3 / E5M2 / f16 grids, returning the grid
// value in f32 (sign and -0 kept, NaN stays NaN) instead of a code. For every t within the
// format's max the result equals decoding the engine codec's code of t (e.g.
// fp8_e4m3_bits_to_f32(f32_to_fp8_e4m3_bits(t))), so the code is recovered exactly by encoding
// the value (tests/quant/element_round_test.cpp checks both on dense sweeps). Branch-free, so
// the fused fake-quant loops vectorize; LOWBIT_HD like the codecs built on them.
#pragma once
#include <cmath>
#include <cstdint>

#include "lowbit/engine/scalar_types.h"

namespace lowbit::quant {

// v clamped to [lo, hi]; NaN passes through. Two plain selects, which vectorize.
LOWBIT_HD float clamp_keep_nan(float v, float lo, float hi) {
  const float a = v < lo ? lo : v;
  return a > hi ? hi : a;
}

// |t| rounded to a minifloat with M mantissa bits and smallest normal exponent min_exp: adding
// 2^(max(exp(|t|), min_exp) - M + 23) leaves exactly the format's quantum as the sum's ulp, so
// the f32 addition does the RNE rounding and the subtraction is exact.
template <int M, int kMinExp>
LOWBIT_HD float minifloat_round(float t) {
  const float a = std::fabs(t);
  const uint32_t e = f32_bits(a) & 0x7F800000u;
  constexpr uint32_t kMinBits = static_cast<uint32_t>(kMinExp + 127) << 23;
  const float magic = f32_from_bits((e > kMinBits ? e : kMinBits) + (static_cast<uint32_t>(23 - M) << 23));
  return std::copysign((a + magic) - magic, t);
}

// |t| <= 6.
LOWBIT_HD float e2m1_round(float t) { return minifloat_round<1, 0>(t); }
// |t| <= 448.
LOWBIT_HD float e4m3_round(float t) { return minifloat_round<3, -6>(t); }
// |t| <= 57344.
LOWBIT_HD float e5m2_round(float t) { return minifloat_round<2, -14>(t); }
// Any t but NaN; +-inf from 65520 up, as f16 overflows.
LOWBIT_HD float f16_round(float t) {
  const float r = minifloat_round<10, -14>(t);
  return std::fabs(t) >= 65520.0f ? std::copysign(INFINITY, t) : r;
}

}  // namespace lowbit::quant
