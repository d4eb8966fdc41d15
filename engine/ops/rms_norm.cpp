#include "lowbit/engine/ops/rms_norm.h"

#include "lowbit/engine/ops/activation.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/reduce.h"

namespace lowbit {

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  LOWBIT_CHECK(x.dim() >= 1, "rms_norm: x must have at least one dim, got ", x.str());
  if (weight.defined())
    LOWBIT_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1), "rms_norm: weight ", shape_str(weight.shape()),
                 " does not match the last dim of x ", shape_str(x.shape()));
  const DType stat = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const Tensor xs = x.to(stat);
  const Tensor rstd = rsqrt(add(mean(mul(xs, xs), {-1}, true), eps));
  Tensor y = mul(xs, rstd).to(x.dtype());
  return weight.defined() ? mul(y, weight) : y;
}

}  // namespace lowbit
