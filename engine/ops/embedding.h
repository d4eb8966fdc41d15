// Embedding lookup; the backward scatter-adds rows into a (V, C) gradient in index order
// (deterministic).
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit {

// weight: (V, C), ids: (...) integer -> (..., C)
Tensor embedding(const Tensor& weight, const Tensor& ids);

}  // namespace lowbit
