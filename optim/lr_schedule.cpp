#include "lowbit/optim/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "lowbit/engine/error.h"

namespace lowbit::optim {

double LrSchedule::at(int64_t step) const {
  LOWBIT_CHECK(step >= 0, "lr schedule: negative step ", step);
  LOWBIT_CHECK(warmup_steps >= 0 && min_lr >= 0 && min_lr <= peak_lr, "lr schedule: need warmup_steps >= 0 and ",
               "0 <= min_lr <= peak_lr, got warmup_steps=", warmup_steps, " min_lr=", min_lr, " peak_lr=", peak_lr);
  if (step < warmup_steps) return peak_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (decay == LrDecay::Constant) return peak_lr;
  LOWBIT_CHECK(total_steps > warmup_steps, "lr schedule: total_steps (", total_steps, ") must exceed warmup_steps (",
               warmup_steps, ") for a decaying schedule");
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(total_steps - warmup_steps));
  if (decay == LrDecay::Cosine) return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + std::cos(M_PI * progress));
  return peak_lr + (min_lr - peak_lr) * progress;
}

}  // namespace lowbit::optim
