#include "lowbit/engine/ops/rms_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

namespace {

constexpr int64_t kRowChunk = 64;  // dweight partial sums: fixed row chunks, thread-count independent

// sum_{i < n} f(i) with 16 lanes and a fixed tree (vectorizes; order depends only on n).
template <class C, class F>
C lane_sum(int64_t n, F f) {
  constexpr int kLanes = 16;
  C acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += f(i + k);
  for (int k = 0; i < n; ++i, ++k) acc[k] += f(i);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
  return acc[0];
}

// weight (C) of any float dtype, or undefined (= ones) -> values in compute type Cm.
template <class Cm>
std::vector<Cm> weight_values(const Tensor& weight, int64_t C) {
  std::vector<Cm> w(static_cast<size_t>(C), Cm(1));
  if (!weight.defined()) return w;
  const Tensor wc = as_contiguous(as_dtype(weight, dtype_of<Cm>));
  std::copy(wc.data<Cm>(), wc.data<Cm>() + C, w.begin());
  return w;
}

// x: (N, C) contiguous, w: (C) -> y: (N, C), rstd: (N)
template <class T, class Cm = opmath_t<T>>
void rms_norm_forward_kernel(const T* x, const Cm* w, int64_t N, int64_t C, double eps, T* y, Cm* rstd) {
  const Cm inv_c = Cm(1) / static_cast<Cm>(C), e = static_cast<Cm>(eps);
#pragma omp parallel for schedule(static) if (N * C > 32768)
  for (int64_t r = 0; r < N; ++r) {
    const T* xr = x + r * C;
    T* yr = y + r * C;
    const Cm ss = lane_sum<Cm>(C, [&](int64_t i) {
      const Cm v = convert<Cm>(xr[i]);
      return v * v;
    });
    const Cm rs = Cm(1) / std::sqrt(ss * inv_c + e);
    rstd[r] = rs;
    for (int64_t i = 0; i < C; ++i) yr[i] = convert<T>(convert<Cm>(xr[i]) * rs * w[i]);
  }
}

// g, x: (N, C) contiguous, rstd: (N), w: (C) -> dx: (N, C) (if non-null),
// dw_partial: (ceil(N / kRowChunk), C) (if non-null), row chunk k summed in row order.
//   dx = rstd * g * w - x * rstd^3 * sum(g * w * x) / C,   dw = sum_rows g * x * rstd
template <class T, class Cm = opmath_t<T>>
void rms_norm_backward_kernel(const T* g, const T* x, const Cm* rstd, const Cm* w, int64_t N, int64_t C, T* dx,
                              Cm* dw_partial) {
  const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
  const Cm inv_c = Cm(1) / static_cast<Cm>(C);
#pragma omp parallel for schedule(static) if (N * C > 32768)
  for (int64_t k = 0; k < chunks; ++k) {
    Cm* acc = dw_partial ? dw_partial + k * C : nullptr;
    if (acc) std::fill(acc, acc + C, Cm(0));
    for (int64_t r = k * kRowChunk; r < std::min(N, (k + 1) * kRowChunk); ++r) {
      const T* gr = g + r * C;
      const T* xr = x + r * C;
      const Cm rs = rstd[r];
      if (dx) {
        const Cm dot = lane_sum<Cm>(C, [&](int64_t i) { return convert<Cm>(gr[i]) * w[i] * convert<Cm>(xr[i]); });
        const Cm coef = dot * rs * rs * rs * inv_c;
        T* dr = dx + r * C;
        for (int64_t i = 0; i < C; ++i) dr[i] = convert<T>(rs * convert<Cm>(gr[i]) * w[i] - convert<Cm>(xr[i]) * coef);
      }
      if (acc)
        for (int64_t i = 0; i < C; ++i) acc[i] += convert<Cm>(gr[i]) * convert<Cm>(xr[i]) * rs;
    }
  }
}

// partial: (chunks, C) -> out (C), chunks summed in order.
template <class Cm>
void sum_chunks(const Cm* partial, int64_t chunks, int64_t C, Cm* out) {
#pragma omp parallel for schedule(static) if (chunks * C > 32768)
  for (int64_t i = 0; i < C; ++i) {
    Cm s = partial[i];
    for (int64_t k = 1; k < chunks; ++k) s += partial[k * C + i];
    out[i] = s;
  }
}

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  LOWBIT_CHECK(x.dim() >= 1, "rms_norm: x must have at least one dim, got ", x.str());
  LOWBIT_CHECK(eps >= 0, "rms_norm: eps must be >= 0, got ", eps);
  const DType dt = compute_dtype(x.dtype(), "rms_norm");
  if (weight.defined()) {
    LOWBIT_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1), "rms_norm: weight ", shape_str(weight.shape()),
                 " does not match the last dim of x ", shape_str(x.shape()));
    compute_dtype(weight.dtype(), "rms_norm (weight)");
    check_same_device("rms_norm", x, weight);
  }
  const DType stat = dt == DType::f64 ? DType::f64 : DType::f32;
  const int64_t C = x.size(-1), N = C == 0 ? 0 : x.numel() / C;
  const Tensor xc = as_contiguous(x);
  Tensor y = empty(x.shape(), dt, x.device());
  Tensor rstd = empty({N}, stat, x.device());
  if (!x.device().is_meta() && x.numel() > 0) {
    LOWBIT_CHECK(x.device().is_cpu(), "rms_norm: no kernel for ", x.device());
    dispatch_float(dt, "rms_norm", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using Cm = opmath_t<T>;
      const std::vector<Cm> w = weight_values<Cm>(weight, C);
      rms_norm_forward_kernel<T>(xc.data<T>(), w.data(), N, C, eps, y.data<T>(), rstd.data<Cm>());
    });
  }
  return record("rms_norm", y, {x, weight}, {xc, rstd, weight}, [N, C](const BackwardArgs& a) {
    const Tensor x = a.saved(0), rstd = a.saved(1), weight = a.saved(2);
    const Tensor g = as_contiguous(as_dtype(a.grad, x.dtype()));
    Tensor dx, dw;
    if (a.needs_grad(0)) dx = empty(x.shape(), x.dtype(), x.device());
    if (a.needs_grad(1)) dw = empty({C}, weight.dtype(), x.device());
    if (x.device().is_meta() || x.numel() == 0) {
      if (dw.defined()) dw = zeros({C}, weight.dtype(), x.device());
      return std::vector<Tensor>{dx, dw};
    }
    dispatch_float(x.dtype(), "rms_norm_backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using Cm = opmath_t<T>;
      const std::vector<Cm> w = weight_values<Cm>(weight, C);
      const int64_t chunks = (N + kRowChunk - 1) / kRowChunk;
      std::vector<Cm> partial(dw.defined() ? static_cast<size_t>(chunks * C) : 0);
      rms_norm_backward_kernel<T>(g.data<T>(), x.data<T>(), rstd.data<Cm>(), w.data(), N, C,
                                  dx.defined() ? dx.data<T>() : nullptr, dw.defined() ? partial.data() : nullptr);
      if (dw.defined()) {
        Tensor sum = dw.dtype() == dtype_of<Cm> ? dw : empty({C}, dtype_of<Cm>, x.device());
        sum_chunks<Cm>(partial.data(), chunks, C, sum.data<Cm>());
        if (!sum.same(dw)) copy_(dw, sum);
      }
    });
    return std::vector<Tensor>{dx, dw};
  });
}

}  // namespace lowbit
