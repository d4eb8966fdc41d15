// QTensor::nbytes / bits_per_element: the storage a quantized tensor really takes (packed codes,
// scales, zero points, plus nvfp4's f32 per-tensor scale), e.g. 4.5 bits per weight for Q4_0.
#include "lowbit/quant/qtensor.h"

namespace lowbit::quant {

namespace {
int64_t tensor_bytes(const Tensor& t) { return t.defined() ? dtype_nbytes(t.dtype(), t.numel()) : 0; }
}  // namespace

int64_t QTensor::nbytes() const {
  return tensor_bytes(codes) + tensor_bytes(scales) + tensor_bytes(zero_points) +
         (spec.format == Format::nvfp4 ? static_cast<int64_t>(sizeof(float)) : 0);
}

double QTensor::bits_per_element() const {
  const int64_t n = shape_numel(shape);
  LOWBIT_CHECK(n > 0, "QTensor::bits_per_element: empty tensor of shape ", shape_str(shape));
  return 8.0 * static_cast<double>(nbytes()) / static_cast<double>(n);
}

}  // namespace lowbit::quant
