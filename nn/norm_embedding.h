// RMSNorm (weight initialised to ones, HF `weight`) and Embedding (HF `weight`, (V, C),
// initialised N(0, init_std)).
#pragma once
#include <memory>

#include "lowbit/engine/random.h"
#include "lowbit/nn/module.h"

namespace lowbit::quant {
class LinearQuant;
}

namespace lowbit::nn {

class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6, DType dtype = DType::f32, Device device = kCPU);
  // x: (..., dim) -> (..., dim)
  Tensor forward(const Tensor& x) const;

  Tensor weight;
  double eps;
};

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, double init_std = 0.02, DType dtype = DType::f32,
            Device device = kCPU, Generator* gen = nullptr);
  // ids: (...) integer -> (..., dim)
  Tensor forward(const Tensor& ids) const;

  Tensor weight;
  // Weight-only quantization attached by quant::prepare(.embeddings = true); null when plain.
  std::shared_ptr<quant::LinearQuant> quant;
};

}  // namespace lowbit::nn
