// View ops: new shape/strides/offset over the same storage, each with its backward.
#include <algorithm>
#include <numeric>
#include <optional>

#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/ops/reduce.h"
#include "lowbit/engine/tensor.h"

namespace lowbit {

namespace {

Shape infer_shape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      LOWBIT_CHECK(infer < 0, op, ": only one dim may be -1 in ", shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      LOWBIT_CHECK(out[i] >= 0, op, ": invalid size in ", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    LOWBIT_CHECK(known > 0 && numel % known == 0, op, ": shape ", shape_str(shape), " is invalid for ", numel,
                 " elements");
    out[static_cast<size_t>(infer)] = numel / known;
  }
  LOWBIT_CHECK(shape_numel(out) == numel, op, ": shape ", shape_str(shape), " is invalid for ", numel, " elements");
  return out;
}

// Strides that view `old` geometry as `shape` without copying, if any (PyTorch's rule:
// each group of old dims that merges into new dims must be contiguous within itself).
std::optional<Strides> view_strides(const Shape& old_shape, const Strides& old_strides, const Shape& shape) {
  if (old_shape.empty()) return Strides(shape.size(), 1);
  const int64_t numel = shape_numel(old_shape);
  if (numel == 0) return contiguous_strides(shape);
  Strides st(shape.size(), 0);
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = old_strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[static_cast<size_t>(d)];
    if (d == 0 || (old_shape[static_cast<size_t>(d - 1)] != 1 &&
                   old_strides[static_cast<size_t>(d - 1)] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[static_cast<size_t>(view_d)] == 1)) {
        st[static_cast<size_t>(view_d)] = view_numel * chunk_base_stride;
        view_numel *= shape[static_cast<size_t>(view_d)];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base_stride = old_strides[static_cast<size_t>(d - 1)];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return st;
}

BackwardFn reshape_back(const Shape& in_shape) {
  return [in_shape](const BackwardArgs& a) { return std::vector<Tensor>{a.grad.reshape(in_shape)}; };
}

}  // namespace

Tensor Tensor::view(const Shape& new_shape) const {
  const Shape shape2 = infer_shape(new_shape, numel(), "view");
  auto st = view_strides(shape(), strides(), shape2);
  LOWBIT_CHECK(st.has_value(), "view: cannot view ", str(), " with strides ", shape_str(strides()), " as ",
               shape_str(shape2), " without a copy; use reshape()");
  return record("view", make_view(*this, shape2, *st, offset()), {*this}, {}, reshape_back(shape()));
}

Tensor Tensor::reshape(const Shape& new_shape) const {
  const Shape shape2 = infer_shape(new_shape, numel(), "reshape");
  if (view_strides(shape(), strides(), shape2)) return view(shape2);
  return contiguous().view(shape2);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  start = wrap_dim(start, dim(), "flatten");
  end = wrap_dim(end, dim(), "flatten");
  LOWBIT_CHECK(start <= end, "flatten: start dim ", start, " after end dim ", end);
  Shape s(shape().begin(), shape().begin() + start);
  int64_t m = 1;
  for (int64_t d = start; d <= end; ++d) m *= shape()[static_cast<size_t>(d)];
  s.push_back(m);
  s.insert(s.end(), shape().begin() + end + 1, shape().end());
  return reshape(s);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  LOWBIT_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute: ", dims.size(), " dims for a ", dim(),
               "-d tensor");
  Shape s(dims.size());
  Strides st(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], dim(), "permute");
    LOWBIT_CHECK(inverse[static_cast<size_t>(d)] < 0, "permute: dim ", d, " repeated");
    inverse[static_cast<size_t>(d)] = static_cast<int64_t>(i);
    s[i] = shape()[static_cast<size_t>(d)];
    st[i] = strides()[static_cast<size_t>(d)];
  }
  return record("permute", make_view(*this, s, st, offset()), {*this}, {},
                [inverse](const BackwardArgs& a) { return std::vector<Tensor>{a.grad.permute(inverse)}; });
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  if (dim() < 2 && a == -2 && b == -1) return *this;
  a = wrap_dim(a, dim(), "transpose");
  b = wrap_dim(b, dim(), "transpose");
  std::vector<int64_t> dims(static_cast<size_t>(dim()));
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[static_cast<size_t>(a)], dims[static_cast<size_t>(b)]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  d = wrap_dim(d, dim(), "slice");
  const int64_t n = shape()[static_cast<size_t>(d)];
  LOWBIT_CHECK(step > 0, "slice: step must be positive, got ", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = shape();
  Strides st = strides();
  s[static_cast<size_t>(d)] = (end - start + step - 1) / step;
  st[static_cast<size_t>(d)] *= step;
  const int64_t off = offset() + start * strides()[static_cast<size_t>(d)];
  const Shape in_shape = shape();
  return record("slice", make_view(*this, s, st, off), {*this}, {},
                [in_shape, d, start, end, step](const BackwardArgs& a) {
                  Tensor z = zeros(in_shape, a.grad.dtype(), a.grad.device());
                  copy_(z.slice(d, start, end, step), a.grad);
                  return std::vector<Tensor>{z};
                });
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  const int64_t n = shape()[static_cast<size_t>(d)];
  LOWBIT_CHECK(start >= 0 && length >= 0 && start + length <= n, "narrow: [", start, ", ", start + length,
               ") out of range for dim ", d, " of size ", n);
  return slice(d, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  const int64_t n = shape()[static_cast<size_t>(d)];
  LOWBIT_CHECK(index >= -n && index < n, "select: index ", index, " out of range for dim ", d, " of size ", n);
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
  LOWBIT_CHECK(target.size() >= shape().size(), "expand: cannot expand ", shape_str(shape()), " to ",
               shape_str(target));
  const size_t lead = target.size() - shape().size();
  Shape s(target.size());
  Strides st(target.size(), 0);
  for (size_t i = 0; i < target.size(); ++i) {
    if (i < lead) {
      LOWBIT_CHECK(target[i] >= 0, "expand: -1 not allowed for a new leading dim");
      s[i] = target[i];
      continue;
    }
    const int64_t cur = shape()[i - lead];
    const int64_t want = target[i] == -1 ? cur : target[i];
    LOWBIT_CHECK(cur == want || cur == 1, "expand: cannot expand ", shape_str(shape()), " to ", shape_str(target));
    s[i] = want;
    st[i] = cur == want ? strides()[i - lead] : 0;
  }
  // The engine sums the gradient back to the input shape.
  return record("expand", make_view(*this, s, st, offset()), {*this}, {},
                [](const BackwardArgs& a) { return std::vector<Tensor>{a.grad}; });
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  if (shape()[static_cast<size_t>(d)] != 1) return *this;
  Shape s = shape();
  Strides st = strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  return record("squeeze", make_view(*this, s, st, offset()), {*this}, {}, reshape_back(shape()));
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape();
  Strides st = strides();
  const int64_t stride = d < dim() ? strides()[static_cast<size_t>(d)] * shape()[static_cast<size_t>(d)] : 1;
  s.insert(s.begin() + d, 1);
  st.insert(st.begin() + d, stride);
  return record("unsqueeze", make_view(*this, s, st, offset()), {*this}, {}, reshape_back(shape()));
}

}  // namespace lowbit
