// Numerically stable softmax and log_softmax along one dim, fused forward and backward
// (each row: max, then sum of exp(x - max); never exponentiates a positive number).
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit {

// x: (..., N, ...) -> same shape, normalized along dim
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

}  // namespace lowbit
