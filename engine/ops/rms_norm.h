// RMSNorm (Llama): y = x / sqrt(mean(x^2 over the last dim) + eps) * weight.
// Composed from primitives, so its backward is the primitives' and serves as the reference
// for any fused kernel later. Statistics are computed in f32 (or f64) for low-precision x.
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit {

// x: (..., C), weight: (C) or undefined -> (..., C)
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);

}  // namespace lowbit
