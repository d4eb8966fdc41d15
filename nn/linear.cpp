#include "lowbit/nn/linear.h"

#include <cmath>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/engine/ops/matmul.h"
#include "lowbit/quant/linear_quant.h"
#include "lowbit/quant/qtensor.h"

namespace lowbit::nn {

Linear::Linear(int64_t in_features, int64_t out_features, const LinearOptions& opts, Generator* gen)
    : in_(in_features), out_(out_features) {
  LOWBIT_CHECK(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got in=", in_features,
               " out=", out_features);
  Tensor w = opts.device.is_meta() ? empty({out_features, in_features}, opts.dtype, kMeta)
                                   : randn({out_features, in_features}, 0.0, opts.init_std, opts.dtype, gen).to(opts.device);
  weight = register_parameter("weight", w);
  if (opts.bias) bias = register_parameter("bias", zeros({out_features}, opts.dtype, opts.device));
}

Tensor Linear::forward(const Tensor& x) const {
  LOWBIT_CHECK(x.dim() >= 1 && x.size(-1) == in_, "Linear: input ", shape_str(x.shape()), " does not end in ",
               in_, " features");
  const Tensor y = base_forward(x);
  if (!lora_A_) return y;
  Tensor h = x;
  if (lora_dropout_ > 0 && is_training()) {
    // Inverted dropout: keep with probability 1 - p, scaled by 1 / (1 - p).
    Tensor keep = rand(x.shape(), 0.0, 1.0, DType::f32, lora_gen_);
    float* k = keep.data<float>();
    const float scale = static_cast<float>(1.0 / (1.0 - lora_dropout_)), p = static_cast<float>(lora_dropout_);
    for (int64_t i = 0; i < keep.numel(); ++i) k[i] = k[i] >= p ? scale : 0.0f;
    h = mul(x, keep.to(x.dtype()));
  }
  return add(y, mul(lora_B_->forward(lora_A_->forward(h)), lora_scale_));
}

Tensor Linear::base_forward(const Tensor& x) const {
  if (quant) return quant->forward(x, weight, bias);
  // Mixed precision: linear casts f32 master weights to x's dtype and returns their gradient
  // in f32 straight from the GEMM accumulator.
  return linear(x, weight, bias);
}

void Linear::add_lora(int64_t rank, double alpha, double dropout, Generator* gen) {
  LOWBIT_CHECK(!lora_A_, "Linear::add_lora: the layer already has LoRA adapters");
  LOWBIT_CHECK(rank > 0 && alpha > 0 && dropout >= 0 && dropout < 1, "Linear::add_lora: need rank > 0, alpha > 0 and ",
               "dropout in [0, 1), got rank ", rank, ", alpha ", alpha, ", dropout ", dropout);
  const DType dt = weight.dtype();
  const Device dev = weight.device().is_meta() ? kCPU : weight.device();  // a QLoRA base holds no f32 weight
  auto a = std::make_unique<Linear>(in_, rank, LinearOptions{.dtype = dt, .device = dev}, gen);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
  {
    NoGradGuard ng;
    copy_(a->weight, rand({rank, in_}, -bound, bound, dt, gen).to(dev));
  }
  auto b = std::make_unique<Linear>(rank, out_, LinearOptions{.dtype = dt, .device = dev}, gen);
  {
    NoGradGuard ng;
    copy_(b->weight, zeros({out_, rank}, dt, dev));
  }
  lora_A_ = &register_module("lora_A", std::move(a));
  lora_B_ = &register_module("lora_B", std::move(b));
  lora_scale_ = alpha / static_cast<double>(rank);
  lora_dropout_ = dropout;
  lora_gen_ = gen;
  weight.set_requires_grad(false);
  if (bias.defined()) bias.set_requires_grad(false);
}

Linear& Linear::lora_A() const {
  LOWBIT_CHECK(lora_A_, "Linear: no LoRA adapters");
  return *lora_A_;
}

Linear& Linear::lora_B() const {
  LOWBIT_CHECK(lora_B_, "Linear: no LoRA adapters");
  return *lora_B_;
}

void Linear::merge_lora() {
  LOWBIT_CHECK(lora_A_, "Linear::merge_lora: no LoRA adapters");
  {
    NoGradGuard ng;
    const DType acc = weight.dtype() == DType::f64 ? DType::f64 : DType::f32;
    const Tensor delta = mul(matmul(lora_B_->weight.to(acc), lora_A_->weight.to(acc)), lora_scale_);
    if (quant && quant->converted()) {
      weight = replace_parameter("weight", add(quant::dequantize(quant->packed_weight()), delta.to(DType::f32)), true);
      quant.reset();
    } else {
      copy_(weight, add(weight.to(acc), delta).to(weight.dtype()));
      weight.set_requires_grad(true);
    }
  }
  remove_module("lora_A");
  remove_module("lora_B");
  lora_A_ = lora_B_ = nullptr;
  if (bias.defined()) bias.set_requires_grad(true);
}

void Linear::release_weight() {
  LOWBIT_CHECK(quant && quant->converted(), "Linear::release_weight: the layer holds no packed weight");
  weight = replace_parameter("weight", empty(weight.shape(), weight.dtype(), kMeta), false);
}

}  // namespace lowbit::nn
