// Demo: fit a two-layer MLP with plain tensor ops, autograd and a hand-written SGD step,
// printing the loss as it falls.
//   x: (N, 2) -> tanh(x W1 + b1) W2 + b2 -> (N, 1), target tanh(3 x0) x1 + 0.5 x0^2
#include <cstdio>
#include <string>

#include "lowbit/engine/lowbit.h"

using namespace lowbit;

int main(int argc, char** argv) {
  try {
    const int steps = argc > 1 ? std::stoi(argv[1]) : 400;
    const double lr = 0.1;
    const int64_t N = 1024, H = 64;
    Generator gen(42);
    const Tensor x = rand({N, 2}, -1.0, 1.0, DType::f32, &gen);
    const Tensor x0 = x.narrow(1, 0, 1), x1 = x.narrow(1, 1, 1);
    const Tensor target = add(mul(tanh(mul(x0, 3.0)), x1), mul(mul(x0, x0), 0.5));

    Tensor w1 = trunc_normal({2, H}, 0.0, 0.7, -1.4, 1.4, DType::f32, &gen).set_requires_grad(true);
    Tensor b1 = zeros({H}).set_requires_grad(true);
    Tensor w2 = trunc_normal({H, 1}, 0.0, 0.125, -0.25, 0.25, DType::f32, &gen).set_requires_grad(true);
    Tensor b2 = zeros({1}).set_requires_grad(true);
    const std::vector<Tensor> params = {w1, b1, w2, b2};

    std::printf("mlp_demo: %lld samples, hidden %lld, %d SGD steps, lr %.2f\n", static_cast<long long>(N),
                static_cast<long long>(H), steps, lr);
    double first = 0, last = 0;
    for (int step = 0; step <= steps; ++step) {
      const Tensor h = tanh(add(matmul(x, w1), b1));
      const Tensor pred = add(matmul(h, w2), b2);
      const Tensor diff = sub(pred, target);
      const Tensor loss = mean(mul(diff, diff));
      loss.backward();
      {
        NoGradGuard no_grad;
        for (const Tensor& p : params) {
          add_(p, p.grad(), -lr);
          p.zero_grad();
        }
      }
      last = loss.item();
      if (step == 0) first = last;
      if (step % 50 == 0) std::printf("step %4d  mse %.6f\n", step, last);
    }
    std::printf("loss %.6f -> %.6f (%.1fx lower)\n", first, last, first / last);
    return last < first ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlp_demo: %s\n", e.what());
    return 1;
  }
}
