// The train_llama job: builds data, model, optimizer, schedule, quantization and checkpoints
// from a resolved config, resumes from the newest complete checkpoint, trains with one log
// line per log.every steps (and metrics.jsonl for every step), evaluates, checkpoints, and
// stops cleanly on SIGINT/SIGTERM after saving.
#pragma once
#include <cstdint>
#include <string>

#include "lowbit/train/config.h"

namespace lowbit::train {

struct RunOptions {
  bool dry_run = false;  // build everything, then stop before the first step
};

struct RunResult {
  int64_t steps_done = 0;     // global step reached
  double last_loss = 0;       // training loss of the last step
  double val_loss = -1;       // last validation loss (-1: none)
  bool interrupted = false;   // stopped by SIGINT/SIGTERM (after saving)
};

RunResult run_training(const Config& cfg, const RunOptions& opts = {});

}  // namespace lowbit::train
