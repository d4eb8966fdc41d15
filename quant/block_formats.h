// The block formats: NVFP4 (E2M1 x 16, UE4M3 block scale, f32 tensor scale), MXFP4 / MXFP8
// (E2M1 / E4M3 x 32, E8M0 scale) and ggml's GGUF Q4_0 / Q8_0 (x 32, fp16 d), each as a codec
// (quantize to a QTensor, dequantize) and a fused fake-quant kernel built from the same
// per-element functions, so fake_quant(x) == dequantize(quantize(x)) bit for bit.
//
// Conventions (docs/quantization.md): NVFP4 follows torchao (two-level, block scale clamped to
// [2^-6, 448], reciprocal multiply); MX follows torchao (RCEIL by default, FLOOR as the
// spec's mx_scale option), RNE saturating elements; GGUF follows ggml's reference quantizers
// bit for bit (Q4_0: signed max / -8, +8.5 truncation; Q8_0: amax / 127, round half away).
// Blocks run along the last dim; its size must be a multiple of the block size.
#pragma once
#include <cstdint>

#include "lowbit/quant/qtensor.h"

namespace lowbit::quant {

// x: (..., K) f32/bf16/f16/f64 (computed in f32). global_amax: nvfp4's per-tensor amax; <= 0
// takes max|x|. Other formats ignore it.
QTensor quantize_blocks(const Tensor& x, const QuantSpec& spec, float global_amax = 0);
Tensor dequantize_blocks(const QTensor& q, DType dtype = DType::f32);

// Fused fake quantization: out (same shape and dtype as x, contiguous) = dequantize(quantize(x))
// in one pass per block. When mask is non-null it receives one byte per element: 1 where the
// element was not clipped (|x / block_scale| <= element max, inclusive), else 0.
// x: (..., K) -> (..., K)
Tensor fake_quant_blocks(const Tensor& x, const QuantSpec& spec, float global_amax, uint8_t* mask);

// cuBLASLt block-scale layout (VEC16_UE4M3 / VEC32_UE8M0): the byte offset of the scale for
// (row, block column) in the 128x4-tile swizzled layout of a (rows, block_cols) scale matrix
// padded to multiples of 128 rows and 4 columns. See ../shared/docs/gpu_apis.md §2.3.
int64_t swizzled_scale_offset(int64_t row, int64_t block_col, int64_t block_cols);
// Scales (rows, block_cols) of u8 -> padded swizzled u8 buffer (padding bytes 0).
Tensor swizzle_block_scales(const Tensor& scales);

}  // namespace lowbit::quant
