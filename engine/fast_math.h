// Vectorizable math for kernels (host and device).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "lowbit/engine/scalar_types.h"

namespace lowbit {

// exp for f32 kernels, inlined so row loops vectorize (libm's expf is a call per element).
// f32: Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, the Cephes degree-6 polynomial,
// scaled by 2^n through the exponent bits (in two halves so 2^128 and 2^-126 stay
// representable). Max error ~2 ulp; x < -87.34 (where the result would be an f32 subnormal)
// and x = -inf give 0, x > 88.72 gives +inf, NaN gives NaN. f64 uses std::exp.
LOWBIT_HD float fast_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  constexpr float kHi = 88.72283f, kLo = -87.33654f;
  float xc = x > kHi ? kHi : x;  // NaN passes through both clamps
  xc = xc < kLo ? kLo : xc;
  constexpr float kShift = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const float t = xc * 1.44269504088896341f + kShift;
  const float n = t - kShift;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t ni = static_cast<int32_t>(f32_bits(t)) - static_cast<int32_t>(f32_bits(kShift));  // n in [-126, 128]
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  const float y = p * f32_from_bits(static_cast<uint32_t>(n1 + 127) << 23) *
                  f32_from_bits(static_cast<uint32_t>(n2 + 127) << 23);
  return x < kLo ? 0.0f : (x > kHi ? std::numeric_limits<float>::infinity() : y);
#endif
}

// Overloads for kernels templated on their compute type: f64 keeps libm's exp.
LOWBIT_HD float exp_c(float x) { return fast_exp(x); }
LOWBIT_HD double exp_c(double x) { return std::exp(x); }

// Row reductions with 16 independent lanes combined by a fixed tree, so the loops vectorize
// without reassociating floats behind the compiler's back and the result depends only on the
// data (never on threads). combine(acc, load(x_i)) for every element, from `identity`.
template <class C, class T, class Load, class Combine>
C row_reduce(const T* x, int64_t n, C identity, Load load, Combine combine) {
  constexpr int kLanes = 16;
  C acc[kLanes];
  for (int k = 0; k < kLanes; ++k) acc[k] = identity;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] = combine(acc[k], load(x[i + k]));
  for (int k = 0; i < n; ++i, ++k) acc[k] = combine(acc[k], load(x[i]));
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] = combine(acc[k], acc[k + w]);
  return acc[0];
}

template <class C, class T, class Load>
C row_max(const T* x, int64_t n, Load load) {
  return row_reduce<C>(x, n, -std::numeric_limits<C>::infinity(), load, [](C a, C b) { return std::max(a, b); });
}

// sum_i f(x_i)
template <class C, class T, class F>
C row_sum(const T* x, int64_t n, F f) {
  return row_reduce<C>(x, n, C(0), f, [](C a, C b) { return a + b; });
}

}  // namespace lowbit
