#include "lowbit/optim/optimizer.h"

#include <cmath>

#include "lowbit/engine/autograd/grad_mode.h"

namespace lowbit::optim {

Optimizer::Optimizer(std::vector<ParamGroup> groups, double lr) : groups_(std::move(groups)), lr_(lr) {
  set_lr(lr);
  for (size_t g = 0; g < groups_.size(); ++g) {
    LOWBIT_CHECK(groups_[g].weight_decay >= 0, "optimizer: group ", g, " has negative weight_decay ",
                 groups_[g].weight_decay);
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& p = groups_[g].params[i];
      LOWBIT_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "optimizer: group ", g, " param ", i,
                   " must be a leaf that requires grad");
      LOWBIT_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "optimizer: group ", g, " param ", i,
                   " has dtype ", p.dtype(), "; master weights must be f32 (or f64)");
      LOWBIT_CHECK(p.is_contiguous() && p.device().is_cpu(), "optimizer: group ", g, " param ", i,
                   " must be a contiguous CPU tensor, got ", p.str());
    }
  }
}

void Optimizer::set_lr(double lr) {
  LOWBIT_CHECK(std::isfinite(lr) && lr >= 0, "optimizer: learning rate must be finite and >= 0, got ", lr);
  lr_ = lr;
}

void Optimizer::for_each_update(const char* name, const UpdateFn& update) {
  NoGradGuard no_grad;
  ++steps_;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      const Tensor& p = groups_[gi].params[i];
      Tensor g = p.grad();
      if (!g.defined()) continue;
      LOWBIT_CHECK(g.shape() == p.shape(), name, ": group ", gi, " param ", i, " has grad shape ",
                   shape_str(g.shape()), " but shape ", shape_str(p.shape()));
      if (g.dtype() != p.dtype() || !g.is_contiguous()) g = g.to(p.dtype()).contiguous();
      p.storage()->bump_version();
      update(gi, i, p, g);
    }
  }
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

}  // namespace lowbit::optim
