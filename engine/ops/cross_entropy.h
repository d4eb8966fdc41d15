// Fused, numerically stable cross-entropy from logits. One pass per row computes the
// logsumexp (online max/sum); only the per-row logsumexp is saved, and the backward writes
// softmax - target directly into the gradient: no softmax copy of the logits is ever made.
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit {

struct CrossEntropyOptions {
  int64_t ignore_index = -100;   // targets equal to this contribute no loss and no gradient
  double label_smoothing = 0.0;  // target = (1 - eps) one_hot + eps / V
};

// logits: (..., V), targets: (...) integer -> scalar mean over non-ignored positions
// (0 when every position is ignored, with zero gradient).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opts = {});

}  // namespace lowbit
