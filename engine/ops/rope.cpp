#include "lowbit/engine/ops/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

std::vector<double> rope_inv_freq(int64_t D, double theta) {
  LOWBIT_CHECK(D > 0 && D % 2 == 0, "rope: head dim must be even, got ", D);
  LOWBIT_CHECK(theta > 0, "rope: theta must be positive, got ", theta);
  std::vector<double> f(static_cast<size_t>(D / 2));
  for (int64_t i = 0; i < D / 2; ++i)
    f[static_cast<size_t>(i)] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(D));
  return f;
}

std::pair<Tensor, Tensor> rope_cos_sin(int64_t T, int64_t D, double theta, int64_t offset, DType dtype,
                                       Device device) {
  return rope_cos_sin(rope_inv_freq(D, theta), T, offset, dtype, device);
}

std::pair<Tensor, Tensor> rope_cos_sin(const std::vector<double>& inv_freq, int64_t T, int64_t offset, DType dtype,
                                       Device device) {
  LOWBIT_CHECK(!inv_freq.empty(), "rope: no frequencies");
  LOWBIT_CHECK(T >= 0 && offset >= 0, "rope: invalid positions T=", T, " offset=", offset);
  const int64_t half = static_cast<int64_t>(inv_freq.size()), D = 2 * half;
  if (device.is_meta()) return {empty({T, D}, dtype, kMeta), empty({T, D}, dtype, kMeta)};
  std::vector<double> c(static_cast<size_t>(T * D)), s(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(t + offset) * inv_freq[static_cast<size_t>(i)];
      for (int64_t h : {i, i + half}) {
        c[static_cast<size_t>(t * D + h)] = std::cos(angle);
        s[static_cast<size_t>(t * D + h)] = std::sin(angle);
      }
    }
  }
  return {from_vector(c, {T, D}, dtype).to(device), from_vector(s, {T, D}, dtype).to(device)};
}

// The same angles as rope_cos_sin (position * frequency in f64), so a packed sequence's rows
// equal the unpacked ones bit for bit.
std::pair<Tensor, Tensor> rope_cos_sin_at(const std::vector<double>& inv_freq, const Tensor& positions, DType dtype) {
  LOWBIT_CHECK(!inv_freq.empty(), "rope: no frequencies");
  LOWBIT_CHECK(positions.dim() == 2 && positions.dtype() == DType::i64 && positions.device().is_cpu(),
               "rope: positions must be a CPU i64 (B, T) tensor, got ", positions.str());
  const int64_t B = positions.size(0), T = positions.size(1);
  const int64_t half = static_cast<int64_t>(inv_freq.size()), D = 2 * half;
  const Tensor p = positions.contiguous();
  const int64_t* pos = p.data<int64_t>();
  std::vector<double> c(static_cast<size_t>(B * T * D)), s(static_cast<size_t>(B * T * D));
  for (int64_t r = 0; r < B * T; ++r) {
    LOWBIT_CHECK(pos[r] >= 0, "rope: position ", pos[r], " at ", r, " is negative");
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(pos[r]) * inv_freq[static_cast<size_t>(i)];
      for (int64_t h : {i, i + half}) {
        c[static_cast<size_t>(r * D + h)] = std::cos(angle);
        s[static_cast<size_t>(r * D + h)] = std::sin(angle);
      }
    }
  }
  return {from_vector(c, {B, 1, T, D}, dtype), from_vector(s, {B, 1, T, D}, dtype)};
}

namespace {

// Rotates every row of x: (..., T, D) (any strides, unit inner stride) into out (same shape,
// own strides, unit inner stride); cos, sin: (T, D) contiguous. h = D / 2, per row at position t:
//   forward:  out[j] = x[j] c[j] - x[j+h] s[j],      out[j+h] = x[j+h] c[j+h] + x[j] s[j+h]
//   backward: out[j] = x[j] c[j] + x[j+h] s[j+h],    out[j+h] = x[j+h] c[j+h] - x[j] s[j]
// (the backward is the transpose of the forward's rotation, x being the incoming gradient).
// x: (..., T, D), cos/sin: (T, D) -> out: (..., T, D); or x: (B, H, T, D), cos/sin: (B, 1, T, D)
// (per-sequence positions) -> out: (B, H, T, D)
template <class T, bool kBackward>
void rope_kernel(const Tensor& x, const Tensor& cos, const Tensor& sin, const Tensor& out) {
  using C = opmath_t<T>;
  const int64_t nd = x.dim(), D = x.size(-1), T_ = x.size(-2), h = D / 2;
  const int64_t rows = x.numel() / D;
  const int64_t rows_per_table = cos.dim() == 4 ? rows / x.size(0) : rows;  // rows sharing one table
  const T* xb = x.data<T>();
  T* ob = out.data<T>();
  const T* cb = cos.data<T>();
  const T* sb = sin.data<T>();
#pragma omp parallel for schedule(static) if (x.numel() > 32768)
  for (int64_t r = 0; r < rows; ++r) {
    int64_t rem = r, xo = 0, oo = 0;
    for (int64_t d = nd - 2; d >= 0; --d) {
      const int64_t i = rem % x.size(d);
      rem /= x.size(d);
      xo += i * x.stride(d);
      oo += i * out.stride(d);
    }
    const int64_t t = r / rows_per_table * T_ + r % T_;
    const T* xr = xb + xo;
    T* orow = ob + oo;
    const T* c = cb + t * D;
    const T* s = sb + t * D;
    for (int64_t j = 0; j < h; ++j) {
      const C x1 = convert<C>(xr[j]), x2 = convert<C>(xr[j + h]);
      if constexpr (kBackward) {
        orow[j] = convert<T>(x1 * convert<C>(c[j]) + x2 * convert<C>(s[j + h]));
        orow[j + h] = convert<T>(x2 * convert<C>(c[j + h]) - x1 * convert<C>(s[j]));
      } else {
        orow[j] = convert<T>(x1 * convert<C>(c[j]) - x2 * convert<C>(s[j]));
        orow[j + h] = convert<T>(x2 * convert<C>(c[j + h]) + x1 * convert<C>(s[j + h]));
      }
    }
  }
}

// A new tensor shaped like x, laid out like x when x is a dense permutation of a contiguous
// tensor with unit inner stride (e.g. the (B, H, T, D) transpose of a (B, T, H, D) tensor), else
// contiguous. Keeping the layout lets the gradient of a transposed projection output flow back
// without a copy.
// shape, strides: x's geometry.
Tensor empty_in_layout(const Shape& shape, const Strides& strides, DType dt, Device device) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  auto size = [&](int64_t d) { return shape[static_cast<size_t>(d)]; };
  auto stride = [&](int64_t d) { return strides[static_cast<size_t>(d)]; };
  std::vector<int64_t> perm(static_cast<size_t>(nd));
  for (int64_t i = 0; i < nd; ++i) perm[static_cast<size_t>(i)] = i;
  std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) { return stride(a) > stride(b); });
  Shape ps;
  for (int64_t d : perm) ps.push_back(size(d));
  const Strides cs = contiguous_strides(ps);
  bool dense = nd > 0 && stride(nd - 1) == 1, permuted = false;
  for (int64_t i = 0; i < nd; ++i) {
    if (ps[static_cast<size_t>(i)] != 1 && stride(perm[static_cast<size_t>(i)]) != cs[static_cast<size_t>(i)])
      dense = false;
    if (perm[static_cast<size_t>(i)] != i) permuted = true;
  }
  if (!dense || !permuted) return empty(shape, dt, device);
  std::vector<int64_t> inv(static_cast<size_t>(nd));
  for (int64_t i = 0; i < nd; ++i) inv[static_cast<size_t>(perm[static_cast<size_t>(i)])] = i;
  return empty(ps, dt, device).permute(inv);
}

// x: (..., T, D) -> out: (..., T, D) laid out like `layout` (strides of a tensor of x's shape).
template <bool kBackward>
Tensor rope_rotate(const Tensor& x, const Tensor& cos, const Tensor& sin, const Strides& layout) {
  const DType dt = compute_dtype(x.dtype(), "apply_rope");
  const Tensor xs = x.stride(-1) == 1 ? x.detach() : as_contiguous(x);
  Tensor out = empty_in_layout(x.shape(), layout, dt, x.device());
  if (x.device().is_meta() || x.numel() == 0) return out;
  LOWBIT_CHECK(x.device().is_cpu(), "apply_rope: no kernel for ", x.device());
  const Tensor c = as_contiguous(as_dtype(cos, dt)), s = as_contiguous(as_dtype(sin, dt));
  dispatch_float(dt, "apply_rope", [&](auto tag) {
    rope_kernel<typename decltype(tag)::type, kBackward>(xs, c, s, out);
  });
  return out;
}

}  // namespace

Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  LOWBIT_CHECK(x.dim() >= 2, "rope: x must be (..., T, D), got ", x.str());
  const int64_t T = x.size(-2), D = x.size(-1);
  LOWBIT_CHECK(D % 2 == 0, "rope: head dim must be even, got ", D);
  const Shape table = cos.dim() == 4 && x.dim() == 4 ? Shape{x.size(0), 1, T, D} : Shape{T, D};
  LOWBIT_CHECK(cos.shape() == table && sin.shape() == table, "rope: cos/sin must be ", shape_str(table),
               " (or (B, 1, T, D) for x (B, H, T, D)), got ", shape_str(cos.shape()), " and ", shape_str(sin.shape()));
  check_same_device("apply_rope", x, cos);
  check_same_device("apply_rope", x, sin);
  // The output (and in backward dx) takes x's layout when x is a permuted dense tensor.
  const Strides layout = x.stride(-1) == 1 ? x.strides() : contiguous_strides(x.shape());
  Tensor out = rope_rotate<false>(x, cos, sin, layout);
  // Gradients for the tables (rarely wanted) need x; otherwise only cos and sin are saved.
  const bool table_grad = grad_enabled() && (cos.requires_grad() || sin.requires_grad());
  return record("apply_rope", out, {x, cos, sin}, {cos, sin, table_grad ? x : Tensor()}, [layout](const BackwardArgs& a) {
    const Tensor cos = a.saved(0), sin = a.saved(1);
    Tensor dx, dcos, dsin;
    if (a.needs_grad(0)) dx = rope_rotate<true>(a.grad, cos, sin, layout);
    if (a.needs_grad(1) || a.needs_grad(2)) {
      // dcos = g * x, dsin = g * rotate_half(x), reduced to (T, D) by the engine.
      const Tensor x = a.saved(2);
      if (a.needs_grad(1)) dcos = mul(a.grad, x);
      if (a.needs_grad(2)) {
        const Tensor zero = zeros(cos.shape(), x.dtype(), x.device()), one = ones(cos.shape(), x.dtype(), x.device());
        dsin = mul(a.grad, rope_rotate<false>(x, zero, one, contiguous_strides(x.shape())));
      }
    }
    return std::vector<Tensor>{dx, dcos, dsin};
  });
}

}  // namespace lowbit
