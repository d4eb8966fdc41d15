#include "lowbit/optim/adamw.h"

#include <cmath>

#include "lowbit/engine/autograd/grad_mode.h"

namespace lowbit::optim {

AdamW::AdamW(std::vector<ParamGroup> groups, const AdamWOptions& opts)
    : Optimizer(std::move(groups), opts.lr), opts_(opts) {
  LOWBIT_CHECK(opts.beta1 >= 0 && opts.beta1 < 1 && opts.beta2 >= 0 && opts.beta2 < 1,
               "AdamW: betas must be in [0, 1), got (", opts.beta1, ", ", opts.beta2, ")");
  LOWBIT_CHECK(opts.eps > 0, "AdamW: eps must be > 0, got ", opts.eps);
  for (const auto& g : groups_) {
    m_.emplace_back(g.params.size());
    v_.emplace_back(g.params.size());
    t_.emplace_back(g.params.size(), 0);
  }
}

namespace {
// p, g, m, v: (n) contiguous, one fused pass.
template <class T>
void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, double lr, double wd, double b1, double b2,
                  double eps, int64_t t) {
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(t)));
  const T decay = static_cast<T>(1.0 - lr * wd), step_size = static_cast<T>(lr / bc1);
  const T tb1 = static_cast<T>(b1), tb2 = static_cast<T>(b2), te = static_cast<T>(eps);
  const T inv_bc2 = static_cast<T>(1.0 / bc2_sqrt);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = g[i];
    m[i] = tb1 * m[i] + (T(1) - tb1) * gi;
    v[i] = tb2 * v[i] + (T(1) - tb2) * gi * gi;
    const T denom = std::sqrt(v[i]) * inv_bc2 + te;
    p[i] = p[i] * decay - step_size * m[i] / denom;
  }
}
}  // namespace

void AdamW::step() {
  NoGradGuard no_grad;
  ++steps_;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& group = groups_[gi];
    for (size_t i = 0; i < group.params.size(); ++i) {
      const Tensor& p = group.params[i];
      Tensor g = p.grad();
      if (!g.defined()) continue;
      LOWBIT_CHECK(g.shape() == p.shape(), "AdamW: grad shape ", shape_str(g.shape()), " != param shape ",
                   shape_str(p.shape()));
      if (g.dtype() != p.dtype() || !g.is_contiguous()) g = g.to(p.dtype()).contiguous();
      if (!m_[gi][i].defined()) {
        m_[gi][i] = zeros(p.shape(), p.dtype());
        v_[gi][i] = zeros(p.shape(), p.dtype());
      }
      const int64_t t = ++t_[gi][i];
      p.storage()->bump_version();
      if (p.dtype() == DType::f64) {
        adamw_kernel<double>(p.data<double>(), g.data<double>(), m_[gi][i].data<double>(), v_[gi][i].data<double>(),
                             p.numel(), lr_, group.weight_decay, opts_.beta1, opts_.beta2, opts_.eps, t);
      } else {
        adamw_kernel<float>(p.data<float>(), g.data<float>(), m_[gi][i].data<float>(), v_[gi][i].data<float>(),
                            p.numel(), lr_, group.weight_decay, opts_.beta1, opts_.beta2, opts_.eps, t);
      }
    }
  }
}

}  // namespace lowbit::optim
