// Matrix products through the GEMM backends (oneDNN when built, else Eigen). Transposed
// operands (e.g. w.t()) are passed to GEMM as transposes, never copied.
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit {

// a: (..., M, K), b: (..., K, N) -> (..., M, N); batch dims broadcast. 1-d operands are
// treated as a row (a) or column (b) vector and that dim is dropped from the result.
// bf16 computes with f32 accumulation; f16 computes in f32.
Tensor matmul(const Tensor& a, const Tensor& b);

}  // namespace lowbit
