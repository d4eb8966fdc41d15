// AdamW (Loshchilov & Hutter): decoupled weight decay, bias-corrected moments kept in the
// parameter's dtype (f32 for f32 master weights). Same arithmetic as torch.optim.AdamW:
//   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
#pragma once
#include "lowbit/optim/optimizer.h"

namespace lowbit::optim {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

class AdamW final : public Optimizer {
 public:
  AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opts = {});
  void step() override;
  // The moments of group g, param i (undefined before the first step that param had a grad).
  Tensor exp_avg(size_t g, size_t i) const { return m_.at(g).at(i); }
  Tensor exp_avg_sq(size_t g, size_t i) const { return v_.at(g).at(i); }

 protected:
  std::vector<std::pair<const char*, Buffers*>> buffers() override { return {{"exp_avg", &m_}, {"exp_avg_sq", &v_}}; }
  std::vector<std::pair<const char*, Counters*>> counters() override { return {{"step", &t_}}; }

 private:
  AdamWOptions opts_;
  std::vector<std::vector<Tensor>> m_, v_;
  std::vector<std::vector<int64_t>> t_;  // per-parameter step count (params may skip steps)
};

}  // namespace lowbit::optim
