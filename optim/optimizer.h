// Optimizer base: parameter groups (each with its own weight decay, so norms, biases and
// embeddings can be excluded from decay), a learning rate that schedules set each step, and
// zero_grad. Steps run under NoGradGuard and update parameters in place.
#pragma once
#include <functional>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit::optim {

struct ParamGroup {
  std::vector<Tensor> params;
  double weight_decay = 0.0;
};

class Optimizer {
 public:
  Optimizer(std::vector<ParamGroup> groups, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Applies one update from the parameters' .grad (parameters without a grad are skipped).
  virtual void step() = 0;
  void zero_grad();
  double lr() const { return lr_; }
  void set_lr(double lr);
  const std::vector<ParamGroup>& groups() const { return groups_; }
  int64_t steps() const { return steps_; }

 protected:
  // The step loop every optimizer shares: counts the step, then calls
  // update(group_index, param_index, param, grad) for each parameter with a gradient, under
  // NoGradGuard, with the grad checked and converted to the parameter's dtype and layout, and
  // the parameter's version bumped.
  using UpdateFn = std::function<void(size_t, size_t, const Tensor&, const Tensor&)>;
  void for_each_update(const char* name, const UpdateFn& update);

  std::vector<ParamGroup> groups_;
  double lr_;
  int64_t steps_ = 0;
};

}  // namespace lowbit::optim
