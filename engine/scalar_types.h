// Low-precision scalar codecs shared by CPU loops and CUDA kernels (LOWBIT_HD).
// All float -> narrow conversions round to nearest, ties to even. Overflow and NaN follow
// each format's definition (docs/dtypes.md has the table):
//   bf16, f16, fp8_e5m2: overflow -> +-inf, NaN -> quiet NaN.
//   fp8_e4m3 (E4M3FN): no inf; finite and infinite overflow saturate to +-448, NaN -> 0x7F|sign.
//   fp4_e2m1: no inf or NaN; overflow saturates to +-6. NaN has no code: the codec returns
//             kFp4NaNCode (0x7, +6) and tensor casts reject NaN input with an error.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "lowbit/engine/macros.h"

namespace lowbit {

LOWBIT_HD uint32_t f32_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

LOWBIT_HD float f32_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

LOWBIT_HD float round_half_even(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::nearbyint(x);
#endif
}

// ---- bf16: 1 sign, 8 exponent, 7 mantissa ----
LOWBIT_HD uint16_t f32_to_bf16_bits(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
LOWBIT_HD float bf16_bits_to_f32(uint16_t h) { return f32_from_bits(static_cast<uint32_t>(h) << 16); }

// ---- f16 (IEEE binary16): 1 sign, 5 exponent, 10 mantissa ----
LOWBIT_HD uint16_t f32_to_f16_bits(float f) {
  uint32_t u = f32_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7FFFFFFFu;
  uint32_t o;
  if (u >= 0x47800000u) {  // |f| >= 2^16: inf, or NaN with its payload kept and quieted
    o = u > 0x7F800000u ? (0x7E00u | ((u >> 13) & 0x3FFu)) : 0x7C00u;
  } else if (u < 0x38800000u) {  // result is f16 subnormal or zero: align with a magic add (RNE)
    const float magic = f32_from_bits(126u << 23);  // 2^-1: ulp becomes 2^-24
    o = f32_bits(f32_from_bits(u) + magic) - (126u << 23);
  } else {
    const uint32_t mant_odd = (u >> 13) & 1u;
    u += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu + mant_odd;
    o = u >> 13;  // a carry out of the mantissa correctly bumps the exponent, up to inf
  }
  return static_cast<uint16_t>(o | sign);
}
LOWBIT_HD float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0) {
    const float mag = static_cast<float>(m) * 5.9604644775390625e-08f;  // m * 2^-24, exact
    return f32_from_bits(f32_bits(mag) | sign);
  }
  if (e == 31) return f32_from_bits(sign | 0x7F800000u | (m << 13));
  return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
}

// ---- Minifloats without inf handling in the mantissa path: E4M3FN, E5M2, E2M1 ----
// Generic RNE encoder: quantum = 2^(floor(log2|x|) - M) in the normal range, the subnormal
// step below it; |x| / quantum is exact in f32, so rounding it with rint is exact RNE.
template <int E, int M>
struct MiniFloat {
  static constexpr int kBias = (1 << (E - 1)) - 1;
  static constexpr int kMinNormalExp = 1 - kBias;
};

namespace detail {
template <int E, int M>
LOWBIT_HD float minifloat_round_magnitude(float a) {  // a finite, >= 0
  constexpr int min_exp = MiniFloat<E, M>::kMinNormalExp;
  int e = static_cast<int>((f32_bits(a) >> 23) & 0xFFu) - 127;
  if (e < min_exp) e = min_exp;
  const float quantum = f32_from_bits(static_cast<uint32_t>(e - M + 127) << 23);
  const float inv = f32_from_bits(static_cast<uint32_t>(M - e + 127) << 23);
  return round_half_even(a * inv) * quantum;
}
// r is exactly representable and finite in the format: returns its unsigned code.
template <int E, int M>
LOWBIT_HD uint32_t minifloat_encode_exact(float r) {
  constexpr int min_exp = MiniFloat<E, M>::kMinNormalExp;
  if (r == 0.0f) return 0;
  const int e = static_cast<int>((f32_bits(r) >> 23) & 0xFFu) - 127;
  if (e < min_exp) {  // subnormal: r / 2^(min_exp - M)
    const float inv = f32_from_bits(static_cast<uint32_t>(M - min_exp + 127) << 23);
    return static_cast<uint32_t>(r * inv);
  }
  const uint32_t mant = (f32_bits(r) >> (23 - M)) & ((1u << M) - 1u);
  return (static_cast<uint32_t>(e + MiniFloat<E, M>::kBias) << M) | mant;
}
}  // namespace detail

LOWBIT_HD uint8_t f32_to_fp8_e4m3_bits(float f) {
  const uint32_t sign = (f32_bits(f) >> 24) & 0x80u;
  const float a = std::fabs(f);
  if (a != a) return static_cast<uint8_t>(sign | 0x7Fu);
  if (a > 448.0f) return static_cast<uint8_t>(sign | 0x7Eu);
  float r = detail::minifloat_round_magnitude<4, 3>(a);
  if (r > 448.0f) r = 448.0f;
  return static_cast<uint8_t>(sign | detail::minifloat_encode_exact<4, 3>(r));
}

LOWBIT_HD uint8_t f32_to_fp8_e5m2_bits(float f) {
  const uint32_t sign = (f32_bits(f) >> 24) & 0x80u;
  const float a = std::fabs(f);
  if (a != a) return static_cast<uint8_t>(sign | 0x7Fu);
  if (a >= 61440.0f) return static_cast<uint8_t>(sign | 0x7Cu);  // RNE at/above 57344 + half ulp -> inf
  const float r = detail::minifloat_round_magnitude<5, 2>(a);
  return static_cast<uint8_t>(sign | detail::minifloat_encode_exact<5, 2>(r));
}

inline constexpr uint8_t kFp4NaNCode = 0x7;

// Returns a 4-bit code in the low nibble.
LOWBIT_HD uint8_t f32_to_fp4_e2m1_bits(float f) {
  const uint32_t sign = (f32_bits(f) >> 28) & 0x8u;
  const float a = std::fabs(f);
  if (a != a) return kFp4NaNCode;
  if (a >= 6.0f) return static_cast<uint8_t>(sign | 0x7u);
  const float r = detail::minifloat_round_magnitude<2, 1>(a);
  return static_cast<uint8_t>(sign | (r >= 6.0f ? 0x7u : detail::minifloat_encode_exact<2, 1>(r)));
}

namespace detail {
template <int E, int M>
LOWBIT_HD float minifloat_decode_finite(uint32_t code) {
  constexpr int bias = MiniFloat<E, M>::kBias;
  const uint32_t e = (code >> M) & ((1u << E) - 1u), m = code & ((1u << M) - 1u);
  float mag;
  if (e == 0) {
    mag = static_cast<float>(m) * f32_from_bits(static_cast<uint32_t>(1 - bias - M + 127) << 23);
  } else {
    mag = f32_from_bits((static_cast<uint32_t>(static_cast<int>(e) - bias + 127) << 23) | (m << (23 - M)));
  }
  return (code >> (E + M)) & 1u ? -mag : mag;
}
}  // namespace detail

LOWBIT_HD float fp8_e4m3_bits_to_f32(uint8_t b) {
  if ((b & 0x7Fu) == 0x7Fu) return f32_from_bits(0x7FC00000u | (static_cast<uint32_t>(b & 0x80u) << 24));
  return detail::minifloat_decode_finite<4, 3>(b);
}
LOWBIT_HD float fp8_e5m2_bits_to_f32(uint8_t b) {
  // E5M2 is the top byte of an f16: widen exactly.
  return f16_bits_to_f32(static_cast<uint16_t>(static_cast<uint16_t>(b) << 8));
}
LOWBIT_HD float fp4_e2m1_bits_to_f32(uint8_t nibble) { return detail::minifloat_decode_finite<2, 1>(nibble & 0xFu); }

// ---- Storage types ----
struct BFloat16 {
  uint16_t bits;
  BFloat16() = default;
  LOWBIT_HD explicit BFloat16(float f) : bits(f32_to_bf16_bits(f)) {}
  LOWBIT_HD explicit operator float() const { return bf16_bits_to_f32(bits); }
};
struct Half {
  uint16_t bits;
  Half() = default;
  LOWBIT_HD explicit Half(float f) : bits(f32_to_f16_bits(f)) {}
  LOWBIT_HD explicit operator float() const { return f16_bits_to_f32(bits); }
};
struct Float8E4M3 {
  uint8_t bits;
  Float8E4M3() = default;
  LOWBIT_HD explicit Float8E4M3(float f) : bits(f32_to_fp8_e4m3_bits(f)) {}
  LOWBIT_HD explicit operator float() const { return fp8_e4m3_bits_to_f32(bits); }
};
struct Float8E5M2 {
  uint8_t bits;
  Float8E5M2() = default;
  LOWBIT_HD explicit Float8E5M2(float f) : bits(f32_to_fp8_e5m2_bits(f)) {}
  LOWBIT_HD explicit operator float() const { return fp8_e5m2_bits_to_f32(bits); }
};
// Two E2M1 codes in one byte: element 2i in the low nibble, 2i+1 in the high nibble.
struct Float4E2M1x2 {
  uint8_t bits;
};

// The type a kernel computes in: low-precision floats compute in f32.
template <class T> struct OpMath { using type = T; };
template <> struct OpMath<BFloat16> { using type = float; };
template <> struct OpMath<Half> { using type = float; };
template <> struct OpMath<Float8E4M3> { using type = float; };
template <> struct OpMath<Float8E5M2> { using type = float; };
template <class T> using opmath_t = typename OpMath<T>::type;

template <class To, class From>
LOWBIT_HD To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_integral_v<To> && !std::is_integral_v<From>) {
    // Float -> int truncates toward zero; NaN gives 0 and out-of-range saturates (a plain
    // cast would be undefined behaviour there).
    double d;
    if constexpr (std::is_same_v<From, double>) {
      d = v;
    } else {
      d = static_cast<double>(static_cast<float>(v));
    }
    if (!(d == d)) return To(0);
    if (d <= static_cast<double>(std::numeric_limits<To>::min())) return std::numeric_limits<To>::min();
    if (d >= static_cast<double>(std::numeric_limits<To>::max())) return std::numeric_limits<To>::max();
    return static_cast<To>(d);
  } else if constexpr (std::is_arithmetic_v<From> && std::is_arithmetic_v<To>) {
    return static_cast<To>(v);
  } else if constexpr (std::is_arithmetic_v<To>) {
    return static_cast<To>(static_cast<float>(v));
  } else {
    return To(static_cast<float>(v));
  }
}

}  // namespace lowbit
