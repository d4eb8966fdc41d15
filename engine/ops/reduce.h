// Reductions over dims. Each output element is reduced in a fixed order that does not depend
// on the thread count (long reductions are split into fixed-size chunks combined in order),
// so results are bitwise identical for any number of threads.
#pragma once
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit {

// x: (..) -> dims removed (or kept as size 1). Empty dims = all dims.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Max over dims; the gradient is shared equally among tied maxima. NaN propagates.
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);

struct MaxResult {
  Tensor values;
  Tensor indices;  // i64, first index of the maximum
};
// Max over one dim with the argmax; the gradient flows to the argmax only.
MaxResult max(const Tensor& x, int64_t dim, bool keepdim = false);

// Sums x down to `shape` (the inverse of broadcasting `shape` up to x's shape).
Tensor sum_to(const Tensor& x, const Shape& shape);

}  // namespace lowbit
