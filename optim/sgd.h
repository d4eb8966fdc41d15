// SGD with momentum, as torch.optim.SGD: coupled L2 weight decay (g += wd p), momentum buffer
// b = mu b + (1 - dampening) g (b = g on the first step), Nesterov g + mu b, then p -= lr g.
#pragma once
#include "lowbit/optim/optimizer.h"

namespace lowbit::optim {

struct SGDOptions {
  double lr = 1e-2;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
};

class SGD final : public Optimizer {
 public:
  SGD(std::vector<ParamGroup> groups, const SGDOptions& opts = {});
  void step() override;

 protected:
  std::vector<std::pair<const char*, Buffers*>> buffers() override { return {{"momentum_buffer", &buf_}}; }

 private:
  SGDOptions opts_;
  std::vector<std::vector<Tensor>> buf_;
};

}  // namespace lowbit::optim
