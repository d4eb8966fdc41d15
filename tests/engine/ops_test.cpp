// Forward values of the ops against independent references (plain loops in the test, or
// closed forms), dtype behaviour, determinism across thread counts.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>

#include "lowbit/engine/lowbit.h"

namespace lowbit {
namespace {

std::vector<double> to_d(const Tensor& t) { return t.to_vector<double>(); }

Tensor randu(const Shape& s, uint64_t seed, DType dt = DType::f32, double lo = -1, double hi = 1) {
  Generator g(seed);
  return rand(s, lo, hi, dt, &g);
}

TEST(Ops, SoftmaxMatchesClosedForm) {
  Tensor x = randu({3, 7}, 1, DType::f64, -5, 5);
  std::vector<double> xv = to_d(x), y = to_d(softmax(x)), ly = to_d(log_softmax(x));
  for (int r = 0; r < 3; ++r) {
    double z = 0;
    for (int j = 0; j < 7; ++j) z += std::exp(xv[r * 7 + j]);
    for (int j = 0; j < 7; ++j) {
      EXPECT_NEAR(y[r * 7 + j], std::exp(xv[r * 7 + j]) / z, 1e-15);
      EXPECT_NEAR(ly[r * 7 + j], xv[r * 7 + j] - std::log(z), 1e-14);
    }
  }
}

TEST(Ops, SoftmaxIsStableForHugeLogits) {
  Tensor x = from_vector(std::vector<float>{1000.f, 1001.f, -1e30f, 999.f}, {1, 4});
  std::vector<double> y = to_d(softmax(x));
  const double z = 1 + std::exp(1.0) + std::exp(-1.0);
  EXPECT_NEAR(y[1], std::exp(1.0) / z, 1e-6);
  EXPECT_EQ(y[2], 0.0);
  std::vector<double> ly = to_d(log_softmax(x));
  EXPECT_NEAR(ly[0], -std::log(z), 1e-4);
  for (double v : ly) EXPECT_FALSE(std::isnan(v));
}

TEST(Ops, SoftmaxAlongNonLastDim) {
  Tensor x = randu({4, 3}, 2, DType::f64);
  std::vector<double> a = to_d(softmax(x, 0)), b = to_d(softmax(x.t().contiguous(), 1).t().contiguous());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-15);
}

TEST(Ops, CrossEntropyMatchesReferenceWithIgnoreAndSmoothing) {
  const int64_t N = 5, V = 6;
  Tensor logits = randu({N, V}, 3, DType::f64, -4, 4);
  std::vector<int64_t> tg = {1, -100, 5, 0, 3};
  Tensor targets = from_vector(tg, {N});
  std::vector<double> lv = to_d(logits);
  for (double eps : {0.0, 0.2}) {
    double total = 0;
    int valid = 0;
    for (int64_t i = 0; i < N; ++i) {
      if (tg[static_cast<size_t>(i)] == -100) continue;
      double m = -INFINITY, z = 0;
      for (int64_t j = 0; j < V; ++j) m = std::max(m, lv[static_cast<size_t>(i * V + j)]);
      for (int64_t j = 0; j < V; ++j) z += std::exp(lv[static_cast<size_t>(i * V + j)] - m);
      const double lse = m + std::log(z);
      double loss = 0;
      for (int64_t j = 0; j < V; ++j) {
        const double q = (j == tg[static_cast<size_t>(i)] ? 1 - eps : 0) + eps / V;
        loss += q * (lse - lv[static_cast<size_t>(i * V + j)]);
      }
      total += loss;
      ++valid;
    }
    CrossEntropyOptions o;
    o.label_smoothing = eps;
    EXPECT_NEAR(cross_entropy(logits, targets, o).item(), total / valid, 1e-12) << "eps " << eps;
  }
  // Every position ignored: zero loss and zero gradient, not NaN.
  Tensor l2 = logits.detach().set_requires_grad(true);
  Tensor all_ignored = full({N}, -100, DType::i64);
  Tensor loss = cross_entropy(l2, all_ignored);
  EXPECT_EQ(loss.item(), 0.0);
  loss.backward();
  EXPECT_EQ(sum(mul(l2.grad(), l2.grad())).item(), 0.0);
  EXPECT_THROW(cross_entropy(logits, from_vector(std::vector<int64_t>{0, 1, 2, 3, 6}, {N})), Error);
}

TEST(Ops, CrossEntropyBf16LogitsStayAccurate) {
  Tensor logits = randu({8, 50}, 4, DType::f32, -10, 10).to(DType::bf16);
  Tensor targets = randint({8}, 0, 50);
  const double ref = cross_entropy(logits.to(DType::f64), targets).item();
  EXPECT_NEAR(cross_entropy(logits, targets).item(), ref, 1e-5);
}

TEST(Ops, MatmulMatchesNaiveLoopsForEveryLayout) {
  const int64_t B = 3, M = 5, K = 7, N = 4;
  Tensor a = randu({B, M, K}, 5), b = randu({B, K, N}, 6);
  std::vector<double> av = to_d(a), bv = to_d(b);
  auto check = [&](const Tensor& out) {
    std::vector<double> o = to_d(out);
    for (int64_t z = 0; z < B; ++z)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k) s += av[(z * M + i) * K + k] * bv[(z * K + k) * N + j];
          EXPECT_NEAR(o[(z * M + i) * N + j], s, 1e-5);
        }
  };
  check(matmul(a, b));
  // Same values stored transposed: handed to GEMM as transposes.
  Tensor at = a.transpose(1, 2).contiguous().transpose(1, 2), bt = b.transpose(1, 2).contiguous().transpose(1, 2);
  EXPECT_FALSE(at.is_contiguous());
  check(matmul(at, bt));
  check(matmul(a.to(DType::f64), b.to(DType::f64)));
  // Broadcast weight: (B, M, K) @ (K, N) equals per-batch products.
  Tensor w = randu({K, N}, 7);
  Tensor o = matmul(a, w);
  for (int64_t z = 0; z < B; ++z) {
    std::vector<double> oz = to_d(o.select(0, z)), ref = to_d(matmul(a.select(0, z), w));
    for (size_t i = 0; i < oz.size(); ++i) EXPECT_NEAR(oz[i], ref[i], 1e-6);
  }
  EXPECT_THROW(matmul(randu({2, 3}, 1), randu({4, 2}, 1)), Error);
}

TEST(Ops, MatmulBf16AccumulatesInF32) {
  // 4096 products of 1 * 2^-10 sum to 4 exactly in f32; a bf16 accumulator would stall at 0.5.
  Tensor a = full({1, 4096}, 1.0, DType::bf16), b = full({4096, 1}, 1.0 / 1024, DType::bf16);
  EXPECT_EQ(matmul(a, b).item(), 4.0);
  EXPECT_EQ(matmul(a, b).dtype(), DType::bf16);
}

TEST(Ops, RopeIsTheRotateHalfRotation) {
  const int64_t T = 3, D = 4, off = 7;
  const double theta = 100.0;
  auto [c, s] = rope_cos_sin(T, D, theta, off, DType::f64);
  Tensor x = randu({1, 1, T, D}, 8, DType::f64);
  std::vector<double> xv = to_d(x), y = to_d(apply_rope(x, c, s));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D / 2; ++i) {
      const double ang = static_cast<double>(t + off) * std::pow(theta, -2.0 * static_cast<double>(i) / D);
      const double x1 = xv[static_cast<size_t>(t * D + i)], x2 = xv[static_cast<size_t>(t * D + i + D / 2)];
      EXPECT_NEAR(y[static_cast<size_t>(t * D + i)], x1 * std::cos(ang) - x2 * std::sin(ang), 1e-14);
      EXPECT_NEAR(y[static_cast<size_t>(t * D + i + D / 2)], x2 * std::cos(ang) + x1 * std::sin(ang), 1e-14);
    }
}

TEST(Ops, RmsNormMatchesFormula) {
  Tensor x = randu({2, 5}, 9, DType::f64), w = randu({5}, 10, DType::f64);
  std::vector<double> xv = to_d(x), wv = to_d(w), y = to_d(rms_norm(x, w, 1e-6));
  for (int r = 0; r < 2; ++r) {
    double ms = 0;
    for (int j = 0; j < 5; ++j) ms += xv[r * 5 + j] * xv[r * 5 + j] / 5;
    for (int j = 0; j < 5; ++j) EXPECT_NEAR(y[r * 5 + j], xv[r * 5 + j] / std::sqrt(ms + 1e-6) * wv[j], 1e-14);
  }
}

TEST(Ops, EmbeddingGathersRowsAndChecksIds) {
  Tensor w = from_vector(std::vector<float>{0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor out = embedding(w, from_vector(std::vector<int64_t>{2, 0, 2}, {3}));
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{20, 21, 0, 1, 20, 21}));
  EXPECT_THROW(embedding(w, from_vector(std::vector<int64_t>{3}, {1})), Error);
  EXPECT_THROW(embedding(w, from_vector(std::vector<int64_t>{-1}, {1})), Error);
}

TEST(Ops, CatSplitStackRoundTrip) {
  Tensor a = randu({2, 3}, 11), b = randu({2, 5}, 12);
  Tensor c = cat({a, b}, 1);
  std::vector<Tensor> parts = split(c, std::vector<int64_t>{3, 5}, 1);
  EXPECT_EQ(parts[0].to_vector<float>(), a.to_vector<float>());
  EXPECT_EQ(parts[1].contiguous().to_vector<float>(), b.to_vector<float>());
  EXPECT_EQ(stack({a, a}, 0).shape(), (Shape{2, 2, 3}));
  EXPECT_THROW(cat({a, randu({3, 3}, 1)}, 1), Error);
  EXPECT_EQ(split(c, 3, 1).size(), 3u);
}

TEST(Ops, Bf16AndF16ComputeInF32) {
  // 256 + 1 in bf16 is 256 (ties to even); the op rounds once, from the exact f32 result.
  Tensor a = full({4}, 256.0, DType::bf16), b = full({4}, 1.0, DType::bf16);
  EXPECT_EQ(add(a, b).to_vector<float>()[0], 256.0f);
  EXPECT_EQ(add(a, mul(b, 3.0)).to_vector<float>()[0], 260.0f);
  Tensor h = full({3}, 0.1, DType::f16);
  EXPECT_EQ(mul(h, 10.0).to_vector<float>()[0], static_cast<float>(Half(static_cast<float>(Half(0.1f)) * 10.0f)));
}

TEST(Ops, ReductionsAreBitwiseIdenticalAtOneAndTwoThreads) {
  Tensor x = randu({3, 100003}, 13);  // long rows: chunked reduction path
  Tensor y = randu({4096, 33}, 14);   // column reduction path
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    std::vector<float> r;
    for (const Tensor& t : {sum(x, {1}), sum(x), mean(x, {0}), amax(x, {1}), sum(y, {0}), sum(y, {1})}) {
      std::vector<float> v = t.to_vector<float>();
      r.insert(r.end(), v.begin(), v.end());
    }
    return r;
  };
  const int saved = omp_get_max_threads();
  std::vector<float> one = run(1), two = run(2), one_again = run(1);
  omp_set_num_threads(saved);
  ASSERT_EQ(one.size(), two.size());
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(one.data(), one_again.data(), one.size() * sizeof(float)), 0);
  // And the sum is right.
  EXPECT_NEAR(sum(y).item(), sum(y.to(DType::f64)).item(), 1e-2);
}

TEST(Ops, SumOfLargeTensorIsAccurate) {
  Tensor x = full({1 << 20}, 0.1, DType::f32);
  EXPECT_NEAR(sum(x).item(), 0.1f * static_cast<double>(1 << 20), 1.0);
}

TEST(Random, SameNumbersAcrossRunsAndThreadCounts) {
  auto draw = [](int threads) {
    omp_set_num_threads(threads);
    Generator g(7);
    std::vector<float> a = rand({70000}, 0, 1, DType::f32, &g).to_vector<float>();
    std::vector<float> b = randn({70001}, 0, 1, DType::f32, &g).to_vector<float>();
    std::vector<float> c = trunc_normal({70002}, 0, 1, -2, 2, DType::f32, &g).to_vector<float>();
    a.insert(a.end(), b.begin(), b.end());
    a.insert(a.end(), c.begin(), c.end());
    return a;
  };
  const int saved = omp_get_max_threads();
  std::vector<float> one = draw(1), two = draw(2);
  omp_set_num_threads(saved);
  EXPECT_EQ(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)), 0);
  // The generator's position matters: a second draw differs from the first.
  Generator g(7);
  EXPECT_NE(rand({4}, 0, 1, DType::f32, &g).to_vector<float>(), rand({4}, 0, 1, DType::f32, &g).to_vector<float>());
}

TEST(Random, DistributionsHaveTheRightMoments) {
  Generator g(99);
  const int64_t n = 200000;
  Tensor u = rand({n}, -2, 3, DType::f64, &g);
  EXPECT_NEAR(mean(u).item(), 0.5, 0.02);
  EXPECT_LE(amax(neg(u)).item(), 2.0);
  EXPECT_LT(amax(u).item(), 3.0);
  Tensor z = randn({n}, 1.0, 2.0, DType::f64, &g);
  EXPECT_NEAR(mean(z).item(), 1.0, 0.02);
  EXPECT_NEAR(std::sqrt(mean(mul(sub(z, 1.0), sub(z, 1.0))).item()), 2.0, 0.02);
  Tensor t = trunc_normal({n}, 0.0, 1.0, -1.0, 1.5, DType::f64, &g);
  EXPECT_LE(amax(t).item(), 1.5);
  EXPECT_GE(-amax(neg(t)).item(), -1.0);
  // Mean of N(0,1) truncated to [-1, 1.5]: (phi(-1) - phi(1.5)) / (Phi(1.5) - Phi(-1)).
  auto phi = [](double x) { return std::exp(-x * x / 2) / std::sqrt(2 * M_PI); };
  auto Phi = [](double x) { return 0.5 * (1 + std::erf(x / std::sqrt(2.0))); };
  EXPECT_NEAR(mean(t).item(), (phi(-1) - phi(1.5)) / (Phi(1.5) - Phi(-1)), 0.01);
  // rand never reaches `high`, even in bf16.
  Tensor ub = rand({n}, 0, 1, DType::bf16, &g);
  EXPECT_LT(amax(ub).item(), 1.0);
  Tensor ri = randint({n}, 3, 7, DType::i64, &g);
  std::vector<int64_t> rv = ri.to_vector<int64_t>();
  EXPECT_EQ(*std::min_element(rv.begin(), rv.end()), 3);
  EXPECT_EQ(*std::max_element(rv.begin(), rv.end()), 6);
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

// The blocked kernel against the composite softmax(Q K^T * scale + causal mask) V built from
// the engine's own primitives, values and gradients, with grouped-query heads.
TEST(Ops, AttentionMatchesCompositeReference) {
  const int64_t B = 2, Hq = 4, Hkv = 2, T = 5, S = 7, D = 8;
  Generator g(21);
  Tensor q = randn({B, Hq, T, D}, 0, 1, DType::f64, &g).set_requires_grad(true);
  Tensor k = randn({B, Hkv, S, D}, 0, 1, DType::f64, &g).set_requires_grad(true);
  Tensor v = randn({B, Hkv, S, D}, 0, 1, DType::f64, &g).set_requires_grad(true);
  Tensor dout = randn({B, Hq, T, D}, 0, 1, DType::f64, &g);

  Tensor fast = scaled_dot_product_attention(q, k, v, true);
  fast.backward(dout);
  const std::vector<double> gq = q.grad().to_vector<double>(), gk = k.grad().to_vector<double>(),
                            gv = v.grad().to_vector<double>();
  q.zero_grad();
  k.zero_grad();
  v.zero_grad();

  // Repeat each kv head for its group: (B, Hkv, S, D) -> (B, Hq, S, D).
  auto repeat_kv = [&](const Tensor& t) {
    return t.unsqueeze(2).expand({B, Hkv, Hq / Hkv, S, D}).reshape({B, Hq, S, D});
  };
  std::vector<int64_t> m(static_cast<size_t>(T * S));
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < S; ++j) m[static_cast<size_t>(i * S + j)] = j > i + (S - T) ? 1 : 0;
  const Tensor mask = from_vector(m, {T, S}, DType::u8);
  const Tensor scores = mul(matmul(q, repeat_kv(k).transpose(-2, -1)), 1.0 / std::sqrt(static_cast<double>(D)));
  const Tensor ref = matmul(softmax(masked_fill(scores, mask, -INFINITY), -1), repeat_kv(v));
  ref.backward(dout);

  std::vector<double> a = fast.to_vector<double>(), b = ref.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-12);
  auto close = [](const std::vector<double>& x, const Tensor& y) {
    std::vector<double> yv = y.to_vector<double>();
    ASSERT_EQ(x.size(), yv.size());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], yv[i], 1e-11) << i;
  };
  close(gq, q.grad());
  close(gk, k.grad());
  close(gv, v.grad());
}

// The fused cross-entropy never allocates a softmax-sized copy of the logits in forward.
TEST(Ops, CrossEntropyForwardAllocatesNoSoftmaxCopy) {
  const int64_t N = 256, V = 4096;
  Tensor logits = rand({N, V}, -5, 5);
  Tensor targets = randint({N}, 0, V);
  reset_cpu_peak_memory();
  const int64_t before = cpu_memory_stats().live_bytes;
  Tensor loss = cross_entropy(logits, targets);
  const int64_t extra = cpu_memory_stats().peak_bytes - before;
  EXPECT_LT(extra, N * V * 4 / 16) << "peak grew by " << extra << " bytes";
  EXPECT_TRUE(std::isfinite(loss.item()));
}

}  // namespace
}  // namespace lowbit
