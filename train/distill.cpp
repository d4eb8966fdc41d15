#include "lowbit/train/distill.h"

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
  const Tensor kl = mean(sum(mul(p_t, sub(log_p_t, log_p_s)), {-1}));
  Tensor loss = mul(kl, alpha * temperature * temperature);
  if (alpha < 1) loss = add(loss, mul(cross_entropy(student, targets), 1 - alpha));
  return loss;
}

}  // namespace lowbit::train
