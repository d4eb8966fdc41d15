#include "lowbit/optim/adamw.h"

#include <algorithm>
#include <cmath>


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
// p, g, m, v: (n) contiguous, one fused pass in blocks of 512 elements. Within a block the
// moment updates and the parameter update are separate loops so they vectorize: sqrt sits in
// its own scalar loop (without -fno-math-errno GCC will not vectorize a loop containing it).
// Same arithmetic, element for element, as the single loop it replaces.
template <class T>
void adamw_kernel(T* p, const T* g, T* m, T* v, int64_t n, double lr, double wd, double b1, double b2,
                  double eps, int64_t t) {
  const double bc1 = 1.0 - std::pow(b1, static_cast<double>(t));
  const double bc2_sqrt = std::sqrt(1.0 - std::pow(b2, static_cast<double>(t)));
  const T decay = static_cast<T>(1.0 - lr * wd), step_size = static_cast<T>(lr / bc1);
  const T tb1 = static_cast<T>(b1), tb2 = static_cast<T>(b2), te = static_cast<T>(eps);
  const T inv_bc2 = static_cast<T>(1.0 / bc2_sqrt);
  constexpr int64_t kBlock = 512;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = b * kBlock, len = std::min(kBlock, n - i0);
    T* pb = p + i0;
    const T* gb = g + i0;
    T* mb = m + i0;
    T* vb = v + i0;
    T root[kBlock];
    for (int64_t i = 0; i < len; ++i) {
      const T gi = gb[i];
      mb[i] = tb1 * mb[i] + (T(1) - tb1) * gi;
      vb[i] = tb2 * vb[i] + (T(1) - tb2) * gi * gi;
    }
    for (int64_t i = 0; i < len; ++i) root[i] = std::sqrt(vb[i]);
    for (int64_t i = 0; i < len; ++i) pb[i] = pb[i] * decay - step_size * mb[i] / (root[i] * inv_bc2 + te);
  }
}
}  // namespace

void AdamW::step() {
  for_each_update("AdamW", [&](size_t gi, size_t i, const Tensor& p, const Tensor& g) {
    if (!m_[gi][i].defined()) {
      m_[gi][i] = zeros(p.shape(), p.dtype());
      v_[gi][i] = zeros(p.shape(), p.dtype());
    }
    const int64_t t = ++t_[gi][i];
    const double wd = groups_[gi].weight_decay;
    auto run = [&](auto tag) {
      using T = typename decltype(tag)::type;
      adamw_kernel<T>(p.data<T>(), g.data<T>(), m_[gi][i].data<T>(), v_[gi][i].data<T>(), p.numel(), lr_, wd,
                      opts_.beta1, opts_.beta2, opts_.eps, t);
    };
    if (p.dtype() == DType::f64)
      run(TypeTag<double>{});
    else
      run(TypeTag<float>{});
  });
}

}  // namespace lowbit::optim
