#include "lowbit/optim/grad_clip.h"

#include <cmath>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/reduce.h"

namespace lowbit::optim {

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  LOWBIT_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  NoGradGuard no_grad;
  double total = 0;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (!g.defined()) continue;
    const Tensor g64 = g.to(DType::f64);
    total += sum(mul(g64, g64)).item();
  }
  const double norm = std::sqrt(total);
  if (norm > max_norm) {
    const double scale = max_norm / (norm + 1e-6);
    for (const Tensor& p : params)
      if (p.grad().defined()) mul_(p.grad(), scale);
  }
  return norm;
}

}  // namespace lowbit::optim
