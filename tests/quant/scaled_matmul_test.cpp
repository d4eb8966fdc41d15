// scaled_matmul: decoded tiles are dequantize()'s values bit for bit; results match
// dequantize(a) · dequantize(b)ᵀ within the f32 accumulation-order bound for every preset, on
// both the f32-tile and the integer path; the allocation peak stays far below one dequantized
// operand.
//
// Tolerance. Both sides compute the same exact sum S = Σ_k a_k b_k of the same dequantized
// values in f32 in different orders (blocked GEMM with beta = 1 across K tiles; int32 segment
// sums scaled once per group). Any f32 summation order of K products satisfies
// |fl(S) − S| ≤ γ_K Σ_k |a_k||b_k| with γ_n = n u / (1 − n u), u = 2^-24 (Higham, Accuracy and
// Stability, §3.1). The integer path sums exact integer products; scaling a segment costs at most
// 3 more roundings (multiplier product, the product with the integer sum, modelopt's 1 / s'),
// and its summation over segments is one more f32 sum, so it too is within γ_(K+4) Σ|a||b|.
// Hence |ours − reference| ≤ 2 γ_(K+4) Σ_k |a_k||b_k|, checked elementwise.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <numeric>

#include "lowbit/engine/lowbit.h"
#include "lowbit/engine/storage.h"
#include "lowbit/engine/cpu/isa.h"
#include "lowbit/quant/int_gemm.h"
#include "lowbit/quant/presets.h"
#include "lowbit/quant/quantizer.h"
#include "lowbit/quant/scaled_matmul.h"
#include "lowbit/quant/tile_decode.h"

namespace lowbit::quant {
namespace {

std::vector<float> vals(const Tensor& t) { return t.to(DType::f32).contiguous().to_vector<float>(); }

// |t| in f64 (the engine has no abs op).
Tensor abs64(const Tensor& t) {
  std::vector<double> v = t.to(DType::f64).contiguous().to_vector<double>();
  for (double& e : v) e = std::fabs(e);
  return from_vector(v, t.shape(), DType::f64);
}

double gamma_of(int64_t n) {
  const double u = std::ldexp(1.0, -24);
  return static_cast<double>(n) * u / (1.0 - static_cast<double>(n) * u);
}

// Quantizes x with spec the way a prepared layer does: calibrated / nvfp4 specs observe x first.
QTensor quantize_like_layer(const Tensor& x, const QuantSpec& spec) {
  if (spec.scale_policy == ScalePolicy::dynamic && spec.format != Format::nvfp4) return quantize(x, spec);
  Quantizer q(spec);
  q.begin_calibration();
  q.observe(x);
  q.finish_calibration();
  return quantize(x, spec, &q.params());
}

// Max over elements of |y − ref| / bound, bound = 2 γ_(K+4) Σ_k |a_k||b_k| (computed in f64);
// also returns the largest bound relative to max |ref| (must be small, or the check is vacuous).
struct Check {
  double worst = 0, bound_rel = 0;
};
Check against_bound(const Tensor& y, const Tensor& a_dq, const Tensor& b_dq) {
  const int64_t K = a_dq.size(-1);
  const Tensor ref = matmul(a_dq, b_dq.t());
  const Tensor absprod = matmul(abs64(a_dq), abs64(b_dq).t());
  const auto yv = vals(y), rv = vals(ref);
  const auto pv = absprod.contiguous().to_vector<double>();
  Check c;
  double max_ref = 0, max_bound = 0;
  for (size_t i = 0; i < yv.size(); ++i) {
    const double bound = 2.0 * gamma_of(K + 4) * pv[i];
    const double d = std::fabs(static_cast<double>(yv[i]) - rv[i]);
    c.worst = std::max(c.worst, bound > 0 ? d / bound : (d > 0 ? INFINITY : 0.0));
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(rv[i])));
    max_bound = std::max(max_bound, bound);
  }
  c.bound_rel = max_ref > 0 ? max_bound / max_ref : 0;
  return c;
}

Tensor activations(int64_t M, int64_t K, uint64_t seed) {
  Generator g(seed);
  // Unit normals with a few large outliers per row, as real activations have.
  Tensor x = randn({M, K}, 0.0, 1.0, DType::f32, &g);
  float* p = x.data<float>();
  for (int64_t m = 0; m < M; ++m) p[m * K + (m * 37) % K] *= 12.0f;
  return x;
}

TEST(ScaledMatmul, DecodedTilesAreDequantizeValuesBitForBit) {
  const int64_t N = 384, K = 640;
  Generator g(3);
  const Tensor w = randn({N, K}, 0.0, 0.05, DType::f32, &g);
  for (const std::string& name : preset_names()) {
    SCOPED_TRACE(name);
    const QuantPreset p = resolve_preset(name);
    std::vector<QuantSpec> specs{p.weight};
    if (p.input) specs.push_back(*p.input);
    for (const QuantSpec& s : specs) {
      const QTensor q = quantize_like_layer(w, s);
      const auto full = vals(dequantize(q));
      // Tiles that straddle scale groups, 128-row blocks and K tiles; k edges on 32.
      const int64_t tiles[][4] = {{0, N, 0, K}, {5, 133, 32, 320}, {255, 384, 608, 640}, {100, 101, 0, 64}};
      for (const auto& t : tiles) {
        const int64_t r0 = t[0], r1 = t[1], k0 = t[2], k1 = t[3];
        std::vector<float> out(static_cast<size_t>((r1 - r0) * (k1 - k0)), -1.0f);
        detail::decode_tile(q, r0, r1, k0, k1, out.data(), k1 - k0);
        int64_t bad = 0;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t k = k0; k < k1; ++k) {
            const float a = out[static_cast<size_t>((r - r0) * (k1 - k0) + (k - k0))];
            const float b = full[static_cast<size_t>(r * K + k)];
            bad += std::memcmp(&a, &b, sizeof a) != 0;
          }
        EXPECT_EQ(bad, 0) << format_name(s.format) << " tile " << r0 << ".." << r1 << " x " << k0 << ".." << k1;
      }
    }
  }
}

TEST(ScaledMatmul, EveryPresetMatchesTheDequantizedProductWithinTheAccumulationBound) {
  const int64_t M = 37, N = 384, K = 640;  // partial output blocks and a partial K tile
  const Tensor x = activations(M, K, 11);
  Generator g(12);
  const Tensor w = randn({N, K}, 0.0, 0.05, DType::f32, &g);
  for (const std::string& name : preset_names()) {
    SCOPED_TRACE(name);
    const QuantPreset p = resolve_preset(name);
    const QTensor qb = quantize_like_layer(w, p.weight);
    const Tensor b_dq = dequantize(qb);
    if (!p.input) {  // weight-only: a is plain f32
      const Check c = against_bound(scaled_matmul(x, qb), x, b_dq);
      EXPECT_LE(c.worst, 1.0);
      EXPECT_LT(c.bound_rel, 1e-3);
      continue;
    }
    const QTensor qa = quantize_like_layer(x, *p.input);
    const Tensor a_dq = dequantize(qa);
    const Tensor y_tiles = scaled_matmul(qa, qb, {MatmulPath::f32_tiles});
    const Check c = against_bound(y_tiles, a_dq, b_dq);
    EXPECT_LE(c.worst, 1.0) << "f32 tiles";
    EXPECT_LT(c.bound_rel, 1e-3);
    const bool int_preset = name == "INT8_DEFAULT" || name == "INT8_PER_CHANNEL_PER_TOKEN" || name == "W4A8";
    EXPECT_EQ(integer_path_supported(qa, qb), int_preset);
    if (!int_preset) {
      EXPECT_THROW(scaled_matmul(qa, qb, {MatmulPath::integer}), Error);
      EXPECT_EQ(vals(scaled_matmul(qa, qb)), vals(y_tiles));  // automatic = f32 tiles
      continue;
    }
    const Tensor y_int = scaled_matmul(qa, qb, {MatmulPath::integer});
    const Check ci = against_bound(y_int, a_dq, b_dq);
    EXPECT_LE(ci.worst, 1.0) << "integer";
    // automatic = integer where a SIMD kernel runs (AVX2: int4 weights, or int8 ones from 64
    // rows on; M = 37 here), else f32 tiles
    const auto simd = detail::best_int_kernel(qa, qb);
    const bool int_wins = simd && (*simd == detail::IntKernel::vnni || qb.spec.format == Format::int4);
    EXPECT_EQ(vals(scaled_matmul(qa, qb)), int_wins ? vals(y_int) : vals(y_tiles));
    // The two paths: each within the bound of the same reference, so within twice it of each other.
    const auto yi = vals(y_int), yt = vals(y_tiles);
    const auto pv = matmul(abs64(a_dq), abs64(b_dq).t()).contiguous().to_vector<double>();
    double worst = 0;
    for (size_t i = 0; i < yi.size(); ++i)
      worst = std::max(worst, std::fabs(static_cast<double>(yi[i]) - yt[i]) / (4.0 * gamma_of(K + 4) * pv[i]));
    EXPECT_LE(worst, 1.0);
  }
}

TEST(ScaledMatmul, TheBoundCheckCanFail) {
  const Tensor x = activations(8, 256, 1);
  Generator g(2);
  const Tensor w = randn({64, 256}, 0.0, 0.05, DType::f32, &g);
  const QTensor qb = quantize(w, resolve_preset("GGUF_Q4_0").weight);
  Tensor y = scaled_matmul(x, qb);
  EXPECT_LE(against_bound(y, x, dequantize(qb)).worst, 1.0);
  // A result computed from the raw (not dequantized) weights is far outside the bound.
  EXPECT_GT(against_bound(matmul(x, w.t()), x, dequantize(qb)).worst, 100.0);
}

TEST(ScaledMatmul, IntegerPathHandlesAsymmetricZeroPointsAndGroupsAcrossTiles) {
  // Per-token asymmetric int8 activations with a strong offset (zero points far from 0) against
  // int4 groups of 64 and int8 per-channel weights; K = 1000 is not a multiple of the K tile.
  const int64_t M = 300, N = 260, K = 1000;
  Tensor x = add(activations(M, K, 5), 3.0);
  Generator g(6);
  const Tensor w = randn({N, K}, 0.0, 0.05, DType::f32, &g);
  QuantSpec sa;
  sa.format = Format::int8;
  sa.granularity = Granularity::per_token;
  sa.symmetric = false;
  QuantSpec s4;
  s4.format = Format::int4;
  s4.granularity = Granularity::per_group;
  s4.group_size = 40;
  QuantSpec s8;
  s8.format = Format::int8;
  s8.granularity = Granularity::per_channel;
  for (const QuantSpec& sb : {s4, s8}) {
    const QTensor qa = quantize(x, sa), qb = quantize(w, sb);
    ASSERT_TRUE(integer_path_supported(qa, qb));
    const Check c = against_bound(scaled_matmul(qa, qb, {MatmulPath::integer}), dequantize(qa), dequantize(qb));
    EXPECT_LE(c.worst, 1.0) << format_name(sb.format);
  }
}

// The integer path's result computed from codes and scales alone (int_gemm.h): per (row, column,
// K segment) the exact int64 sum S = Σ_k (qa − za) qb, then y = fma(fa · fb, float(S), y) over the
// segments in order from y = +0, fa / fb = scale (torchao) or 1 / s' (modelopt).
std::vector<float> exact_integer_product(const QTensor& a, const QTensor& b) {
  const int64_t K = a.shape.back(), M = shape_numel(a.shape) / K, N = b.shape[0];
  const detail::KGroups ga = detail::k_groups(a), gb = detail::k_groups(b);
  const int64_t seg = std::gcd(ga.seg, gb.seg);
  auto codes = [](const QTensor& q) {
    std::vector<int> c;
    const auto* p = static_cast<const uint8_t*>(q.codes.raw_data());
    for (int64_t i = 0; i < q.codes.numel(); ++i) {
      if (q.spec.format == Format::int8) {
        c.push_back(static_cast<int8_t>(p[i]));
      } else {  // int4: element 2j in the low nibble
        for (int nib : {p[i] & 0xF, p[i] >> 4}) c.push_back(nib >= 8 ? nib - 16 : nib);
      }
    }
    return c;
  };
  auto mult = [](const QTensor& q) {
    std::vector<float> m = q.scales.to_vector<float>();
    if (q.spec.convention == Convention::modelopt)
      for (float& v : m) v = 1.0f / v;
    return m;
  };
  const std::vector<int> ca = codes(a), cb = codes(b);
  const std::vector<float> ma = mult(a), mb = mult(b);
  const std::vector<float> za = a.zero_points.defined() ? a.zero_points.to_vector<float>() : std::vector<float>();
  std::vector<float> y(static_cast<size_t>(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f;
      for (int64_t k0 = 0; k0 < K; k0 += seg) {
        const auto g = static_cast<size_t>(ga.group(m, k0)), h = static_cast<size_t>(gb.group(n, k0));
        const int64_t z = za.empty() ? 0 : static_cast<int64_t>(za[g]);
        int64_t sum = 0;
        for (int64_t k = k0; k < k0 + seg; ++k)
          sum += (ca[static_cast<size_t>(m * K + k)] - z) * cb[static_cast<size_t>(n * K + k)];
        acc = std::fma(ma[g] * mb[h], static_cast<float>(sum), acc);
      }
      y[static_cast<size_t>(m * N + n)] = acc;
    }
  return y;
}

int64_t bitwise_mismatches(const std::vector<float>& x, const std::vector<float>& y) {
  if (x.size() != y.size()) return -1;
  int64_t bad = 0;
  for (size_t i = 0; i < x.size(); ++i) bad += std::memcmp(&x[i], &y[i], sizeof(float)) != 0;
  return bad;
}

std::vector<float> run_kernel(const QTensor& a, const QTensor& b, detail::IntKernel k, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  std::vector<float> y(static_cast<size_t>(shape_numel(a.shape) / a.shape.back() * b.shape[0]), -1.0f);
  detail::int_matmul(a, b, k, y.data());
  omp_set_num_threads(saved);
  return y;
}

QuantSpec int_spec(Format f, Granularity g, int64_t group = 0, bool symmetric = true,
                   Convention c = Convention::torchao) {
  QuantSpec s;
  s.format = f;
  s.granularity = g;
  s.group_size = group;
  s.symmetric = symmetric;
  s.convention = c;
  return s;
}

// The kernels to check: the portable one always, the AVX2 and VNNI ones where the CPU (and
// LOWBIT_MAX_CPU_ISA) allows them (test output says when one was skipped).
std::vector<detail::IntKernel> kernels_here(const QTensor& a, const QTensor& b) {
  std::vector<detail::IntKernel> ks{detail::IntKernel::portable};
  for (detail::IntKernel k : {detail::IntKernel::avx2, detail::IntKernel::vnni}) {
    if (detail::int_kernel_runs(k, a, b)) ks.push_back(k);
    else std::printf("[ skip ] no %s kernel for this case on this CPU\n", detail::int_kernel_name(k));
  }
  return ks;
}

const char* kernel_name(detail::IntKernel k) { return detail::int_kernel_name(k); }

TEST(ScaledMatmul, IntegerKernelsEqualTheExactIntegerReferenceBitForBit) {
  // Activations: per-tensor modelopt (INT8_DEFAULT), per-token asymmetric (W4A8), per-token
  // symmetric, asymmetric groups of 8. Weights: int8 per-channel modelopt, int4 groups of 32 and 8,
  // int4 per-channel, int8 groups of 4. Shapes: M not a multiple of the kernel's 6 rows, N not a
  // multiple of its 32 columns, one output column and several column tasks, K from 8 quads to
  // several K tiles, K = 300 not a multiple of the packing's 64 columns nor of 8 (int4 bytes).
  const QuantPreset i8 = resolve_preset("INT8_DEFAULT");
  const std::vector<QuantSpec> a_specs{*i8.input, int_spec(Format::int8, Granularity::per_token, 0, false),
                                       int_spec(Format::int8, Granularity::per_token),
                                       int_spec(Format::int8, Granularity::per_group, 8, false)};
  const std::vector<QuantSpec> b_specs{i8.weight, int_spec(Format::int4, Granularity::per_group, 32),
                                       int_spec(Format::int4, Granularity::per_group, 8),
                                       int_spec(Format::int4, Granularity::per_channel),
                                       int_spec(Format::int8, Granularity::per_group, 4)};
  const int64_t shapes[][3] = {{1, 1, 32}, {7, 33, 96}, {67, 45, 300}, {20, 300, 1024}};
  int checked_vnni = 0, checked_avx2 = 0;
  for (const auto& sh : shapes) {
    const int64_t M = sh[0], N = sh[1], K = sh[2];
    const Tensor x = add(activations(M, K, 31 + M), 1.5);
    Generator g(32 + N);
    const Tensor w = randn({N, K}, 0.0, 0.05, DType::f32, &g);
    for (const QuantSpec& sa : a_specs)
      for (const QuantSpec& sb : b_specs) {
        if (K % std::max<int64_t>(1, sa.group_size) != 0 || K % std::max<int64_t>(1, sb.group_size) != 0) continue;
        const QTensor qa = quantize_like_layer(x, sa), qb = quantize_like_layer(w, sb);
        ASSERT_TRUE(integer_path_supported(qa, qb));
        const std::vector<float> ref = exact_integer_product(qa, qb);
        // The reference itself is dequantize(a) · dequantize(b)ᵀ within the accumulation bound.
        EXPECT_LE(against_bound(from_vector(ref, {M, N}, DType::f32), dequantize(qa), dequantize(qb)).worst, 1.0);
        for (detail::IntKernel k : kernels_here(qa, qb)) {
          SCOPED_TRACE(std::string(kernel_name(k)) + " " + to_json(sa) + " x " + to_json(sb) + " M=" +
                       std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
          EXPECT_EQ(bitwise_mismatches(run_kernel(qa, qb, k, 2), ref), 0);
          EXPECT_EQ(bitwise_mismatches(run_kernel(qa, qb, k, 1), ref), 0);  // any thread count
          checked_vnni += k == detail::IntKernel::vnni;
          checked_avx2 += k == detail::IntKernel::avx2;
        }
      }
  }
  std::printf("[ info ] %d cases checked on the VNNI kernel, %d on the AVX2 kernel\n", checked_vnni, checked_avx2);
}

TEST(ScaledMatmul, IntegerKernelsOnZeroAndSaturatedCodes) {
  // Hand-set codes at the ends of their ranges: every product of a segment of 2^16 columns (the
  // largest the integer path takes) at its largest magnitude, (−128 − 127) · (−128) · 2^16 =
  // 2^31 − 2^23, against zero and saturated weights, int8 and int4; and all-zero activations.
  const int64_t M = 3, N = 5, K = int64_t{1} << 16;
  Generator g(41);
  const QTensor qa0 = quantize(randn({M, K}, 0.0, 1.0, DType::f32, &g),
                               int_spec(Format::int8, Granularity::per_token, 0, false));
  for (const Format fb : {Format::int8, Format::int4}) {
    QTensor qb = quantize(randn({N, K}, 0.0, 0.05, DType::f32, &g), int_spec(fb, Granularity::per_channel));
    // b rows: all minimum, all maximum, all zero, alternating min / max, the random codes
    const bool int4 = fb == Format::int4;
    const int64_t row_bytes = int4 ? K / 2 : K;
    auto* c = static_cast<uint8_t*>(qb.codes.raw_data());
    std::memset(c, int4 ? 0x88 : 0x80, static_cast<size_t>(row_bytes));
    std::memset(c + row_bytes, int4 ? 0x77 : 0x7F, static_cast<size_t>(row_bytes));
    std::memset(c + 2 * row_bytes, 0, static_cast<size_t>(row_bytes));
    for (int64_t i = 0; i < row_bytes; ++i) c[3 * row_bytes + i] = int4 ? 0x78 : (i % 2 ? 0x7F : 0x80);
    QTensor qa = qa0;
    qa.codes = qa0.codes.clone();
    qa.zero_points = qa0.zero_points.clone();
    auto* a = static_cast<int8_t*>(qa.codes.raw_data());
    auto* z = qa.zero_points.data<float>();
    std::fill(a, a + K, int8_t{-128});  // row 0: minimum codes, maximum zero point
    z[0] = 127.0f;
    std::fill(a + K, a + 2 * K, int8_t{127});  // row 1: maximum codes, minimum zero point
    z[1] = -128.0f;
    std::fill(a + 2 * K, a + 3 * K, int8_t{0});  // row 2: zero codes, zero point 0
    z[2] = 0.0f;
    ASSERT_TRUE(integer_path_supported(qa, qb));
    const std::vector<float> ref = exact_integer_product(qa, qb);
    for (detail::IntKernel k : kernels_here(qa, qb)) {
      SCOPED_TRACE(std::string(kernel_name(k)) + " " + format_name(fb));
      EXPECT_EQ(bitwise_mismatches(run_kernel(qa, qb, k, 2), ref), 0);
    }
    // The same weights against all-zero activations (symmetric: every code 0) give exact zeros.
    const QTensor qz = quantize(zeros({M, K}), int_spec(Format::int8, Granularity::per_token));
    for (detail::IntKernel k : kernels_here(qz, qb))
      EXPECT_EQ(run_kernel(qz, qb, k, 2), std::vector<float>(static_cast<size_t>(M * N), 0.0f)) << kernel_name(k);
  }
}

TEST(ScaledMatmul, AutomaticPathNeedsASimdKernel) {
  // K = 1001: the single K segment is odd, so neither SIMD kernel can run; `integer` still runs
  // (portable kernel, exact), `automatic` takes the f32 tiles.
  const int64_t M = 9, N = 40, K = 1001;
  const Tensor x = activations(M, K, 51);
  Generator g(52);
  const Tensor w = randn({N, K}, 0.0, 0.05, DType::f32, &g);
  const QTensor qa = quantize(x, int_spec(Format::int8, Granularity::per_token, 0, false));
  const QTensor qb = quantize(w, int_spec(Format::int8, Granularity::per_channel));
  ASSERT_TRUE(integer_path_supported(qa, qb));
  for (detail::IntKernel k : {detail::IntKernel::vnni, detail::IntKernel::avx2}) {
    EXPECT_FALSE(detail::int_kernel_runs(k, qa, qb));
    EXPECT_THROW(detail::int_matmul(qa, qb, k, nullptr), Error);
  }
  EXPECT_EQ(bitwise_mismatches(vals(scaled_matmul(qa, qb, {MatmulPath::integer})), exact_integer_product(qa, qb)), 0);
  EXPECT_EQ(vals(scaled_matmul(qa, qb)), vals(scaled_matmul(qa, qb, {MatmulPath::f32_tiles})));
}

TEST(ScaledMatmul, IsaCapSelectsTheIntegerKernel) {
  // K = 1002: segments even but not a multiple of 4 (AVX2 only); K = 1024: both kernels.
  for (const int64_t K : {int64_t{1002}, int64_t{1024}}) {
    const Tensor x = activations(5, K, 61);
    Generator g(62);
    const QTensor qa = quantize(x, int_spec(Format::int8, Granularity::per_token, 0, false));
    const QTensor qb = quantize(randn({24, K}, 0.0, 0.05, DType::f32, &g), int_spec(Format::int4, Granularity::per_channel));
    const auto exact = exact_integer_product(qa, qb);
    {
      const cpu::IsaCapGuard cap(cpu::Isa::generic);
      EXPECT_FALSE(detail::best_int_kernel(qa, qb).has_value());
      EXPECT_EQ(vals(scaled_matmul(qa, qb)), vals(scaled_matmul(qa, qb, {MatmulPath::f32_tiles})));
    }
    if (!cpu::isa_allows(cpu::Isa::avx2)) {
      std::printf("[ skip ] this CPU has no AVX2\n");
      continue;
    }
    const cpu::IsaCapGuard cap(cpu::Isa::avx2);
    ASSERT_EQ(detail::best_int_kernel(qa, qb), detail::IntKernel::avx2) << "K=" << K;
    EXPECT_EQ(bitwise_mismatches(vals(scaled_matmul(qa, qb)), exact), 0) << "K=" << K;  // int4 weights
    // int8 weights: AVX2 from 64 rows on, f32 tiles below
    for (const int64_t M : {int64_t{5}, int64_t{64}}) {
      const QTensor q8a = quantize(activations(M, K, 63), int_spec(Format::int8, Granularity::per_token, 0, false));
      const QTensor q8b = quantize(randn({24, K}, 0.0, 0.05, DType::f32, &g), int_spec(Format::int8, Granularity::per_channel));
      const auto want = M >= 64 ? exact_integer_product(q8a, q8b) : vals(scaled_matmul(q8a, q8b, {MatmulPath::f32_tiles}));
      EXPECT_EQ(bitwise_mismatches(vals(scaled_matmul(q8a, q8b)), want), 0) << "K=" << K << " M=" << M;
    }
  }
}

TEST(ScaledMatmul, BatchedActivationsAndBadInput) {
  const Tensor x = activations(6, 128, 9).reshape({2, 3, 128});
  Generator g(10);
  const Tensor w = randn({32, 128}, 0.0, 0.05, DType::f32, &g);
  const QTensor qb = quantize(w, resolve_preset("MXFP8").weight);
  const QTensor qa = quantize(x, *resolve_preset("MXFP8").input);
  const Tensor y = scaled_matmul(qa, qb);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 32}));
  EXPECT_EQ(vals(y), vals(scaled_matmul(quantize(x.reshape({6, 128}), *resolve_preset("MXFP8").input), qb)));
  const QTensor other = quantize(randn({32, 64}), resolve_preset("MXFP8").weight);
  EXPECT_THROW(scaled_matmul(qa, other), Error);                    // K differs
  EXPECT_THROW(scaled_matmul(x.reshape({6, 128}), other), Error);   // K differs
  EXPECT_THROW(scaled_matmul(qb, qa), Error);                       // b not 2-D
  QTensor broken = qb;
  broken.scales = broken.scales.narrow(1, 0, 2).contiguous();
  EXPECT_THROW(scaled_matmul(qa, broken), Error);                   // scales do not fit
  EXPECT_THROW(matmul_dequantized(randn({4, 31}), qb), Error);       // dy width != N
}

TEST(ScaledMatmul, DequantizedTransposeProductMatchesMatmul) {
  Generator g(4);
  const Tensor dy = randn({70, 300}, 0.0, 1.0, DType::f32, &g);
  const Tensor w = randn({300, 640}, 0.0, 0.05, DType::f32, &g);
  for (const char* name : {"W4A8", "NVFP4_DEFAULT", "INT4_WEIGHT_ONLY"}) {
    const QTensor qb = quantize_like_layer(w, resolve_preset(name).weight);
    const Tensor b_dq = dequantize(qb);
    // dx = dy · b_dq (N summed): the bound of the test header with K -> N, a -> dy, bᵀ -> b_dq.
    const Check c = against_bound(matmul_dequantized(dy, qb), dy, b_dq.t().contiguous());
    EXPECT_LE(c.worst, 1.0) << name;
  }
}

TEST(ScaledMatmul, AllocationPeakStaysFarBelowADequantizedOperand) {
  const int64_t M = 64, N = 1024, K = 4096;
  const int64_t dequantized_bytes = N * K * 4;  // 16 MiB
  const Tensor x = activations(M, K, 21);
  Generator g(22);
  const Tensor w = randn({N, K}, 0.0, 0.05, DType::f32, &g);
  for (const char* name : {"W4A8", "NVFP4_DEFAULT", "GGUF_Q4_0", "FP8_2D_BLOCKWISE_WEIGHT_ONLY"}) {
    SCOPED_TRACE(name);
    const QuantPreset p = resolve_preset(name);
    const QTensor qb = quantize_like_layer(w, p.weight);
    std::optional<QTensor> qa;
    if (p.input) qa = quantize_like_layer(x, *p.input);
    reset_cpu_peak_memory();
    const int64_t live0 = cpu_memory_stats().live_bytes;
    const Tensor y = qa ? scaled_matmul(*qa, qb) : scaled_matmul(x, qb);
    const int64_t extra = cpu_memory_stats().peak_bytes - live0;
    // The output itself (256 KiB) plus two tiles per thread; a dequantized weight is 16 MiB.
    EXPECT_GE(extra, M * N * 4);
    EXPECT_LT(extra * 3, dequantized_bytes) << extra << " bytes";
    std::printf("[ peak ] %-30s scaled_matmul extra peak %.2f MiB (dequantized weight %.0f MiB)\n", name,
                static_cast<double>(extra) / (1 << 20), static_cast<double>(dequantized_bytes) / (1 << 20));
    // The counter does see a dequantized operand (so the check above can fail).
    reset_cpu_peak_memory();
    const int64_t live1 = cpu_memory_stats().live_bytes;
    { const Tensor d = dequantize(qb); }
    EXPECT_GE(cpu_memory_stats().peak_bytes - live1, dequantized_bytes);
  }
}

}  // namespace
}  // namespace lowbit::quant
