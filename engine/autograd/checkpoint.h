// Activation checkpointing: run a function without keeping its intermediate activations and
// recompute them during backward. Memory per checkpointed segment drops to its input; the
// cost is one extra forward of the segment.
//
// The recomputation replays the same kernels on the same input, and the inner backward walks
// the same graph in the same order as a plain backward would, so gradients are bitwise equal
// to those of an un-checkpointed run (tested). fn must be deterministic and must not draw
// random numbers (no dropout inside a segment).
#pragma once
#include <functional>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit {

// x: any shape -> fn(x). params: every tensor requiring grad that fn reads besides x; their
// gradients are accumulated into their .grad during the recomputation's backward. Without
// grad mode, or when neither x nor any param requires grad, this is just fn(x).
Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, const std::vector<Tensor>& params);

}  // namespace lowbit
