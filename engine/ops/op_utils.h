// Helpers shared by op implementations (not part of the public API).
#pragma once
#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/cpu/loops.h"
#include "lowbit/engine/tensor.h"

namespace lowbit {

inline void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  LOWBIT_CHECK(a.device() == b.device(), op, ": inputs on different devices: ", a.str(), " and ", b.str());
}

// The dtype a float kernel runs on: f64, f32, bf16, f16. fp8/fp4 must be cast explicitly.
inline DType compute_dtype(DType d, const char* op) {
  LOWBIT_CHECK(d == DType::f64 || d == DType::f32 || d == DType::bf16 || d == DType::f16, op,
               ": unsupported dtype ", d, " (expected f64, f32, bf16 or f16; cast fp8/fp4/int tensors first)");
  return d;
}

// t converted to dtype d, outside autograd (callers record their own backward).
inline Tensor as_dtype(const Tensor& t, DType d) {
  if (t.dtype() == d) return t;
  NoGradGuard g;
  return t.detach().to(d);
}

// t with unit stride in its last dim and no gaps (a copy only when needed), outside autograd.
inline Tensor as_contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  NoGradGuard g;
  return t.detach().contiguous();
}

inline void check_inplace(const char* op, const Tensor& a) {
  LOWBIT_CHECK(!(grad_enabled() && a.requires_grad()), op, ": in-place update of a tensor that requires grad; ",
               "wrap it in NoGradGuard (e.g. an optimizer step)");
}

// out = f(a) elementwise, out has a's shape and (float) dtype.
template <class F>
Tensor unary_kernel(const char* op, const Tensor& a, F f) {
  const DType dt = compute_dtype(a.dtype(), op);
  Tensor out = empty(a.shape(), dt, a.device());
  dispatch_float(dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::cpu_map<T>(out, f, a);
  });
  return out;
}

// out = f(a, b) for same-shape a, b (backward kernels: b is usually the saved input).
template <class F>
Tensor binary_same_kernel(const char* op, const Tensor& a, const Tensor& b, F f) {
  const DType dt = compute_dtype(a.dtype(), op);
  const Tensor b2 = as_dtype(b, dt);
  Tensor out = empty(cpu::broadcast_shapes(a.shape(), b.shape()), dt, a.device());
  dispatch_float(dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::cpu_map<T>(out, f, a, b2);
  });
  return out;
}

}  // namespace lowbit
