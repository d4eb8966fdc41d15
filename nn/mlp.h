// SwiGLU feed-forward (Llama, Qwen): down_proj(silu(gate_proj(x)) * up_proj(x)), HF names.
#pragma once
#include "lowbit/nn/linear.h"

namespace lowbit::nn {

class SwiGLU : public Module {
 public:
  SwiGLU(int64_t hidden, int64_t intermediate, const LinearOptions& opts = {}, Generator* gen = nullptr);
  // x: (..., hidden) -> (..., hidden)
  Tensor forward(const Tensor& x) const;

  Linear* gate_proj;
  Linear* up_proj;
  Linear* down_proj;
};

}  // namespace lowbit::nn
