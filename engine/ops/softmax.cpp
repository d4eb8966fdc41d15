#include "lowbit/engine/ops/softmax.h"

#include <cmath>

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/fast_math.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

namespace {

// Moves dim to the end (a view), so rows are the softmax rows.
Tensor rows_view(const Tensor& x, int64_t dim) {
  return dim == x.dim() - 1 ? x : x.detach().transpose(dim, -1);
}

// x: (M, N) rows -> y: (M, N); log = true gives log_softmax.
template <class T>
void softmax_rows(const T* x, T* y, int64_t M, int64_t N, bool log) {
  using C = opmath_t<T>;
#pragma omp parallel for schedule(static) if (M * N > 16384)
  for (int64_t m = 0; m < M; ++m) {
    const T* xr = x + m * N;
    T* yr = y + m * N;
    auto load = [](T v) { return convert<C>(v); };
    C mx = row_max<C>(xr, N, load);
    if (mx == -INFINITY) mx = 0;  // an all -inf row gives NaN like the math says, not a crash
    const C s = row_sum<C>(xr, N, [&](T v) { return exp_c(convert<C>(v) - mx); });
    if (log) {
      const C lse = mx + std::log(s);
      for (int64_t i = 0; i < N; ++i) yr[i] = convert<T>(convert<C>(xr[i]) - lse);
    } else {
      const C inv = C(1) / s;
      for (int64_t i = 0; i < N; ++i) yr[i] = convert<T>(exp_c(convert<C>(xr[i]) - mx) * inv);
    }
  }
}

// g, y: (M, N) -> dx: (M, N). softmax: y (g - <g, y>); log_softmax: g - exp(y) sum(g).
template <class T>
void softmax_backward_rows(const T* g, const T* y, T* dx, int64_t M, int64_t N, bool log) {
  using C = opmath_t<T>;
#pragma omp parallel for schedule(static) if (M * N > 16384)
  for (int64_t m = 0; m < M; ++m) {
    const T* gr = g + m * N;
    const T* yr = y + m * N;
    T* dr = dx + m * N;
    C dot = 0;
    if (log) {
      dot = row_sum<C>(gr, N, [](T v) { return convert<C>(v); });
      for (int64_t i = 0; i < N; ++i) dr[i] = convert<T>(convert<C>(gr[i]) - exp_c(convert<C>(yr[i])) * dot);
    } else {
      for (int64_t i = 0; i < N; ++i) dot += convert<C>(gr[i]) * convert<C>(yr[i]);
      for (int64_t i = 0; i < N; ++i) dr[i] = convert<T>(convert<C>(yr[i]) * (convert<C>(gr[i]) - dot));
    }
  }
}

Tensor softmax_impl(const char* op, const Tensor& x, int64_t dim, bool log) {
  dim = wrap_dim(dim, x.dim(), op);
  const DType dt = compute_dtype(x.dtype(), op);
  if (x.dim() == 0) return softmax_impl(op, x.reshape({1}), 0, log).reshape({});
  const Tensor xr = as_contiguous(rows_view(x, dim));
  Tensor yr = empty(xr.shape(), dt, x.device());
  const int64_t N = xr.size(-1), M = N == 0 ? 0 : xr.numel() / N;
  if (!x.device().is_meta() && M > 0) {
    dispatch_float(dt, op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      softmax_rows<T>(xr.data<T>(), yr.data<T>(), M, N, log);
    });
  }
  Tensor y = dim == x.dim() - 1 ? yr : yr.transpose(dim, -1);
  return record(op, y, {x}, {y}, [op, dim, log](const BackwardArgs& a) {
    const Tensor yv = a.saved(0);
    const int64_t last = yv.dim() - 1;
    const Tensor gr = as_contiguous(dim == last ? a.grad : a.grad.transpose(dim, -1));
    const Tensor ys = as_contiguous(dim == last ? yv : yv.transpose(dim, -1));
    Tensor dx = empty(gr.shape(), gr.dtype(), gr.device());
    const int64_t N = gr.size(-1), M = N == 0 ? 0 : gr.numel() / N;
    const Tensor yc = as_dtype(ys, gr.dtype());
    if (!gr.device().is_meta() && M > 0) {
      dispatch_float(gr.dtype(), op, [&](auto tag) {
        using T = typename decltype(tag)::type;
        softmax_backward_rows<T>(gr.data<T>(), yc.data<T>(), dx.data<T>(), M, N, log);
      });
    }
    return std::vector<Tensor>{dim == last ? dx : dx.transpose(dim, -1)};
  });
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl("softmax", x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl("log_softmax", x, dim, true); }

}  // namespace lowbit
