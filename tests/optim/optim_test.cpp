// Optimizer steps against values worked out by hand from the published update rules.
#include <gtest/gtest.h>

#include <cmath>

#include "lowbit/engine/lowbit.h"
#include "lowbit/optim/adamw.h"
#include "lowbit/optim/grad_clip.h"
#include "lowbit/optim/lr_schedule.h"
#include "lowbit/optim/sgd.h"

namespace lowbit::optim {
namespace {

Tensor param(std::vector<double> v, DType dt = DType::f64) {
  return from_vector(v, {static_cast<int64_t>(v.size())}, dt).set_requires_grad(true);
}
void set_grad(const Tensor& p, std::vector<double> g) {
  p.set_grad(from_vector(g, {static_cast<int64_t>(g.size())}, p.dtype()));
}

TEST(AdamW, FirstStepMatchesHandComputedValue) {
  // p = 1, g = 0.5, lr 0.1, wd 0.01: decay to 0.999; m = 0.05, v = 2.5e-4; bias-corrected
  // m^ = 0.5, v^ = 0.25; update 0.1 * 0.5 / (0.5 + 1e-8) = 0.099999998.
  Tensor p = param({1.0});
  AdamW opt({{{p}, 0.01}}, {0.1, 0.9, 0.999, 1e-8});
  set_grad(p, {0.5});
  opt.step();
  EXPECT_NEAR(p.item(), 0.999 - 0.099999998, 1e-12);
  EXPECT_NEAR(opt.exp_avg(0, 0).item(), 0.05, 1e-15);
  EXPECT_NEAR(opt.exp_avg_sq(0, 0).item(), 2.5e-4, 1e-18);
}

TEST(AdamW, SeveralStepsFollowTheTextbookRule) {
  const double lr = 0.05, b1 = 0.8, b2 = 0.95, eps = 1e-6, wd = 0.1;
  Tensor p = param({0.3, -1.2});
  Tensor q = param({2.0}, DType::f32);  // no-decay group, f32 master weight
  AdamW opt({{{p}, wd}, {{q}, 0.0}}, {lr, b1, b2, eps});
  double rp[2] = {0.3, -1.2}, rq = 2.0, m[3] = {}, v[3] = {};
  const double grads[3][3] = {{0.5, -0.1, 1.0}, {-0.2, 0.4, 0.5}, {0.1, 0.1, -2.0}};
  for (int t = 1; t <= 3; ++t) {
    const double* g = grads[t - 1];
    set_grad(p, {g[0], g[1]});
    set_grad(q, {g[2]});
    opt.step();
    for (int i = 0; i < 3; ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(b1, t)), vhat = v[i] / (1 - std::pow(b2, t));
      double& x = i < 2 ? rp[i] : rq;
      x -= lr * (i < 2 ? wd : 0.0) * x;
      x -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  }
  std::vector<double> pv = p.to_vector<double>();
  EXPECT_NEAR(pv[0], rp[0], 1e-14);
  EXPECT_NEAR(pv[1], rp[1], 1e-14);
  EXPECT_NEAR(q.item(), rq, 1e-6);
}

TEST(AdamW, SkipsParamsWithoutGradAndRejectsBadInput) {
  Tensor p = param({1.0}), q = param({1.0});
  AdamW opt({{{p, q}, 0.0}});
  set_grad(p, {1.0});
  opt.step();
  EXPECT_NE(p.item(), 1.0);
  EXPECT_EQ(q.item(), 1.0);
  EXPECT_FALSE(opt.exp_avg(0, 1).defined());
  EXPECT_THROW(AdamW({{{param({1.0})}, 0.0}}, {0.1, 1.0, 0.999, 1e-8}), Error);
  EXPECT_THROW(AdamW({{{param({1.0}, DType::bf16)}, 0.0}}), Error);
  EXPECT_THROW(opt.set_lr(-1.0), Error);
}

TEST(SGD, MomentumNesterovAndWeightDecayMatchHandComputedValues) {
  Tensor p = param({1.0});
  SGD plain({{{p}, 0.0}}, {0.1, 0.9, 0.0, false});
  set_grad(p, {0.5});
  plain.step();  // buf = 0.5, p = 1 - 0.05
  EXPECT_NEAR(p.item(), 0.95, 1e-15);
  set_grad(p, {0.5});
  plain.step();  // buf = 0.9 * 0.5 + 0.5 = 0.95, p = 0.95 - 0.095
  EXPECT_NEAR(p.item(), 0.855, 1e-15);

  Tensor n = param({1.0});
  SGD nesterov({{{n}, 0.0}}, {0.1, 0.9, 0.0, true});
  set_grad(n, {0.5});
  nesterov.step();  // buf = 0.5, d = 0.5 + 0.9 * 0.5 = 0.95
  EXPECT_NEAR(n.item(), 0.905, 1e-15);

  Tensor w = param({2.0});
  SGD decayed({{{w}, 0.5}}, {0.1});
  set_grad(w, {1.0});
  decayed.step();  // d = 1 + 0.5 * 2 = 2, p = 2 - 0.2
  EXPECT_NEAR(w.item(), 1.8, 1e-15);
}

TEST(LrSchedule, WarmupThenCosineOrLinearToTheFloor) {
  LrSchedule s{1.0, 0.1, 10, 110, LrDecay::Cosine};
  EXPECT_NEAR(s.at(0), 0.1, 1e-15);
  EXPECT_NEAR(s.at(4), 0.5, 1e-15);
  EXPECT_NEAR(s.at(9), 1.0, 1e-15);
  EXPECT_NEAR(s.at(10), 1.0, 1e-15);
  EXPECT_NEAR(s.at(60), 0.55, 1e-15);  // halfway: floor + (peak - floor) / 2
  EXPECT_NEAR(s.at(110), 0.1, 1e-15);
  EXPECT_NEAR(s.at(500), 0.1, 1e-15);
  LrSchedule lin{1.0, 0.1, 10, 110, LrDecay::Linear};
  EXPECT_NEAR(lin.at(35), 1.0 - 0.9 * 0.25, 1e-15);
  EXPECT_NEAR((LrSchedule{0.3, 0.0, 0, 0, LrDecay::Constant}).at(1000), 0.3, 0);
  EXPECT_THROW((LrSchedule{1.0, 0.0, 10, 5, LrDecay::Cosine}).at(20), Error);
}

TEST(GradClip, ScalesToMaxNormOnlyWhenAbove) {
  Tensor a = param({3.0}), b = param({4.0}), c = param({1.0});
  set_grad(a, {3.0});
  set_grad(b, {4.0});
  const double norm = clip_grad_norm({a, b, c}, 1.0);  // c has no grad: skipped
  EXPECT_NEAR(norm, 5.0, 1e-15);
  EXPECT_NEAR(a.grad().item(), 3.0 / (5.0 + 1e-6), 1e-15);
  EXPECT_NEAR(b.grad().item(), 4.0 / (5.0 + 1e-6), 1e-15);
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0), 5.0 / (5.0 + 1e-6), 1e-12);
  EXPECT_NEAR(a.grad().item(), 3.0 / (5.0 + 1e-6), 1e-15);  // below max: untouched
}

TEST(Optim, GradientAccumulationEqualsOneBigBatch) {
  // Two micro-batches accumulated into .grad (each loss scaled by 1/2) give the same AdamW
  // step as the mean loss over the whole batch.
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4}, {4, 1}, DType::f64);
  Tensor w1 = param({0.5}), w2 = param({0.5});
  AdamW o1({{{w1}, 0.0}}), o2({{{w2}, 0.0}});
  mean(mul(mul(x, w1), mul(x, w1))).backward();
  for (int k = 0; k < 2; ++k) {
    Tensor xs = x.narrow(0, 2 * k, 2);
    mul(mean(mul(mul(xs, w2), mul(xs, w2))), 0.5).backward();
  }
  EXPECT_NEAR(w1.grad().item(), w2.grad().item(), 1e-14);
  o1.step();
  o2.step();
  EXPECT_NEAR(w1.item(), w2.item(), 1e-14);
}

}  // namespace
}  // namespace lowbit::optim
