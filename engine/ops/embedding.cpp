#include "lowbit/engine/ops/embedding.h"

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

namespace {
// ids (any integer dtype) -> contiguous i64, each checked against [0, V)
Tensor checked_ids(const Tensor& ids, int64_t V) {
  LOWBIT_CHECK(!is_float(ids.dtype()), "embedding: ids must be integers, got ", ids.dtype());
  Tensor i64 = as_contiguous(as_dtype(ids, DType::i64));
  if (i64.device().is_meta()) return i64;
  const int64_t* p = i64.data<int64_t>();
  for (int64_t i = 0; i < i64.numel(); ++i)
    LOWBIT_CHECK(p[i] >= 0 && p[i] < V, "embedding: id ", p[i], " at position ", i, " out of range [0, ", V, ")");
  return i64;
}
}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  LOWBIT_CHECK(weight.dim() == 2, "embedding: weight must be (V, C), got ", weight.str());
  check_same_device("embedding", weight, ids);
  const int64_t V = weight.size(0), C = weight.size(1);
  const Tensor idx = checked_ids(ids, V);
  Shape out_shape = ids.shape();
  out_shape.push_back(C);
  const DType dt = compute_dtype(weight.dtype(), "embedding");
  Tensor out = empty(out_shape, dt, weight.device());
  const int64_t n = idx.numel();
  if (!out.device().is_meta() && n > 0) {
    const Tensor w = as_contiguous(weight);
    dispatch_float(dt, "embedding", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* wp = w.data<T>();
      const int64_t* ip = idx.data<int64_t>();
      T* op = out.data<T>();
#pragma omp parallel for schedule(static) if (n * C > 65536)
      for (int64_t i = 0; i < n; ++i) std::copy(wp + ip[i] * C, wp + (ip[i] + 1) * C, op + i * C);
    });
  }
  return record("embedding", out, {weight}, {idx}, [V, C](const BackwardArgs& a) {
    // grad: (..., C) -> dweight: (V, C)
    const Tensor idx = a.saved(0);
    const Tensor g = as_contiguous(a.grad);
    const DType acc = g.dtype() == DType::f64 ? DType::f64 : DType::f32;
    Tensor dw = zeros({V, C}, acc, g.device());
    const Tensor g2 = as_dtype(g, acc);
    auto scatter = [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* gp = g2.data<T>();
      const int64_t* ip = idx.data<int64_t>();
      T* dp = dw.data<T>();
      const int64_t n = idx.numel();
      // Parallel over column blocks: every row of dw is summed in index order by one thread.
      constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static) if (n * C > 65536)
      for (int64_t c0 = 0; c0 < C; c0 += kCols) {
        const int64_t c1 = std::min(C, c0 + kCols);
        for (int64_t i = 0; i < n; ++i)
          for (int64_t c = c0; c < c1; ++c) dp[ip[i] * C + c] += gp[i * C + c];
      }
    };
    if (acc == DType::f64)
      scatter(TypeTag<double>{});
    else
      scatter(TypeTag<float>{});
    return std::vector<Tensor>{dw};
  });
}

}  // namespace lowbit
