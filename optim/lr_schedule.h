// Learning-rate schedules: constant, or linear warmup from peak/warmup_steps to the peak
// followed by cosine or linear decay to a floor at total_steps (held there afterwards).
#pragma once
#include <cstdint>

namespace lowbit::optim {

enum class LrDecay { Constant, Cosine, Linear };

struct LrSchedule {
  double peak_lr = 1e-3;
  double min_lr = 0.0;  // the floor reached at total_steps
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  LrDecay decay = LrDecay::Constant;

  // Learning rate for the 0-based step about to be taken.
  double at(int64_t step) const;
};

}  // namespace lowbit::optim
