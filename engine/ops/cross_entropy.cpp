#include "lowbit/engine/ops/cross_entropy.h"

#include <cmath>
#include <vector>

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/fast_math.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

namespace {

struct RowStats {
  double lse;
  double sum;  // sum of the row's logits (for label smoothing)
};

// Two vectorized passes over the row (it stays in cache): max, then sum of exp and plain sum.
template <class T>
RowStats row_stats(const T* x, int64_t V) {
  using C = opmath_t<T>;
  auto load = [](T v) { return convert<C>(v); };
  const C m = row_max<C>(x, V, load);
  const C s = row_sum<C>(x, V, [&](T v) { return exp_c(convert<C>(v) - m); });
  const C total = row_sum<C>(x, V, load);
  return {static_cast<double>(m) + std::log(static_cast<double>(s)), static_cast<double>(total)};
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opts) {
  LOWBIT_CHECK(logits.dim() >= 1, "cross_entropy: logits must be (..., V), got ", logits.str());
  LOWBIT_CHECK(!is_float(targets.dtype()), "cross_entropy: targets must be integer class ids, got ", targets.dtype());
  Shape lead(logits.shape().begin(), logits.shape().end() - 1);
  LOWBIT_CHECK(targets.shape() == lead, "cross_entropy: targets ", shape_str(targets.shape()),
               " do not match logits ", shape_str(logits.shape()), " without the class dim");
  LOWBIT_CHECK(opts.label_smoothing >= 0.0 && opts.label_smoothing <= 1.0,
               "cross_entropy: label_smoothing must be in [0, 1], got ", opts.label_smoothing);
  check_same_device("cross_entropy", logits, targets);
  const DType dt = compute_dtype(logits.dtype(), "cross_entropy");
  const DType out_dt = dt == DType::f64 ? DType::f64 : DType::f32;
  const int64_t V = logits.size(-1), N = shape_numel(lead);
  const Tensor x = as_contiguous(logits);
  const Tensor t = as_contiguous(as_dtype(targets, DType::i64));
  Tensor loss = empty({}, out_dt, logits.device());
  Tensor lse = empty({N}, DType::f64, logits.device());
  int64_t valid = 0;
  if (!logits.device().is_meta()) {
    const int64_t* tp = t.data<int64_t>();
    for (int64_t i = 0; i < N; ++i) {
      if (tp[i] == opts.ignore_index) continue;
      LOWBIT_CHECK(tp[i] >= 0 && tp[i] < V, "cross_entropy: target ", tp[i], " at position ", i,
                   " out of range [0, ", V, ")");
      ++valid;
    }
    std::vector<double> row_loss(static_cast<size_t>(N), 0.0);
    double* lp = lse.data<double>();
    const double eps = opts.label_smoothing;
    dispatch_float(dt, "cross_entropy", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* xp = x.data<T>();
#pragma omp parallel for schedule(static) if (N * V > 32768)
      for (int64_t i = 0; i < N; ++i) {
        if (tp[i] == opts.ignore_index) continue;
        const RowStats st = row_stats(xp + i * V, V);
        lp[i] = st.lse;
        const double xt = static_cast<double>(convert<opmath_t<T>>(xp[i * V + tp[i]]));
        row_loss[static_cast<size_t>(i)] = st.lse - (1.0 - eps) * xt - eps / static_cast<double>(V) * st.sum;
      }
    });
    double total = 0;  // summed in row order: independent of the thread count
    for (double l : row_loss) total += l;
    fill_(loss, valid > 0 ? total / static_cast<double>(valid) : 0.0);
  }
  const CrossEntropyOptions o = opts;
  return record("cross_entropy", loss, {logits}, {x, t, lse}, [o, V, N, valid](const BackwardArgs& a) {
    // grad: () -> dlogits: (..., V) = g / valid * (softmax - target)
    const Tensor x = a.saved(0), t = a.saved(1), lse = a.saved(2);
    Tensor dx = zeros(x.shape(), x.dtype(), x.device());
    if (valid == 0) return std::vector<Tensor>{dx};
    const double scale = a.grad.item() / static_cast<double>(valid);
    const double eps = o.label_smoothing, off = eps / static_cast<double>(V);
    const int64_t* tp = t.data<int64_t>();
    const double* lp = lse.data<double>();
    dispatch_float(x.dtype(), "cross_entropy_backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using C = opmath_t<T>;
      const T* xp = x.data<T>();
      T* dp = dx.data<T>();
#pragma omp parallel for schedule(static) if (N * V > 32768)
      for (int64_t i = 0; i < N; ++i) {
        if (tp[i] == o.ignore_index) continue;
        const C l = static_cast<C>(lp[i]), sc = static_cast<C>(scale), c_off = static_cast<C>(off);
        const C hit = static_cast<C>(1.0 - eps);
        for (int64_t j = 0; j < V; ++j) {
          const C target = j == tp[i] ? hit + c_off : c_off;
          dp[i * V + j] = convert<T>(sc * (exp_c(convert<C>(xp[i * V + j]) - l) - target));
        }
      }
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace lowbit
