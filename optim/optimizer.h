// Optimizer base: parameter groups (each with its own weight decay, so norms, biases and
// embeddings can be excluded from decay), a learning rate that schedules set each step, and
// zero_grad. Steps run under NoGradGuard and update parameters in place.
#pragma once
#include <functional>
#include <string>
#include <utility>
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

  // Everything a resumed run needs: "steps", "lr", and per parameter "<group>.<index>.<name>"
  // for each buffer (e.g. exp_avg) that exists and each per-parameter counter.
  using StateDict = std::vector<std::pair<std::string, Tensor>>;
  StateDict state_dict() const;
  // Restores a state_dict() taken from an optimizer with the same groups and shapes. A missing,
  // extra, mis-shaped or mistyped entry is an error naming it; nothing is changed then.
  void load_state_dict(const StateDict& state);

 protected:
  using Buffers = std::vector<std::vector<Tensor>>;  // [group][param], undefined until first used
  using Counters = std::vector<std::vector<int64_t>>;
  // The optimizer's per-parameter state by name, for state_dict / load_state_dict.
  virtual std::vector<std::pair<const char*, Buffers*>> buffers() { return {}; }
  virtual std::vector<std::pair<const char*, Counters*>> counters() { return {}; }

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
