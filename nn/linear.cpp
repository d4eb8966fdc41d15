#include "lowbit/nn/linear.h"

#include "lowbit/engine/ops/matmul.h"
#include "lowbit/quant/linear_quant.h"

namespace lowbit::nn {

Linear::Linear(int64_t in_features, int64_t out_features, const LinearOptions& opts, Generator* gen)
    : in_(in_features), out_(out_features) {
  LOWBIT_CHECK(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got in=", in_features,
               " out=", out_features);
  Tensor w = opts.device.is_meta() ? empty({out_features, in_features}, opts.dtype, kMeta)
                                   : randn({out_features, in_features}, 0.0, opts.init_std, opts.dtype, gen).to(opts.device);
  weight = register_parameter("weight", w);
  if (opts.bias) bias = register_parameter("bias", zeros({out_features}, opts.dtype, opts.device));
}

Tensor Linear::forward(const Tensor& x) const {
  LOWBIT_CHECK(x.dim() >= 1 && x.size(-1) == in_, "Linear: input ", shape_str(x.shape()), " does not end in ",
               in_, " features");
  if (quant) return quant->forward(x, weight, bias);
  // Mixed precision: linear casts f32 master weights to x's dtype and returns their gradient
  // in f32 straight from the GEMM accumulator.
  return linear(x, weight, bias);
}

}  // namespace lowbit::nn
