// The scaled formats (int8, int4, uint4, fp8) and QuantSpec: the worked examples of
// ../shared/docs/quant_numerics.md §9 (A torchao per-token int8, B torchao int4/int8
// symmetric, C torchao uint4 fp32 path, D ModelOpt int, E fp8, I LSQ, recomputed here for int4)
// reproduced bit for bit; fake_quant == dequantize(quantize(x)) bit for bit; every gradient
// rule including values exactly at the clamp bounds; exhaustive codes, ties, NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "lowbit/engine/lowbit.h"
#include "lowbit/quant/fake_quant.h"
#include "lowbit/quant/qtensor.h"

namespace lowbit::quant {
namespace {

std::vector<float> vals(const Tensor& t) { return t.to(DType::f32).contiguous().to_vector<float>(); }
Tensor vec(const std::vector<float>& v) { return from_vector(v, {static_cast<int64_t>(v.size())}); }
Tensor scalar1(float v) { return from_vector(std::vector<float>{v}, {1}); }

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Bitwise equality, NaN equal to NaN.
void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) && std::isnan(b[i])) continue;
    ASSERT_EQ(bits(a[i]), bits(b[i])) << what << " element " << i << ": " << a[i] << " vs " << b[i];
  }
}

std::vector<float> mask_of(const Tensor& x, const QuantSpec& s, const QParams* p = nullptr) {
  Tensor xi = x.detach().clone().set_requires_grad(true);
  Tensor y = fake_quant(xi, s, p);
  y.backward(ones_like(y));
  return vals(xi.grad());
}

std::vector<float> codes_of(const QTensor& q) {
  const int64_t n = q.codes.numel();
  std::vector<float> out;
  if (q.spec.format == Format::int8) {
    for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<int8_t>(static_cast<const uint8_t*>(q.codes.raw_data())[i]));
  } else {
    const auto* b = static_cast<const uint8_t*>(q.codes.raw_data());
    for (int64_t i = 0; i < 2 * n; ++i) {
      const int nib = (b[i / 2] >> (4 * (i % 2))) & 0xF;
      out.push_back(q.spec.format == Format::int4 ? (nib >= 8 ? nib - 16 : nib) : nib);
    }
  }
  return out;
}

// ---- A: torchao int8 per-token asymmetric, eps 2^-23 ---------------------------------------

TEST(WorkedExamples, A_TorchaoInt8PerTokenAsymmetric) {
  QuantSpec s;
  s.format = Format::int8;
  s.granularity = Granularity::per_token;
  s.symmetric = false;
  s.eps = std::ldexp(1.0, -23);
  struct Case {
    std::vector<float> x;
    float scale, zp;
    std::vector<float> q, xhat;
  };
  const Case cases[] = {
      {{-1, 0, 0.5, 2, 3}, 0.0156862754f, -64, {-128, -64, -32, 63, 127},
       {-1.00392163f, 0, 0.501960814f, 1.99215698f, 2.99607849f}},
      {{0.1f, 0.2f, 0.3f, 0.4f}, 0.00156862743f, -128, {-64, 0, 63, 127},
       {0.100392155f, 0.200784311f, 0.299607843f, 0.400000006f}},
      {{-0.7f, -0.3f, -0.05f, -0.01f}, 0.00274509797f, 127, {-128, 18, 109, 123},
       {-0.699999988f, -0.299215674f, -0.0494117625f, -0.0109803919f}},
      {{0, 0, 0, 0}, 1.1920929e-07f, -128, {-128, -128, -128, -128}, {0, 0, 0, 0}},
      {{-3.5f, 0.001f, 7.25f, 100}, 0.405882359f, -119, {-128, -119, -101, 127},
       {-3.65294123f, 0, 7.30588245f, 99.8470612f}},
  };
  for (const Case& c : cases) {
    const Tensor x = vec(c.x);
    const QTensor q = quantize(x, s);
    EXPECT_EQ(vals(q.scales), std::vector<float>{c.scale});
    EXPECT_EQ(vals(q.zero_points), std::vector<float>{c.zp});
    EXPECT_EQ(codes_of(q), c.q);
    expect_same_bits(vals(fake_quant(x, s)), c.xhat, "A x^");
    expect_same_bits(vals(dequantize(q)), c.xhat, "A dequantize");
    EXPECT_EQ(mask_of(x, s), std::vector<float>(c.x.size(), 1.0f));
  }
}

// ---- B: torchao symmetric (divisor (qmax - qmin) / 2), mask on the rounded value -----------

TEST(WorkedExamples, B_TorchaoSymmetricInt4GroupsAndInt8Channel) {
  QuantSpec s;
  s.format = Format::int4;
  s.granularity = Granularity::per_group;
  s.group_size = 8;
  struct Case {
    std::vector<float> x;
    float scale;
    std::vector<float> q, xhat, mask;
  };
  const std::vector<float> ones(8, 1.0f);
  const Case cases[] = {
      {{0.1f, -0.2f, 0.3f, -0.75f, 0.05f, 0.6f, -0.45f, 0.7f}, 0.100000001f, {1, -2, 3, -8, 0, 6, -4, 7},
       {0.100000001f, -0.200000003f, 0.300000012f, -0.800000012f, 0, 0.600000024f, -0.400000006f, 0.699999988f}, ones},
      {{0.75f, -0.2f, 0.3f, -0.1f, 0.05f, 0.6f, -0.45f, 0.7f}, 0.100000001f, {7, -2, 3, -1, 0, 6, -4, 7},
       {0.699999988f, -0.200000003f, 0.300000012f, -0.100000001f, 0, 0.600000024f, -0.400000006f, 0.699999988f},
       {0, 1, 1, 1, 1, 1, 1, 1}},  // 0.75 * 10 = 7.5 -> RNE 8 -> clipped: its gradient is masked
      {{1, 2, 3, 4, -1, -2, -3, 0.5f}, 0.533333361f, {2, 4, 6, 7, -2, -4, -6, 1},
       {1.06666672f, 2.13333344f, 3.20000029f, 3.73333359f, -1.06666672f, -2.13333344f, -3.20000029f, 0.533333361f},
       ones},  // 4 * f32(1/s) = 7.4999995 -> 7, inside: keeps its gradient
      {{0, 0, 0, 0, 0, 0, 0, 0}, 1.17549435e-38f, {0, 0, 0, 0, 0, 0, 0, 0}, {0, 0, 0, 0, 0, 0, 0, 0}, ones},
      {{0.01f, 0.02f, -0.015f, 0, 0.005f, 0.0125f, -0.0025f, 0.0075f}, 0.00266666664f, {4, 7, -6, 0, 2, 5, -1, 3},
       {0.0106666666f, 0.018666666f, -0.0159999989f, 0, 0.00533333328f, 0.0133333337f, -0.00266666664f,
        0.00799999945f},
       {1, 0, 1, 1, 1, 1, 1, 1}},
  };
  for (const Case& c : cases) {
    const Tensor x = vec(c.x);
    const QTensor q = quantize(x, s);
    EXPECT_EQ(vals(q.scales), std::vector<float>{c.scale});
    EXPECT_EQ(codes_of(q), c.q);
    expect_same_bits(vals(fake_quant(x, s)), c.xhat, "B x^");
    EXPECT_EQ(mask_of(x, s), c.mask);
  }
  // B6: int8 per-channel (one output channel of 4), divisor 127.5.
  QuantSpec c8;
  c8.format = Format::int8;
  c8.granularity = Granularity::per_channel;
  const Tensor w = from_vector(std::vector<float>{0.5f, -1, 0.25f, 1}, {1, 4});
  const QTensor q = quantize(w, c8);
  EXPECT_EQ(vals(q.scales), std::vector<float>{0.00784313772f});
  EXPECT_EQ(codes_of(q), (std::vector<float>{64, -127, 32, 127}));
  expect_same_bits(vals(fake_quant(w, c8)), {0.501960814f, -0.996078491f, 0.250980407f, 0.996078491f}, "B6");
}

// ---- C: torchao uint4 with a float zero point (Int4WeightFakeQuantizer, fp32 qparams) ------

TEST(WorkedExamples, C_TorchaoUint4FloatZero) {
  QuantSpec s;
  s.format = Format::uint4;
  s.symmetric = false;
  s.granularity = Granularity::per_group;
  s.group_size = 8;
  const Tensor c5 = vec({0.1f, -0.2f, 0.3f, -0.75f, 0.05f, 0.6f, -0.45f, 0.7f});
  QTensor q = quantize(c5, s);
  EXPECT_EQ(vals(q.scales), std::vector<float>{0.0966666713f});
  EXPECT_EQ(vals(q.zero_points), std::vector<float>{0.0233333707f});
  std::vector<float> centered;
  for (float c : codes_of(q)) centered.push_back(c - 8);
  EXPECT_EQ(centered, (std::vector<float>{1, -2, 3, -8, 0, 6, -5, 7}));
  expect_same_bits(vals(fake_quant(c5, s)),
                   {0.120000042f, -0.169999972f, 0.313333392f, -0.75f, 0.0233333707f, 0.603333414f, -0.459999979f,
                    0.700000048f},
                   "C5");
  const Tensor c6 = vec({1.0f, 1.5f, 2.0f, 2.5f, 3.0f, 3.5f, 4.0f, 4.5f});
  q = quantize(c6, s);
  EXPECT_EQ(vals(q.scales), std::vector<float>{0.233333334f});
  EXPECT_EQ(vals(q.zero_points), std::vector<float>{2.86666679f});
  expect_same_bits(vals(fake_quant(c6, s)),
                   {1.00000012f, 1.46666682f, 1.9333334f, 2.4000001f, 3.10000014f, 3.56666684f, 4.0333333f, 4.5f},
                   "C6");
}

// ---- D: ModelOpt integer (s' = maxbound / amax, x^ = q / s'), calibrated amax ----------------

TEST(WorkedExamples, D_ModeloptIntWithCalibratedAmax) {
  QuantSpec s;
  s.format = Format::int8;
  s.convention = Convention::modelopt;
  s.scale_policy = ScalePolicy::calibrated;
  s.grad = GradRule::clipped_amax;
  QParams p;
  p.amax = scalar1(2);
  const Tensor d1 = vec({-2.5f, -2, -0.01f, 0.0078125f, 1, 3});
  expect_same_bits(vals(fake_quant(d1, s, &p)), {-2.01574802f, -2, -0.0157480314f, 0, 1.00787401f, 2}, "D1");
  EXPECT_EQ(mask_of(d1, s, &p), (std::vector<float>{0, 1, 1, 1, 1, 0}));
  s.narrow_range = true;
  expect_same_bits(vals(fake_quant(d1, s, &p)), {-2, -2, -0.0157480314f, 0, 1.00787401f, 2}, "D2");
  s.narrow_range = false;
  s.format = Format::int4;
  p.amax = scalar1(0.75f);
  const Tensor d3 = vec({0.1f, -0.2f, 0.3f, -0.75f, 0.05f, 0.6f, -0.45f, 0.7f});
  expect_same_bits(vals(fake_quant(d3, s, &p)),
                   {0.107142858f, -0.214285716f, 0.321428597f, -0.75f, 0, 0.642857194f, -0.428571433f, 0.75f}, "D3");
  EXPECT_EQ(mask_of(d3, s, &p), std::vector<float>(8, 1.0f));
  const Tensor d4 = vec({-0.9f, 0.9f, -0.8f, 0.8f});
  expect_same_bits(vals(fake_quant(d4, s, &p)), {-0.857142866f, 0.75f, -0.75f, 0.75f}, "D4");
  EXPECT_EQ(mask_of(d4, s, &p), (std::vector<float>{0, 0, 0, 0}));
  p.amax = scalar1(0);
  expect_same_bits(vals(fake_quant(vec({0, 0}), s, &p)), {0, 0}, "D5");
  // Dequantizing the stored codes reproduces the fake quant (q / s' with s' stored).
  p.amax = scalar1(0.75f);
  expect_same_bits(vals(dequantize(quantize(d3, s, &p))), vals(fake_quant(d3, s, &p)), "D3 codec");
}

// ---- E: fp8 per-tensor: torchao x / s vs ModelOpt x * (448 / amax) * inv ---------------------

TEST(WorkedExamples, E_Fp8TorchaoAndModelopt) {
  QuantSpec t;
  t.format = Format::fp8_e4m3;
  QuantSpec m = t;
  m.convention = Convention::modelopt;
  for (const QuantSpec& s : {t, m}) {
    expect_same_bits(vals(fake_quant(vec({1, -0.3f, 0.01f, 0.001f, 0.5f}), s)),
                     {1, -0.285714298f, 0.0100446437f, 0.0009765625f, 0.5f}, "E1");
    expect_same_bits(vals(fake_quant(vec({3, 1.1f, -0.07f, 0.0004f, 2.9f}), s)),
                     {3, 1.07142854f, -0.0669642836f, 0.000392368878f, 3}, "E2");
    QuantSpec cs = s;
    cs.scale_policy = ScalePolicy::calibrated;
    QParams p;
    p.amax = scalar1(4);
    expect_same_bits(vals(fake_quant(vec({5, -4, 0.1f}), cs, &p)), {4, -4, 0.098214291f}, "E3");
    // E5: all-zero tensors give zeros. (torchao itself returns NaN here: it has no eps; we
    // follow its hp_value_lb = 1e-12 variant, docs/quantization.md.)
    expect_same_bits(vals(fake_quant(vec({0, 0, 0}), s)), {0, 0, 0}, "E5");
  }
  QuantSpec ct = t, cm = m;
  ct.scale_policy = cm.scale_policy = ScalePolicy::calibrated;
  QParams p;
  p.amax = scalar1(2.407536029815674f);
  const Tensor e4 = vec({0.40842127799987793f});
  expect_same_bits(vals(fake_quant(e4, ct, &p)), {0.386925459f}, "E4 torchao");   // 75.9999924 -> 72
  expect_same_bits(vals(fake_quant(e4, cm, &p)), {0.429917127f}, "E4 modelopt");  // 76.0 tie -> 80
  p.amax = scalar1(0.08966196328401566f);
  const Tensor e7 = vec({0.0008505878504365683f});
  expect_same_bits(vals(fake_quant(e7, ct, &p)), {0.000800553244f}, "E7 torchao");
  expect_same_bits(vals(fake_quant(e7, cm, &p)), {0.000800553302f}, "E7 modelopt");
  QuantSpec e5m2;
  e5m2.format = Format::fp8_e5m2;
  expect_same_bits(vals(fake_quant(vec({1, 0.3f, -0.7f, 1e-4f, 1e-5f}), e5m2)),
                   {1, 0.285714298f, -0.714285731f, 0.000104631705f, 1.08991353e-05f}, "E6");
}

// ---- I: LSQ, recomputed by hand for int4 (q in [-8, 7]), s = 0.5, zp = 0, dy = 1 -------------

TEST(WorkedExamples, I_LsqGradientsPerElement) {
  QuantSpec s;
  s.format = Format::int4;
  s.symmetric = false;
  s.granularity = Granularity::per_group;
  s.group_size = 1;  // one learned scale per element, so each gradient is visible
  s.scale_policy = ScalePolicy::learned;
  s.grad = GradRule::lsq;
  const std::vector<float> xv = {0.3f, 0.8f, 1.6f, 3.75f, -2.2f, -1.1f, -4.3f};
  // x / s = 0.6, 1.6, 3.2, 7.5 (-> 8 > 7: clipped), -4.4, -2.2, -8.6 (-> -9 < -8: clipped)
  const std::vector<float> xhat = {0.5f, 1.0f, 1.5f, 3.5f, -2.0f, -1.0f, -4.0f};
  const std::vector<float> dx = {1, 1, 1, 0, 1, 1, 0};
  const std::vector<double> ds = {(0.5 - 0.3) / 0.5, (1.0 - 0.8) / 0.5, (1.5 - 1.6) / 0.5, 7,
                                  (-2.0 + 2.2) / 0.5, (-1.0 + 1.1) / 0.5, -8};
  const std::vector<double> dzp = {0, 0, 0, -0.5, 0, 0, -0.5};
  QParams p;
  p.scale = full({7}, 0.5).set_requires_grad(true);
  p.zero_point = zeros({7}).set_requires_grad(true);
  Tensor x = vec(xv).set_requires_grad(true);
  Tensor y = fake_quant(x, s, &p);
  expect_same_bits(vals(y), xhat, "I x^");
  y.backward(ones_like(y));
  EXPECT_EQ(vals(x.grad()), dx);
  const auto gs = vals(p.scale.grad()), gz = vals(p.zero_point.grad());
  for (size_t i = 0; i < xv.size(); ++i) {
    EXPECT_NEAR(gs[i], ds[i], 1e-6) << i;
    EXPECT_NEAR(gz[i], dzp[i], 1e-6) << i;
  }
  // Gradient scaling: 1 / sqrt(group size * qmax) = 1 / sqrt(7) with groups of one.
  s.lsq_grad_scaling = true;
  p.scale.zero_grad();
  fake_quant(x.detach(), s, &p).backward(ones({7}));
  EXPECT_NEAR(vals(p.scale.grad())[3], 7 / std::sqrt(7.0), 1e-6);
  // Per-tensor LSQ sums over the tensor.
  QuantSpec pt = s;
  pt.lsq_grad_scaling = false;
  pt.granularity = Granularity::per_tensor;
  pt.group_size = 0;
  QParams q1;
  q1.scale = scalar1(0.5f).set_requires_grad(true);
  q1.zero_point = scalar1(0).set_requires_grad(true);
  fake_quant(x.detach(), pt, &q1).backward(ones({7}));
  double total = 0;
  for (double v : ds) total += v;
  EXPECT_NEAR(vals(q1.scale.grad())[0], total, 1e-5);
  EXPECT_NEAR(vals(q1.zero_point.grad())[0], -1.0, 1e-6);
}

// ---- codec identity, gradient rules, edges -------------------------------------------------

std::vector<QuantSpec> scaled_specs() {
  std::vector<QuantSpec> out;
  for (Format f : {Format::int8, Format::int4, Format::uint4, Format::fp8_e4m3, Format::fp8_e5m2})
    for (Granularity g : {Granularity::per_tensor, Granularity::per_channel, Granularity::per_group,
                          Granularity::per_token, Granularity::block2d})
      for (int variant = 0; variant < 3; ++variant) {
        QuantSpec s;
        s.format = f;
        s.granularity = g;
        if (g == Granularity::per_group) s.group_size = 16;
        if (g == Granularity::block2d) s.block_rows = s.block_cols = 8;
        if (f == Format::uint4) s.symmetric = false;
        if (variant == 1) {
          if (f == Format::uint4 || f == Format::fp8_e5m2) continue;
          if (is_integer_format(f)) s.symmetric = false;
          else s.convention = Convention::modelopt;
        }
        if (variant == 2) {
          if (f == Format::uint4 || f == Format::fp8_e5m2) continue;
          s.convention = Convention::modelopt;
        }
        out.push_back(s);
      }
  return out;
}

TEST(FakeQuant, EqualsDequantizeOfQuantizeBitForBit) {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> xv(32 * 48);
  for (auto& v : xv) v = d(rng) * (rng() % 50 == 0 ? 20.0f : 1.0f);  // some outliers
  int checked = 0;
  for (DType dt : {DType::f32, DType::bf16}) {
    const Tensor x = from_vector(xv, {32, 48}).to(dt);
    for (const QuantSpec& s : scaled_specs()) {
      SCOPED_TRACE(to_json(s) + " " + std::string(dtype_name(dt)));
      const Tensor fq = fake_quant(x, s);
      EXPECT_EQ(fq.dtype(), dt);
      expect_same_bits(vals(fq), vals(dequantize(quantize(x, s), dt)), "fake vs codec");
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
}

TEST(FakeQuant, TiesRoundToEvenAndCodesRoundTrip) {
  // Calibrated amax 127.5 makes the torchao int8 scale exactly 1: x is its own scaled value.
  QuantSpec s;
  s.format = Format::int8;
  s.scale_policy = ScalePolicy::calibrated;
  QParams p;
  p.amax = scalar1(127.5f);
  expect_same_bits(vals(fake_quant(vec({0.5f, 1.5f, 2.5f, -2.5f, -0.5f, 126.5f, 127.5f, -128.5f}), s, &p)),
                   {0, 2, 2, -2, 0, 126, 127, -128}, "int8 ties and saturation");  // integer codes: no -0
  // Every int8 code survives dequantize -> quantize.
  std::vector<float> all;
  for (int c = -128; c <= 127; ++c) all.push_back(static_cast<float>(c));
  const QTensor q = quantize(vec(all), s, &p);
  EXPECT_EQ(codes_of(q), all);
  EXPECT_EQ(vals(dequantize(q)), all);
  // Every int4 code: amax 7.5 -> scale 1.
  QuantSpec s4 = s;
  s4.format = Format::int4;
  p.amax = scalar1(7.5f);
  std::vector<float> nib;
  for (int c = -8; c <= 7; ++c) nib.push_back(static_cast<float>(c));
  EXPECT_EQ(codes_of(quantize(vec(nib), s4, &p)), nib);
  // Every finite fp8 e4m3 value is a fixed point at scale 1 (amax 448).
  QuantSpec f8;
  f8.format = Format::fp8_e4m3;
  f8.scale_policy = ScalePolicy::calibrated;
  p.amax = scalar1(448);
  std::vector<float> fp8;
  for (int b = 0; b < 256; ++b)
    if ((b & 0x7F) != 0x7F) fp8.push_back(fp8_e4m3_bits_to_f32(static_cast<uint8_t>(b)));
  expect_same_bits(vals(fake_quant(vec(fp8), f8, &p)), fp8, "e4m3 fixed points");
  expect_same_bits(vals(fake_quant(vec({1.0625f, 1.1875f, 464, 465, 1e9f}), f8, &p)), {1, 1.25f, 448, 448, 448},
                   "e4m3 ties and saturation");
}

TEST(FakeQuant, GradientRulesAndBounds) {
  QuantSpec s;
  s.format = Format::int4;
  s.scale_policy = ScalePolicy::calibrated;
  QParams p;
  p.amax = scalar1(7.5f);  // scale 1
  // Values that round exactly to qmin (-8) or qmax (7) keep their gradient (inclusive);
  // 7.5 rounds to 8 and -8.5 to -8 (even): 7.5 is clipped, -8.5 is not.
  const Tensor x = vec({-8.5f, -8.0f, -8.6f, 6.9f, 7.0f, 7.4f, 7.5f, 100});
  s.grad = GradRule::clipped_rounded;
  EXPECT_EQ(mask_of(x, s, &p), (std::vector<float>{1, 1, 0, 1, 1, 1, 0, 0}));
  s.grad = GradRule::clipped_amax;  // |x| <= amax = 7.5
  EXPECT_EQ(mask_of(x, s, &p), (std::vector<float>{0, 0, 0, 1, 1, 1, 1, 0}));
  s.grad = GradRule::ste;
  EXPECT_EQ(mask_of(x, s, &p), std::vector<float>(8, 1.0f));
  // bf16 inputs get bf16 gradients through the same mask.
  s.grad = GradRule::clipped_rounded;
  Tensor xb = x.to(DType::bf16).set_requires_grad(true);
  fake_quant(xb, s, &p).backward(ones({8}, DType::bf16));
  EXPECT_EQ(xb.grad().dtype(), DType::bf16);
  EXPECT_EQ(vals(xb.grad()), (std::vector<float>{1, 1, 0, 1, 1, 1, 0, 0}));
}

TEST(FakeQuant, NaNPoisonsItsGroupOnlyAndIntCodecsRefuseIt) {
  QuantSpec s;
  s.format = Format::int8;
  s.granularity = Granularity::per_token;
  const Tensor x = from_vector(std::vector<float>{1, NAN, 3, 4, 1, 2, 3, 4}, {2, 4});
  const auto y = vals(fake_quant(x, s));
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(std::isnan(y[static_cast<size_t>(i)])) << i;
  for (int i = 4; i < 8; ++i) EXPECT_FALSE(std::isnan(y[static_cast<size_t>(i)])) << i;
  EXPECT_THROW(quantize(x, s), Error);
  s.format = Format::fp8_e4m3;  // fp8 encodes NaN: codec and fake quant agree
  expect_same_bits(vals(fake_quant(x, s)), vals(dequantize(quantize(x, s))), "fp8 NaN");
  // Infinity saturates nothing silently: the group becomes NaN.
  s.format = Format::int8;
  const auto yi = vals(fake_quant(from_vector(std::vector<float>{1, INFINITY, 3, 4}, {1, 4}), s));
  EXPECT_TRUE(std::isnan(yi[0]));
}

TEST(FakeQuant, PolicyAndShapeErrorsAreOneLine) {
  QuantSpec s;
  s.format = Format::int4;
  s.granularity = Granularity::per_group;
  s.group_size = 32;
  auto msg = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(msg([&] { fake_quant(zeros({4, 48}), s); }).find("'group_size' (32) must divide"), std::string::npos);
  s.group_size = 16;
  s.scale_policy = ScalePolicy::calibrated;
  EXPECT_NE(msg([&] { fake_quant(zeros({4, 48}), s); }).find("needs quantization parameters"), std::string::npos);
  QParams p;
  p.amax = zeros({5});
  EXPECT_NE(msg([&] { fake_quant(zeros({4, 48}), s, &p); }).find("calibrated amax has 5 values for 12"),
            std::string::npos);
  QuantSpec c;
  c.format = Format::int4;
  c.granularity = Granularity::per_channel;
  c.axis = 1;
  EXPECT_NE(msg([&] { quantize(zeros({4, 6}), c); }).find("split a byte"), std::string::npos);
}

TEST(QuantSpec, JsonRoundTripDefaultsAndErrors) {
  const QuantSpec nv = parse_quant_spec(R"({"format": "nvfp4"})");
  EXPECT_EQ(nv.granularity, Granularity::per_group);
  EXPECT_EQ(nv.group_size, 16);
  EXPECT_FALSE(parse_quant_spec(R"({"format": "uint4", "granularity": "per_group", "group_size": 128})").symmetric);
  for (const QuantSpec& s : scaled_specs()) EXPECT_EQ(parse_quant_spec(to_json(s)), s) << to_json(s);
  auto err = [](const std::string& text) {
    try {
      parse_quant_spec(text, "cfg.json quant.weight");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(err(R"({"format": "int3"})").find("cfg.json quant.weight: key 'format' is 'int3'; expected one of"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "int4", "granularity": "per_group"})").find("'group_size' must be > 0"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "nvfp4", "symmetric": false})").find("key 'symmetric'"), std::string::npos);
  EXPECT_NE(err(R"({"format": "int8", "grad": "lsq"})").find("scale_policy 'learned'"), std::string::npos);
  EXPECT_NE(err(R"({"format": "fp8_e4m3", "grad": "lsq", "scale_policy": "learned"})").find("lsq needs an int"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "int8", "granularty": "per_token"})").find("unknown key 'granularty'"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "int8", "axis": "0"})").find("key 'axis' must be an integer"), std::string::npos);
  EXPECT_NE(err(R"({"format": "int8", "granularity": "per_token", "scale_policy": "calibrated"})")
                .find("must be dynamic"),
            std::string::npos);
  EXPECT_NE(err(R"({"format": "gguf_q4_0", "convention": "modelopt"})").find("ggml"), std::string::npos);
  EXPECT_NE(err("[1]").find("must be a JSON object"), std::string::npos);
  for (const char* bad : {R"({"format": "int3"})", R"({"format": "int8", "eps": -1})", "{"})
    EXPECT_EQ(err(bad).find('\n'), std::string::npos);
}

}  // namespace
}  // namespace lowbit::quant
