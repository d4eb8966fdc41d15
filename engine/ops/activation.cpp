#include "lowbit/engine/ops/activation.h"

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

namespace {
// y = f(x) whose derivative kernel DF takes (g, x) or, with use_output, (g, y).
template <class F, class DF>
Tensor pointwise(const char* op, const Tensor& x, F f, DF df, bool use_output) {
  Tensor y = unary_kernel(op, x, f);
  return record(op, y, {x}, {use_output ? y : x}, [op, df](const BackwardArgs& a) {
    return std::vector<Tensor>{binary_same_kernel(op, a.grad, a.saved(0), df)};
  });
}
}  // namespace

Tensor exp(const Tensor& x) { return pointwise("exp", x, ExpF{}, MulF{}, true); }
Tensor log(const Tensor& x) { return pointwise("log", x, LogF{}, DivF{}, false); }
Tensor sqrt(const Tensor& x) { return pointwise("sqrt", x, SqrtF{}, SqrtBackwardF{}, true); }
Tensor rsqrt(const Tensor& x) { return pointwise("rsqrt", x, RsqrtF{}, RsqrtBackwardF{}, true); }
Tensor pow(const Tensor& x, double p) { return pointwise("pow", x, PowScalarF{p}, PowScalarBackwardF{p}, false); }
Tensor tanh(const Tensor& x) { return pointwise("tanh", x, TanhF{}, TanhBackwardF{}, true); }
Tensor sigmoid(const Tensor& x) { return pointwise("sigmoid", x, SigmoidF{}, SigmoidBackwardF{}, true); }
Tensor silu(const Tensor& x) { return pointwise("silu", x, SiluF{}, SiluBackwardF{}, false); }
Tensor relu(const Tensor& x) { return pointwise("relu", x, ReluF{}, ReluBackwardF{}, false); }
Tensor gelu(const Tensor& x, GeluApprox approx) {
  if (approx == GeluApprox::Tanh) return pointwise("gelu_tanh", x, GeluTanhF{}, GeluTanhBackwardF{}, false);
  return pointwise("gelu", x, GeluErfF{}, GeluErfBackwardF{}, false);
}

Tensor pow(const Tensor& x, const Tensor& p) {
  check_same_device("pow", x, p);
  const DType dt = compute_dtype(promote_types(x.dtype(), p.dtype()), "pow");
  const Tensor x2 = as_dtype(x, dt), p2 = as_dtype(p, dt);
  Tensor y = empty(cpu::broadcast_shapes(x.shape(), p.shape()), dt, x.device());
  dispatch_float(dt, "pow", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::cpu_map<T>(y, PowF{}, x2, p2);
  });
  return record("pow", y, {x, p}, {x, p, y}, [](const BackwardArgs& a) {
    const Tensor x = a.saved(0), p = a.saved(1), y = a.saved(2);
    Tensor gx, gp;
    if (a.needs_grad(0)) gx = a.grad * p * pow(x, p - 1.0);
    if (a.needs_grad(1)) gp = a.grad * y * log(x);
    return std::vector<Tensor>{gx, gp};
  });
}

}  // namespace lowbit
