// fake_quant: quantize-dequantize as an autograd op. The forward equals
// dequantize(quantize(x, spec, params)) cast to x's dtype, bit for bit: it is computed by a
// fused kernel from the same per-element functions as the codec (one pass when scales are
// given; a statistics pass and one quantize-dequantize pass when they are dynamic). The
// backward follows spec.grad from a saved 1-byte mask, never a copy of x:
//   ste              dx = dy
//   clipped_rounded  dx = dy where qmin <= round(x / s) + zp <= qmax, inclusive (fp8 and the
//                    block formats: |x / s| <= element max) - the default
//   clipped_amax     dx = dy where |x| <= amax of the group, inclusive
//   lsq              as clipped_rounded for x; learned scale and zero point get the LSQ
//                    gradients (PyTorch's learnable fake quant): per element, in range
//                    ds = (x^ - x) / s, dzp = 0; clipped ds = qmin - zp or qmax - zp,
//                    dzp = -s; summed over the group, times 1 / sqrt(group size * qmax) when
//                    lsq_grad_scaling. LSQ saves x (its scale gradient needs it).
// There is no finite-difference check for this op: its gradient is a defined surrogate (the
// true derivative of a rounding is zero almost everywhere); tests check each rule by hand.
#pragma once
#include "lowbit/engine/tensor.h"
#include "lowbit/quant/qtensor.h"

namespace lowbit::quant {

// x: any shape -> same shape and dtype.
Tensor fake_quant(const Tensor& x, const QuantSpec& spec, const QParams* params = nullptr);

}  // namespace lowbit::quant
