// Global-norm gradient clipping (torch.nn.utils.clip_grad_norm_): if the L2 norm of all
// gradients together exceeds max_norm, every gradient is scaled by max_norm / (norm + 1e-6).
// The norm is accumulated in f64 in parameter order (deterministic).
#pragma once
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit::optim {

// Returns the norm before clipping. Parameters without a grad are skipped.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace lowbit::optim
