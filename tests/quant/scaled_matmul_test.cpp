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

#include <cmath>

#include "lowbit/engine/lowbit.h"
#include "lowbit/engine/storage.h"
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
    EXPECT_EQ(vals(scaled_matmul(qa, qb)), vals(y_int));  // automatic = integer
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
