// Rotary position embedding, HF "rotate half" convention (Llama, Qwen): the head dim is split
// into halves (x1, x2) and rotated as (x1 cos - x2 sin, x2 cos + x1 sin), with frequency
// theta^(-2i/D) for i < D/2 repeated over both halves.
#pragma once
#include <utility>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit {

// The D/2 rotation frequencies theta^(-2i/D), i < D/2.
std::vector<double> rope_inv_freq(int64_t D, double theta = 10000.0);
// -> cos, sin: (T, D) for positions offset .. offset+T-1 (computed in f64, stored as dtype)
std::pair<Tensor, Tensor> rope_cos_sin(int64_t T, int64_t D, double theta = 10000.0, int64_t offset = 0,
                                       DType dtype = DType::f32, Device device = kCPU);
// The same for given frequencies (e.g. after a context-extension transform); D = 2 * inv_freq.size().
std::pair<Tensor, Tensor> rope_cos_sin(const std::vector<double>& inv_freq, int64_t T, int64_t offset = 0,
                                       DType dtype = DType::f32, Device device = kCPU);
// x: (..., T, D), cos, sin: (T, D) -> (..., T, D)
// x: (B, H, T, D), cos, sin: (B, 1, T, D) -> (B, H, T, D): a position table per sequence (packed
// examples whose positions restart at 0; see rope_cos_sin_at)
Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin);
// -> cos, sin: (B, 1, T, D) for the positions (B, T) i64 (each >= 0), from the frequencies.
std::pair<Tensor, Tensor> rope_cos_sin_at(const std::vector<double>& inv_freq, const Tensor& positions,
                                          DType dtype = DType::f32);

}  // namespace lowbit
