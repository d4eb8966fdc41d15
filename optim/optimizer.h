// Optimizer base: parameter groups (each with its own weight decay, so norms, biases and
// embeddings can be excluded from decay), a learning rate that schedules set each step, and
// zero_grad. Steps run under NoGradGuard and update parameters in place.
#pragma once
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
  std::vector<ParamGroup> groups_;
  double lr_;
  int64_t steps_ = 0;
};

}  // namespace lowbit::optim
