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

namespace {
// dgate = g * up * silu'(gate), dup = g * silu(gate) for one element in compute type C.
template <class C>
LOWBIT_HD void silu_mul_grads(C g, C a, C b, C& dgate, C& dup) {
  const C sig = SigmoidF{}(a);
  dgate = g * b * sig * (C(1) + a * (C(1) - sig));
  dup = g * a * sig;
}

// g, gate, up: broadcast to the output shape -> dgate, dup (either may be skipped).
template <class T, bool kGate, bool kUp>
void silu_mul_backward_kernel(const Tensor& dgate, const Tensor& dup, const Tensor& g, const Tensor& gate,
                              const Tensor& up) {
  using C = opmath_t<T>;
  const Tensor& out0 = kGate ? dgate : dup;
  const Tensor& out1 = kUp ? dup : dgate;
  auto plan = cpu::make_plan<5>(out0.shape(), {&out0, &out1, &g, &gate, &up});
  cpu::for_each_chunk<5>(plan, [&](const std::array<char*, 5>& p, int64_t n, const std::array<int64_t, 5>& s) {
    T* dg = reinterpret_cast<T*>(p[0]);
    T* du = reinterpret_cast<T*>(p[1]);
    const T* gp = reinterpret_cast<const T*>(p[2]);
    const T* ap = reinterpret_cast<const T*>(p[3]);
    const T* bp = reinterpret_cast<const T*>(p[4]);
    if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1 && s[4] == 1) {
      for (int64_t i = 0; i < n; ++i) {
        C x, y;
        silu_mul_grads(convert<C>(gp[i]), convert<C>(ap[i]), convert<C>(bp[i]), x, y);
        if constexpr (kGate) dg[i] = convert<T>(x);
        if constexpr (kUp) du[i] = convert<T>(y);
      }
    } else {
      for (int64_t i = 0; i < n; ++i) {
        C x, y;
        silu_mul_grads(convert<C>(gp[i * s[2]]), convert<C>(ap[i * s[3]]), convert<C>(bp[i * s[4]]), x, y);
        if constexpr (kGate) dg[i * s[0]] = convert<T>(x);
        if constexpr (kUp) du[i * s[1]] = convert<T>(y);
      }
    }
  });
}
}  // namespace

Tensor silu_mul(const Tensor& gate, const Tensor& up) {
  check_same_device("silu_mul", gate, up);
  const DType dt = compute_dtype(promote_types(gate.dtype(), up.dtype()), "silu_mul");
  const Tensor a = as_dtype(gate, dt), b = as_dtype(up, dt);
  Tensor y = empty(cpu::broadcast_shapes(gate.shape(), up.shape()), dt, gate.device());
  if (!y.device().is_meta()) {
    dispatch_float(dt, "silu_mul", [&](auto tag) {
      using T = typename decltype(tag)::type;
      cpu::cpu_map<T>(y, SiluMulF{}, a, b);
    });
  }
  return record("silu_mul", y, {gate, up}, {a, b}, [](const BackwardArgs& g) {
    // grad: (broadcast shape) -> dgate, dup at the broadcast shape (the engine sums them down).
    const Tensor a = g.saved(0), b = g.saved(1);
    const Tensor gr = as_dtype(g.grad, a.dtype());
    const Shape& shape = gr.shape();
    Tensor dgate = g.needs_grad(0) ? empty(shape, a.dtype(), a.device()) : Tensor();
    Tensor dup = g.needs_grad(1) ? empty(shape, a.dtype(), a.device()) : Tensor();
    if ((dgate.defined() || dup.defined()) && !a.device().is_meta() && shape_numel(shape) > 0) {
      dispatch_float(a.dtype(), "silu_mul_backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        if (dgate.defined() && dup.defined())
          silu_mul_backward_kernel<T, true, true>(dgate, dup, gr, a, b);
        else if (dgate.defined())
          silu_mul_backward_kernel<T, true, false>(dgate, dup, gr, a, b);
        else
          silu_mul_backward_kernel<T, false, true>(dgate, dup, gr, a, b);
      });
    }
    return std::vector<Tensor>{dgate, dup};
  });
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
