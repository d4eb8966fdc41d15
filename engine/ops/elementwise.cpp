#include "lowbit/engine/ops/elementwise.h"

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/cpu/loops.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

namespace {

template <class F>
Tensor binary_kernel(const char* op, const Tensor& a, const Tensor& b, F f) {
  check_same_device(op, a, b);
  const DType dt = promote_types(a.dtype(), b.dtype());
  LOWBIT_CHECK(is_float(dt), op, ": needs float inputs, got ", a.dtype(), " and ", b.dtype());
  const Tensor a2 = as_dtype(a, dt), b2 = as_dtype(b, dt);
  Tensor out = empty(cpu::broadcast_shapes(a.shape(), b.shape()), compute_dtype(dt, op), a.device());
  const Tensor a3 = as_dtype(a2, out.dtype()), b3 = as_dtype(b2, out.dtype());
  dispatch_float(out.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::cpu_map<T>(out, f, a3, b3);
  });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  return record("add", binary_kernel("add", a, b, AddF{}), {a, b}, {},
                [](const BackwardArgs& g) { return std::vector<Tensor>{g.grad, g.grad}; });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  return record("sub", binary_kernel("sub", a, b, SubF{}), {a, b}, {}, [](const BackwardArgs& g) {
    return std::vector<Tensor>{g.grad, g.needs_grad(1) ? neg(g.grad) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  return record("mul", binary_kernel("mul", a, b, MulF{}), {a, b}, {a, b}, [](const BackwardArgs& g) {
    return std::vector<Tensor>{g.needs_grad(0) ? mul(g.grad, g.saved(1)) : Tensor(),
                               g.needs_grad(1) ? mul(g.grad, g.saved(0)) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  return record("div", binary_kernel("div", a, b, DivF{}), {a, b}, {a, b}, [](const BackwardArgs& g) {
    const Tensor b = g.saved(1);
    const Tensor ga = div(g.grad, b);
    return std::vector<Tensor>{ga, g.needs_grad(1) ? neg(div(mul(ga, g.saved(0)), b)) : Tensor()};
  });
}

Tensor neg(const Tensor& a) {
  return record("neg", unary_kernel("neg", a, NegF{}), {a}, {},
                [](const BackwardArgs& g) { return std::vector<Tensor>{neg(g.grad)}; });
}

Tensor add(const Tensor& a, double s) {
  return record("add_scalar", unary_kernel("add", a, AddScalarF{s}), {a}, {},
                [](const BackwardArgs& g) { return std::vector<Tensor>{g.grad}; });
}

Tensor sub(const Tensor& a, double s) { return add(a, -s); }

Tensor rsub(double s, const Tensor& a) {
  return record("rsub_scalar", unary_kernel("rsub", a, RSubScalarF{s}), {a}, {},
                [](const BackwardArgs& g) { return std::vector<Tensor>{neg(g.grad)}; });
}

Tensor mul(const Tensor& a, double s) {
  return record("mul_scalar", unary_kernel("mul", a, MulScalarF{s}), {a}, {},
                [s](const BackwardArgs& g) { return std::vector<Tensor>{mul(g.grad, s)}; });
}

Tensor div(const Tensor& a, double s) { return mul(a, 1.0 / s); }

Tensor rdiv(double s, const Tensor& a) {
  return record("rdiv_scalar", unary_kernel("rdiv", a, RDivScalarF{s}), {a}, {a}, [s](const BackwardArgs& g) {
    const Tensor x = g.saved(0);
    return std::vector<Tensor>{mul(div(div(g.grad, x), x), -s)};
  });
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  LOWBIT_CHECK(cond.dtype() == DType::u8, "where: cond must be u8, got ", cond.dtype());
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  const DType dt = compute_dtype(promote_types(a.dtype(), b.dtype()), "where");
  const Tensor a2 = as_dtype(a, dt), b2 = as_dtype(b, dt);
  Tensor out = empty(cpu::broadcast_shapes(cond.shape(), cpu::broadcast_shapes(a.shape(), b.shape())), dt, a.device());
  if (!out.device().is_meta() && out.numel() > 0) {
    dispatch_float(dt, "where", [&](auto tag) {
      using T = typename decltype(tag)::type;
      auto plan = cpu::make_plan<4>(out.shape(), {&out, &cond, &a2, &b2});
      cpu::for_each_chunk<4>(plan, [&](const std::array<char*, 4>& p, int64_t n, const std::array<int64_t, 4>& s) {
        T* o = reinterpret_cast<T*>(p[0]);
        const uint8_t* c = reinterpret_cast<const uint8_t*>(p[1]);
        const T* x = reinterpret_cast<const T*>(p[2]);
        const T* y = reinterpret_cast<const T*>(p[3]);
        for (int64_t i = 0; i < n; ++i) o[i * s[0]] = c[i * s[1]] ? x[i * s[2]] : y[i * s[3]];
      });
    });
  }
  return record("where", out, {Tensor(), a, b}, {cond}, [](const BackwardArgs& g) {
    const Tensor c = g.saved(0);
    const Tensor z = zeros({}, g.grad.dtype(), g.grad.device());
    return std::vector<Tensor>{Tensor(), g.needs_grad(1) ? where(c, g.grad, z) : Tensor(),
                               g.needs_grad(2) ? where(c, z, g.grad) : Tensor()};
  });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  return where(mask, full({}, value, x.dtype(), x.device()), x);
}

namespace {
template <class Cmp>
Tensor compare(const char* op, const Tensor& a, const Tensor& b, Cmp cmp) {
  check_same_device(op, a, b);
  const DType dt = promote_types(a.dtype(), b.dtype());
  const Tensor a2 = as_dtype(a, dt), b2 = as_dtype(b, dt);
  Tensor out = empty(cpu::broadcast_shapes(a.shape(), b.shape()), DType::u8, a.device());
  if (out.device().is_meta() || out.numel() == 0) return out;
  dispatch_all(dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = opmath_t<T>;
    auto plan = cpu::make_plan<3>(out.shape(), {&out, &a2, &b2});
    cpu::for_each_chunk<3>(plan, [&](const std::array<char*, 3>& p, int64_t n, const std::array<int64_t, 3>& s) {
      uint8_t* o = reinterpret_cast<uint8_t*>(p[0]);
      const T* x = reinterpret_cast<const T*>(p[1]);
      const T* y = reinterpret_cast<const T*>(p[2]);
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = cmp(convert<C>(x[i * s[1]]), convert<C>(y[i * s[2]])) ? 1 : 0;
    });
  });
  return out;
}
}  // namespace

Tensor gt(const Tensor& a, const Tensor& b) { return compare("gt", a, b, [](auto x, auto y) { return x > y; }); }
Tensor eq(const Tensor& a, const Tensor& b) { return compare("eq", a, b, [](auto x, auto y) { return x == y; }); }
Tensor gt(const Tensor& a, double s) { return gt(a, full({}, s, a.dtype(), a.device())); }
Tensor lt(const Tensor& a, double s) { return gt(full({}, s, a.dtype(), a.device()), a); }

void add_(const Tensor& a, const Tensor& b, double alpha) {
  check_inplace("add_", a);
  check_same_device("add_", a, b);
  LOWBIT_CHECK(cpu::broadcast_shapes(a.shape(), b.shape()) == a.shape(), "add_: cannot broadcast ",
               shape_str(b.shape()), " into ", shape_str(a.shape()));
  const Tensor b2 = as_dtype(b, a.dtype());
  a.storage()->bump_version();
  dispatch_float(a.dtype(), "add_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::cpu_map<T>(a, AxpyF{alpha}, a, b2);
  });
}

void mul_(const Tensor& a, double s) {
  check_inplace("mul_", a);
  a.storage()->bump_version();
  dispatch_float(a.dtype(), "mul_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cpu::cpu_map<T>(a, MulScalarF{s}, a);
  });
}

}  // namespace lowbit
