#include "lowbit/optim/optimizer.h"

#include <cmath>

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

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

}  // namespace lowbit::optim
