#include "lowbit/engine/ops/reduce.h"

#include <algorithm>
#include <limits>

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/fast_math.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

namespace {

constexpr int64_t kChunk = 8192;  // fixed split of long rows: keeps results thread-count independent

template <class A>
struct SumOp {
  static constexpr A identity() { return A(0); }
  static A combine(A a, A b) { return a + b; }
};
template <class A>
struct MaxOp {
  static constexpr A identity() { return -std::numeric_limits<A>::infinity(); }
  static A combine(A a, A b) { return (a > b || a != a) ? a : b; }
};

// Reduces n contiguous elements in a fixed order (row_reduce: 16 lanes, then a tree).
template <class Op, class A, class T>
A reduce_run(const T* x, int64_t n) {
  return row_reduce<A>(x, n, Op::identity(), [](T v) { return convert<A>(v); }, [](A a, A b) { return Op::combine(a, b); });
}

// x viewed as (M, R) with row stride rs and element stride 1 -> out (M).
template <class Op, class T>
void reduce_rows(const T* x, int64_t M, int64_t R, int64_t rs, T* out) {
  using A = opmath_t<T>;
  const int64_t chunks = std::max<int64_t>(1, (R + kChunk - 1) / kChunk);
  if (chunks == 1) {
#pragma omp parallel for schedule(static) if (M * R > 32768)
    for (int64_t m = 0; m < M; ++m) out[m] = convert<T>(reduce_run<Op, A>(x + m * rs, R));
    return;
  }
  std::vector<A> partial(static_cast<size_t>(M * chunks));
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < M * chunks; ++t) {
    const int64_t m = t / chunks, c = t % chunks;
    const int64_t start = c * kChunk;
    partial[static_cast<size_t>(t)] = reduce_run<Op, A>(x + m * rs + start, std::min(kChunk, R - start));
  }
  for (int64_t m = 0; m < M; ++m) {
    A acc = partial[static_cast<size_t>(m * chunks)];
    for (int64_t c = 1; c < chunks; ++c) acc = Op::combine(acc, partial[static_cast<size_t>(m * chunks + c)]);
    out[m] = convert<T>(acc);
  }
}

// Contiguous x viewed as (R, M): reduce over the leading R -> out (M), sequential in r.
template <class Op, class T>
void reduce_cols(const T* x, int64_t R, int64_t M, T* out) {
  using A = opmath_t<T>;
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (M + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (M * R > 32768)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t j0 = b * kBlock, j1 = std::min(M, j0 + kBlock);
    A acc[kBlock];
    for (int64_t j = j0; j < j1; ++j) acc[j - j0] = Op::identity();
    for (int64_t r = 0; r < R; ++r) {
      const T* row = x + r * M;
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] = Op::combine(acc[j - j0], convert<A>(row[j]));
    }
    for (int64_t j = j0; j < j1; ++j) out[j] = convert<T>(acc[j - j0]);
  }
}

// Permutation moving dim d to the end, the others keeping their order.
std::vector<int64_t> move_last(int64_t ndim, int64_t d) {
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < ndim; ++i)
    if (i != d) perm.push_back(i);
  perm.push_back(d);
  return perm;
}

struct ReducePlan {
  std::vector<bool> reduced;
  Shape out_shape;   // without keepdim
  Shape keep_shape;  // reduced dims as 1
  int64_t count = 1; // elements per output
};

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* op) {
  ReducePlan p;
  p.reduced.assign(static_cast<size_t>(x.dim()), dims.empty());
  for (int64_t d : dims) {
    const int64_t w = wrap_dim(d, x.dim(), op);
    if (x.dim() == 0) continue;
    LOWBIT_CHECK(!p.reduced[static_cast<size_t>(w)], op, ": dim ", d, " repeated");
    p.reduced[static_cast<size_t>(w)] = true;
  }
  for (int64_t d = 0; d < x.dim(); ++d) {
    const int64_t s = x.shape()[static_cast<size_t>(d)];
    if (p.reduced[static_cast<size_t>(d)]) {
      p.count *= s;
      p.keep_shape.push_back(1);
      if (keepdim) p.out_shape.push_back(1);
    } else {
      p.keep_shape.push_back(s);
      p.out_shape.push_back(s);
    }
  }
  return p;
}

template <template <class> class OpT>
Tensor reduce_kernel(const Tensor& x, const ReducePlan& p, const Shape& out_shape, const char* op) {
  const DType dt = compute_dtype(x.dtype(), op);
  Tensor out = empty(out_shape, dt, x.device());
  if (x.device().is_meta()) return out;
  LOWBIT_CHECK(x.device().is_cpu(), op, ": CPU kernel called with ", x.str());
  constexpr bool has_identity = std::is_same_v<OpT<float>, SumOp<float>>;
  LOWBIT_CHECK(p.count > 0 || has_identity, op, ": reduction over an empty dim of ", x.str());
  const int64_t M = out.numel();
  dispatch_float(dt, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Op = OpT<opmath_t<T>>;
    T* o = out.data<T>();
    if (p.count == 0) {
      std::fill(o, o + M, convert<T>(Op::identity()));
      return;
    }
    // Leading reduced dims of a contiguous tensor: reduce columns in place, no copy.
    int64_t lead = 0;
    while (lead < x.dim() && p.reduced[static_cast<size_t>(lead)]) ++lead;
    bool tail_kept = true;
    for (int64_t d = lead; d < x.dim(); ++d) tail_kept = tail_kept && !p.reduced[static_cast<size_t>(d)];
    if (x.is_contiguous() && tail_kept && lead > 0 && lead < x.dim()) {
      reduce_cols<Op>(static_cast<const T*>(x.raw_data()), p.count, M, o);
      return;
    }
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (!p.reduced[static_cast<size_t>(d)]) perm.push_back(d);
    for (int64_t d = 0; d < x.dim(); ++d)
      if (p.reduced[static_cast<size_t>(d)]) perm.push_back(d);
    Tensor xp = as_contiguous(x.detach().permute(perm));
    reduce_rows<Op>(static_cast<const T*>(xp.raw_data()), M, p.count, p.count, o);
  });
  return out;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const ReducePlan p = plan_reduce(x, dims, keepdim, "sum");
  Tensor out = reduce_kernel<SumOp>(x, p, p.out_shape, "sum");
  const Shape in_shape = x.shape(), keep_shape = p.keep_shape;
  return record("sum", out, {x}, {}, [in_shape, keep_shape](const BackwardArgs& a) {
    return std::vector<Tensor>{a.grad.reshape(keep_shape).expand(in_shape)};
  });
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const ReducePlan p = plan_reduce(x, dims, keepdim, "mean");
  LOWBIT_CHECK(p.count > 0, "mean: reduction over an empty dim of ", x.str());
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(p.count));
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const ReducePlan p = plan_reduce(x, dims, keepdim, "amax");
  Tensor out = reduce_kernel<MaxOp>(x, p, p.out_shape, "amax");
  const Shape in_shape = x.shape(), keep_shape = p.keep_shape;
  return record("amax", out, {x}, {x, out}, [in_shape, keep_shape](const BackwardArgs& a) {
    const Tensor xs = a.saved(0), y = a.saved(1).reshape(keep_shape);
    const Tensor mask = as_dtype(eq(xs, y), a.grad.dtype());
    const std::vector<int64_t> all_reduced = [&] {
      std::vector<int64_t> d;
      for (size_t i = 0; i < keep_shape.size(); ++i)
        if (keep_shape[i] == 1 && in_shape[i] != 1) d.push_back(static_cast<int64_t>(i));
      return d;
    }();
    const Tensor count = all_reduced.empty() ? ones(keep_shape, mask.dtype()) : sum(mask, all_reduced, true);
    return std::vector<Tensor>{mask * (a.grad.reshape(keep_shape) / count)};
  });
}

MaxResult max(const Tensor& x, int64_t dim, bool keepdim) {
  const int64_t d = wrap_dim(dim, x.dim(), "max");
  const DType dt = compute_dtype(x.dtype(), "max");
  const ReducePlan p = plan_reduce(x, {d}, keepdim, "max");
  LOWBIT_CHECK(p.count > 0, "max: reduction over an empty dim of ", x.str());
  Tensor values = empty(p.out_shape, dt, x.device());
  Tensor indices = empty(p.out_shape, DType::i64, x.device());
  if (!x.device().is_meta()) {
    Tensor xp = as_contiguous(x.detach().permute(move_last(x.dim(), d)));
    const int64_t M = values.numel(), R = p.count;
    dispatch_float(dt, "max", [&](auto tag) {
      using T = typename decltype(tag)::type;
      using A = opmath_t<T>;
      const T* in = static_cast<const T*>(xp.raw_data());
      T* v = values.data<T>();
      int64_t* idx = indices.data<int64_t>();
#pragma omp parallel for schedule(static) if (M * R > 32768)
      for (int64_t m = 0; m < M; ++m) {
        const T* row = in + m * R;
        A best = convert<A>(row[0]);
        int64_t bi = 0;
        for (int64_t r = 1; r < R && best == best; ++r) {
          const A val = convert<A>(row[r]);
          if (val > best || val != val) {
            best = val;
            bi = r;
          }
        }
        v[m] = convert<T>(best);
        idx[m] = bi;
      }
    });
  }
  const Shape in_shape = x.shape(), keep_shape = p.keep_shape;
  values = record("max", values, {x}, {indices}, [in_shape, keep_shape, d](const BackwardArgs& a) {
    const Tensor idx = as_contiguous(a.saved(0));
    const Tensor g = as_contiguous(a.grad);
    const std::vector<int64_t> perm = move_last(static_cast<int64_t>(in_shape.size()), d);
    Shape moved;
    for (int64_t i : perm) moved.push_back(in_shape[static_cast<size_t>(i)]);
    Tensor gx = zeros(moved, g.dtype(), g.device());
    const int64_t R = in_shape[static_cast<size_t>(d)], M = g.numel();
    dispatch_float(g.dtype(), "max_backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* gp = g.data<T>();
      const int64_t* ip = idx.data<int64_t>();
      T* out = gx.data<T>();
      for (int64_t m = 0; m < M; ++m) out[m * R + ip[m]] = gp[m];
    });
    std::vector<int64_t> inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
    return std::vector<Tensor>{gx.permute(inverse)};
  });
  return {values, indices};
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  LOWBIT_CHECK(shape.size() <= x.shape().size(), "sum_to: cannot reduce ", shape_str(x.shape()), " to ",
               shape_str(shape));
  const size_t lead = x.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < x.shape().size(); ++i) {
    if (i < lead) {
      dims.push_back(static_cast<int64_t>(i));
      continue;
    }
    const int64_t want = shape[i - lead];
    if (want == 1 && x.shape()[i] != 1) {
      dims.push_back(static_cast<int64_t>(i));
    } else {
      LOWBIT_CHECK(want == x.shape()[i], "sum_to: cannot reduce ", shape_str(x.shape()), " to ", shape_str(shape));
    }
  }
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

}  // namespace lowbit
