// Memory bound of the flash-attention CPU kernel: forward + backward at T = S = 8192 must never
// hold anything close to a T x S score matrix (T * S * 4 bytes = 256 MiB in f32).
#include <gtest/gtest.h>
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "lowbit/engine/lowbit.h"
#include "lowbit/engine/ops/attention.h"

namespace lowbit {
namespace {

Tensor random_tensor(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (double& x : v) x = dist(rng);
  return from_vector(v, shape, DType::f32);
}

void run_case(bool causal) {
  const int64_t T = 8192, S = 8192, D = 64;
  const Shape shape{1, 1, T, D};
  Tensor q = random_tensor(shape, 1), k = random_tensor(shape, 2), v = random_tensor(shape, 3);
  const Tensor dout = random_tensor(shape, 4);
  for (Tensor* t : {&q, &k, &v}) {
    t->set_requires_grad(true);
    // AccumulateGrad clones the first gradient a leaf receives; with .grad already allocated
    // it adds in place, so the peak below is the op's own (output, lse, its gradients, scratch).
    t->set_grad(zeros(shape));
  }
  const int64_t tensor_bytes = T * D * 4;  // one (1, 1, T, D) f32 tensor
  const int64_t scores_bytes = T * S * 4;  // what a naive kernel would hold

  const int64_t live_before = cpu_memory_stats().live_bytes;  // inputs, grads, dout
  reset_cpu_peak_memory();
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<float> out_head;
  {
    Tensor out = scaled_dot_product_attention(q, k, v, causal);
    const auto t1 = std::chrono::steady_clock::now();
    out.backward(dout);
    const auto t2 = std::chrono::steady_clock::now();
    std::printf("causal=%d threads=%d: forward %.2f s, backward %.2f s\n", causal, omp_get_max_threads(),
                std::chrono::duration<double>(t1 - t0).count(), std::chrono::duration<double>(t2 - t1).count());
    out_head = out.narrow(2, 0, 4).to_vector<float>();
  }
  const int64_t peak = cpu_memory_stats().peak_bytes - live_before;
  std::printf("causal=%d: peak above inputs %.2f MiB = %.4f x T*S*4 (%.0f MiB); output + 3 grads alone: %.2f MiB\n",
              causal, peak / 1048576.0, static_cast<double>(peak) / scores_bytes, scores_bytes / 1048576.0,
              4.0 * tensor_bytes / 1048576.0);
  EXPECT_LT(peak, scores_bytes / 16);
  // The unavoidable part is the output and the three gradients (4 x 2 MiB). Besides them only
  // lse and D_i (T floats each) and the per-thread scratch (~360 KiB at D = 64) may be live.
  EXPECT_LT(peak, 4 * tensor_bytes + 2 * T * 4 + omp_get_max_threads() * (int64_t{1} << 20));

  // Sanity of the results at this size. Rows 0..3 of the output against a double reference.
  {
    const std::vector<double> qv = q.narrow(2, 0, 4).to_vector<double>(), kv = k.to_vector<double>(),
                              vv = v.to_vector<double>();
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    for (int64_t i = 0; i < 4; ++i) {
      const int64_t nvis = causal ? i + 1 : S;
      std::vector<double> p(static_cast<size_t>(nvis));
      double mx = -INFINITY, z = 0;
      for (int64_t j = 0; j < nvis; ++j) {
        double s = 0;
        for (int64_t e = 0; e < D; ++e) s += qv[i * D + e] * kv[j * D + e];
        p[j] = s * scale;
        mx = std::max(mx, p[j]);
      }
      for (double& x : p) z += (x = std::exp(x - mx));
      for (int64_t e = 0; e < D; ++e) {
        double o = 0;
        for (int64_t j = 0; j < nvis; ++j) o += p[j] / z * vv[j * D + e];
        EXPECT_NEAR(out_head[i * D + e], o, 1e-5) << "row " << i << " col " << e;
      }
    }
  }
  // Gradient invariants (P's rows sum to 1, dS's rows sum to 0): column sums of dV equal those
  // of dO, column sums of dK vanish.
  const std::vector<double> gk = k.grad().to_vector<double>(), gv = v.grad().to_vector<double>(),
                            go = dout.to_vector<double>();
  for (int64_t e = 0; e < D; ++e) {
    double sk = 0, sv = 0, so = 0, ak = 0;
    for (int64_t j = 0; j < T; ++j) {
      sk += gk[j * D + e];
      ak += std::fabs(gk[j * D + e]);
      sv += gv[j * D + e];
      so += go[j * D + e];
    }
    EXPECT_NEAR(sv, so, 1e-3) << "col " << e;
    EXPECT_NEAR(sk, 0.0, 1e-4 * ak + 1e-4) << "col " << e;
  }
  for (const Tensor* t : {&q, &k, &v})
    for (float x : t->grad().to_vector<float>()) ASSERT_TRUE(std::isfinite(x));
}

TEST(AttentionMemory, Causal8192StaysFarBelowTSquared) { run_case(true); }
TEST(AttentionMemory, Full8192StaysFarBelowTSquared) { run_case(false); }

}  // namespace
}  // namespace lowbit
