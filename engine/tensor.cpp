#include "lowbit/engine/tensor.h"

#include <cstring>
#include <sstream>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/autograd/node.h"
#include "lowbit/engine/cpu/loops.h"
#include "lowbit/engine/device_copy.h"
#include "lowbit/engine/ops/elementwise.h"

namespace lowbit {

TensorImpl& Tensor::impl() const {
  LOWBIT_CHECK(impl_ != nullptr, "operation on an undefined tensor");
  return *impl_;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t n = ndim == 0 ? 1 : ndim;
  LOWBIT_CHECK(dim >= -n && dim < n, op, ": dim ", dim, " out of range for a ", ndim, "-d tensor");
  return dim < 0 ? dim + n : dim;
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Strides contiguous_strides(const Shape& shape) {
  Strides st(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    st[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return st;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  const auto& st = impl().storage;
  if (!st || st->data() == nullptr) return nullptr;
  return static_cast<char*>(st->data()) + dtype_nbytes(dtype(), offset());
}

std::string Tensor::str() const {
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype() << ", device=" << device() << ")";
  return os.str();
}

namespace {
void check_packed_layout(DType dtype, const Shape& shape, const Strides& strides, int64_t offset) {
  if (!is_packed(dtype)) return;
  LOWBIT_CHECK(offset % 2 == 0, "fp4_e2m1 view would split a byte: odd element offset ", offset);
  if (shape.empty()) return;
  const size_t last = shape.size() - 1;
  LOWBIT_CHECK(shape[last] % 2 == 0 && (strides[last] == 1 || shape[last] == 0),
               "fp4_e2m1 view would split a byte: innermost dim must be even-sized with stride 1, got shape ",
               shape_str(shape), " strides ", shape_str(strides));
  for (size_t i = 0; i < last; ++i)
    LOWBIT_CHECK(strides[i] % 2 == 0 || shape[i] == 1, "fp4_e2m1 view would split a byte: odd stride in ",
                 shape_str(strides));
}
}  // namespace

Tensor make_view(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  check_packed_layout(base.dtype(), shape, strides, offset);
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  impl->device = base.device();
  return Tensor(std::move(impl));
}

Tensor empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) LOWBIT_CHECK(s >= 0, "empty: negative size in shape ", shape_str(shape));
  const int64_t n = shape_numel(shape);
  if (is_packed(dtype))
    LOWBIT_CHECK(!shape.empty() && shape.back() % 2 == 0, "fp4_e2m1 tensors need an even innermost size, got ",
                 shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(dtype_nbytes(dtype, n)), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  impl->device = device;
  return Tensor(std::move(impl));
}

Tensor zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_(t, value);
  return t;
}
Tensor empty_like(const Tensor& t) { return empty(t.shape(), t.dtype(), t.device()); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.dtype(), t.device()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.dtype(), t.device()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.dtype(), t.device()); }
Tensor scalar_tensor(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor arange(int64_t n, DType dtype, Device device) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<double>(i);
  return from_vector(v, {n}, dtype).to(device);
}

namespace {
template <class V>
Tensor from_host(const std::vector<V>& values, const Shape& shape, DType dtype) {
  LOWBIT_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
               " values do not fill shape ", shape_str(shape));
  Tensor src = empty(shape, dtype_of<V>, kCPU);
  if (!values.empty()) std::memcpy(src.raw_data(), values.data(), values.size() * sizeof(V));
  return dtype == dtype_of<V> ? src : src.to(dtype);
}
}  // namespace

Tensor from_vector(const std::vector<double>& v, const Shape& s, DType d) { return from_host(v, s, d); }
Tensor from_vector(const std::vector<float>& v, const Shape& s, DType d) { return from_host(v, s, d); }
Tensor from_vector(const std::vector<int64_t>& v, const Shape& s, DType d) { return from_host(v, s, d); }

Tensor from_bytes(const std::vector<uint8_t>& bytes, const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype, kCPU);
  LOWBIT_CHECK(static_cast<int64_t>(bytes.size()) == dtype_nbytes(dtype, t.numel()), "from_bytes: ",
               bytes.size(), " bytes do not fill shape ", shape_str(shape), " of ", dtype);
  if (!bytes.empty()) std::memcpy(t.raw_data(), bytes.data(), bytes.size());
  return t;
}

namespace {

// fp4 <-> f32 through contiguous buffers; the packed side must be contiguous.
void unpack_fp4(const Tensor& src, const Tensor& dst_f32) {
  const auto* in = static_cast<const uint8_t*>(src.raw_data());
  float* out = dst_f32.data<float>();
  const int64_t n = src.numel();
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) out[i] = fp4_e2m1_bits_to_f32(static_cast<uint8_t>(in[i / 2] >> (4 * (i % 2))));
}

void pack_fp4(const Tensor& src_f32, const Tensor& dst) {
  const float* in = src_f32.data<float>();
  auto* out = static_cast<uint8_t*>(dst.raw_data());
  const int64_t n = src_f32.numel();
  for (int64_t i = 0; i < n; ++i)
    LOWBIT_CHECK(in[i] == in[i], "cast to fp4_e2m1: NaN at element ", i, " has no fp4 code");
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n / 2; ++i)
    out[i] = static_cast<uint8_t>(f32_to_fp4_e2m1_bits(in[2 * i]) | (f32_to_fp4_e2m1_bits(in[2 * i + 1]) << 4));
}

void copy_cpu(const Tensor& dst, const Tensor& src) {
  if (is_packed(src.dtype()) || is_packed(dst.dtype())) {
    if (is_packed(src.dtype()) && is_packed(dst.dtype()) && src.shape() == dst.shape() && src.is_contiguous() &&
        dst.is_contiguous()) {
      std::memcpy(dst.raw_data(), src.raw_data(), static_cast<size_t>(dtype_nbytes(dst.dtype(), dst.numel())));
      return;
    }
    if (is_packed(dst.dtype())) {
      LOWBIT_CHECK(dst.is_contiguous(), "copy into fp4_e2m1 needs a contiguous destination");
      Tensor tmp = empty(dst.shape(), DType::f32, kCPU);
      copy_cpu(tmp, src);
      pack_fp4(tmp, dst);
      return;
    }
    Tensor s = src.is_contiguous() ? src : src.contiguous();
    Tensor tmp = empty(s.shape(), DType::f32, kCPU);
    unpack_fp4(s, tmp);
    copy_cpu(dst, tmp);
    return;
  }
  dispatch_all(dst.dtype(), "copy", [&](auto dtag) {
    using TD = typename decltype(dtag)::type;
    dispatch_all(src.dtype(), "copy", [&](auto stag) {
      using TS = typename decltype(stag)::type;
      auto plan = cpu::make_plan<2>(dst.shape(), {&dst, &src});
      cpu::for_each_chunk<2>(plan, [&](const std::array<char*, 2>& p, int64_t n, const std::array<int64_t, 2>& s) {
        TD* o = reinterpret_cast<TD*>(p[0]);
        const TS* in = reinterpret_cast<const TS*>(p[1]);
        if (s[0] == 1 && s[1] == 1) {
          for (int64_t i = 0; i < n; ++i) o[i] = convert<TD>(in[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) o[i * s[0]] = convert<TD>(in[i * s[1]]);
        }
      });
    });
  });
}

}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  const Shape bshape = cpu::broadcast_shapes(dst.shape(), src.shape());
  LOWBIT_CHECK(bshape == dst.shape(), "copy_: cannot broadcast ", shape_str(src.shape()), " to ",
               shape_str(dst.shape()));
  dst.storage()->bump_version();
  if (dst.device().is_meta() || dst.numel() == 0) return;
  if (dst.device().is_cpu() && src.device().is_cpu()) return copy_cpu(dst, src);
  if (src.device().is_meta()) LOWBIT_FAIL("copy_: source is a meta tensor (it has no data)");
  // Cross-device: stage through contiguous buffers of the destination dtype.
  Tensor s = src;
  if (s.dtype() != dst.dtype() || s.shape() != dst.shape() || !s.is_contiguous()) {
    LOWBIT_CHECK(s.device().is_cpu(), "copy_: on-device conversion of ", s.str(), " is not available");
    Tensor staged = empty(dst.shape(), dst.dtype(), kCPU);
    copy_cpu(staged, s);
    s = staged;
  }
  if (dst.is_contiguous()) {
    device_copy_bytes(dst.raw_data(), dst.device(), s.raw_data(), s.device(),
                      static_cast<size_t>(dtype_nbytes(dst.dtype(), dst.numel())));
    return;
  }
  LOWBIT_CHECK(dst.device().is_cpu(), "copy_: non-contiguous ", dst.device(), " destination");
  Tensor host = empty(dst.shape(), dst.dtype(), kCPU);
  device_copy_bytes(host.raw_data(), kCPU, s.raw_data(), s.device(),
                    static_cast<size_t>(dtype_nbytes(dst.dtype(), dst.numel())));
  copy_cpu(dst, host);
}

void fill_(const Tensor& dst, double value) {
  if (dst.device().is_meta() || dst.numel() == 0) {
    dst.storage()->bump_version();
    return;
  }
  Tensor v = empty({}, DType::f64, kCPU);
  *v.data<double>() = value;
  copy_(dst, v);
}

Tensor Tensor::clone() const {
  Tensor out = empty(shape(), dtype(), device());
  copy_(out, *this);
  return record("clone", out, {*this}, {}, [](const BackwardArgs& a) { return std::vector<Tensor>{a.grad}; });
}

Tensor Tensor::contiguous() const { return is_contiguous() && (!is_packed(dtype()) || offset() % 2 == 0) ? *this : clone(); }

Tensor Tensor::to(DType d) const {
  if (d == dtype()) return *this;
  Tensor out = empty(shape(), d, device());
  copy_(out, *this);
  const DType from = dtype();
  return record("to_dtype", out, {*this}, {}, [from](const BackwardArgs& a) {
    return std::vector<Tensor>{a.grad.to(from)};
  });
}

Tensor Tensor::to(Device dev) const {
  if (dev == device()) return *this;
  Tensor out = empty(shape(), dtype(), dev);
  copy_(out, *this);
  const Device from = device();
  return record("to_device", out, {*this}, {}, [from](const BackwardArgs& a) {
    return std::vector<Tensor>{a.grad.to(from)};
  });
}

double Tensor::item() const {
  LOWBIT_CHECK(numel() == 1, "item(): tensor with ", numel(), " elements ", str());
  Tensor h = to(kCPU).detach().to(DType::f64);
  return *h.data<double>();
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor h = detach().to(kCPU).to(dtype_of<T>).contiguous();
  std::vector<T> v(static_cast<size_t>(numel()));
  if (!v.empty()) std::memcpy(v.data(), h.raw_data(), v.size() * sizeof(T));
  return v;
}
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

Tensor& Tensor::set_requires_grad(bool r) {
  LOWBIT_CHECK(!r || is_float(dtype()), "requires_grad needs a float tensor, got ", dtype());
  LOWBIT_CHECK(is_leaf() || r, "set_requires_grad(false) on a non-leaf tensor; use detach()");
  impl().requires_grad = r;
  return *this;
}

Tensor Tensor::grad() const { return impl().grad ? Tensor(impl().grad) : Tensor(); }
void Tensor::set_grad(const Tensor& g) const { impl().grad = g.defined() ? g.impl_ptr() : nullptr; }
void Tensor::zero_grad() const { impl().grad = nullptr; }

Tensor Tensor::detach() const {
  Tensor t = make_view(*this, shape(), strides(), offset());
  return t;
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  run_backward({*this}, {grad}, retain_graph);
}

void Tensor::register_grad_hook(GradHook hook) const {
  LOWBIT_CHECK(is_leaf() && requires_grad(), "register_grad_hook: only leaves that require grad accumulate");
  impl().grad_hooks.push_back(std::move(hook));
}

}  // namespace lowbit
