// Per-element and per-block arithmetic of the block formats (NVFP4, MXFP4/MXFP8, GGUF Q4_0/Q8_0),
// LOWBIT_HD so the CPU codec, the fused CPU fake-quant and a CUDA kernel share one definition.
// quant/block_formats.cpp is the only CPU user; ../shared/docs/quant_numerics.md §5-§7 has the
// reference arithmetic, restated next to each function.
//
// Non-finite input (NaN or +-Inf anywhere in a block) poisons exactly that block, in every
// format: its scale is stored as NaN (E8M0 0xFF, E4M3 0x7F, f16 0x7E00), its codes are zero,
// and it dequantizes (and fake-quantizes) to NaN in every element, with mask 0. Other blocks
// are unaffected (NVFP4's per-tensor amax, when taken from x, is the max over finite values).
#pragma once
#include <cfloat>
#include <cstdint>

#include "lowbit/engine/macros.h"
#include "lowbit/engine/scalar_types.h"
#include "lowbit/quant/spec.h"

namespace lowbit::quant {

inline constexpr int kNvfp4Block = 16;
inline constexpr int kMxBlock = 32;
inline constexpr int kGgufBlock = 32;
inline constexpr float kE2M1Max = 6.0f;
inline constexpr float kE4M3Max = 448.0f;
inline constexpr float kUe4m3MinScale = 0.015625f;  // 2^-6, torchao's E4M3_EPS (smallest normal)
inline constexpr uint8_t kE8M0NaN = 0xFF;
inline constexpr uint8_t kE4M3NaN = 0x7F;
inline constexpr uint16_t kF16NaN = 0x7E00;

LOWBIT_HD bool is_finite_f32(float v) { return (f32_bits(v) & 0x7F800000u) != 0x7F800000u; }

// ---- block scans ----
// max |x_i| over n values; *finite = false when any value is NaN or +-Inf.
LOWBIT_HD float block_amax(const float* x, int n, bool* finite) {
  float m = 0.0f;
  bool ok = true;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    ok = ok && a <= FLT_MAX;
    m = a > m ? a : m;
  }
  *finite = ok;
  return m;
}

// ggml Q4_0: the signed value of the first element with the largest |x| (strict >, so the first
// of equal magnitudes wins). *finite as above.
LOWBIT_HD float block_signed_max(const float* x, int n, bool* finite) {
  float amax = 0.0f, mx = 0.0f;
  bool ok = true;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    ok = ok && a <= FLT_MAX;
    if (a > amax) {
      amax = a;
      mx = x[i];
    }
  }
  *finite = ok;
  return mx;
}

// ---- E8M0 (MX shared scale): byte b means 2^(b - 127); 0xFF is NaN ----
LOWBIT_HD float e8m0_to_f32(uint8_t b) {
  if (b == kE8M0NaN) return f32_from_bits(0x7FC00000u);
  if (b == 0) return f32_from_bits(0x00400000u);  // 2^-127: an f32 subnormal
  return f32_from_bits(static_cast<uint32_t>(b) << 23);
}
// 2^-e as a byte: 254 - b, exact for every finite byte; NaN stays NaN.
LOWBIT_HD uint8_t e8m0_reciprocal(uint8_t b) { return b == kE8M0NaN ? kE8M0NaN : static_cast<uint8_t>(254 - b); }

// RCEIL (torchao _f32_to_e8m0_rceil, cuBLAS): descale = f32(amax * inv_max_elem) with
// inv_max_elem = f32(1 / max_elem); byte = exponent field of descale, plus 1 when its mantissa is
// non-zero; an f32-subnormal descale rounds up to byte 1 only when its mantissa exceeds 0x400000
// (i.e. descale > 2^-127). amax = 0 -> byte 0. Non-finite amax -> 0xFF.
LOWBIT_HD uint8_t e8m0_rceil(float amax, float inv_max_elem) {
  if (!is_finite_f32(amax)) return kE8M0NaN;
  const uint32_t u = f32_bits(amax * inv_max_elem) & 0x7FFFFFFFu;
  const uint32_t e = u >> 23, m = u & 0x7FFFFFu;
  uint32_t b;
  if (e == 0) {
    b = m > 0x400000u ? 1u : 0u;
  } else {
    b = e + (m != 0 ? 1u : 0u);
  }
  return b >= 255u ? kE8M0NaN : static_cast<uint8_t>(b);
}

// FLOOR (OCP MX v1.0): e = exponent field of amax - 127 - emax_elem, clamped to [-127, 127]
// (an f32-subnormal or zero amax counts as exponent field 0); e = 128 would be NaN but cannot
// arise from a finite amax. Non-finite amax -> 0xFF.
LOWBIT_HD uint8_t e8m0_floor(float amax, int emax_elem) {
  if (!is_finite_f32(amax)) return kE8M0NaN;
  int e = static_cast<int>((f32_bits(amax) >> 23) & 0xFFu) - 127 - emax_elem;
  if (e < -127) e = -127;
  if (e > 127) return kE8M0NaN;
  return static_cast<uint8_t>(e + 127);
}

// The MX scale byte of a block with amax `amax` for element format fp4 (E2M1, max 6, emax 2) or
// fp8 (E4M3, max 448, emax 8).
LOWBIT_HD uint8_t mx_scale_byte(float amax, bool fp8, MxScaleRule rule) {
  if (rule == MxScaleRule::floor) return e8m0_floor(amax, fp8 ? 8 : 2);
  const float inv_max = fp8 ? 1.0f / kE4M3Max : 1.0f / kE2M1Max;  // f32(1/max), as torchao
  return e8m0_rceil(amax, inv_max);
}

// Element x scaled by the exact power of two inv = 2^-e (e8m0_to_f32(e8m0_reciprocal(b))).
// MXFP4: E2M1 RNE, saturating at +-6. Returns the 4-bit code.
LOWBIT_HD uint8_t mxfp4_encode(float x, float inv) {
  float t = x * inv;
  t = t > kE2M1Max ? kE2M1Max : (t < -kE2M1Max ? -kE2M1Max : t);
  return f32_to_fp4_e2m1_bits(t);
}
// MXFP8: E4M3 RNE after an explicit clamp to +-448. Returns the E4M3 byte.
LOWBIT_HD uint8_t mxfp8_encode(float x, float inv) {
  float t = x * inv;
  t = t > kE4M3Max ? kE4M3Max : (t < -kE4M3Max ? -kE4M3Max : t);
  return f32_to_fp8_e4m3_bits(t);
}
// Mask rule of the fp block formats: the scaled magnitude is within the element max (inclusive).
// NaN (a poisoned block) gives 0.
LOWBIT_HD uint8_t within_elem_max(float x, float inv, float elem_max) {
  return std::fabs(x * inv) <= elem_max ? 1 : 0;
}

// ---- NVFP4 (torchao two-level: nvfp4_quantize with a per-tensor scale) ----
// Per-tensor scale pts = f32(global_amax / 2688).
LOWBIT_HD float nvfp4_tensor_scale(float global_amax) { return global_amax / (kE2M1Max * kE4M3Max); }

// Block scale byte: e4m3(clamp(f32(f32(amax_blk / 6) / pts), 2^-6, 448)) (UE4M3, never
// subnormal). pts == 0 (all-zero tensor) gives 2^-6; non-finite amax_blk gives NaN (0x7F).
LOWBIT_HD uint8_t nvfp4_block_scale(float amax_blk, float pts) {
  if (!is_finite_f32(amax_blk)) return kE4M3NaN;
  float v = pts > 0.0f ? (amax_blk / kE2M1Max) / pts : 0.0f;
  v = v < kUe4m3MinScale ? kUe4m3MinScale : (v > kE4M3Max ? kE4M3Max : v);
  return f32_to_fp8_e4m3_bits(v);
}
// Quantize multiplier r = f32(f32(1 / pts) / s8); 0 when pts == 0.
LOWBIT_HD float nvfp4_recip(float pts, uint8_t s8) {
  return pts > 0.0f ? (1.0f / pts) / fp8_e4m3_bits_to_f32(s8) : 0.0f;
}
// Dequant multiplier f32(pts * s8) (NaN for a NaN scale byte).
LOWBIT_HD float nvfp4_dequant_scale(float pts, uint8_t s8) { return pts * fp8_e4m3_bits_to_f32(s8); }

// E2M1 code of clamp(x * r, +-6), RNE. x * r is NaN only for x = +-0 with r = inf (a per-tensor
// scale so small that 1/pts overflows): that element keeps its signed zero.
LOWBIT_HD uint8_t nvfp4_encode(float x, float r) {
  float t = x * r;
  t = t != t ? x : t;
  t = t > kE2M1Max ? kE2M1Max : (t < -kE2M1Max ? -kE2M1Max : t);
  return f32_to_fp4_e2m1_bits(t);
}

// Mask of an NVFP4 element: |x * r| <= 6 with the same NaN-free product as nvfp4_encode.
LOWBIT_HD uint8_t nvfp4_mask(float x, float r) {
  float t = x * r;
  t = t != t ? x : t;
  return std::fabs(t) <= kE2M1Max ? 1 : 0;
}

// ---- ggml Q4_0 (quantize_row_q4_0_ref) ----
struct GgmlScale {
  float id;      // quantize multiplier from the f32 d: d != 0 ? 1/d : 0
  uint16_t d16;  // stored f16 d (used to dequantize)
};
// d = signed_max / -8 (f32).
LOWBIT_HD GgmlScale q4_0_scale(float signed_max) {
  const float d = signed_max / -8.0f;
  return {d != 0.0f ? 1.0f / d : 0.0f, f32_to_f16_bits(d)};
}
// q = min(15, trunc(f32(x * id) + 8.5f)). ggml's (int8_t) cast is only defined for the values a
// finite normal d produces; for an overflowing id (d subnormal) the result is clamped to [0, 15]
// and 0 * inf maps to code 8 (zero). *clipped = 1 when the code was clipped to the range.
LOWBIT_HD uint8_t q4_0_encode(float x, float id, uint8_t* clipped) {
  const float v = x * id + 8.5f;
  if (v != v) {
    *clipped = 0;
    return 8;
  }
  if (v >= 16.0f) {
    *clipped = 1;
    return 15;
  }
  if (v < 0.0f) {
    *clipped = 1;
    return 0;
  }
  *clipped = 0;
  const int q = static_cast<int>(v);
  return static_cast<uint8_t>(q > 15 ? 15 : q);
}
LOWBIT_HD float q4_0_decode(uint8_t code, float d) { return static_cast<float>(static_cast<int>(code) - 8) * d; }

// ---- ggml Q8_0 (quantize_row_q8_0_ref) ----
// d = amax / 127 (f32).
LOWBIT_HD GgmlScale q8_0_scale(float amax) {
  const float d = amax / 127.0f;
  return {d != 0.0f ? 1.0f / d : 0.0f, f32_to_f16_bits(d)};
}
// q = roundf(x * id) (half away from zero), in [-127, 127]. Outside that range (only reachable
// with an overflowing id) it is clamped and *clipped = 1; 0 * inf gives 0.
LOWBIT_HD int8_t q8_0_encode(float x, float id, uint8_t* clipped) {
  const float v = x * id;
  if (v != v) {
    *clipped = 0;
    return 0;
  }
  if (v >= 127.5f) {
    *clipped = 1;
    return 127;
  }
  if (v <= -127.5f) {
    *clipped = 1;
    return -127;
  }
  *clipped = 0;
  return static_cast<int8_t>(std::roundf(v));
}
LOWBIT_HD float q8_0_decode(int8_t q, float d) { return static_cast<float>(q) * d; }

// ---- whole blocks ----
// One code per element, unpacked: E2M1 nibble (nvfp4, mxfp4), E4M3 byte (mxfp8), 0..15 (Q4_0),
// int8 bits (Q8_0). The block scale travels as 16 bits: the UE4M3 / E8M0 byte or the f16 d.
LOWBIT_HD int block_size_of(Format f) { return f == Format::nvfp4 ? kNvfp4Block : kMxBlock; }

// x: (bs) f32 -> code: (bs), mask: (bs) or null; returns the scale bits. pts: nvfp4's per-tensor
// scale (ignored otherwise). A non-finite block gets the NaN scale, zero codes and mask 0.
LOWBIT_HD uint16_t encode_block(Format f, const float* x, float pts, MxScaleRule rule, uint8_t* code,
                                uint8_t* mask) {
  const int bs = block_size_of(f);
  bool finite = true;
  uint16_t scale = 0;
  switch (f) {
    case Format::nvfp4: {
      const float amax = block_amax(x, bs, &finite);
      if (!finite) break;
      const uint8_t s8 = nvfp4_block_scale(amax, pts);
      const float r = nvfp4_recip(pts, s8);
      for (int i = 0; i < bs; ++i) code[i] = nvfp4_encode(x[i], r);
      if (mask)
        for (int i = 0; i < bs; ++i) mask[i] = nvfp4_mask(x[i], r);
      return s8;
    }
    case Format::mxfp4:
    case Format::mxfp8: {
      const bool fp8 = f == Format::mxfp8;
      const float amax = block_amax(x, bs, &finite);
      if (!finite) break;
      const uint8_t b = mx_scale_byte(amax, fp8, rule);
      const float inv = e8m0_to_f32(e8m0_reciprocal(b));
      if (fp8) {
        for (int i = 0; i < bs; ++i) code[i] = mxfp8_encode(x[i], inv);
      } else {
        for (int i = 0; i < bs; ++i) code[i] = mxfp4_encode(x[i], inv);
      }
      if (mask)
        for (int i = 0; i < bs; ++i) mask[i] = within_elem_max(x[i], inv, fp8 ? kE4M3Max : kE2M1Max);
      return b;
    }
    case Format::gguf_q4_0: {
      const float mx = block_signed_max(x, bs, &finite);
      if (!finite) break;
      const GgmlScale s = q4_0_scale(mx);
      uint8_t clipped;
      for (int i = 0; i < bs; ++i) {
        code[i] = q4_0_encode(x[i], s.id, &clipped);
        if (mask) mask[i] = static_cast<uint8_t>(1 - clipped);
      }
      return s.d16;
    }
    case Format::gguf_q8_0: {
      const float amax = block_amax(x, bs, &finite);
      if (!finite) break;
      const GgmlScale s = q8_0_scale(amax);
      uint8_t clipped;
      for (int i = 0; i < bs; ++i) {
        code[i] = static_cast<uint8_t>(q8_0_encode(x[i], s.id, &clipped));
        if (mask) mask[i] = static_cast<uint8_t>(1 - clipped);
      }
      return s.d16;
    }
    default: break;
  }
  // Non-finite block (the formats above only break out of the switch for it).
  switch (f) {
    case Format::nvfp4: scale = kE4M3NaN; break;
    case Format::mxfp4:
    case Format::mxfp8: scale = kE8M0NaN; break;
    default: scale = kF16NaN; break;
  }
  const uint8_t zero_code = f == Format::gguf_q4_0 ? 8 : 0;
  for (int i = 0; i < bs; ++i) code[i] = zero_code;
  if (mask)
    for (int i = 0; i < bs; ++i) mask[i] = 0;
  return scale;
}

// code: (bs) unpacked codes + scale bits -> out: (bs) f32.
LOWBIT_HD void decode_block(Format f, const uint8_t* code, uint16_t scale, float pts, float* out) {
  const int bs = block_size_of(f);
  switch (f) {
    case Format::nvfp4: {
      const float s = nvfp4_dequant_scale(pts, static_cast<uint8_t>(scale));
      for (int i = 0; i < bs; ++i) out[i] = fp4_e2m1_bits_to_f32(code[i]) * s;
      return;
    }
    case Format::mxfp4: {
      const float s = e8m0_to_f32(static_cast<uint8_t>(scale));
      for (int i = 0; i < bs; ++i) out[i] = fp4_e2m1_bits_to_f32(code[i]) * s;
      return;
    }
    case Format::mxfp8: {
      const float s = e8m0_to_f32(static_cast<uint8_t>(scale));
      for (int i = 0; i < bs; ++i) out[i] = fp8_e4m3_bits_to_f32(code[i]) * s;
      return;
    }
    case Format::gguf_q4_0: {
      const float d = f16_bits_to_f32(scale);
      for (int i = 0; i < bs; ++i) out[i] = q4_0_decode(code[i], d);
      return;
    }
    case Format::gguf_q8_0: {
      const float d = f16_bits_to_f32(scale);
      for (int i = 0; i < bs; ++i) out[i] = q8_0_decode(static_cast<int8_t>(code[i]), d);
      return;
    }
    default: return;
  }
}

}  // namespace lowbit::quant
