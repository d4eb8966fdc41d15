#include "lowbit/engine/cpu/loops.h"

namespace lowbit::cpu {

Shape broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    LOWBIT_CHECK(da == db || da == 1 || db == 1, "shapes ", shape_str(a), " and ", shape_str(b),
                 " are not broadcastable");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Strides broadcast_strides(const Tensor& t, const Shape& shape) {
  const size_t n = shape.size(), k = t.shape().size();
  LOWBIT_CHECK(k <= n, "cannot broadcast ", shape_str(t.shape()), " to ", shape_str(shape));
  Strides st(n, 0);
  for (size_t i = 0; i < k; ++i) {
    const int64_t d = t.shape()[i], target = shape[n - k + i];
    LOWBIT_CHECK(d == target || d == 1, "cannot broadcast ", shape_str(t.shape()), " to ", shape_str(shape));
    st[n - k + i] = d == 1 ? 0 : t.strides()[i];
  }
  return st;
}

}  // namespace lowbit::cpu
