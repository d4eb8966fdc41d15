#include "lowbit/engine/autograd/checkpoint.h"

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/autograd/node.h"

namespace lowbit {

Tensor checkpoint(const std::function<Tensor(const Tensor&)>& fn, const Tensor& x, const std::vector<Tensor>& params) {
  std::vector<Tensor> inputs{x};
  inputs.insert(inputs.end(), params.begin(), params.end());
  if (!any_requires_grad(inputs)) return fn(x);
  for (const Tensor& p : params)
    LOWBIT_CHECK(p.is_leaf(), "checkpoint: params must be leaves (parameters), got a non-leaf ", p.str());
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(x);
  }
  const bool x_needs = x.requires_grad();
  return record("checkpoint", out, inputs, {x}, [fn, x_needs, n = inputs.size()](const BackwardArgs& a) {
    Tensor xin = a.saved(0).detach();
    if (x_needs) xin.set_requires_grad(true);
    Tensor y;
    {
      GradModeGuard grad_on(true);
      y = fn(xin);
    }
    std::vector<Tensor> grads(n);
    if (y.requires_grad()) {
      run_backward({y}, {a.grad}, false);
      if (x_needs) grads[0] = xin.grad();
    }
    return grads;
  });
}

}  // namespace lowbit
