#include "lowbit/nn/mlp.h"

#include "lowbit/engine/ops/activation.h"

namespace lowbit::nn {

SwiGLU::SwiGLU(int64_t hidden, int64_t intermediate, const LinearOptions& opts, Generator* gen) {
  gate_proj = &register_module("gate_proj", std::make_unique<Linear>(hidden, intermediate, opts, gen));
  up_proj = &register_module("up_proj", std::make_unique<Linear>(hidden, intermediate, opts, gen));
  down_proj = &register_module("down_proj", std::make_unique<Linear>(intermediate, hidden, opts, gen));
}

Tensor SwiGLU::forward(const Tensor& x) const {
  return down_proj->forward(silu_mul(gate_proj->forward(x), up_proj->forward(x)));
}

}  // namespace lowbit::nn
