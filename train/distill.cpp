#include "lowbit/train/distill.h"

#include <algorithm>
#include <vector>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/lowbit.h"

namespace lowbit::train {

Tensor distillation_loss(const Tensor& student, const Tensor& teacher, const Tensor& targets, double temperature,
                         double alpha) {
  LOWBIT_CHECK(student.shape() == teacher.shape(), "distillation_loss: student logits ", shape_str(student.shape()),
               " and teacher logits ", shape_str(teacher.shape()), " differ in shape");
  LOWBIT_CHECK(temperature > 0 && alpha >= 0 && alpha <= 1, "distillation_loss: need temperature > 0 and alpha in ",
               "[0, 1], got ", temperature, " and ", alpha);
  const double inv_t = 1.0 / temperature;
  const DType acc = student.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor p_t, log_p_t;
  {
    NoGradGuard ng;
    const Tensor t = mul(teacher.to(acc), inv_t);
    p_t = softmax(t);
    log_p_t = log_softmax(t);
  }
  const Tensor log_p_s = log_softmax(mul(student.to(acc), inv_t));
  const Tensor per_token = sum(mul(p_t, sub(log_p_t, log_p_s)), {-1});
  // Tokens without a target (-100: chat prompts, padding) are left out of the mean, as from the
  // cross-entropy.
  std::vector<double> weight;
  int64_t kept = 0;
  if (targets.defined() && targets.device().is_cpu()) {
    const std::vector<int64_t> t = targets.to(DType::i64).to_vector<int64_t>();
    for (int64_t v : t) {
      weight.push_back(v == -100 ? 0.0 : 1.0);
      kept += v != -100;
    }
  }
  const Tensor kl = kept == static_cast<int64_t>(weight.size())
                        ? mean(per_token)
                        : mul(sum(mul(per_token, from_vector(weight, per_token.shape(), acc))),
                              1.0 / static_cast<double>(std::max<int64_t>(kept, 1)));
  Tensor loss = mul(kl, alpha * temperature * temperature);
  if (alpha < 1) loss = add(loss, mul(cross_entropy(student, targets), 1 - alpha));
  return loss;
}

}  // namespace lowbit::train
