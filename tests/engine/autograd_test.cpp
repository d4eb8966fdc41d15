#include <gtest/gtest.h>

#include "lowbit/engine/lowbit.h"

namespace lowbit {
namespace {

Tensor vec(std::vector<double> v) { return from_vector(v, {static_cast<int64_t>(v.size())}, DType::f64); }

TEST(Autograd, ChainRuleAndLeafAccumulation) {
  Tensor x = vec({1, 2, 3}).set_requires_grad(true);
  Tensor y = sum(mul(mul(x, x), 3.0));  // dy/dx = 6x
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{6, 12, 18}));
  // A second graph accumulates into the same .grad.
  sum(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{7, 13, 19}));
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, DiamondGraphSumsBothPaths) {
  Tensor x = vec({2}).set_requires_grad(true);
  Tensor a = mul(x, 3.0), b = exp(x);
  sum(add(a, mul(a, b))).backward();  // d/dx (3x + 3x e^x) = 3 + 3e^x + 3x e^x
  const double e2 = std::exp(2.0);
  EXPECT_NEAR(x.grad().item(), 3 + 3 * e2 + 6 * e2, 1e-9);
}

TEST(Autograd, RetainGraphAllowsASecondBackward) {
  Tensor x = vec({1, 2}).set_requires_grad(true);
  Tensor y = sum(mul(x, x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{4, 8}));
  try {
    y.backward();
    FAIL() << "third backward must throw: saved tensors were freed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
  }
}

TEST(Autograd, SavedTensorsAreFreedAfterBackward) {
  Tensor x = rand({1 << 16}, -1, 1, DType::f32).set_requires_grad(true);
  Tensor y;
  int64_t live_with_graph = 0;
  {
    Tensor h = exp(x);        // saves its output (256 KiB)
    y = sum(mul(h, 2.0));
    h = Tensor();             // only the graph keeps exp's output alive now
    live_with_graph = cpu_memory_stats().live_bytes;
    y.backward();
  }
  x.zero_grad();
  EXPECT_LE(cpu_memory_stats().live_bytes, live_with_graph - (1 << 18));
}

TEST(Autograd, DetachAndNoGrad) {
  Tensor x = vec({1, 2}).set_requires_grad(true);
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.storage(), x.storage());
  {
    NoGradGuard g;
    Tensor y = mul(x, 2.0);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  EXPECT_TRUE(mul(x, 2.0).requires_grad());
  Tensor z = add(mul(x.detach(), 5.0), x);
  sum(z).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{1, 1}));
}

TEST(Autograd, HooksRunOnLeafAccumulation) {
  Tensor w = vec({1, 1, 1}).set_requires_grad(true);
  int calls = 0;
  double seen = 0;
  w.register_grad_hook([&](Tensor& g) {
    ++calls;
    seen = sum(g).item();
  });
  // w used twice in one graph: the accumulator runs once, after both contributions.
  sum(add(mul(w, 2.0), w)).backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, 9.0);
  sum(w).backward();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(seen, 12.0);
}

TEST(Autograd, InPlaceChangeOfASavedTensorIsDetected) {
  Tensor x = vec({1, 2}).set_requires_grad(true);
  Tensor h = mul(x, 1.0);
  Tensor y = sum(mul(h, h));
  {
    NoGradGuard g;
    add_(h, vec({1, 1}));
  }
  EXPECT_THROW(y.backward(), Error);
  EXPECT_THROW(add_(x, vec({1, 1})), Error);  // in-place on a leaf that requires grad
}

TEST(Autograd, DeepChainBuildsRunsAndFreesIteratively) {
  // 100,000 nodes: recursion anywhere (backward or destruction) would overflow the stack.
  Tensor x = vec({0.5}).set_requires_grad(true);
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = add(y, 1e-6);
  y = mul(y, 2.0);
  y.backward();
  EXPECT_EQ(x.grad().item(), 2.0);
  y = Tensor();  // frees the whole chain
  Tensor z = x;
  for (int i = 0; i < 100000; ++i) z = mul(z, 1.0);
  z = Tensor();  // freed without ever running backward
  SUCCEED();
}

TEST(Autograd, NonScalarBackwardNeedsAGrad) {
  Tensor x = vec({1, 2}).set_requires_grad(true);
  Tensor y = mul(x, 2.0);
  EXPECT_THROW(y.backward(), Error);
  y.backward(vec({1, 10}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{2, 20}));
  EXPECT_THROW(mul(vec({1}), 2.0).backward(), Error);  // does not require grad
}

TEST(Autograd, BroadcastGradientsAreSummedToInputShape) {
  Tensor b = from_vector(std::vector<double>{1, 2, 3}, {3, 1}, DType::f64).set_requires_grad(true);
  Tensor x = ones({2, 3, 4}, DType::f64);
  sum(mul(x, b)).backward();
  EXPECT_EQ(b.grad().shape(), (Shape{3, 1}));
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{8, 8, 8}));
}

TEST(Autograd, MixedPrecisionGradientsComeBackInTheLeafDtype) {
  Tensor w = from_vector(std::vector<float>{1, 2}, {2}, DType::f32).set_requires_grad(true);
  Tensor y = sum(w.to(DType::bf16).to(DType::f32));
  y.backward();
  EXPECT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_EQ(w.grad().to_vector<float>(), (std::vector<float>{1, 1}));
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

// The README's usage example, verbatim in spirit: it must keep compiling and working.
TEST(Readme, UsageExample) {
  Tensor w = randn({64, 10}, 0.0, 0.02).set_requires_grad(true);
  Tensor x = randn({32, 64});
  Tensor loss = cross_entropy(matmul(x, w), randint({32}, 0, 10));
  loss.backward();
  ASSERT_TRUE(w.grad().defined());
  EXPECT_EQ(w.grad().shape(), w.shape());
  EXPECT_GT(sum(mul(w.grad(), w.grad())).item(), 0.0);
}

}  // namespace
}  // namespace lowbit
