// Matrix products through the GEMM backends (oneDNN when built, else Eigen). Transposed
// operands (e.g. w.t()) are passed to GEMM as transposes, never copied.
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit {

// a: (..., M, K), b: (..., K, N) -> (..., M, N); batch dims broadcast. 1-d operands are
// treated as a row (a) or column (b) vector and that dim is dropped from the result.
// bf16 computes with f32 accumulation; f16 computes in f32.
Tensor matmul(const Tensor& a, const Tensor& b);

// A linear layer: x: (..., in), weight: (out, in), bias: (out) or undefined -> (..., out) in
// x's dtype, y = x weight^T + bias. Mixed precision in one op: a weight or bias of another float
// dtype (f32 masters with bf16 x) is cast to x's dtype inside (that copy is what backward
// saves), and the weight gradient comes out of the GEMM's f32 accumulator straight into the
// weight's dtype: no rounding through bf16 and no cast passes over weight-sized tensors.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

}  // namespace lowbit
