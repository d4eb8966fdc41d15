// Joining and splitting along a dim. split/chunk return views; cat/stack copy.
#pragma once
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit {

// tensors: same shape except along dim -> sizes summed along dim
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim = 0);
// tensors: equal shapes -> new dim inserted at dim
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim = 0);
// x -> views of length `size` along dim (the last one may be shorter)
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim = 0);
// x -> views with the given lengths along dim (must sum to the dim's size)
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0);

}  // namespace lowbit
