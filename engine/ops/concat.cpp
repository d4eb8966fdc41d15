#include "lowbit/engine/ops/concat.h"

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/ops/op_utils.h"

namespace lowbit {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim) {
  LOWBIT_CHECK(!tensors.empty(), "cat: no tensors");
  const Tensor& first = tensors[0];
  dim = wrap_dim(dim, first.dim(), "cat");
  DType dt = first.dtype();
  Shape out_shape = first.shape();
  out_shape[static_cast<size_t>(dim)] = 0;
  std::vector<int64_t> lengths;
  for (const Tensor& t : tensors) {
    check_same_device("cat", first, t);
    LOWBIT_CHECK(t.dim() == first.dim(), "cat: tensors have different ranks: ", first.str(), " and ", t.str());
    for (int64_t d = 0; d < t.dim(); ++d)
      LOWBIT_CHECK(d == dim || t.size(d) == first.size(d), "cat: sizes differ outside dim ", dim, ": ",
                   shape_str(first.shape()), " and ", shape_str(t.shape()));
    dt = promote_types(dt, t.dtype());
    lengths.push_back(t.size(dim));
    out_shape[static_cast<size_t>(dim)] += t.size(dim);
  }
  Tensor out = empty(out_shape, dt, first.device());
  int64_t pos = 0;
  for (const Tensor& t : tensors) {
    copy_(out.detach().narrow(dim, pos, t.size(dim)), t);
    pos += t.size(dim);
  }
  return record("cat", out, tensors, {}, [dim, lengths](const BackwardArgs& a) {
    std::vector<Tensor> grads;
    int64_t p = 0;
    for (int64_t len : lengths) {
      grads.push_back(a.grad.narrow(dim, p, len));
      p += len;
    }
    return grads;
  });
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  LOWBIT_CHECK(!tensors.empty(), "stack: no tensors");
  dim = wrap_dim(dim, tensors[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  for (const Tensor& t : tensors) {
    LOWBIT_CHECK(t.shape() == tensors[0].shape(), "stack: shapes differ: ", shape_str(tensors[0].shape()), " and ",
                 shape_str(t.shape()));
    parts.push_back(t.unsqueeze(dim));
  }
  return cat(parts, dim);
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "split");
  LOWBIT_CHECK(size > 0, "split: size must be positive, got ", size);
  std::vector<int64_t> sizes;
  for (int64_t p = 0; p < x.size(dim); p += size) sizes.push_back(std::min(size, x.size(dim) - p));
  return split(x, sizes, dim);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) total += s;
  LOWBIT_CHECK(total == x.size(dim), "split: sizes sum to ", total, " but dim ", dim, " has ", x.size(dim));
  std::vector<Tensor> out;
  int64_t p = 0;
  for (int64_t s : sizes) {
    out.push_back(x.narrow(dim, p, s));
    p += s;
  }
  return out;
}

}  // namespace lowbit
