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

  // LoRA (nn/lora.h): adapters registered as children "lora_A" (in -> r) and "lora_B" (r -> out).
  void add_lora(int64_t rank, double alpha, double dropout, Generator* gen);
  bool has_lora() const { return lora_A_ != nullptr; }
  Linear& lora_A() const;
  Linear& lora_B() const;
  double lora_scale() const { return lora_scale_; }
  // W += scale * B A, then the adapters are removed. A converted (QLoRA) base is dequantized
  // first and the layer becomes a plain f32 layer.
  void merge_lora();
  // QLoRA: once the quant hook holds the packed weight, the f32 weight is replaced by a
  // storage-free meta tensor of the same shape.
  void release_weight();

 private:
  Tensor base_forward(const Tensor& x) const;

  int64_t in_, out_;
  Linear* lora_A_ = nullptr;
  Linear* lora_B_ = nullptr;
  double lora_scale_ = 0, lora_dropout_ = 0;
  Generator* lora_gen_ = nullptr;
};

}  // namespace lowbit::nn
