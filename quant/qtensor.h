// QTensor: a quantized tensor as it is stored and fed to a real low-bit matmul: packed codes,
// scales, zero points and the spec that produced them. quantize() and dequantize() are the one
// codec per format; fake_quant (fake_quant.h) computes dequantize(quantize(x)) bit for bit with
// the same per-element functions.
//
// Layouts (x viewed as rows of its last dim, K = x.size(-1)):
//   int8                 codes i8, same shape as x
//   int4, uint4, nvfp4,  codes u8 (..., K/2): element 2i in the low nibble, 2i+1 in the high
//   mxfp4                nibble (int4: two's complement nibble; uint4: 0..15; fp4: E2M1 code)
//   fp8_e4m3/e5m2, mxfp8 codes fp8 dtype, same shape as x
//   gguf_q4_0            codes u8 (..., K/2) in ggml's block layout: within each block of 32,
//                        byte j holds element j (low nibble) and j + 16 (high nibble)
//   gguf_q8_0            codes i8, same shape as x
// Scales, one per scale group of the spec's granularity (row-major over the group grid):
//   int, fp8: f32 value per step (modelopt int: s' = maxbound / amax, dequantized q / s';
//   modelopt fp8: 1 / s');  nvfp4: UE4M3 bytes (fp8_e4m3 dtype) per 16 + f32 global_scale;
//   mx: E8M0 bytes (u8) per 32;  gguf: f16 d per 32 (stored as f16 dtype).
// Zero points (asymmetric int8/int4: f32 holding integers; uint4: f32 float zero): same grid.
#pragma once
#include "lowbit/engine/tensor.h"
#include "lowbit/quant/spec.h"

namespace lowbit::quant {

// Scale parameters given from outside instead of computed from x. Shapes follow the scale grid
// of the spec (scale_grid_shape), f32.
//   calibrated scales: the group statistics seen in calibration (amax; min and max for the
//     asymmetric formats), turned into scales by exactly the formula dynamic scales use;
//   learned scales (LSQ): scale (and zero_point when asymmetric) used as they are; when they
//     require grad, fake_quant sends them their LSQ gradients.
struct QParams {
  Tensor amax, min, max;
  Tensor scale, zero_point;
  float global_amax = 0;  // nvfp4: calibrated per-tensor amax (0 = take it from x)
};

struct QTensor {
  QuantSpec spec;
  Shape shape;  // logical shape
  Tensor codes;
  Tensor scales;
  Tensor zero_points;  // undefined when symmetric
  float global_scale = 1.0f;  // nvfp4 per-tensor scale (amax / (6 * 448))

  // Bytes of codes + scales + zero points (+ 4 for nvfp4's global scale).
  int64_t nbytes() const;
  double bits_per_element() const;
};

// The shape of the scale grid for x of shape `shape` under spec (e.g. (rows, K / group) for
// per_group, (1) for per_tensor, (rows, 1) for per_token, (R / br, C / bc) for block2d).
// Throws naming the spec key when the shape does not divide.
Shape scale_grid_shape(const Shape& shape, const QuantSpec& spec);

QTensor quantize(const Tensor& x, const QuantSpec& spec, const QParams* params = nullptr);
Tensor dequantize(const QTensor& q, DType dtype = DType::f32);

}  // namespace lowbit::quant
