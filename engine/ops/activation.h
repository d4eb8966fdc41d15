// Pointwise math and activations with their derivative kernels. Backward kernels are fused
// functors of (grad, saved input or output), written once for CPU and CUDA.
#pragma once
#include <cmath>

#include "lowbit/engine/fast_math.h"
#include "lowbit/engine/macros.h"
#include "lowbit/engine/tensor.h"

namespace lowbit {

enum class GeluApprox { None, Tanh };

// x: any shape -> same shape
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor pow(const Tensor& x, const Tensor& p);  // broadcasting
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::None);
Tensor relu(const Tensor& x);

// SwiGLU's gate: silu(gate) * up in one pass, saving only gate and up; the backward writes
// both gradients in one pass. gate, up: broadcastable floats -> broadcast shape, promoted dtype.
Tensor silu_mul(const Tensor& gate, const Tensor& up);

struct ExpF { template <class C> LOWBIT_HD C operator()(C x) const { return exp_c(x); } };
struct LogF { template <class C> LOWBIT_HD C operator()(C x) const { return std::log(x); } };
struct SqrtF { template <class C> LOWBIT_HD C operator()(C x) const { return std::sqrt(x); } };
struct RsqrtF { template <class C> LOWBIT_HD C operator()(C x) const { return C(1) / std::sqrt(x); } };
struct PowScalarF { double p; template <class C> LOWBIT_HD C operator()(C x) const { return std::pow(x, C(p)); } };
struct PowF { template <class C> LOWBIT_HD C operator()(C x, C p) const { return std::pow(x, p); } };
struct TanhF { template <class C> LOWBIT_HD C operator()(C x) const { return std::tanh(x); } };
struct SigmoidF {
  template <class C> LOWBIT_HD C operator()(C x) const {
    // Stable for large |x|: never exponentiates a positive number; branch-free to vectorize.
    const C e = exp_c(-std::fabs(x));
    const C s = C(1) / (C(1) + e);
    return x >= C(0) ? s : e * s;
  }
};
struct SiluF { template <class C> LOWBIT_HD C operator()(C x) const { return x * SigmoidF{}(x); } };
struct SiluMulF { template <class C> LOWBIT_HD C operator()(C a, C b) const { return SiluF{}(a) * b; } };
struct ReluF { template <class C> LOWBIT_HD C operator()(C x) const { return x > C(0) ? x : C(0); } };
struct GeluErfF {
  template <class C> LOWBIT_HD C operator()(C x) const { return C(0.5) * x * (C(1) + std::erf(x * C(M_SQRT1_2))); }
};
struct GeluTanhF {
  template <class C> LOWBIT_HD C operator()(C x) const {
    const C k = C(0.7978845608028654), c = C(0.044715);  // sqrt(2/pi)
    return C(0.5) * x * (C(1) + std::tanh(k * (x + c * x * x * x)));
  }
};

// Derivative kernels: (g, s) -> dx, s being the saved input x or output y as named.
struct TanhBackwardF { template <class C> LOWBIT_HD C operator()(C g, C y) const { return g * (C(1) - y * y); } };
struct SigmoidBackwardF { template <class C> LOWBIT_HD C operator()(C g, C y) const { return g * y * (C(1) - y); } };
struct SiluBackwardF {
  template <class C> LOWBIT_HD C operator()(C g, C x) const {
    const C s = SigmoidF{}(x);
    return g * s * (C(1) + x * (C(1) - s));
  }
};
struct ReluBackwardF { template <class C> LOWBIT_HD C operator()(C g, C x) const { return x > C(0) ? g : C(0); } };
struct GeluErfBackwardF {
  template <class C> LOWBIT_HD C operator()(C g, C x) const {
    const C cdf = C(0.5) * (C(1) + std::erf(x * C(M_SQRT1_2)));
    const C pdf = std::exp(C(-0.5) * x * x) * C(0.3989422804014327);  // 1/sqrt(2 pi)
    return g * (cdf + x * pdf);
  }
};
struct GeluTanhBackwardF {
  template <class C> LOWBIT_HD C operator()(C g, C x) const {
    const C k = C(0.7978845608028654), c = C(0.044715);
    const C t = std::tanh(k * (x + c * x * x * x));
    return g * (C(0.5) * (C(1) + t) + C(0.5) * x * (C(1) - t * t) * k * (C(1) + C(3) * c * x * x));
  }
};
struct RsqrtBackwardF { template <class C> LOWBIT_HD C operator()(C g, C y) const { return C(-0.5) * g * y * y * y; } };
struct SqrtBackwardF { template <class C> LOWBIT_HD C operator()(C g, C y) const { return g * C(0.5) / y; } };
struct PowScalarBackwardF {
  double p;
  template <class C> LOWBIT_HD C operator()(C g, C x) const { return p == 0.0 ? C(0) : g * C(p) * std::pow(x, C(p - 1)); }
};

}  // namespace lowbit
