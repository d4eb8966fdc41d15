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
#include <cmath>
#include <cstdint>

#include "lowbit/engine/macros.h"
#include "lowbit/engine/scalar_types.h"
#include "lowbit/quant/element_round.h"
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
// max |x_i| over n values; *finite = false when any value is NaN or +-Inf (the result is then
// meaningless). Magnitudes order as their bits (NaN above Inf), so the scan is an integer max.
LOWBIT_HD float block_amax(const float* x, int n, bool* finite) {
  uint32_t m = 0;
  for (int i = 0; i < n; ++i) {
    const uint32_t a = f32_bits(x[i]) & 0x7FFFFFFFu;
    m = a > m ? a : m;
  }
  *finite = m < 0x7F800000u;
  return f32_from_bits(m);
}

// ggml Q4_0: the signed value of the first element with the largest |x| (+0 when all are zero).
// *finite as above.
LOWBIT_HD float block_signed_max(const float* x, int n, bool* finite) {
  const uint32_t m = f32_bits(block_amax(x, n, finite));
  int first = n;
  for (int i = 0; i < n; ++i) {
    const int at = (f32_bits(x[i]) & 0x7FFFFFFFu) == m ? i : n;
    first = at < first ? at : first;
  }
  return m == 0 ? 0.0f : x[first];
}

// ---- E8M0 (MX shared scale): byte b means 2^(b - 127); 0xFF is NaN ----
// The scale functions below are written as selects without early returns, so loops over
// blocks vectorize.
LOWBIT_HD float e8m0_to_f32(uint8_t b) {
  const uint32_t u = b == kE8M0NaN ? 0x7FC00000u : (b == 0 ? 0x00400000u : static_cast<uint32_t>(b) << 23);
  return f32_from_bits(u);  // byte 0 is 2^-127, an f32 subnormal
}
// 2^-e as a byte: 254 - b, exact for every finite byte; NaN stays NaN.
LOWBIT_HD uint8_t e8m0_reciprocal(uint8_t b) { return b == kE8M0NaN ? kE8M0NaN : static_cast<uint8_t>(254 - b); }

// RCEIL (torchao _f32_to_e8m0_rceil, cuBLAS): descale = f32(amax * inv_max_elem) with
// inv_max_elem = f32(1 / max_elem); byte = exponent field of descale, plus 1 when its mantissa is
// non-zero; an f32-subnormal descale rounds up to byte 1 only when its mantissa exceeds 0x400000
// (i.e. descale > 2^-127). amax = 0 -> byte 0. Non-finite amax -> 0xFF.
LOWBIT_HD uint8_t e8m0_rceil(float amax, float inv_max_elem) {
  const uint32_t u = f32_bits(amax * inv_max_elem) & 0x7FFFFFFFu;
  const uint32_t e = u >> 23, m = u & 0x7FFFFFu;
  const uint32_t b = e == 0 ? (m > 0x400000u ? 1u : 0u) : e + (m != 0 ? 1u : 0u);
  return is_finite_f32(amax) & (b < 255u) ? static_cast<uint8_t>(b) : kE8M0NaN;
}

// FLOOR (OCP MX v1.0): e = exponent field of amax - 127 - emax_elem, clamped to [-127, 127]
// (an f32-subnormal or zero amax counts as exponent field 0); e = 128 would be NaN but cannot
// arise from a finite amax. Non-finite amax -> 0xFF.
LOWBIT_HD uint8_t e8m0_floor(float amax, int emax_elem) {
  const int e = static_cast<int>((f32_bits(amax) >> 23) & 0xFFu) - 127 - emax_elem;
  const int c = e < -127 ? -127 : e;
  return is_finite_f32(amax) & (c <= 127) ? static_cast<uint8_t>(c + 127) : kE8M0NaN;
}

// The MX scale byte of a block with amax `amax` for element format fp4 (E2M1, max 6, emax 2) or
// fp8 (E4M3, max 448, emax 8).
LOWBIT_HD uint8_t mx_scale_byte(float amax, bool fp8, MxScaleRule rule) {
  if (rule == MxScaleRule::floor) return e8m0_floor(amax, fp8 ? 8 : 2);
  const float inv_max = fp8 ? 1.0f / kE4M3Max : 1.0f / kE2M1Max;  // f32(1/max), as torchao
  return e8m0_rceil(amax, inv_max);
}

// Element x scaled by the exact power of two inv = 2^-e (e8m0_to_f32(e8m0_reciprocal(b))),
// clamped to the element max and rounded (RNE): its E2M1 (MXFP4) / E4M3 (MXFP8) grid value, in
// units of the block scale. The code is the exact encoding of that value.
LOWBIT_HD float mxfp4_element(float x, float inv) {
  return e2m1_round(clamp_keep_nan(x * inv, -kE2M1Max, kE2M1Max));
}
LOWBIT_HD float mxfp8_element(float x, float inv) {
  return e4m3_round(clamp_keep_nan(x * inv, -kE4M3Max, kE4M3Max));
}
LOWBIT_HD uint8_t mxfp4_encode(float x, float inv) { return f32_to_fp4_e2m1_bits(mxfp4_element(x, inv)); }
LOWBIT_HD uint8_t mxfp8_encode(float x, float inv) { return f32_to_fp8_e4m3_bits(mxfp8_element(x, inv)); }
// Mask rule of the fp block formats: the scaled magnitude is within the element max (inclusive).
// NaN (a poisoned block) gives 0.
LOWBIT_HD uint8_t within_elem_max(float x, float inv, float elem_max) {
  return static_cast<uint8_t>(std::fabs(x * inv) <= elem_max);
}

// ---- NVFP4 (torchao two-level: nvfp4_quantize with a per-tensor scale) ----
// Per-tensor scale pts = f32(global_amax / 2688).
LOWBIT_HD float nvfp4_tensor_scale(float global_amax) { return global_amax / (kE2M1Max * kE4M3Max); }

// Block scale: e4m3(clamp(f32(f32(amax_blk / 6) / pts), 2^-6, 448)) as its UE4M3 value (never
// subnormal). pts == 0 (all-zero tensor) gives 2^-6; amax_blk must be finite.
LOWBIT_HD float nvfp4_block_scale(float amax_blk, float pts) {
  const float v = (amax_blk / kE2M1Max) / (pts > 0.0f ? pts : 1.0f);
  return e4m3_round(clamp_keep_nan(pts > 0.0f ? v : 0.0f, kUe4m3MinScale, kE4M3Max));
}
// Quantize multiplier r = f32(f32(1 / pts) / s8) for block scale value s8; 0 when pts == 0.
LOWBIT_HD float nvfp4_recip(float pts, float s8) {
  const float r = (1.0f / (pts > 0.0f ? pts : 1.0f)) / s8;
  return pts > 0.0f ? r : 0.0f;
}

// Dequant multiplier f32(pts * s8) of a stored scale byte (NaN for the NaN byte).
LOWBIT_HD float nvfp4_dequant_scale(float pts, uint8_t s8) { return pts * fp8_e4m3_bits_to_f32(s8); }

// x * r, which is NaN only for x = +-0 with r = inf (a per-tensor scale so small that 1/pts
// overflows): that element keeps its signed zero.
LOWBIT_HD float nvfp4_scaled(float x, float r) {
  const float t = x * r;
  return t != t ? x : t;
}
// E2M1 grid value of clamp(x * r, +-6), RNE, and its code.
LOWBIT_HD float nvfp4_element(float x, float r) {
  return e2m1_round(clamp_keep_nan(nvfp4_scaled(x, r), -kE2M1Max, kE2M1Max));
}
LOWBIT_HD uint8_t nvfp4_encode(float x, float r) { return f32_to_fp4_e2m1_bits(nvfp4_element(x, r)); }
// Mask of an NVFP4 element: |x * r| <= 6 with the same NaN-free product (a NaN product, whose
// element keeps its zero, is within).
LOWBIT_HD uint8_t nvfp4_mask(float x, float r) { return static_cast<uint8_t>(!(std::fabs(x * r) > kE2M1Max)); }

// ---- ggml Q4_0 (quantize_row_q4_0_ref) ----
struct GgmlScale {
  float id;  // quantize multiplier from the f32 d: d != 0 ? 1/d : 0
  float d;   // f16(d), as stored and used to dequantize
};
LOWBIT_HD GgmlScale ggml_scale(float d) {
  const float id = 1.0f / (d != 0.0f ? d : 1.0f);
  return {d != 0.0f ? id : 0.0f, f16_round(d)};
}
// d = signed_max / -8 (f32).
LOWBIT_HD GgmlScale q4_0_scale(float signed_max) { return ggml_scale(signed_max / -8.0f); }
// ggml's f32(x * id) + 8.5f, which the code truncates.
LOWBIT_HD float q4_0_shifted(float x, float id) { return x * id + 8.5f; }
// The code of shifted value v as a float: min(15, trunc(v)). ggml's (int8_t) cast is only
// defined for the values a finite normal d produces; for an overflowing id (d subnormal) the
// code is clamped to [0, 15] and 0 * inf (v NaN) maps to code 8 (zero). trunc of c in [0, 15]
// is its RNE rounding minus 1 where that rounded up (std::trunc does not vectorize).
LOWBIT_HD float q4_0_element(float v) {
  const float c = v != v ? 8.0f : clamp_keep_nan(v, 0.0f, 15.0f);
  const float r = round_half_even(c);
  return r - (r > c ? 1.0f : 0.0f);
}
// 1 unless the code of v was clipped to [0, 15].
LOWBIT_HD uint8_t q4_0_kept(float v) { return static_cast<uint8_t>(!(v >= 16.0f) & !(v < 0.0f)); }

// ---- ggml Q8_0 (quantize_row_q8_0_ref) ----
// d = amax / 127 (f32).
LOWBIT_HD GgmlScale q8_0_scale(float amax) { return ggml_scale(amax / 127.0f); }
// The code of v = x * id as a float: roundf(v) (half away from zero), no -0, in [-127, 127].
// Outside that range (only reachable with an overflowing id) it is clamped; 0 * inf (NaN)
// gives 0. Clamping first gives the same code (127 is an integer); roundf of c is its RNE
// rounding r, moved away from zero at the ties RNE took towards zero (c - r is exact).
LOWBIT_HD float q8_0_element(float v) {
  const float c = v != v ? 0.0f : clamp_keep_nan(v, -127.0f, 127.0f);
  const float r = round_half_even(c);
  return r + (c - r == std::copysign(0.5f, c) ? std::copysign(1.0f, c) : 0.0f) + 0.0f;
}
// 1 unless the code of v was clipped to [-127, 127].
LOWBIT_HD uint8_t q8_0_kept(float v) { return static_cast<uint8_t>(!(v >= 127.5f) & !(v <= -127.5f)); }

// ---- whole blocks ----
// One code per element, unpacked: E2M1 nibble (nvfp4, mxfp4), E4M3 byte (mxfp8), 0..15 (Q4_0),
// int8 bits (Q8_0). The block scale travels as 16 bits: the UE4M3 / E8M0 byte or the f16 d.
// Every path goes through the element value (block_element: the E2M1 / E4M3 grid value or the
// integer code as a float): quantize stores code_of_element of it, dequantize turns the code
// back with element_of_code (exact) and dequant_element, and the fused fake quant applies
// dequant_element to the value directly.
LOWBIT_HD constexpr int block_size_of(Format f) { return f == Format::nvfp4 ? kNvfp4Block : kMxBlock; }

// x: (bs) -> the statistic the block scale comes from (amax; Q4_0: the signed max);
// *finite = false when any value is NaN or +-Inf.
LOWBIT_HD float block_stat(Format f, const float* x, bool* finite) {
  const int bs = block_size_of(f);
  return f == Format::gguf_q4_0 ? block_signed_max(x, bs, finite) : block_amax(x, bs, finite);
}

// The scale of a block from its (finite) statistic: the elements' quantize multiplier, the
// dequant multiplier (the stored scale's value, times pts for nvfp4) and the stored bits.
// Branch-free but for the bits, so a loop over blocks that keeps only mul and ds vectorizes.
struct BlockScale {
  float mul, ds;
  uint16_t bits;
};
LOWBIT_HD BlockScale block_scale_of(Format f, float stat, float pts, MxScaleRule rule) {
  switch (f) {
    case Format::nvfp4: {
      const float s8 = nvfp4_block_scale(stat, pts);
      return {nvfp4_recip(pts, s8), pts * s8, f32_to_fp8_e4m3_bits(s8)};
    }
    case Format::mxfp4:
    case Format::mxfp8: {
      const uint8_t b = mx_scale_byte(stat, f == Format::mxfp8, rule);
      return {e8m0_to_f32(e8m0_reciprocal(b)), e8m0_to_f32(b), b};
    }
    case Format::gguf_q4_0:
    case Format::gguf_q8_0: {
      const GgmlScale g = f == Format::gguf_q4_0 ? q4_0_scale(stat) : q8_0_scale(stat);
      return {g.id, g.d, f32_to_f16_bits(g.d)};
    }
    default: return {0.0f, 0.0f, 0};
  }
}
// The stored scale of a non-finite block.
LOWBIT_HD uint16_t nan_scale_bits(Format f) {
  switch (f) {
    case Format::nvfp4: return kE4M3NaN;
    case Format::mxfp4:
    case Format::mxfp8: return kE8M0NaN;
    default: return kF16NaN;
  }
}

// Element value of x under quantize multiplier mul, and its gradient mask (1 = not clipped).
LOWBIT_HD float block_element(Format f, float x, float mul) {
  switch (f) {
    case Format::nvfp4: return nvfp4_element(x, mul);
    case Format::mxfp4: return mxfp4_element(x, mul);
    case Format::mxfp8: return mxfp8_element(x, mul);
    case Format::gguf_q4_0: return q4_0_element(q4_0_shifted(x, mul));
    case Format::gguf_q8_0: return q8_0_element(x * mul);
    default: return 0.0f;
  }
}
LOWBIT_HD uint8_t block_element_kept(Format f, float x, float mul) {
  switch (f) {
    case Format::nvfp4: return nvfp4_mask(x, mul);
    case Format::mxfp4: return within_elem_max(x, mul, kE2M1Max);
    case Format::mxfp8: return within_elem_max(x, mul, kE4M3Max);
    case Format::gguf_q4_0: return q4_0_kept(q4_0_shifted(x, mul));
    case Format::gguf_q8_0: return q8_0_kept(x * mul);
    default: return 0;
  }
}

// Element value <-> unpacked code, exact both ways.
LOWBIT_HD uint8_t code_of_element(Format f, float v) {
  switch (f) {
    case Format::nvfp4:
    case Format::mxfp4: return f32_to_fp4_e2m1_bits(v);
    case Format::mxfp8: return f32_to_fp8_e4m3_bits(v);
    case Format::gguf_q4_0: return static_cast<uint8_t>(static_cast<int>(v));
    case Format::gguf_q8_0: return static_cast<uint8_t>(static_cast<int8_t>(static_cast<int>(v)));
    default: return 0;
  }
}
LOWBIT_HD float element_of_code(Format f, uint8_t code) {
  switch (f) {
    case Format::nvfp4:
    case Format::mxfp4: return fp4_e2m1_bits_to_f32(code);
    case Format::mxfp8: return fp8_e4m3_bits_to_f32(code);
    case Format::gguf_q4_0: return static_cast<float>(code);
    case Format::gguf_q8_0: return static_cast<float>(static_cast<int8_t>(code));
    default: return 0.0f;
  }
}
// The code an element of a non-finite block stores (zero).
LOWBIT_HD uint8_t zero_code(Format f) { return f == Format::gguf_q4_0 ? 8 : 0; }

// Dequant multiplier of stored scale bits (NaN for a NaN scale), and an element's value.
LOWBIT_HD float block_dequant_scale(Format f, uint16_t bits, float pts) {
  switch (f) {
    case Format::nvfp4: return nvfp4_dequant_scale(pts, static_cast<uint8_t>(bits));
    case Format::mxfp4:
    case Format::mxfp8: return e8m0_to_f32(static_cast<uint8_t>(bits));
    default: return f16_bits_to_f32(bits);
  }
}
LOWBIT_HD float dequant_element(Format f, float v, float s) { return f == Format::gguf_q4_0 ? (v - 8.0f) * s : v * s; }

// x: (bs) f32 -> code: (bs), mask: (bs) or null; returns the scale bits. pts: nvfp4's
// per-tensor scale (ignored otherwise).
LOWBIT_HD uint16_t encode_block(Format f, const float* x, float pts, MxScaleRule rule, uint8_t* code, uint8_t* mask) {
  const int bs = block_size_of(f);
  bool finite = true;
  const float stat = block_stat(f, x, &finite);
  if (!finite) {
    for (int i = 0; i < bs; ++i) code[i] = zero_code(f);
    if (mask)
      for (int i = 0; i < bs; ++i) mask[i] = 0;
    return nan_scale_bits(f);
  }
  const BlockScale s = block_scale_of(f, stat, pts, rule);
  for (int i = 0; i < bs; ++i) code[i] = code_of_element(f, block_element(f, x[i], s.mul));
  if (mask)
    for (int i = 0; i < bs; ++i) mask[i] = block_element_kept(f, x[i], s.mul);
  return s.bits;
}

// code: (bs) unpacked codes + scale bits -> out: (bs) f32.
LOWBIT_HD void decode_block(Format f, const uint8_t* code, uint16_t scale, float pts, float* out) {
  const int bs = block_size_of(f);
  const float s = block_dequant_scale(f, scale, pts);
  for (int i = 0; i < bs; ++i) out[i] = dequant_element(f, element_of_code(f, code[i]), s);
}

}  // namespace lowbit::quant
