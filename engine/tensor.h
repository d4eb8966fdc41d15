// Tensor: shared Storage + shape + strides (in elements) + offset + dtype + device, plus
// autograd metadata. Tensor is a cheap handle (shared_ptr to TensorImpl); views share storage
// and contiguous() is the only implicit copy. Packed fp4 tensors (two codes per byte) must keep
// every byte whole: innermost stride 1, even innermost size, even offset and outer strides.
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/engine/device.h"
#include "lowbit/engine/dtype.h"
#include "lowbit/engine/storage.h"

namespace lowbit {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

class Node;
class Tensor;
using GradHook = std::function<void(Tensor& grad)>;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  Device device;
  // autograd
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;              // null for leaves
  std::shared_ptr<TensorImpl> grad;           // accumulated gradient of a leaf
  std::weak_ptr<Node> grad_accumulator;       // the leaf's AccumulateGrad node, while alive
  std::vector<GradHook> grad_hooks;           // called after each accumulation into grad
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t offset() const { return impl().offset; }
  int64_t numel() const;
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().device; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // Pointer to element 0 of this view (CPU/CUDA). For fp4 the byte holding element 0.
  void* raw_data() const;
  template <class T> T* data() const;

  // Views (differentiable, no copy).
  Tensor view(const Shape& shape) const;
  Tensor reshape(const Shape& shape) const;  // view when strides allow, else a copy
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor t() const { return transpose(-2, -1); }
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;

  // Autograd.
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool r);
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  Tensor grad() const;
  void set_grad(const Tensor& g) const;
  void zero_grad() const;
  Tensor detach() const;
  // Runs reverse-mode autodiff from this tensor; grad defaults to ones for a scalar.
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  // Calls hook(grad) each time a gradient is accumulated into this leaf's .grad.
  void register_grad_hook(GradHook hook) const;

  // Host access (copies to CPU and converts).
  double item() const;
  template <class T> std::vector<T> to_vector() const;
  std::string str() const;  // "Tensor(shape=[2, 3], dtype=f32, device=cpu)"

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// ---- construction ----
Strides contiguous_strides(const Shape& shape);
int64_t shape_numel(const Shape& shape);
std::string shape_str(const Shape& shape);
// Wraps a possibly negative dim into [0, ndim).
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);

// A new tensor that views `base`'s storage with the given geometry (no autograd).
Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset);
Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = kCPU);
Tensor empty_like(const Tensor& t);
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = kCPU);
// 0, 1, ..., n-1
Tensor arange(int64_t n, DType dtype = DType::i64, Device device = kCPU);
// Copies host values (converted to dtype) into a new CPU tensor.
Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32);
Tensor from_vector(const std::vector<float>& values, const Shape& shape, DType dtype = DType::f32);
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, DType dtype = DType::i64);
// Wraps raw packed bytes (e.g. fp4 codes) into a contiguous tensor of the given dtype.
Tensor from_bytes(const std::vector<uint8_t>& bytes, const Shape& shape, DType dtype);

// Copies src into dst element by element (broadcasting src, converting dtype). Not recorded
// by autograd; bumps dst's version.
void copy_(const Tensor& dst, const Tensor& src);
void fill_(const Tensor& dst, double value);

template <class T>
T* Tensor::data() const {
  LOWBIT_CHECK(dtype() == dtype_of<T>, "data<T>(): tensor has dtype ", dtype(), ", requested ", dtype_of<T>);
  return static_cast<T*>(raw_data());
}

}  // namespace lowbit
