// RMSNorm (Llama): y = x / sqrt(mean(x^2 over the last dim) + eps) * weight.
//
// One fused kernel each way. The forward saves x and the per-row 1/rms (f32, or f64 for f64
// x), nothing else; the backward computes dx and dweight in one pass over x and the incoming
// gradient. Statistics and arithmetic run in f32 for bf16/f16 x (f64 for f64) and round once
// on store. dweight sums rows in fixed 64-row chunks combined in chunk order, so every result
// is bitwise the same for any thread count.
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit {

// x: (..., C) float, weight: (C) float or undefined -> (..., C) in x's dtype.
// weight may have another float dtype than x (f32 master weights with bf16 activations): it is
// read in the compute type and its gradient comes back in its own dtype, never rounded to x's.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

}  // namespace lowbit
