#include "lowbit/engine/autograd/gradcheck.h"

#include <cmath>
#include <random>
#include <sstream>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/reduce.h"

namespace lowbit {

namespace {

// Address of the i-th element (row-major logical order) of a CPU f64 view.
double* element_ptr(const Tensor& t, int64_t i) {
  int64_t off = 0;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    const int64_t s = t.shape()[static_cast<size_t>(d)];
    off += (i % s) * t.strides()[static_cast<size_t>(d)];
    i /= s;
  }
  return t.data<double>() + off;
}

double projected(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                 const Tensor& v) {
  NoGradGuard g;
  Tensor y = f(inputs);
  return sum(mul(y.to(DType::f64), v)).item();
}

}  // namespace

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs, const GradcheckOptions& opts) {
  GradcheckResult res;
  for (const Tensor& t : inputs)
    LOWBIT_CHECK(!t.defined() || !t.requires_grad() || (t.dtype() == DType::f64 && t.device().is_cpu()),
                 "gradcheck: inputs that require grad must be f64 CPU tensors, got ", t.str());
  // Analytic: one backward of <v, f(x)>.
  for (const Tensor& t : inputs)
    if (t.defined()) t.zero_grad();
  Tensor y = f(inputs);
  LOWBIT_CHECK(y.requires_grad(), "gradcheck: output does not require grad");
  std::mt19937_64 rng(opts.seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> vv(static_cast<size_t>(y.numel()));
  for (double& x : vv) x = dist(rng);
  Tensor v = from_vector(vv, y.shape(), DType::f64);
  y.backward(v.to(y.dtype()));

  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    Tensor g = x.grad();
    std::vector<double> analytic = g.defined() ? g.to_vector<double>() : std::vector<double>(x.numel(), 0.0);
    for (int64_t i = 0; i < x.numel(); ++i) {
      double* p = element_ptr(x, i);
      const double orig = *p;
      *p = orig + opts.eps;
      const double fp = projected(f, inputs, v);
      *p = orig - opts.eps;
      const double fm = projected(f, inputs, v);
      *p = orig;
      const double numeric = (fp - fm) / (2 * opts.eps);
      const double err = std::fabs(analytic[static_cast<size_t>(i)] - numeric);
      res.max_abs_error = std::max(res.max_abs_error, err);
      if (res.ok && !(err <= opts.atol + opts.rtol * std::fabs(numeric))) {
        res.ok = false;
        std::ostringstream os;
        os << "input " << k << " element " << i << ": analytic " << analytic[static_cast<size_t>(i)]
           << " vs numeric " << numeric << " (|diff| " << err << ")";
        res.message = os.str();
      }
    }
  }
  return res;
}

}  // namespace lowbit
