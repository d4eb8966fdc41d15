#include "lowbit/optim/sgd.h"


namespace lowbit::optim {

SGD::SGD(std::vector<ParamGroup> groups, const SGDOptions& opts) : Optimizer(std::move(groups), opts.lr), opts_(opts) {
  LOWBIT_CHECK(opts.momentum >= 0, "SGD: momentum must be >= 0, got ", opts.momentum);
  LOWBIT_CHECK(!opts.nesterov || (opts.momentum > 0 && opts.dampening == 0),
               "SGD: nesterov needs momentum > 0 and dampening == 0");
  for (const auto& g : groups_) buf_.emplace_back(g.params.size());
}

namespace {
template <class T>
void sgd_kernel(T* p, const T* g, T* buf, int64_t n, double lr, double wd, double mu, double damp, bool nesterov,
                bool first) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    T d = g[i] + static_cast<T>(wd) * p[i];
    if (buf) {
      buf[i] = first ? d : static_cast<T>(mu) * buf[i] + static_cast<T>(1.0 - damp) * d;
      d = nesterov ? d + static_cast<T>(mu) * buf[i] : buf[i];
    }
    p[i] -= static_cast<T>(lr) * d;
  }
}
}  // namespace

void SGD::step() {
  for_each_update("SGD", [&](size_t gi, size_t i, const Tensor& p, const Tensor& g) {
    const bool first = opts_.momentum > 0 && !buf_[gi][i].defined();
    if (first) buf_[gi][i] = zeros(p.shape(), p.dtype());
    auto run = [&](auto tag) {
      using T = typename decltype(tag)::type;
      sgd_kernel<T>(p.data<T>(), g.data<T>(), opts_.momentum > 0 ? buf_[gi][i].data<T>() : nullptr, p.numel(), lr_,
                    groups_[gi].weight_decay, opts_.momentum, opts_.dampening, opts_.nesterov, first);
    };
    if (p.dtype() == DType::f64)
      run(TypeTag<double>{});
    else
      run(TypeTag<float>{});
  });
}

}  // namespace lowbit::optim
