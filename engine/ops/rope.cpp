#include "lowbit/engine/ops/rope.h"

#include <cmath>
#include <vector>

#include "lowbit/engine/ops/concat.h"
#include "lowbit/engine/ops/elementwise.h"

namespace lowbit {

std::vector<double> rope_inv_freq(int64_t D, double theta) {
  LOWBIT_CHECK(D > 0 && D % 2 == 0, "rope: head dim must be even, got ", D);
  LOWBIT_CHECK(theta > 0, "rope: theta must be positive, got ", theta);
  std::vector<double> f(static_cast<size_t>(D / 2));
  for (int64_t i = 0; i < D / 2; ++i)
    f[static_cast<size_t>(i)] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / static_cast<double>(D));
  return f;
}

std::pair<Tensor, Tensor> rope_cos_sin(int64_t T, int64_t D, double theta, int64_t offset, DType dtype,
                                       Device device) {
  return rope_cos_sin(rope_inv_freq(D, theta), T, offset, dtype, device);
}

std::pair<Tensor, Tensor> rope_cos_sin(const std::vector<double>& inv_freq, int64_t T, int64_t offset, DType dtype,
                                       Device device) {
  LOWBIT_CHECK(!inv_freq.empty(), "rope: no frequencies");
  LOWBIT_CHECK(T >= 0 && offset >= 0, "rope: invalid positions T=", T, " offset=", offset);
  const int64_t half = static_cast<int64_t>(inv_freq.size()), D = 2 * half;
  if (device.is_meta()) return {empty({T, D}, dtype, kMeta), empty({T, D}, dtype, kMeta)};
  std::vector<double> c(static_cast<size_t>(T * D)), s(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(t + offset) * inv_freq[static_cast<size_t>(i)];
      for (int64_t h : {i, i + half}) {
        c[static_cast<size_t>(t * D + h)] = std::cos(angle);
        s[static_cast<size_t>(t * D + h)] = std::sin(angle);
      }
    }
  }
  return {from_vector(c, {T, D}, dtype).to(device), from_vector(s, {T, D}, dtype).to(device)};
}

Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  LOWBIT_CHECK(x.dim() >= 2, "rope: x must be (..., T, D), got ", x.str());
  const int64_t T = x.size(-2), D = x.size(-1);
  LOWBIT_CHECK(cos.shape() == (Shape{T, D}) && sin.shape() == (Shape{T, D}), "rope: cos/sin must be (", T, ", ", D,
               "), got ", shape_str(cos.shape()), " and ", shape_str(sin.shape()));
  const int64_t half = D / 2;
  const Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  const Tensor rotated = cat({neg(x2), x1}, -1);
  return add(mul(x, cos.to(x.dtype())), mul(rotated, sin.to(x.dtype())));
}

}  // namespace lowbit
