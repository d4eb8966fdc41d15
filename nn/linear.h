// Linear layer in the Hugging Face layout: weight (out, in), y = x W^T + b. The transpose is
// handed to GEMM as a flag, never copied. Initialised N(0, init_std) like HF's
// `initializer_range` (0.02 by default), bias zero.
#pragma once
#include <memory>

#include "lowbit/engine/random.h"
#include "lowbit/nn/module.h"

namespace lowbit::quant {
class LinearQuant;
}

namespace lowbit::nn {

struct LinearOptions {
  bool bias = false;
  double init_std = 0.02;
  DType dtype = DType::f32;
  Device device = kCPU;
};

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, const LinearOptions& opts = {}, Generator* gen = nullptr);
  // x: (..., in) -> (..., out), in x's dtype (weights of another dtype are cast: mixed precision)
  Tensor forward(const Tensor& x) const;
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

  Tensor weight;
  Tensor bias;  // undefined without bias
  // Quantization-aware forward attached by quant::prepare(); null for a plain layer.
  std::shared_ptr<quant::LinearQuant> quant;

 private:
  int64_t in_, out_;
};

}  // namespace lowbit::nn
