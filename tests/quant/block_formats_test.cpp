// Block formats (NVFP4, MXFP4/MXFP8, GGUF Q4_0/Q8_0): the worked examples of
// ../shared/docs/quant_numerics.md §9 F (MX, FLOOR and RCEIL columns), G (NVFP4, torchao column)
// and H (GGUF H1-H6d) reproduced bit for bit; exhaustive E2M1 / E8M0 / UE4M3 tables written from
// the format definitions; E2M1 ties and saturation; all-zero and NaN/Inf blocks; random tensors
// against straightforward reference quantizers written here (table search for the element
// rounding, frexp/ldexp for the scales); fake_quant == dequantize(quantize(x)) bit for bit;
// packed sizes; the cuBLASLt 128x4 scale swizzle against a reshape/permute derivation.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>

#include "lowbit/engine/lowbit.h"
#include "lowbit/quant/block_codecs.h"
#include "lowbit/quant/block_formats.h"

namespace lowbit::quant {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

QuantSpec block_spec(Format f, MxScaleRule rule = MxScaleRule::rceil) {
  QuantSpec s;
  s.format = f;
  s.granularity = Granularity::per_group;
  s.group_size = f == Format::nvfp4 ? 16 : 32;
  s.mx_scale = rule;
  return s;
}

std::vector<float> vals(const Tensor& t) { return t.to(DType::f32).contiguous().to_vector<float>(); }
Tensor row(const std::vector<float>& v) { return from_vector(v, {1, static_cast<int64_t>(v.size())}); }
std::vector<float> padded(std::vector<float> v, size_t n) {
  v.resize(n, 0.0f);
  return v;
}
std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.raw_data());
  return std::vector<uint8_t>(p, p + dtype_nbytes(c.dtype(), c.numel()));
}
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
// Identical bits, except that any NaN matches any NaN.
bool same(float a, float b) { return (a != a && b != b) || bits(a) == bits(b); }

#define EXPECT_SAME(got, want) EXPECT_PRED2(same, got, want)

void expect_prefix(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_GE(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_TRUE(same(got[i], want[i])) << what << " element " << i << ": got " << got[i] << " want " << want[i];
}

// Quantize -> dequantize and the fused fake quant (with mask); checks fake == deq bitwise.
struct Result {
  QTensor q;
  std::vector<float> deq, fake;
  std::vector<uint8_t> mask;
};
Result run(const Tensor& x, const QuantSpec& spec, float global_amax = 0) {
  Result r;
  r.q = quantize_blocks(x, spec, global_amax);
  const Tensor d = dequantize_blocks(r.q, x.dtype());
  r.deq = vals(d);
  r.mask.assign(static_cast<size_t>(x.numel()), 7);
  const Tensor f = fake_quant_blocks(x, spec, global_amax, r.mask.data());
  EXPECT_EQ(f.dtype(), x.dtype());
  EXPECT_EQ(f.shape(), x.shape());
  EXPECT_EQ(d.dtype(), x.dtype());
  r.fake = vals(f);
  EXPECT_EQ(r.deq.size(), r.fake.size());
  for (size_t i = 0; i < r.deq.size(); ++i) {
    if (!same(r.deq[i], r.fake[i])) {
      ADD_FAILURE() << format_name(spec.format) << ": fake_quant != dequantize(quantize) at " << i << ": " << r.fake[i]
                    << " vs " << r.deq[i];
      break;
    }
  }
  return r;
}

// ---- independent value tables (from the format definitions) ----
const float kE2M1Mag[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};

double e4m3_value(uint8_t b) {  // E4M3FN: bias 7; 0x7F/0xFF NaN
  if ((b & 0x7F) == 0x7F) return std::nan("");
  const int e = (b >> 3) & 0xF, m = b & 7;
  const double mag = e == 0 ? m * std::ldexp(1.0, -9) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
  return (b & 0x80) ? -mag : mag;
}

// Nearest value of a sorted table of magnitudes, ties to the even index (= even mantissa bit,
// because the tables are listed in code order). a >= 0, already clamped to the table max.
int nearest_even_index(const std::vector<double>& table, double a) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(table.size()); ++i) {
    const double dn = std::fabs(table[i] - a), db = std::fabs(table[best] - a);
    if (dn < db || (dn == db && i % 2 == 0)) best = i;
  }
  return best;
}
const std::vector<double>& e2m1_table() {
  static const std::vector<double> t(kE2M1Mag, kE2M1Mag + 8);
  return t;
}
const std::vector<double>& e4m3_table() {  // codes 0x00..0x7E
  static const std::vector<double> t = [] {
    std::vector<double> v;
    for (int c = 0; c <= 0x7E; ++c) v.push_back(e4m3_value(static_cast<uint8_t>(c)));
    return v;
  }();
  return t;
}
// RNE onto a table with saturation, keeping the sign (so -0.1 -> -0).
double round_to_table(const std::vector<double>& table, double t) {
  const double a = std::min(std::fabs(t), table.back());
  const double q = table[static_cast<size_t>(nearest_even_index(table, a))];
  return std::signbit(t) ? -q : q;
}

// ---- reference quantizers (straight from the doc's formulas) ----
// MX: returns x_hat for one block (all finite).
std::vector<float> ref_mx(const std::vector<float>& x, bool fp8, MxScaleRule rule, int* e_out) {
  double amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(static_cast<double>(v)));
  const int emax = fp8 ? 8 : 2;
  const float maxe = fp8 ? 448.0f : 6.0f;
  int e;
  if (rule == MxScaleRule::floor) {
    e = amax == 0 ? -127 : std::max(-127, std::ilogb(amax) - emax);
  } else {
    const float d = static_cast<float>(amax) * (1.0f / maxe);  // f32(amax * f32(1/max))
    if (d == 0) {
      e = -127;
    } else {
      const int lg = std::ilogb(d);
      e = std::max(-127, lg + (std::ldexp(1.0, lg) == d ? 0 : 1));  // ceil(log2 d)
    }
  }
  *e_out = e;
  std::vector<float> out;
  for (float v : x) {
    const double t = std::ldexp(static_cast<double>(v), -e);
    const double q = round_to_table(fp8 ? e4m3_table() : e2m1_table(), t);
    out.push_back(static_cast<float>(std::ldexp(q, e)));
  }
  return out;
}

// NVFP4 torchao two-level, pts given.
std::vector<float> ref_nvfp4(const std::vector<float>& x, float pts, double* s8_out) {
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  double s8;
  if (pts > 0) {
    const float bs = amax / 6.0f;
    float v = bs / pts;
    v = std::min(448.0f, std::max(0.015625f, v));
    s8 = round_to_table(e4m3_table(), v);
  } else {
    s8 = 0.015625;
  }
  *s8_out = s8;
  const float r = pts > 0 ? (1.0f / pts) / static_cast<float>(s8) : 0.0f;
  const float ds = pts * static_cast<float>(s8);
  std::vector<float> out;
  for (float v : x) {
    float t = v * r;
    t = std::min(6.0f, std::max(-6.0f, t));
    out.push_back(static_cast<float>(round_to_table(e2m1_table(), t)) * ds);
  }
  return out;
}

float f16_round(float v) { return static_cast<float>(Half(v)); }

std::vector<float> ref_q4_0(const std::vector<float>& x, std::vector<int>* codes) {
  float mx = 0, amax = 0;
  for (float v : x)
    if (std::fabs(v) > amax) {
      amax = std::fabs(v);
      mx = v;
    }
  const float d = mx / -8.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  const float d16 = f16_round(d);
  std::vector<float> out;
  for (float v : x) {
    const float s = v * id + 8.5f;
    const int raw = static_cast<int>(std::floor(s));
    codes->push_back(raw);  // before the min(15, .): 16 means clipped
    out.push_back(static_cast<float>(std::min(15, raw) - 8) * d16);
  }
  return out;
}

std::vector<float> ref_q8_0(const std::vector<float>& x) {
  float amax = 0;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  const float d = amax / 127.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  const float d16 = f16_round(d);
  std::vector<float> out;
  for (float v : x) {
    const float s = v * id;
    const auto q = static_cast<int>(std::copysign(std::floor(std::fabs(s) + 0.5f), s));  // half away; int8 has no -0
    out.push_back(static_cast<float>(q) * d16);
  }
  return out;
}

// ================================================================================================
// Exhaustive element / scale tables
// ================================================================================================

TEST(BlockCodecs, E2M1AllSixteenCodes) {
  for (int c = 0; c < 16; ++c) {
    const float want = (c & 8) ? -kE2M1Mag[c & 7] : kE2M1Mag[c & 7];
    EXPECT_SAME(fp4_e2m1_bits_to_f32(static_cast<uint8_t>(c)), want);
    // Encoding the exact value (scale 1) returns the code, -0 included.
    EXPECT_EQ(mxfp4_encode(want, 1.0f), c) << "code " << c;
    EXPECT_EQ(nvfp4_encode(want, 1.0f), c) << "code " << c;
  }
}

TEST(BlockCodecs, E2M1TiesAndSaturation) {
  // Ties: 0.75, 1.75, 3.5 round up (to the even code); 0.25, 1.25, 2.5, 5 round down.
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  const float want[] = {0.0f, 1.0f, 1.0f, 2.0f, 2.0f, 4.0f, 4.0f};
  for (int i = 0; i < 7; ++i) {
    EXPECT_SAME(fp4_e2m1_bits_to_f32(mxfp4_encode(ties[i], 1.0f)), want[i]) << ties[i];
    EXPECT_SAME(fp4_e2m1_bits_to_f32(mxfp4_encode(-ties[i], 1.0f)), -want[i]) << -ties[i];
  }
  // Saturation: anything above 6 is 6.
  for (float v : {6.0f, 6.01f, 7.0f, 100.0f, 1e30f}) {
    EXPECT_SAME(fp4_e2m1_bits_to_f32(mxfp4_encode(v, 1.0f)), 6.0f);
    EXPECT_SAME(fp4_e2m1_bits_to_f32(mxfp4_encode(-v, 1.0f)), -6.0f);
  }
  // The same through a whole MXFP4 block with scale 1 (FLOOR: amax 7.5 -> e = 2 - 2 = 0),
  // including the mask (|x / s| <= 6 inclusive).
  std::vector<float> x = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, 6.0f, 7.5f,
                          -0.25f, -0.75f, -1.25f, -1.75f, -2.5f, -3.5f, -5.0f, -6.0f, -6.5f};
  const std::vector<float> w = {0, 1, 1, 2, 2, 4, 4, 6, 6, -0.0f, -1, -1, -2, -2, -4, -4, -6, -6};
  const std::vector<uint8_t> wm = {1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0};
  const Result r = run(row(padded(x, 32)), block_spec(Format::mxfp4, MxScaleRule::floor));
  EXPECT_EQ(bytes_of(r.q.scales)[0], 127);
  expect_prefix(r.deq, w, "mxfp4 ties");
  for (size_t i = 0; i < wm.size(); ++i) EXPECT_EQ(r.mask[i], wm[i]) << i;
  // E4M3 saturation through MXFP8 with scale 1 (FLOOR, amax in [256, 512)): 464 (the RNE tie
  // to 512) and -500 give +-448.
  const Result r8 = run(row(padded({300.0f, 464.0f, -500.0f, 448.0f}, 32)), block_spec(Format::mxfp8, MxScaleRule::floor));
  EXPECT_EQ(bytes_of(r8.q.scales)[0], 127);
  expect_prefix(r8.deq, {288.0f, 448.0f, -448.0f, 448.0f}, "mxfp8 saturation");
  EXPECT_EQ(r8.mask[0], 1);
  EXPECT_EQ(r8.mask[1], 0);
  EXPECT_EQ(r8.mask[2], 0);
  EXPECT_EQ(r8.mask[3], 1);
}

TEST(BlockCodecs, E8M0AllBytes) {
  for (int b = 0; b < 256; ++b) {
    const auto u = static_cast<uint8_t>(b);
    if (b == 255) {
      EXPECT_TRUE(std::isnan(e8m0_to_f32(u)));
      EXPECT_EQ(e8m0_reciprocal(u), 255);
      continue;
    }
    EXPECT_EQ(static_cast<double>(e8m0_to_f32(u)), std::ldexp(1.0, b - 127)) << b;
    EXPECT_EQ(e8m0_reciprocal(u), 254 - b);
    // exact: 2^(b-127) * 2^(127-b) = 1 in f32
    EXPECT_EQ(e8m0_to_f32(u) * e8m0_to_f32(e8m0_reciprocal(u)), 1.0f) << b;
  }
}

TEST(BlockCodecs, E8M0DequantizeEveryScaleByte) {
  // Hand-built MXFP4 and MXFP8 blocks with every scale byte and a spread of codes.
  for (Format f : {Format::mxfp4, Format::mxfp8}) {
    QTensor q;
    q.spec = block_spec(f);
    q.shape = {256, 32};
    std::vector<uint8_t> scales(256), codes;
    for (int b = 0; b < 256; ++b) scales[static_cast<size_t>(b)] = static_cast<uint8_t>(b);
    for (int b = 0; b < 256; ++b)
      for (int j = 0; j < 32; ++j) {
        if (f == Format::mxfp4) {
          if (j % 2 == 0) codes.push_back(static_cast<uint8_t>(((j / 2) % 16) | (((j / 2 + 5) % 16) << 4)));
        } else {
          codes.push_back(static_cast<uint8_t>((b * 7 + j * 11) % 256 == 0x7F ? 0x38 : (b * 7 + j * 11) % 256));
        }
      }
    q.codes = from_bytes(codes, f == Format::mxfp4 ? Shape{256, 16} : Shape{256, 32},
                         f == Format::mxfp4 ? DType::u8 : DType::fp8_e4m3);
    q.scales = from_bytes(scales, {256, 1}, DType::u8);
    const std::vector<float> d = vals(dequantize_blocks(q));
    for (int b = 0; b < 256; ++b)
      for (int j = 0; j < 32; ++j) {
        double code_val;
        if (f == Format::mxfp4) {
          const int c = j % 2 == 0 ? (j / 2) % 16 : (j / 2 + 5) % 16;
          code_val = (c & 8) ? -kE2M1Mag[c & 7] : kE2M1Mag[c & 7];
        } else {
          code_val = e4m3_value(codes[static_cast<size_t>(b * 32 + j)]);
        }
        const float want = b == 255 ? kNaN : static_cast<float>(code_val * std::ldexp(1.0, b - 127));
        const float got = d[static_cast<size_t>(b * 32 + j)];
        if (!same(got, want)) {
          ADD_FAILURE() << format_name(f) << " scale byte " << b << " element " << j << ": got " << got << " want " << want;
          return;
        }
      }
  }
}

TEST(BlockCodecs, E8M0ScaleRulesMatchLog2Formulas) {
  // FLOOR: floor(log2 amax) - emax, clamped at -127; RCEIL: ceil(log2 f32(amax * f32(1/max))),
  // clamped at -127. Swept over many bit patterns, f32 subnormals and powers of two.
  std::vector<float> amaxes = {0.0f, std::numeric_limits<float>::denorm_min(), 1e-40f, 1e-39f,
                               std::numeric_limits<float>::min(), 1.0f, 6.0f, 448.0f, 6.0000005f, 447.99997f,
                               std::numeric_limits<float>::max()};
  for (int e = -149; e <= 127; ++e) {
    amaxes.push_back(std::ldexp(1.0f, e));
    amaxes.push_back(std::ldexp(1.5f, e));
    amaxes.push_back(6.0f * std::ldexp(1.0f, e));
    amaxes.push_back(448.0f * std::ldexp(1.0f, e));
    amaxes.push_back(std::nextafter(6.0f * std::ldexp(1.0f, e), kInf));
  }
  std::mt19937 gen(7);
  for (int i = 0; i < 20000; ++i) {
    const uint32_t u = gen() & 0x7F7FFFFFu;  // finite, non-negative
    float f;
    std::memcpy(&f, &u, 4);
    amaxes.push_back(f);
  }
  for (float a : amaxes) {
    if (!std::isfinite(a)) continue;
    for (bool fp8 : {false, true}) {
      const int emax = fp8 ? 8 : 2;
      const int floor_e = a == 0 ? -127 : std::max(-127, std::ilogb(a) - emax);
      EXPECT_EQ(mx_scale_byte(a, fp8, MxScaleRule::floor), floor_e + 127) << a << " fp8 " << fp8;
      const float d = a * (fp8 ? 1.0f / 448.0f : 1.0f / 6.0f);
      int ceil_e = -127;
      if (d > 0) {
        const int lg = std::ilogb(d);
        ceil_e = std::max(-127, lg + (std::ldexp(1.0, lg) == d ? 0 : 1));
      }
      EXPECT_EQ(mx_scale_byte(a, fp8, MxScaleRule::rceil), ceil_e + 127) << a << " fp8 " << fp8;
    }
  }
  for (float a : {kNaN, kInf}) {
    EXPECT_EQ(mx_scale_byte(a, false, MxScaleRule::floor), 0xFF);
    EXPECT_EQ(mx_scale_byte(a, true, MxScaleRule::rceil), 0xFF);
  }
}

TEST(BlockCodecs, Ue4m3EveryPositiveCodeAsBlockScale) {
  // pts = 1 exactly (global amax 2688), so s8 = e4m3(clamp(amax / 6, 2^-6, 448)).
  const QuantSpec spec = block_spec(Format::nvfp4);
  for (int c = 0; c <= 0x7E; ++c) {
    const double v = e4m3_value(static_cast<uint8_t>(c));
    // A block whose amax is exactly 6 * v: its scale is code c (clamped below 2^-6), the
    // amax element decodes to 6 * s8, and -3 * v, +1.5 * v land on -3 and 1.5 steps.
    const auto amax = static_cast<float>(6.0 * v);
    std::vector<float> x(16, 0.0f);
    x[0] = amax;
    x[1] = static_cast<float>(-3.0 * v);
    x[2] = static_cast<float>(1.5 * v);
    const Result r = run(row(x), spec, 2688.0f);
    EXPECT_EQ(r.q.global_scale, 1.0f);
    const int want_code = std::max(c, 0x08);
    ASSERT_EQ(bytes_of(r.q.scales)[0], want_code) << "code " << c;
    const double s8 = e4m3_value(static_cast<uint8_t>(want_code));
    if (c >= 0x08) {
      EXPECT_SAME(r.deq[0], static_cast<float>(6.0 * s8));
      EXPECT_SAME(r.deq[1], static_cast<float>(-3.0 * s8));
      EXPECT_SAME(r.deq[2], static_cast<float>(1.5 * s8));
    }
    // Halfway to the next code rounds to the even code (c even stays, c odd goes up).
    if (c >= 0x08 && c < 0x7E) {
      const double mid = (v + e4m3_value(static_cast<uint8_t>(c + 1))) / 2;
      std::vector<float> y(16, 0.0f);
      y[5] = static_cast<float>(6.0 * mid);
      ASSERT_EQ(static_cast<double>(y[5]), 6.0 * mid);  // exact in f32
      const QTensor q = quantize_blocks(row(y), spec, 2688.0f);
      EXPECT_EQ(bytes_of(q.scales)[0], c % 2 == 0 ? c : c + 1) << "tie above code " << c;
    }
  }
  // Above 448 clamps to 448 (0x7E).
  EXPECT_EQ(bytes_of(quantize_blocks(row(padded({1e6f}, 16)), spec, 2688.0f).scales)[0], 0x7E);
}

TEST(BlockCodecs, Ue4m3DequantizeEveryScaleByte) {
  // All 256 UE4M3/E4M3 bytes as stored block scales: x_hat = q * f32(pts * value(byte)).
  QTensor q;
  q.spec = block_spec(Format::nvfp4);
  q.shape = {256, 16};
  q.global_scale = 0.37202381f;
  std::vector<uint8_t> codes, scales;
  for (int b = 0; b < 256; ++b) {
    scales.push_back(static_cast<uint8_t>(b));
    for (int j = 0; j < 8; ++j) codes.push_back(static_cast<uint8_t>((2 * j) | ((2 * j + 1) << 4)));
  }
  q.codes = from_bytes(codes, {256, 8}, DType::u8);
  q.scales = from_bytes(scales, {256, 1}, DType::fp8_e4m3);
  const std::vector<float> d = vals(dequantize_blocks(q));
  for (int b = 0; b < 256; ++b) {
    const float ds = q.global_scale * static_cast<float>(e4m3_value(static_cast<uint8_t>(b)));
    for (int j = 0; j < 16; ++j) {
      const float qv = (j & 8) ? -kE2M1Mag[j & 7] : kE2M1Mag[j & 7];
      EXPECT_TRUE(same(d[static_cast<size_t>(b * 16 + j)], qv * ds)) << "scale byte " << b << " code " << j;
    }
  }
}

// ================================================================================================
// Worked examples (quant_numerics.md §9)
// ================================================================================================

struct MxCase {
  const char* name;
  Format f;
  std::vector<float> x;
  int floor_byte;
  std::vector<float> floor_out;
  int rceil_byte;
  std::vector<float> rceil_out;
};

TEST(BlockFormatsWorked, F_MX) {
  const std::vector<MxCase> cases = {
      {"F1", Format::mxfp8, {1, 0.3f, -0.01f, 0.0009f, 0.5f, -0.75f, 0.2f, 0.001f}, 127 - 8,
       {1, 0.3125f, -0.009765625f, 0.000915527344f, 0.5f, -0.75f, 0.203125f, 0.0009765625f}, 127 - 8,
       {1, 0.3125f, -0.009765625f, 0.000915527344f, 0.5f, -0.75f, 0.203125f, 0.0009765625f}},
      {"F2", Format::mxfp8, {500, 1, -3.3f, 0.2f, 100, 7, -260, 0}, 127,
       {448, 1, -3.25f, 0.203125f, 96, 7, -256, 0}, 128,
       {512, 1, -3.25f, 0.203125f, 96, 7, -256, 0}},
      {"F3", Format::mxfp4, {0.1f, 0.25f, 0.75f, 1, 1.6f, 2.9f, 5, 5.9f}, 127,
       {0, 0, 1, 1, 1.5f, 3, 4, 6}, 127, {0, 0, 1, 1, 1.5f, 3, 4, 6}},
      {"F4", Format::mxfp4, {7, 3, 1, 0.4f, -2.2f, 0, 5.5f, -6.9f}, 127,
       {6, 3, 1, 0.5f, -2, 0, 6, -6}, 128, {8, 3, 1, 0, -2, 0, 6, -6}},
      {"F5", Format::mxfp4, {0.3f, -0.2f, 0.06f, 0.15f, 0, 0.01f, -0.3f, 0.11f}, 127 - 4,
       {0.25f, -0.1875f, 0.0625f, 0.125f, 0, 0, -0.25f, 0.125f}, 127 - 4,
       {0.25f, -0.1875f, 0.0625f, 0.125f, 0, 0, -0.25f, 0.125f}},
      {"F6", Format::mxfp4, {0, 0, 0, 0, 0, 0, 0, 0}, 0, {0, 0, 0, 0, 0, 0, 0, 0}, 0, {0, 0, 0, 0, 0, 0, 0, 0}},
      {"F7", Format::mxfp8, {300, 0.001f, 0.0015f, -0.0007f, 1.3f, 0, 0.1f, -250}, 127,
       {288, 0.001953125f, 0.001953125f, -0.0f, 1.25f, 0, 0.1015625f, -256}, 127,
       {288, 0.001953125f, 0.001953125f, -0.0f, 1.25f, 0, 0.1015625f, -256}},
  };
  for (const MxCase& c : cases) {
    for (MxScaleRule rule : {MxScaleRule::floor, MxScaleRule::rceil}) {
      SCOPED_TRACE(std::string(c.name) + (rule == MxScaleRule::floor ? " FLOOR" : " RCEIL"));
      const Result r = run(row(padded(c.x, 32)), block_spec(c.f, rule));
      EXPECT_EQ(bytes_of(r.q.scales)[0], rule == MxScaleRule::floor ? c.floor_byte : c.rceil_byte);
      expect_prefix(r.deq, rule == MxScaleRule::floor ? c.floor_out : c.rceil_out, c.name);
      for (size_t i = 8; i < 32; ++i) EXPECT_SAME(r.deq[i], 0.0f);
    }
  }
  // Masks where FLOOR clips: F2's 500 (> 448) and F4's 7 and -6.9 (> 6).
  const Result f2 = run(row(padded(cases[1].x, 32)), block_spec(Format::mxfp8, MxScaleRule::floor));
  EXPECT_EQ(f2.mask[0], 0);
  EXPECT_EQ(std::count(f2.mask.begin(), f2.mask.end(), 1), 31);
  const Result f4 = run(row(padded(cases[3].x, 32)), block_spec(Format::mxfp4, MxScaleRule::floor));
  EXPECT_EQ(f4.mask[0], 0);
  EXPECT_EQ(f4.mask[7], 0);
  EXPECT_EQ(std::count(f4.mask.begin(), f4.mask.end(), 1), 30);
  const Result f4r = run(row(padded(cases[3].x, 32)), block_spec(Format::mxfp4, MxScaleRule::rceil));
  EXPECT_EQ(std::count(f4r.mask.begin(), f4r.mask.end(), 1), 32);
}

const std::vector<float> kG = {0.1f, -0.2f, 0.3f, 0.45f, 0.6f, -0.75f, 0.9f, 1.05f,
                               1.2f, -1.35f, 1.5f, 1.65f, 1.8f, -1.95f, 2.1f, 2.25f};

TEST(BlockFormatsWorked, G_NVFP4_torchao) {
  const QuantSpec spec = block_spec(Format::nvfp4);
  struct G {
    const char* name;
    float tensor_amax;
    double s8;
    float dq_scale;
    std::vector<float> out;
  };
  const float a = 0.193452388f, b = 0.386904776f, c = 0.580357194f, d = 0.773809552f, e = 1.16071439f,
              f = 1.5476191f, g = 2.32142878f;
  const float h = 0.18601191f, i = 0.372023821f, j = 0.558035731f, k = 0.744047642f, l = 1.11607146f,
              m = 1.48809528f, n = 2.23214293f;
  const std::vector<G> cases = {
      {"G1", 2.25f, 448, 0.375f,
       {0.1875f, -0.1875f, 0.375f, 0.375f, 0.5625f, -0.75f, 0.75f, 1.125f, 1.125f, -1.5f, 1.5f, 1.5f, 1.5f, -2.25f,
        2.25f, 2.25f}},
      {"G2", 10, 104, b, {a, -a, b, b, c, -d, d, e, e, -e, f, f, f, -g, g, g}},
      {"G3", 1000, 1, i, {h, -h, i, i, j, -k, k, l, l, -m, m, m, m, -n, n, n}},
  };
  for (const G& t : cases) {
    SCOPED_TRACE(t.name);
    const Result r = run(row(kG), spec, t.tensor_amax);
    EXPECT_EQ(r.q.global_scale, t.tensor_amax / 2688.0f);
    EXPECT_EQ(e4m3_value(bytes_of(r.q.scales)[0]), t.s8);
    EXPECT_SAME(r.q.global_scale * static_cast<float>(t.s8), t.dq_scale);
    expect_prefix(r.deq, t.out, t.name);
  }
  // G1 with the tensor amax taken from x (global_amax <= 0).
  expect_prefix(run(row(kG), spec, 0.0f).deq, cases[0].out, "G1 dynamic");
  expect_prefix(run(row(kG), spec, -1.0f).deq, cases[0].out, "G1 dynamic (negative)");

  // G5: a tiny block in a tensor with amax 100: torchao clamps s8 to 2^-6.
  {
    const std::vector<float> x = padded({0.001f, -0.0005f, 0.0002f, 0, 0.0007f, -0.001f, 0.0003f, 0.0001f}, 16);
    const Result r = run(row(x), spec, 100.0f);
    EXPECT_EQ(bytes_of(r.q.scales)[0], 0x08);
    expect_prefix(r.deq,
                  {0.000871930795f, -0.000581287197f, 0.000290643598f, 0, 0.000581287197f, -0.000871930795f,
                   0.000290643598f, 0},
                  "G5");
  }
  // G6: an all-zero block next to G's block (tensor amax from x): scale 2^-6, output 0.
  {
    std::vector<float> x = kG;
    x.resize(32, 0.0f);
    const Result r = run(from_vector(x, {2, 16}), spec);
    EXPECT_EQ(bytes_of(r.q.scales)[1], 0x08);
    expect_prefix(r.deq, cases[0].out, "G6 block 0");
    for (size_t q = 16; q < 32; ++q) EXPECT_SAME(r.deq[q], 0.0f);
  }
  // An all-zero tensor: pts = 0, all zeros.
  {
    const Result r = run(from_vector(std::vector<float>(48, 0.0f), {3, 16}), spec);
    EXPECT_EQ(r.q.global_scale, 0.0f);
    for (float v : r.deq) EXPECT_SAME(v, 0.0f);
    for (uint8_t mk : r.mask) EXPECT_EQ(mk, 1);
  }
}

TEST(BlockFormatsWorked, H_GGUF) {
  struct H {
    const char* name;
    Format f;
    std::vector<float> x;
    float d16;
    std::vector<int> q;
    std::vector<float> out;
  };
  const std::vector<H> cases = {
      {"H1", Format::gguf_q4_0, {-2, 1, 0.5f, 0.25f, 0.124f, 0.126f, 1.9f, -0.3f}, 0.25f,
       {0, 12, 10, 9, 8, 9, 15, 7}, {-2, 1, 0.5f, 0.25f, 0, 0.25f, 1.75f, -0.25f}},
      {"H2", Format::gguf_q4_0, {2, -2, 1, -1, 0.125f, -0.125f, 0.375f, -0.375f}, -0.25f,
       {0, 15, 4, 12, 8, 9, 7, 10}, {2, -1.75f, 1, -1, -0.0f, -0.25f, 0.25f, -0.5f}},
      {"H3", Format::gguf_q4_0, {0.3f, -0.1f, 0.05f, 0, 0.2f, -0.25f, 0.15f, 0.299f}, -0.0375061035f,
       {0, 11, 7, 8, 3, 15, 4, 0},
       {0.300048828f, -0.112518311f, 0.0375061035f, -0.0f, 0.187530518f, -0.262542725f, 0.150024414f,
        0.300048828f}},
      {"H4", Format::gguf_q4_0, {0, 0, 0, 0, 0, 0, 0, 0}, -0.0f, {8, 8, 8, 8, 8, 8, 8, 8},
       {-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f}},
      {"H5", Format::gguf_q8_0, {1.27f, -0.635f, 0.005f, 0.015f, -0.025f, 0.3f, 0, 1}, 0.0100021362f,
       {127, -64, 1, 2, -3, 30, 0, 100},
       {1.2702713f, -0.640136719f, 0.0100021362f, 0.0200042725f, -0.0300064087f, 0.300064087f, 0, 1.00021362f}},
      {"H6", Format::gguf_q8_0, {0.1f, -0.05f, 0.0003937f, 0.02f, -0.1f, 0, 0.07f, 0.0125f}, 0.000787258148f,
       {127, -64, 0, 25, -127, 0, 89, 16},
       {0.0999817848f, -0.0503845215f, 0, 0.0196814537f, -0.0999817848f, 0, 0.0700659752f, 0.0125961304f}},
      {"H6b", Format::gguf_q8_0, {-1.27f, 0.635f, -0.005f, -0.015f, 0.025f, -0.3f, 0, -1}, 0.0100021362f,
       {-127, 64, -1, -2, 3, -30, 0, -100},
       {-1.2702713f, 0.640136719f, -0.0100021362f, -0.0200042725f, 0.0300064087f, -0.300064087f, 0, -1.00021362f}},
      {"H6c", Format::gguf_q8_0, {3, -0.0118110236f, 0.0118110237f, 1.5f, -2.99f, 0, 0.001f, 2}, 0.0236206055f,
       {127, 0, 0, 64, -127, 0, 0, 85}, {2.99981689f, 0, 0, 1.51171875f, -2.99981689f, 0, 0, 2.00775146f}},
      {"H6d", Format::gguf_q8_0, {0, 0, 0, 0, 0, 0, 0, 0}, 0.0f, {0, 0, 0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 0}},
  };
  for (const H& t : cases) {
    SCOPED_TRACE(t.name);
    const Result r = run(row(padded(t.x, 32)), block_spec(t.f));
    ASSERT_EQ(r.q.scales.dtype(), DType::f16);
    EXPECT_SAME(vals(r.q.scales)[0], t.d16);
    const std::vector<uint8_t> cb = bytes_of(r.q.codes);
    for (size_t i = 0; i < 8; ++i) {
      const int code = t.f == Format::gguf_q4_0 ? (cb[i] & 0xF) : static_cast<int8_t>(cb[i]);
      EXPECT_EQ(code, t.q[i]) << "element " << i;
    }
    if (t.f == Format::gguf_q4_0) {
      // ggml layout: elements 16..23 (zero padding -> code 8) sit in the high nibbles of bytes 0..7.
      for (size_t i = 0; i < 16; ++i) EXPECT_EQ(cb[i] >> 4, 8) << "high nibble of byte " << i;
    }
    expect_prefix(r.deq, t.out, t.name);
    for (size_t i = 8; i < 32; ++i) EXPECT_SAME(r.deq[i], 0.0f * t.d16);  // zero padding keeps d's sign
  }
  // Masks: H1's 1.9 and H2's -2 were clipped from code 16 to 15.
  const Result h1 = run(row(padded(cases[0].x, 32)), block_spec(Format::gguf_q4_0));
  EXPECT_EQ(h1.mask[6], 0);
  EXPECT_EQ(std::count(h1.mask.begin(), h1.mask.end(), 1), 31);
  const Result h2 = run(row(padded(cases[1].x, 32)), block_spec(Format::gguf_q4_0));
  EXPECT_EQ(h2.mask[1], 0);
  EXPECT_EQ(std::count(h2.mask.begin(), h2.mask.end(), 1), 31);
  const Result h5 = run(row(padded(cases[4].x, 32)), block_spec(Format::gguf_q8_0));
  EXPECT_EQ(std::count(h5.mask.begin(), h5.mask.end(), 1), 32);
}

TEST(BlockFormatsWorked, Q4_0NibbleLayout) {
  // Element j (j < 16) in the low nibble of byte j, element j + 16 in the high nibble.
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[static_cast<size_t>(j)] = static_cast<float>(j % 16) - 8.0f;  // codes j % 16
  x[0] = -8.0f;  // signed max -8 -> d = 1
  const QTensor q = quantize_blocks(row(x), block_spec(Format::gguf_q4_0));
  const std::vector<uint8_t> cb = bytes_of(q.codes);
  ASSERT_EQ(cb.size(), 16u);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(cb[static_cast<size_t>(j)], j | (j << 4)) << j;
  // nvfp4 / mxfp4: element 2i low, 2i + 1 high.
  std::vector<float> y = padded({0.5f, 6.0f, -1.0f, 0.0f}, 32);
  const QTensor m = quantize_blocks(row(y), block_spec(Format::mxfp4, MxScaleRule::floor));
  EXPECT_EQ(bytes_of(m.codes)[0], 0x71);
  EXPECT_EQ(bytes_of(m.codes)[1], 0x0A);
}

// ================================================================================================
// All-zero and non-finite blocks
// ================================================================================================

TEST(BlockFormats, AllZeroBlocks) {
  for (Format f : {Format::nvfp4, Format::mxfp4, Format::mxfp8, Format::gguf_q4_0, Format::gguf_q8_0}) {
    const Result r = run(from_vector(std::vector<float>(64, 0.0f), {2, 32}), block_spec(f, MxScaleRule::floor));
    for (float v : r.deq) EXPECT_EQ(v, 0.0f) << format_name(f);
    for (uint8_t mk : r.mask) EXPECT_EQ(mk, 1) << format_name(f);
    if (f == Format::mxfp4 || f == Format::mxfp8) {
      for (uint8_t s : bytes_of(r.q.scales)) EXPECT_EQ(s, 0);
      const Result rc = run(from_vector(std::vector<float>(64, 0.0f), {2, 32}), block_spec(f, MxScaleRule::rceil));
      for (uint8_t s : bytes_of(rc.q.scales)) EXPECT_EQ(s, 0);
    }
  }
}

TEST(BlockFormats, NonFiniteValuesPoisonOnlyTheirBlock) {
  for (Format f : {Format::nvfp4, Format::mxfp4, Format::mxfp8, Format::gguf_q4_0, Format::gguf_q8_0}) {
    for (float bad : {kNaN, kInf, -kInf}) {
      SCOPED_TRACE(format_name(f) + " with " + std::to_string(bad));
      const int bs = f == Format::nvfp4 ? 16 : 32;
      // block 0: finite, block 1: one bad value, block 2: finite.
      std::vector<float> x(static_cast<size_t>(3 * bs));
      for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
      x[static_cast<size_t>(bs + 5)] = bad;
      const Result r = run(from_vector(x, {3, bs}), block_spec(f), 3.0f);
      for (int i = bs; i < 2 * bs; ++i) {
        EXPECT_TRUE(std::isnan(r.deq[static_cast<size_t>(i)])) << i;
        EXPECT_EQ(r.mask[static_cast<size_t>(i)], 0) << i;
      }
      // The scale of block 1 is the format's NaN.
      const std::vector<float> sc = vals(r.q.scales);
      if (f == Format::mxfp4 || f == Format::mxfp8) {
        EXPECT_EQ(bytes_of(r.q.scales)[1], 0xFF);
      } else {
        EXPECT_TRUE(std::isnan(sc[1]));
      }
      // Blocks 0 and 2 are exactly what they give without the bad block (nvfp4: same tensor amax).
      std::vector<float> good(x.begin(), x.begin() + bs);
      good.insert(good.end(), x.begin() + 2 * bs, x.end());
      const Result g = run(from_vector(good, {2, bs}), block_spec(f), 3.0f);
      for (int i = 0; i < bs; ++i) {
        EXPECT_SAME(r.deq[static_cast<size_t>(i)], g.deq[static_cast<size_t>(i)]);
        EXPECT_SAME(r.deq[static_cast<size_t>(2 * bs + i)], g.deq[static_cast<size_t>(bs + i)]);
      }
    }
  }
  // nvfp4 with a non-finite caller-given global amax is an error.
  EXPECT_THROW(quantize_blocks(row(kG), block_spec(Format::nvfp4), kInf), Error);
  EXPECT_THROW(fake_quant_blocks(row(kG), block_spec(Format::nvfp4), kNaN, nullptr), Error);
}

TEST(BlockFormats, ExtremeScalesStayDefined) {
  // Tiny blocks whose scales overflow their reciprocal (ggml d subnormal, nvfp4 1/pts = inf),
  // and huge values (f16 d overflows to inf as in ggml): no crash, fake == dequant(quant), and
  // zeros stay zero wherever the stored scale is finite.
  const float tiny = 1e-40f;
  for (Format f : {Format::nvfp4, Format::mxfp4, Format::mxfp8, Format::gguf_q4_0, Format::gguf_q8_0}) {
    std::vector<float> x = padded({tiny, -tiny, 0.5f * tiny, 0.0f, -0.0f}, 32);
    const Result r = run(row(x), block_spec(f));
    EXPECT_EQ(r.deq[3], 0.0f) << format_name(f);
    EXPECT_FALSE(std::isnan(r.deq[3])) << format_name(f);
    EXPECT_FALSE(std::isnan(r.deq[0])) << format_name(f);
    std::vector<float> big = padded({3e38f, -1e38f, 1.0f}, 32);
    (void)run(row(big), block_spec(f));
  }
}

// ================================================================================================
// Random tensors against the reference quantizers; fake == dequant(quant); dtypes; threads
// ================================================================================================

std::vector<float> random_blocks(int64_t n, int bs, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ed(-20, 20);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t b = 0; b < n / bs; ++b) {
    const float s = std::ldexp(1.0f, ed(gen));
    for (int i = 0; i < bs; ++i) x[static_cast<size_t>(b * bs + i)] = nd(gen) * s;
    if (b % 7 == 3)  // exact ties in the element domain now and then
      for (int i = 0; i < bs; i += 3) x[static_cast<size_t>(b * bs + i)] = s * 0.25f * static_cast<float>(i % 29);
  }
  return x;
}

TEST(BlockFormats, RandomMatchesReference) {
  const int64_t rows = 12, K = 96;
  const std::vector<float> x = random_blocks(rows * K, 32, 11);
  const Tensor t = from_vector(x, {rows, K});
  // MX
  for (bool fp8 : {false, true})
    for (MxScaleRule rule : {MxScaleRule::floor, MxScaleRule::rceil}) {
      const Result r = run(t, block_spec(fp8 ? Format::mxfp8 : Format::mxfp4, rule));
      const std::vector<uint8_t> sc = bytes_of(r.q.scales);
      for (int64_t b = 0; b < rows * K / 32; ++b) {
        std::vector<float> blk(x.begin() + b * 32, x.begin() + b * 32 + 32);
        int e = 0;
        const std::vector<float> want = ref_mx(blk, fp8, rule, &e);
        EXPECT_EQ(sc[static_cast<size_t>(b)], e + 127) << "block " << b;
        for (int i = 0; i < 32; ++i) {
          const float got = r.deq[static_cast<size_t>(b * 32 + i)];
          if (!same(got, want[static_cast<size_t>(i)])) {
            ADD_FAILURE() << (fp8 ? "mxfp8" : "mxfp4") << " block " << b << " elem " << i << " x " << blk[static_cast<size_t>(i)]
                          << ": got " << got << " want " << want[static_cast<size_t>(i)];
            break;
          }
          const uint8_t wm = std::fabs(std::ldexp(static_cast<double>(blk[static_cast<size_t>(i)]), -e)) <= (fp8 ? 448.0 : 6.0);
          EXPECT_EQ(r.mask[static_cast<size_t>(b * 32 + i)], wm);
        }
      }
    }
  // NVFP4 (tensor amax from x, and a calibrated one smaller than the data so blocks clip)
  for (float ga : {0.0f, 0.5f}) {
    const Result r = run(t, block_spec(Format::nvfp4), ga);
    float amax = 0;
    for (float v : x) amax = std::max(amax, std::fabs(v));
    const float pts = (ga > 0 ? ga : amax) / 2688.0f;
    EXPECT_EQ(r.q.global_scale, pts);
    const std::vector<uint8_t> sc = bytes_of(r.q.scales);
    for (int64_t b = 0; b < rows * K / 16; ++b) {
      std::vector<float> blk(x.begin() + b * 16, x.begin() + b * 16 + 16);
      double s8 = 0;
      const std::vector<float> want = ref_nvfp4(blk, pts, &s8);
      EXPECT_EQ(e4m3_value(sc[static_cast<size_t>(b)]), s8) << "block " << b;
      for (int i = 0; i < 16; ++i)
        EXPECT_TRUE(same(r.deq[static_cast<size_t>(b * 16 + i)], want[static_cast<size_t>(i)]))
            << "nvfp4 block " << b << " elem " << i << ": got " << r.deq[static_cast<size_t>(b * 16 + i)] << " want "
            << want[static_cast<size_t>(i)];
    }
  }
  // GGUF
  for (Format f : {Format::gguf_q4_0, Format::gguf_q8_0}) {
    const Result r = run(t, block_spec(f));
    for (int64_t b = 0; b < rows * K / 32; ++b) {
      std::vector<float> blk(x.begin() + b * 32, x.begin() + b * 32 + 32);
      std::vector<int> codes;
      const std::vector<float> want = f == Format::gguf_q4_0 ? ref_q4_0(blk, &codes) : ref_q8_0(blk);
      for (int i = 0; i < 32; ++i)
        EXPECT_TRUE(same(r.deq[static_cast<size_t>(b * 32 + i)], want[static_cast<size_t>(i)]))
            << format_name(f) << " block " << b << " elem " << i << ": got " << r.deq[static_cast<size_t>(b * 32 + i)]
            << " want " << want[static_cast<size_t>(i)];
      for (int i = 0; i < 32; ++i) {  // mask: 1 unless the code was clipped (Q4_0: 16 -> 15)
        const uint8_t wm = f == Format::gguf_q4_0 ? codes[static_cast<size_t>(i)] <= 15 : 1;
        EXPECT_EQ(r.mask[static_cast<size_t>(b * 32 + i)], wm) << format_name(f) << " block " << b << " elem " << i;
      }
    }
  }
}

TEST(BlockFormats, Nvfp4ReciprocalOrderAtTies) {
  // torchao multiplies by r = f32(f32(1 / pts) / s8), not by f32(1 / (pts * s8)); the two differ
  // in the last bit for many pts, which moves elements that sit next to an E2M1 tie. Elements
  // are placed within a few ulps of every tie for a sweep of tensor amaxes and checked against
  // the reference written from the doc's formula.
  const QuantSpec spec = block_spec(Format::nvfp4);
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  int differing_r = 0;
  for (int k = 0; k < 200; ++k) {
    const float ga = 1.0f + 0.0371f * static_cast<float>(k);
    const float pts = ga / 2688.0f;
    // block amax = ga -> s8 = e4m3(ga / 6 / pts) (about 448)
    double s8 = 0;
    (void)ref_nvfp4({ga}, pts, &s8);
    const float r = (1.0f / pts) / static_cast<float>(s8);
    if (r != 1.0f / (pts * static_cast<float>(s8))) ++differing_r;
    std::vector<float> x = {ga};
    for (float t : ties) {
      const float center = t / r;
      float lo = center, hi = center;
      for (int u = 0; u < 2; ++u) {
        lo = std::nextafter(lo, 0.0f);
        hi = std::nextafter(hi, kInf);
      }
      for (float v = lo; v <= hi && x.size() < 16; v = std::nextafter(v, kInf)) x.push_back(v);
    }
    x.resize(16, 0.0f);
    const Result res = run(row(x), spec, ga);
    std::vector<float> want = ref_nvfp4(x, pts, &s8);
    for (size_t i = 0; i < 16; ++i)
      ASSERT_TRUE(same(res.deq[i], want[i])) << "amax " << ga << " x " << x[i] << ": got " << res.deq[i] << " want "
                                             << want[i];
  }
  EXPECT_GT(differing_r, 0);  // the sweep does exercise the operation order
}

TEST(BlockFormats, FakeQuantEqualsCodecAllDtypesAndShapes) {
  const std::vector<Shape> shapes = {{64}, {3, 64}, {2, 3, 96}, {0, 32}};
  int seed = 1;
  for (Format f : {Format::nvfp4, Format::mxfp4, Format::mxfp8, Format::gguf_q4_0, Format::gguf_q8_0})
    for (MxScaleRule rule : {MxScaleRule::floor, MxScaleRule::rceil})
      for (DType dt : {DType::f32, DType::bf16, DType::f16, DType::f64})
        for (const Shape& s : shapes) {
          SCOPED_TRACE(format_name(f) + " " + std::string(dtype_name(dt)) + " " + shape_str(s));
          std::vector<float> x = random_blocks(shape_numel(s), 32, static_cast<uint32_t>(seed++));
          if (dt == DType::f16)  // keep values inside f16's range
            for (float& v : x) v = std::ldexp(std::fmod(v, 1.0f), -3);
          const Tensor t = from_vector(x, s, dt);
          const Result r = run(t, block_spec(f, rule));  // run() checks fake == deq bitwise
          // bf16/f16/f64 compute on the f32 value of the input: same codes as the f32 tensor.
          const QTensor q32 = quantize_blocks(t.to(DType::f32), block_spec(f, rule));
          EXPECT_EQ(bytes_of(q32.codes), bytes_of(r.q.codes));
          EXPECT_EQ(bytes_of(q32.scales), bytes_of(r.q.scales));
        }
  // Non-contiguous input (a transposed view) behaves as its contiguous copy.
  const Tensor base = from_vector(random_blocks(64 * 32, 32, 99), {32, 64});
  const Tensor tv = base.t();  // (64, 32) non-contiguous
  const Result a = run(tv, block_spec(Format::mxfp4));
  const Result b = run(tv.contiguous(), block_spec(Format::mxfp4));
  EXPECT_EQ(a.deq.size(), b.deq.size());
  for (size_t i = 0; i < a.deq.size(); ++i) ASSERT_TRUE(same(a.deq[i], b.deq[i])) << i;
}

TEST(BlockFormats, DeterministicAcrossThreadCounts) {
  const int64_t rows = 64, K = 1024;  // above the OpenMP threshold
  const Tensor t = from_vector(random_blocks(rows * K, 32, 5), {rows, K});
  for (Format f : {Format::nvfp4, Format::mxfp4, Format::mxfp8, Format::gguf_q4_0, Format::gguf_q8_0}) {
    std::vector<float> ref;
    std::vector<uint8_t> ref_codes;
    for (int threads : {1, 2}) {
      const int prev = omp_get_max_threads();
      omp_set_num_threads(threads);
      const std::vector<float> out = vals(fake_quant_blocks(t, block_spec(f), 0.0f, nullptr));
      const std::vector<uint8_t> codes = bytes_of(quantize_blocks(t, block_spec(f)).codes);
      omp_set_num_threads(prev);
      if (ref.empty()) {
        ref = out;
        ref_codes = codes;
      } else {
        EXPECT_EQ(0, std::memcmp(ref.data(), out.data(), ref.size() * 4)) << format_name(f);
        EXPECT_EQ(ref_codes, codes) << format_name(f);
      }
    }
  }
}

// ================================================================================================
// Storage sizes, errors
// ================================================================================================

TEST(BlockFormats, PackedSizes) {
  const Tensor t = from_vector(random_blocks(8 * 256, 32, 3), {8, 256});
  const int64_t n = 8 * 256;
  struct S {
    Format f;
    double bits;
  };
  for (const S& s : {S{Format::gguf_q4_0, 4.5}, S{Format::gguf_q8_0, 8.5}, S{Format::mxfp4, 4.25},
                     S{Format::mxfp8, 8.25}, S{Format::nvfp4, 4.5 + 32.0 / n}}) {
    const QTensor q = quantize_blocks(t, block_spec(s.f));
    EXPECT_EQ(q.nbytes() * 8, static_cast<int64_t>(std::llround(s.bits * n))) << format_name(s.f);
    EXPECT_DOUBLE_EQ(q.bits_per_element(), s.bits) << format_name(s.f);
  }
  const QTensor q = quantize_blocks(t, block_spec(Format::nvfp4));
  EXPECT_EQ(q.codes.dtype(), DType::u8);
  EXPECT_EQ(q.codes.shape(), (Shape{8, 128}));
  EXPECT_EQ(q.scales.dtype(), DType::fp8_e4m3);
  EXPECT_EQ(q.scales.shape(), (Shape{8, 16}));
  EXPECT_EQ(q.nbytes(), n / 2 + n / 16 + 4);
}

TEST(BlockFormats, BadInputIsAnError) {
  const QuantSpec mx = block_spec(Format::mxfp4);
  EXPECT_THROW(quantize_blocks(from_vector(std::vector<float>(48, 1.0f), {48}), mx), Error);  // 48 % 32
  EXPECT_THROW(fake_quant_blocks(from_vector(std::vector<float>(24, 1.0f), {24}), block_spec(Format::nvfp4), 0, nullptr),
               Error);
  EXPECT_THROW(quantize_blocks(from_vector(std::vector<float>(32, 1.0f), {32}, DType::i32), mx), Error);
  EXPECT_THROW(quantize_blocks(scalar_tensor(1.0), mx), Error);
  QuantSpec int8;
  EXPECT_THROW(quantize_blocks(from_vector(std::vector<float>(32, 1.0f), {32}), int8), Error);
  QuantSpec wrong_group = mx;
  wrong_group.group_size = 16;
  EXPECT_THROW(quantize_blocks(from_vector(std::vector<float>(32, 1.0f), {32}), wrong_group), Error);
  // A QTensor whose parts do not match its shape.
  QTensor q = quantize_blocks(from_vector(std::vector<float>(64, 1.0f), {2, 32}), mx);
  QTensor bad = q;
  bad.shape = {2, 64};
  EXPECT_THROW(dequantize_blocks(bad), Error);
  bad = q;
  bad.scales = zeros({2, 1}, DType::f32);
  EXPECT_THROW(dequantize_blocks(bad), Error);
  bad = q;
  bad.codes = Tensor();
  EXPECT_THROW(dequantize_blocks(bad), Error);
  EXPECT_THROW(dequantize_blocks(q, DType::i8), Error);
  try {
    quantize_blocks(from_vector(std::vector<float>(48, 1.0f), {48}), mx);
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
}

// ================================================================================================
// cuBLASLt 128x4 scale swizzle (gpu_apis.md §2.3)
// ================================================================================================

// Independent statement: torchao's to_blocked as index arithmetic. Pad to (R', C'), view as
// (R'/128, 128, C'/4, 4), permute to (rt, kt, 128, 4), reshape each tile to (4, 32, 4)
// (i = a * 32 + b), transpose the first two -> (32, 4, 4) and flatten, tiles in (rt, kt) order.
int64_t to_blocked_offset(int64_t r, int64_t c, int64_t C) {
  const int64_t Cp = (C + 3) / 4 * 4;
  const int64_t rt = r / 128, i = r % 128, kt = c / 4, j = c % 4;
  const int64_t a = i / 32, b = i % 32;
  const int64_t tile = rt * (Cp / 4) + kt;
  const int64_t within = (b * 4 + a) * 4 + j;  // index into the (32, 4, 4) tile
  return tile * 512 + within;
}

TEST(ScaleSwizzle, DocumentedOffsets) {
  // Rows of one tile come out as 0, 32, 64, 96, 1, 33, ... (4-byte groups).
  const int64_t order[] = {0, 32, 64, 96, 1, 33, 65, 97, 2};
  for (int64_t k = 0; k < 9; ++k) EXPECT_EQ(swizzled_scale_offset(order[k], 0, 4), 4 * k);
  EXPECT_EQ(swizzled_scale_offset(0, 3, 4), 3);
  EXPECT_EQ(swizzled_scale_offset(0, 4, 8), 512);       // next K tile
  EXPECT_EQ(swizzled_scale_offset(128, 0, 8), 1024);    // next row tile (2 K tiles per row tile)
  EXPECT_EQ(swizzled_scale_offset(127, 3, 4), 16 * 31 + 4 * 3 + 3);
  EXPECT_EQ(swizzled_scale_offset(129, 5, 13), 512 * (1 * 4 + 1) + 16 * 1 + 0 + 1);
  EXPECT_THROW(swizzled_scale_offset(0, 4, 4), Error);
  EXPECT_THROW(swizzled_scale_offset(-1, 0, 4), Error);
}

TEST(ScaleSwizzle, BijectionAndReshapeDerivation) {
  for (const auto& rc : std::vector<std::pair<int64_t, int64_t>>{{128, 4}, {256, 8}, {300, 13}, {129, 1}, {1, 1}, {5, 7}}) {
    const int64_t R = rc.first, C = rc.second;
    const int64_t Rp = (R + 127) / 128 * 128, Cp = (C + 3) / 4 * 4;
    std::set<int64_t> seen;
    for (int64_t r = 0; r < Rp; ++r)
      for (int64_t c = 0; c < Cp; ++c) {
        // The padded matrix maps onto [0, R' * C') one to one; offsets with the padded column
        // count are the same formula (padding columns are addressed via C').
        const int64_t off = to_blocked_offset(r, c, C);
        EXPECT_TRUE(off >= 0 && off < Rp * Cp);
        EXPECT_TRUE(seen.insert(off).second) << "duplicate offset " << off;
        if (r < R && c < C) ASSERT_EQ(swizzled_scale_offset(r, c, C), off) << r << "," << c;
      }
    EXPECT_EQ(static_cast<int64_t>(seen.size()), Rp * Cp);
    // swizzle_block_scales: every byte at its offset, padding zero.
    std::vector<uint8_t> src(static_cast<size_t>(R * C));
    for (int64_t i = 0; i < R * C; ++i) src[static_cast<size_t>(i)] = static_cast<uint8_t>(i % 255 + 1);
    const Tensor out = swizzle_block_scales(from_bytes(src, {R, C}, DType::u8));
    ASSERT_EQ(out.numel(), Rp * Cp);
    const std::vector<uint8_t> ob = bytes_of(out);
    std::vector<uint8_t> want(static_cast<size_t>(Rp * Cp), 0);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) want[static_cast<size_t>(to_blocked_offset(r, c, C))] = src[static_cast<size_t>(r * C + c)];
    EXPECT_EQ(ob, want);
  }
  // nvfp4 scales (fp8_e4m3 dtype) keep their dtype.
  const QTensor q = quantize_blocks(from_vector(random_blocks(4 * 64, 16, 2), {4, 64}), block_spec(Format::nvfp4));
  const Tensor sw = swizzle_block_scales(q.scales);
  EXPECT_EQ(sw.dtype(), DType::fp8_e4m3);
  EXPECT_EQ(sw.numel(), 128 * 4);
  const std::vector<uint8_t> sb = bytes_of(q.scales), wb = bytes_of(sw);
  for (int64_t r = 0; r < 4; ++r)
    for (int64_t c = 0; c < 4; ++c)
      EXPECT_EQ(wb[static_cast<size_t>(to_blocked_offset(r, c, 4))], sb[static_cast<size_t>(r * 4 + c)]);
}

}  // namespace
}  // namespace lowbit::quant
