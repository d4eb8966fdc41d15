#include "lowbit/optim/optimizer.h"

#include <cmath>
#include <map>

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

Optimizer::StateDict Optimizer::state_dict() const {
  auto* self = const_cast<Optimizer*>(this);  // buffers() hands out the members; nothing is modified
  StateDict out;
  out.emplace_back("steps", from_vector(std::vector<int64_t>{steps_}, {}));
  out.emplace_back("lr", from_vector(std::vector<double>{lr_}, {}, DType::f64));
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const std::string key = std::to_string(g) + "." + std::to_string(i) + ".";
      for (auto& [name, c] : self->counters()) out.emplace_back(key + name, from_vector(std::vector<int64_t>{(*c)[g][i]}, {}));
      for (auto& [name, b] : self->buffers())
        if ((*b)[g][i].defined()) out.emplace_back(key + name, (*b)[g][i].clone());
    }
  return out;
}

void Optimizer::load_state_dict(const StateDict& state) {
  std::map<std::string, Tensor> in;
  for (const auto& [k, t] : state) LOWBIT_CHECK(in.emplace(k, t).second, "optimizer state: duplicate entry '", k, "'");
  auto take = [&](const std::string& k, DType dtype, const Shape& shape, bool required) -> Tensor {
    auto it = in.find(k);
    if (it == in.end()) {
      LOWBIT_CHECK(!required, "optimizer state: missing entry '", k, "'");
      return Tensor();
    }
    const Tensor t = it->second;
    LOWBIT_CHECK(t.dtype() == dtype && t.shape() == shape, "optimizer state: entry '", k, "' is ", t.str(),
                 ", expected dtype ", dtype, " shape ", shape_str(shape));
    in.erase(it);
    return t;
  };
  const int64_t steps = static_cast<int64_t>(take("steps", DType::i64, {}, true).item());
  const double lr = take("lr", DType::f64, {}, true).item();
  // Stage everything, then commit, so a bad entry leaves the optimizer untouched.
  std::vector<std::pair<int64_t*, int64_t>> counter_values;
  std::vector<std::pair<Tensor*, Tensor>> buffer_values;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const Tensor& p = groups_[g].params[i];
      const std::string key = std::to_string(g) + "." + std::to_string(i) + ".";
      for (auto& [name, c] : counters())
        counter_values.emplace_back(&(*c)[g][i], static_cast<int64_t>(take(key + name, DType::i64, {}, true).item()));
      for (auto& [name, b] : buffers()) {
        const Tensor t = take(key + name, p.dtype(), p.shape(), false);
        buffer_values.emplace_back(&(*b)[g][i], t.defined() ? t.contiguous().clone() : Tensor());
      }
    }
  LOWBIT_CHECK(in.empty(), "optimizer state: unexpected entry '", in.begin()->first,
               "' (a different optimizer or parameter grouping?)");
  steps_ = steps;
  set_lr(lr);
  for (auto& [dst, v] : counter_values) *dst = v;
  for (auto& [dst, t] : buffer_values) *dst = t;
}

}  // namespace lowbit::optim
