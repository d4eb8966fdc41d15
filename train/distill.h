// Quantization-aware distillation (QAD) loss, as ModelOpt's logits distillation defines it:
//   alpha * T^2 * mean over tokens of KL(softmax(t / T) || softmax(s / T))
//   + (1 - alpha) * cross_entropy(s, targets)
// The T^2 factor keeps the soft-target gradients' magnitude independent of T (Hinton et al.).
// The teacher's logits carry no gradient. Tokens whose target is -100 (chat prompts, padding) are
// left out of both means.
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit::train {

// student, teacher: (..., V) logits (any float dtype; computed in f32, in f64 for f64 students), targets: (...) integer
// -> scalar. alpha = 1 skips the cross-entropy term (targets may then be undefined).
Tensor distillation_loss(const Tensor& student, const Tensor& teacher, const Tensor& targets, double temperature,
                         double alpha);

}  // namespace lowbit::train
