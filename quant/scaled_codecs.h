// Per-element arithmetic of the scaled formats (int8, int4, uint4, fp8_e4m3, fp8_e5m2): how a
// scale group's statistics become quantization parameters, and how one element is quantized
// and dequantized. LOWBIT_HD and shared by quantize(), dequantize(), fake_quant() and (later)
// the CUDA kernels, so all of them agree bit for bit. Conventions are in docs/quantization.md;
// the section numbers refer to ../shared/docs/quant_numerics.md.
#pragma once
#include <cmath>
#include <cstdint>

#include "lowbit/engine/dtype.h"
#include "lowbit/engine/macros.h"
#include "lowbit/engine/scalar_types.h"
#include "lowbit/quant/element_round.h"
#include "lowbit/quant/spec.h"

namespace lowbit::quant {

// Statistics of one scale group, in f32 (exact: min/max/amax of the group's values).
struct GroupStats {
  float min = 0, max = 0, amax = 0;
};

// What a group needs to quantize and dequantize its elements.
struct ScaledParams {
  float scale = 1;     // dequant multiplier (torchao; modelopt fp8: inv), or s' (modelopt int)
  float inv = 1;       // quantize multiplier (or divisor for torchao fp8 / uint4: see kind)
  float zp = 0;        // integer zero point (int asymmetric) or float zero (uint4)
  float lo = 0;        // uint4: the group minimum the codes count from
  float amax = 0;      // clipping threshold for GradRule::clipped_amax
  float qmin = 0, qmax = 0;
  bool zero = false;   // modelopt zero guard: the whole group quantizes to 0
};

enum class Kind : uint8_t { int_torchao_sym, int_torchao_asym, int_modelopt, uint4_float_zero, fp8_torchao, fp8_modelopt };

LOWBIT_HD Kind kind_of(const QuantSpec& s) {
  if (s.format == Format::uint4) return Kind::uint4_float_zero;
  if (s.format == Format::fp8_e4m3 || s.format == Format::fp8_e5m2)
    return s.convention == Convention::modelopt ? Kind::fp8_modelopt : Kind::fp8_torchao;
  if (s.convention == Convention::modelopt) return Kind::int_modelopt;
  return s.symmetric ? Kind::int_torchao_sym : Kind::int_torchao_asym;
}

// Integer code range [qmin, qmax] of an int format under spec.
LOWBIT_HD void int_range(const QuantSpec& s, float* qmin, float* qmax) {
  const float hi = s.format == Format::int8 ? 127.0f : 7.0f;
  *qmax = hi;
  *qmin = (s.convention == Convention::modelopt && s.narrow_range) ? -hi : -hi - 1.0f;
}

// Rounds a value computed in f32 to the input dtype (torchao computes qparams in x's dtype).
LOWBIT_HD float round_to(float v, DType dtype) {
  if (dtype == DType::bf16) return bf16_bits_to_f32(f32_to_bf16_bits(v));
  if (dtype == DType::f16) return f16_bits_to_f32(f32_to_f16_bits(v));
  return v;
}

LOWBIT_HD float fp8_max(Format f) { return f == Format::fp8_e5m2 ? 57344.0f : 448.0f; }

// The fp8 value of t, already clamped to +-max (its code: f32_to_fp8_*_bits of it, exactly).
LOWBIT_HD float fp8_round(float t, Format f) { return f == Format::fp8_e5m2 ? e5m2_round(t) : e4m3_round(t); }

// Default eps per kind (spec.eps == 0): torchao int: smallest normal of f32 (2^-126);
// uint4: 1e-6 on the range; fp8 torchao: amax lower bound 1e-12 (torchao has none and returns
// NaN for all-zero groups; we follow its hp_value_lb=1e-12 variant); modelopt: its 2^-24 guard.
LOWBIT_HD float default_eps(Kind k) {
  switch (k) {
    case Kind::uint4_float_zero: return 1e-6f;
    case Kind::fp8_torchao: return 1e-12f;
    case Kind::int_modelopt:
    case Kind::fp8_modelopt: return 5.9604644775390625e-08f;  // 2^-24
    default: return 1.1754943508222875e-38f;                  // 2^-126
  }
}

// Quantization parameters from a group's statistics (dynamic and calibrated scales alike);
// k = kind_of(s), passed in so a kernel specialized on the kind can fold the switch.
LOWBIT_HD ScaledParams params_from_stats(const QuantSpec& s, Kind k, const GroupStats& g, DType xdtype) {
  const float eps = s.eps > 0 ? static_cast<float>(s.eps) : default_eps(k);
  ScaledParams p;
  p.amax = g.amax;
  switch (k) {
    case Kind::int_torchao_sym: {  // §3.1: s = amax / ((qmax - qmin) / 2), in x's dtype
      int_range(s, &p.qmin, &p.qmax);
      const float sc = round_to(g.amax / ((p.qmax - p.qmin) / 2.0f), xdtype);
      p.scale = sc > eps ? sc : eps;
      p.inv = 1.0f / p.scale;
      break;
    }
    case Kind::int_torchao_asym: {  // §3.2
      int_range(s, &p.qmin, &p.qmax);
      const float min_neg = g.min < 0 ? g.min : 0.0f, max_pos = g.max > 0 ? g.max : 0.0f;
      const float sc = round_to((max_pos - min_neg) / (p.qmax - p.qmin), xdtype);
      p.scale = sc > eps ? sc : eps;
      p.inv = 1.0f / p.scale;
      float zp = p.qmin - round_half_even(min_neg / p.scale);
      p.zp = zp < p.qmin ? p.qmin : (zp > p.qmax ? p.qmax : zp);
      break;
    }
    case Kind::int_modelopt: {  // §3.5: s' = maxbound / amax, q = RNE(x s'), x^ = q / s'
      int_range(s, &p.qmin, &p.qmax);
      p.zero = !(g.amax > eps);
      p.inv = p.zero ? 1.0f : p.qmax / g.amax;
      p.scale = p.inv;
      break;
    }
    case Kind::uint4_float_zero: {  // §3.4 (torchao Int4WeightFakeQuantizer, fp32 qparams)
      p.qmin = 0;
      p.qmax = 15;
      const float range = g.max - g.min;
      p.scale = (range > eps ? range : eps) / 15.0f;
      p.inv = p.scale;  // quantize divides: q = RNE((x - min) / s)
      p.zp = g.min + 8.0f * p.scale;
      p.lo = g.min;
      break;
    }
    case Kind::fp8_torchao: {  // §4.1: s = amax / max in x's dtype, quantize x / s
      p.qmax = fp8_max(s.format);
      p.qmin = -p.qmax;
      const float a = g.amax > eps ? g.amax : eps;
      p.scale = round_to(a / p.qmax, xdtype);
      p.inv = p.scale;
      break;
    }
    case Kind::fp8_modelopt: {  // §4.2: s' = 448 / amax, x^ = e4m3(x s') * (1 / s')
      p.qmax = 448.0f;
      p.qmin = -448.0f;
      const float a = g.amax > eps ? g.amax : 1.0f;
      p.inv = 448.0f / a;
      p.scale = 1.0f / p.inv;
      break;
    }
  }
  if (g.amax != g.amax) {  // a NaN in the group makes the whole group NaN (as torchao's max does)
    const float nan = f32_from_bits(0x7FC00000u);
    p.scale = p.inv = p.zp = p.lo = nan;
    p.zero = false;
  }
  return p;
}
LOWBIT_HD ScaledParams params_from_stats(const QuantSpec& s, const GroupStats& g, DType xdtype) {
  return params_from_stats(s, kind_of(s), g, xdtype);
}

// The pre-clamp rounded code (integer kinds) or pre-cast scaled value (fp8): what the
// clipped_rounded mask tests against [qmin, qmax].
LOWBIT_HD float scaled_value(Kind k, const ScaledParams& p, float x) {
  switch (k) {
    case Kind::int_torchao_sym:
    case Kind::int_torchao_asym: return round_half_even(x * p.inv) + p.zp;
    case Kind::int_modelopt: {
      const float r = round_half_even(x * p.inv);  // computed either way: selects vectorize
      return p.zero ? 0.0f : r;
    }
    case Kind::uint4_float_zero: return round_half_even((x - p.lo) / p.inv);
    case Kind::fp8_torchao: return x / p.inv;
    case Kind::fp8_modelopt: return x * p.inv;
  }
  return 0;
}

// Code for the scaled value v (clamped; fp8 rounded to the element grid).
LOWBIT_HD float code_of(Kind k, const ScaledParams& p, float v, Format f) {
  const float c = clamp_keep_nan(v, p.qmin, p.qmax);
  if (k == Kind::fp8_torchao || k == Kind::fp8_modelopt) return fp8_round(c, f);
  return c + 0.0f;  // integer codes have no -0: RNE(-0.3) = -0 becomes code 0, as stored
}

// Dequantized value of a code.
LOWBIT_HD float dequant_code(Kind k, const ScaledParams& p, float q) {
  switch (k) {
    case Kind::int_torchao_sym:
    case Kind::int_torchao_asym: return (q - p.zp) * p.scale;
    case Kind::int_modelopt: {
      const float v = q / p.scale;
      return p.zero ? 0.0f : v;
    }
    case Kind::uint4_float_zero: return (q - 8.0f) * p.scale + p.zp;
    case Kind::fp8_torchao: return q * p.scale;
    case Kind::fp8_modelopt: return q * p.scale;
  }
  return 0;
}

}  // namespace lowbit::quant
