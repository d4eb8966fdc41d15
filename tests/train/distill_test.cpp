// The QAD loss: alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) (mean over tokens) + (1 - alpha)
// * CE, against an independent f64 computation, and its f64 gradcheck (broadcast-free shapes,
// a transposed student view); the teacher gets no gradient.
#include <gtest/gtest.h>

#include <cmath>

#include "lowbit/engine/lowbit.h"
#include "lowbit/train/distill.h"

namespace lowbit::train {
namespace {

// KL and CE by hand in f64 from the raw values; rows whose target is -100 are left out of both.
double reference(const std::vector<double>& s, const std::vector<double>& t, const std::vector<int64_t>& y, int64_t V,
                 double T, double alpha) {
  size_t n = 0;
  double kl = 0, ce = 0;
  for (size_t r = 0; r < y.size(); ++r) {
    if (y[r] == -100) continue;
    ++n;
    auto lse = [&](const std::vector<double>& x, double scale) {
      double m = -1e300, z = 0;
      for (int64_t v = 0; v < V; ++v) m = std::max(m, x[r * V + v] * scale);
      for (int64_t v = 0; v < V; ++v) z += std::exp(x[r * V + v] * scale - m);
      return m + std::log(z);
    };
    const double ls = lse(s, 1 / T), lt = lse(t, 1 / T), l1 = lse(s, 1);
    for (int64_t v = 0; v < V; ++v) {
      const double log_pt = t[r * V + v] / T - lt, log_ps = s[r * V + v] / T - ls;
      kl += std::exp(log_pt) * (log_pt - log_ps);
    }
    ce += l1 - s[r * V + y[r]];
  }
  return alpha * T * T * kl / static_cast<double>(n) + (1 - alpha) * ce / static_cast<double>(n);
}

TEST(Distill, LossIsTheStatedKlMix) {
  Generator g(7);
  const int64_t V = 13;
  const Tensor s = randn({2, 3, V}, 0, 2, DType::f64, &g), t = randn({2, 3, V}, 0, 2, DType::f64, &g);
  const Tensor y = randint({2, 3}, 0, V, DType::i64, &g);
  for (double T : {1.0, 2.0, 0.5})
    for (double alpha : {1.0, 0.7, 0.0}) {
      const double got = distillation_loss(s, t, y, T, alpha).to(DType::f64).item();
      const double want = reference(s.to_vector<double>(), t.to_vector<double>(), y.to_vector<int64_t>(), V, T, alpha);
      EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, std::abs(want))) << "T " << T << " alpha " << alpha;
    }
  EXPECT_NEAR(distillation_loss(s, s, y, 2.0, 1.0).item(), 0.0, 1e-6);  // KL(p || p) = 0
  // Masked targets (chat prompts, padding): those rows count in neither mean.
  std::vector<int64_t> masked = y.to_vector<int64_t>();
  masked[0] = masked[4] = -100;
  const Tensor ym = from_vector(masked, {2, 3});
  for (double alpha : {1.0, 0.5}) {
    const double got = distillation_loss(s, t, ym, 2.0, alpha).item();
    const double want = reference(s.to_vector<double>(), t.to_vector<double>(), masked, V, 2.0, alpha);
    EXPECT_NEAR(got, want, 1e-12 * std::max(1.0, std::abs(want))) << "alpha " << alpha;
    EXPECT_GT(std::abs(got - distillation_loss(s, t, y, 2.0, alpha).item()), 1e-6);
  }
}

TEST(Distill, GradcheckStudentOnly) {
  Generator g(8);
  Tensor s = randn({4, 6}, 0, 1, DType::f64, &g).transpose(0, 1);  // (6, 4) non-contiguous
  s.set_requires_grad(true);
  Tensor t = randn({6, 4}, 0, 1, DType::f64, &g);
  t.set_requires_grad(true);
  const Tensor y = randint({6}, 0, 4, DType::i64, &g);
  const auto r = gradcheck([&](const std::vector<Tensor>& in) { return distillation_loss(in[0], t, y, 1.5, 0.6); }, {s});
  EXPECT_TRUE(r.ok) << r.message;
  distillation_loss(s, t, y, 1.5, 0.6).backward();
  EXPECT_FALSE(t.grad().defined());  // the teacher is frozen
}

TEST(Distill, BadArguments) {
  const Tensor a = zeros({2, 5}), b = zeros({2, 4}), y = zeros({2}, DType::i64);
  EXPECT_THROW(distillation_loss(a, b, y, 1, 1), Error);
  EXPECT_THROW(distillation_loss(a, a, y, 0, 1), Error);
  EXPECT_THROW(distillation_loss(a, a, y, 1, 1.5), Error);
}

}  // namespace
}  // namespace lowbit::train
