#include "lowbit/nn/norm_embedding.h"

#include "lowbit/engine/ops/embedding.h"
#include "lowbit/engine/ops/rms_norm.h"
#include "lowbit/quant/linear_quant.h"

namespace lowbit::nn {

RMSNorm::RMSNorm(int64_t dim, double eps_, DType dtype, Device device) : eps(eps_) {
  LOWBIT_CHECK(dim > 0 && eps_ >= 0, "RMSNorm: need dim > 0 and eps >= 0, got dim=", dim, " eps=", eps_);
  weight = register_parameter("weight", ones({dim}, dtype, device));
}

// The weight stays in its own dtype: rms_norm reads it in the compute type and returns its
// gradient unrounded (no bf16 copy of the weight or its gradient).
Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight, eps); }

Embedding::Embedding(int64_t num_embeddings, int64_t dim, double init_std, DType dtype, Device device,
                     Generator* gen) {
  LOWBIT_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ", num_embeddings, " x ", dim);
  Tensor w = device.is_meta() ? empty({num_embeddings, dim}, dtype, kMeta)
                              : randn({num_embeddings, dim}, 0.0, init_std, dtype, gen).to(device);
  weight = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& ids) const { return quant ? quant->embed(ids, weight) : embedding(weight, ids); }

}  // namespace lowbit::nn
