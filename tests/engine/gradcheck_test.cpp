// Float64 finite-difference gradchecks for every differentiable op, each with broadcast
// and/or non-contiguous inputs where the op allows them.
#include <gtest/gtest.h>

#include "lowbit/engine/lowbit.h"

namespace lowbit {
namespace {

Tensor leaf(const Shape& shape, double lo = -1.0, double hi = 1.0, uint64_t seed = 1) {
  Generator g(seed);
  return rand(shape, lo, hi, DType::f64, &g).set_requires_grad(true);
}

// A non-contiguous leaf: the transpose of a (cols, rows) tensor.
Tensor leaf_t(int64_t rows, int64_t cols, double lo = -1.0, double hi = 1.0, uint64_t seed = 2) {
  Generator g(seed);
  Tensor t = rand({cols, rows}, lo, hi, DType::f64, &g).t();
  EXPECT_FALSE(t.is_contiguous());
  return t.set_requires_grad(true);
}

void expect_gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& in) {
  GradcheckResult r = gradcheck(f, in);
  EXPECT_TRUE(r.ok) << r.message;
}

using V = const std::vector<Tensor>&;

TEST(Gradcheck, CatchesAWrongBackward) {
  // y = x * x with a planted backward of x (should be 2x).
  auto bad_square = [](V in) {
    const Tensor& x = in[0];
    Tensor y;
    {
      NoGradGuard g;
      y = mul(x, x);
    }
    return record("bad_square", y.detach(), {x}, {x}, [](const BackwardArgs& a) {
      return std::vector<Tensor>{mul(a.grad, a.saved(0))};
    });
  };
  GradcheckResult r = gradcheck(bad_square, {leaf({5}, 0.5, 1.0)});
  EXPECT_FALSE(r.ok);
  EXPECT_GT(r.max_abs_error, 0.1);
}

TEST(Gradcheck, BinaryOpsWithBroadcastAndNonContiguous) {
  Tensor a = leaf({3, 1, 4}), b = leaf_t(2, 4), pos = leaf({2, 4}, 0.5, 2.0, 3);
  expect_gradcheck([](V x) { return add(x[0], x[1]); }, {a, b});
  expect_gradcheck([](V x) { return sub(x[0], x[1]); }, {a, b});
  expect_gradcheck([](V x) { return mul(x[0], x[1]); }, {a, b});
  expect_gradcheck([](V x) { return div(x[0], x[1]); }, {a, pos});
  expect_gradcheck([](V x) { return pow(x[0], x[1]); }, {pos, leaf({3, 1, 4}, -2, 2, 4)});
}

TEST(Gradcheck, ScalarVariantsAndNeg) {
  Tensor x = leaf_t(3, 4, 0.5, 2.0);
  expect_gradcheck([](V v) { return neg(v[0]); }, {x});
  expect_gradcheck([](V v) { return add(v[0], 2.5); }, {x});
  expect_gradcheck([](V v) { return sub(v[0], 2.5); }, {x});
  expect_gradcheck([](V v) { return rsub(2.5, v[0]); }, {x});
  expect_gradcheck([](V v) { return mul(v[0], -3.0); }, {x});
  expect_gradcheck([](V v) { return div(v[0], 4.0); }, {x});
  expect_gradcheck([](V v) { return rdiv(3.0, v[0]); }, {x});
}

TEST(Gradcheck, PointwiseMath) {
  Tensor x = leaf_t(3, 5, -2.0, 2.0), pos = leaf_t(3, 5, 0.3, 3.0, 7);
  expect_gradcheck([](V v) { return exp(v[0]); }, {x});
  expect_gradcheck([](V v) { return log(v[0]); }, {pos});
  expect_gradcheck([](V v) { return sqrt(v[0]); }, {pos});
  expect_gradcheck([](V v) { return rsqrt(v[0]); }, {pos});
  expect_gradcheck([](V v) { return pow(v[0], 2.5); }, {pos});
  expect_gradcheck([](V v) { return pow(v[0], 3.0); }, {x});
  expect_gradcheck([](V v) { return tanh(v[0]); }, {x});
  expect_gradcheck([](V v) { return sigmoid(v[0]); }, {x});
  expect_gradcheck([](V v) { return silu(v[0]); }, {x});
  expect_gradcheck([](V v) { return gelu(v[0]); }, {x});
  expect_gradcheck([](V v) { return gelu(v[0], GeluApprox::Tanh); }, {x});
  // relu has a kink at 0: keep the inputs away from it.
  Tensor away = from_vector(std::vector<double>{-1.5, -0.2, 0.3, 2.0, -0.7, 0.9}, {2, 3}, DType::f64).t();
  away.set_requires_grad(true);
  expect_gradcheck([](V v) { return relu(v[0]); }, {away});
}

TEST(Gradcheck, Reductions) {
  Tensor x = leaf({2, 3, 4}), xt = leaf_t(4, 5);
  for (bool keep : {false, true}) {
    expect_gradcheck([keep](V v) { return sum(v[0], {1}, keep); }, {x});
    expect_gradcheck([keep](V v) { return sum(v[0], {0, 2}, keep); }, {x});
    expect_gradcheck([keep](V v) { return mean(v[0], {-1}, keep); }, {xt});
    expect_gradcheck([keep](V v) { return amax(v[0], {1}, keep); }, {x});
    expect_gradcheck([keep](V v) { return max(v[0], 0, keep).values; }, {xt});
  }
  expect_gradcheck([](V v) { return sum(v[0]); }, {xt});
  expect_gradcheck([](V v) { return amax(v[0]); }, {x});
}

TEST(Gradcheck, AmaxSplitsGradientAmongTies) {
  Tensor x = from_vector(std::vector<double>{1, 3, 3, 2}, {4}, DType::f64).set_requires_grad(true);
  amax(x).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 0.5, 0.5, 0}));
  Tensor y = from_vector(std::vector<double>{1, 3, 3, 2}, {4}, DType::f64).set_requires_grad(true);
  MaxResult m = max(y, 0);
  EXPECT_EQ(m.indices.item(), 1.0);
  m.values.backward();
  EXPECT_EQ(y.grad().to_vector<double>(), (std::vector<double>{0, 1, 0, 0}));
}

TEST(Gradcheck, Matmul) {
  expect_gradcheck([](V v) { return matmul(v[0], v[1]); }, {leaf({3, 4}), leaf({4, 5}, -1, 1, 5)});
  // Transposed operands (no copy) and a batched, broadcast product.
  expect_gradcheck([](V v) { return matmul(v[0], v[1]); }, {leaf_t(3, 4), leaf_t(4, 2, -1, 1, 6)});
  expect_gradcheck([](V v) { return matmul(v[0], v[1]); }, {leaf({2, 1, 3, 4}), leaf({3, 4, 2}, -1, 1, 7)});
  expect_gradcheck([](V v) { return matmul(v[0], v[1]); }, {leaf({2, 3, 4}), leaf_t(4, 5, -1, 1, 8)});
  expect_gradcheck([](V v) { return matmul(v[0], v[1]); }, {leaf({4}), leaf({4, 3}, -1, 1, 9)});
  expect_gradcheck([](V v) { return matmul(v[0], v[1]); }, {leaf({2, 4}), leaf({4}, -1, 1, 10)});
}

TEST(Gradcheck, SoftmaxFamily) {
  Tensor x = leaf({3, 5}, -3, 3), xt = leaf_t(4, 6, -3, 3);
  expect_gradcheck([](V v) { return softmax(v[0], -1); }, {x});
  expect_gradcheck([](V v) { return softmax(v[0], 0); }, {xt});
  expect_gradcheck([](V v) { return log_softmax(v[0], -1); }, {xt});
  expect_gradcheck([](V v) { return log_softmax(v[0], 0); }, {x});
}

TEST(Gradcheck, EmbeddingAndCrossEntropy) {
  Tensor ids = from_vector(std::vector<int64_t>{1, 3, 1, 0, 4, 1}, {2, 3});
  expect_gradcheck([ids](V v) { return embedding(v[0], ids); }, {leaf({5, 3})});
  Tensor targets = from_vector(std::vector<int64_t>{2, -100, 0, 4}, {2, 2});
  for (double smooth : {0.0, 0.1}) {
    CrossEntropyOptions o;
    o.label_smoothing = smooth;
    expect_gradcheck([targets, o](V v) { return cross_entropy(v[0], targets, o); }, {leaf({2, 2, 5}, -3, 3)});
    // Non-contiguous logits.
    expect_gradcheck([targets, o](V v) { return cross_entropy(v[0].reshape({2, 2, 5}), targets, o); },
                     {leaf_t(4, 5, -3, 3)});
  }
}

TEST(Gradcheck, RmsNormAndRope) {
  expect_gradcheck([](V v) { return rms_norm(v[0], v[1], 1e-5); }, {leaf({2, 3, 6}), leaf({6}, 0.5, 1.5, 3)});
  expect_gradcheck([](V v) { return rms_norm(v[0], Tensor(), 1e-5); }, {leaf_t(3, 6)});
  auto [c, s] = rope_cos_sin(3, 4, 10000.0, 5, DType::f64);
  expect_gradcheck([c = c, s = s](V v) { return apply_rope(v[0], c, s); }, {leaf({2, 2, 3, 4})});
  Generator g(11);
  Tensor x = rand({2, 3, 2, 4}, -1, 1, DType::f64, &g).permute({0, 2, 1, 3});  // (B, H, T, D) from (B, T, H, D)
  x.set_requires_grad(true);
  expect_gradcheck([c = c, s = s](V v) { return apply_rope(v[0], c, s); }, {x});
}

TEST(Gradcheck, ShapeOps) {
  Tensor a = leaf({2, 3}), b = leaf_t(2, 4), c = leaf({2, 1}, -1, 1, 5);
  expect_gradcheck([](V v) { return cat({v[0], v[1], v[2]}, 1); }, {a, b, c});
  expect_gradcheck([](V v) { return stack({v[0], v[1]}, 1); }, {a, leaf_t(2, 3, -1, 1, 9)});
  expect_gradcheck([](V v) { return mul(split(v[0], 2, 1)[1], 3.0); }, {b});
  expect_gradcheck([](V v) { return split(v[0], std::vector<int64_t>{1, 3}, 1)[1]; }, {b});
  expect_gradcheck([](V v) { return v[0].permute({1, 0}).reshape({-1}); }, {a});
  expect_gradcheck([](V v) { return v[0].slice(1, 0, 4, 2).unsqueeze(0); }, {b});
  expect_gradcheck([](V v) { return v[0].expand({3, 2, 4}); }, {c});
  expect_gradcheck([](V v) { return v[0].select(1, 2); }, {a});
}

TEST(Gradcheck, WhereAndMaskedFill) {
  Tensor cond = from_vector(std::vector<int64_t>{1, 0, 0, 1}, {4}, DType::u8);
  expect_gradcheck([cond](V v) { return where(cond, v[0], v[1]); }, {leaf({3, 4}), leaf({4}, -1, 1, 4)});
  Tensor mask = from_vector(std::vector<int64_t>{0, 1, 1}, {3, 1}, DType::u8);
  expect_gradcheck([mask](V v) { return masked_fill(v[0], mask, -5.0); }, {leaf_t(3, 4)});
}

}  // namespace
}  // namespace lowbit
