// The fused kernels of the training step: rms_norm, apply_rope, silu_mul. Each is checked by a
// float64 gradcheck (broadcast / non-contiguous inputs where they apply), against the composite
// of primitives it replaced (forward and gradients, f32 and bf16), and for bitwise equality at
// 1 and 2 OpenMP threads on shapes large enough to run in parallel.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>

#include "lowbit/engine/lowbit.h"

namespace lowbit {
namespace {

using V = const std::vector<Tensor>&;

// ---- composite references (the pre-fusion implementations) ----

Tensor rms_norm_reference(const Tensor& x, const Tensor& weight, double eps) {
  const DType stat = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  const Tensor xs = x.to(stat);
  const Tensor rstd = rsqrt(add(mean(mul(xs, xs), {-1}, true), eps));
  Tensor y = mul(xs, rstd);
  return weight.defined() ? mul(y, weight.to(stat)).to(x.dtype()) : y.to(x.dtype());
}

Tensor rope_reference(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const Tensor x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  return add(mul(x, cos.to(x.dtype())), mul(cat({neg(x2), x1}, -1), sin.to(x.dtype())));
}

Tensor silu_mul_reference(const Tensor& a, const Tensor& b) { return mul(silu(a), b); }

// ---- helpers ----

Tensor leaf(const Shape& shape, double lo = -1.0, double hi = 1.0, uint64_t seed = 1, DType dt = DType::f64) {
  Generator g(seed);
  return rand(shape, lo, hi, dt, &g).set_requires_grad(true);
}

// A leaf with the given logical shape whose last two dims are stored transposed.
Tensor leaf_t(const Shape& shape, uint64_t seed, DType dt = DType::f64) {
  Shape s = shape;
  std::swap(s[s.size() - 1], s[s.size() - 2]);
  Generator g(seed);
  Tensor t = rand(s, -1, 1, dt, &g).transpose(-2, -1);
  EXPECT_FALSE(t.is_contiguous());
  return t.set_requires_grad(true);
}

void expect_gradcheck(const std::function<Tensor(V)>& f, const std::vector<Tensor>& in) {
  const GradcheckResult r = gradcheck(f, in);
  EXPECT_TRUE(r.ok) << r.message;
}

class ThreadsGuard {
 public:
  explicit ThreadsGuard(int n) : prev_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadsGuard() { omp_set_num_threads(prev_); }

 private:
  int prev_;
};

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : a.to_vector<double>()) m = std::max(m, std::fabs(v));
  return m;
}

// Output and input gradients of f(inputs) under the projection <v, f>, v fixed.
std::vector<Tensor> forward_and_grads(const std::function<Tensor(V)>& f, const std::vector<Tensor>& inputs,
                                      uint64_t seed = 77) {
  std::vector<Tensor> in;
  for (const Tensor& t : inputs) {
    Tensor c = t.detach();
    c.set_requires_grad(true);
    in.push_back(c);
  }
  const Tensor y = f(in);
  Generator g(seed);
  const Tensor v = rand(y.shape(), -1, 1, y.dtype(), &g);
  y.backward(v);
  std::vector<Tensor> out{y.detach()};
  for (const Tensor& t : in) out.push_back(t.grad());
  return out;
}

std::vector<std::vector<uint8_t>> bytes_of(const std::vector<Tensor>& ts) {
  std::vector<std::vector<uint8_t>> out;
  for (const Tensor& t : ts) {
    const Tensor c = t.contiguous();
    const auto* p = static_cast<const uint8_t*>(c.raw_data());
    out.emplace_back(p, p + c.numel() * static_cast<int64_t>(dtype_nbytes(c.dtype(), 1)));
  }
  return out;
}

// Bitwise equality of outputs and gradients at 1 and 2 threads.
void expect_thread_independent(const std::function<Tensor(V)>& f, const std::vector<Tensor>& inputs) {
  std::vector<std::vector<uint8_t>> one, two;
  {
    ThreadsGuard tg(1);
    one = bytes_of(forward_and_grads(f, inputs));
  }
  {
    ThreadsGuard tg(2);
    two = bytes_of(forward_and_grads(f, inputs));
  }
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_TRUE(one[i] == two[i]) << "tensor " << i << " differs";
}

// Compares the fused op with its reference in dtype dt: output and every input gradient.
void expect_matches_reference(const std::function<Tensor(V)>& fused, const std::function<Tensor(V)>& ref,
                              const std::vector<Tensor>& inputs, double rtol) {
  const std::vector<Tensor> a = forward_and_grads(fused, inputs), b = forward_and_grads(ref, inputs);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (!b[i].defined()) continue;
    ASSERT_TRUE(a[i].defined()) << "tensor " << i;
    EXPECT_EQ(a[i].shape(), b[i].shape()) << "tensor " << i;
    EXPECT_LE(max_abs_diff(a[i], b[i]), rtol * std::max(1.0, max_abs(b[i]))) << "tensor " << i;
  }
}

// ---- RMSNorm ----

TEST(FusedRmsNorm, Gradcheck) {
  const auto f = [](V v) { return rms_norm(v[0], v[1], 1e-5); };
  expect_gradcheck(f, {leaf({2, 3, 6}), leaf({6}, 0.5, 1.5, 3)});    // weight broadcast over rows
  expect_gradcheck(f, {leaf_t({2, 4, 5}, 4), leaf({5}, 0.5, 1.5, 5)});  // non-contiguous x
  expect_gradcheck([](V v) { return rms_norm(v[0], Tensor(), 1e-5); }, {leaf_t({3, 6}, 6)});
  expect_gradcheck(f, {leaf({7}, -2, 2, 7), leaf({7}, 0.5, 1.5, 8)});  // a single row
  // A row count that is not a multiple of the 64-row chunks of the dweight reduction.
  expect_gradcheck(f, {leaf({130, 3}, -1, 1, 9), leaf({3}, 0.5, 1.5, 10)});
}

TEST(FusedRmsNorm, MatchesCompositeF32AndBf16) {
  const auto fused = [](V v) { return rms_norm(v[0], v[1], 1e-6); };
  const auto ref = [](V v) { return rms_norm_reference(v[0], v[1], 1e-6); };
  expect_matches_reference(fused, ref, {leaf({3, 70, 96}, -2, 2, 1, DType::f32), leaf({96}, 0.5, 1.5, 2, DType::f32)},
                           2e-5);
  // bf16 activations with an f32 master weight: y and dx are bf16 (one rounding each), dweight
  // comes back in f32.
  const std::vector<Tensor> in{leaf({3, 70, 96}, -2, 2, 1, DType::bf16), leaf({96}, 0.5, 1.5, 2, DType::f32)};
  const std::vector<Tensor> a = forward_and_grads(fused, in);
  EXPECT_EQ(a[0].dtype(), DType::bf16);
  EXPECT_EQ(a[1].dtype(), DType::bf16);
  EXPECT_EQ(a[2].dtype(), DType::f32);
  // Reference in f32 from the same (bf16-exact) inputs.
  const std::vector<Tensor> b = forward_and_grads(ref, {in[0].to(DType::f32), in[1]});
  for (size_t i = 0; i < 3; ++i) EXPECT_LE(max_abs_diff(a[i], b[i]), 1e-2 * max_abs(b[i])) << "tensor " << i;
}

TEST(FusedRmsNorm, SavesOnlyXAndRowStatistics) {
  // 4096 rows of 256: x is 4 MiB, the per-row statistics 16 KiB. The forward must allocate
  // only y and the statistics (the composite also kept x^2 and the normalized x).
  const Tensor x = leaf({4096, 256}, -1, 1, 3, DType::f32), w = leaf({256}, 0.5, 1.5, 4, DType::f32);
  reset_cpu_peak_memory();
  const int64_t before = cpu_memory_stats().live_bytes;
  Tensor y = rms_norm(x, w, 1e-6);
  const int64_t added = cpu_memory_stats().live_bytes - before;
  EXPECT_LE(added, 4096 * 256 * 4 + 4096 * 4 + 4096);
  EXPECT_LE(cpu_memory_stats().peak_bytes - before, 4096 * 256 * 4 + 4096 * 4 + 65536);
}

TEST(FusedRmsNorm, BitwiseIndependentOfThreads) {
  // 333 rows x 200: parallel, 6 row chunks with a short last one.
  expect_thread_independent([](V v) { return rms_norm(v[0], v[1], 1e-6); },
                            {leaf({333, 200}, -3, 3, 1, DType::f32), leaf({200}, 0.5, 1.5, 2, DType::f32)});
  expect_thread_independent([](V v) { return rms_norm(v[0], v[1], 1e-6); },
                            {leaf({333, 200}, -3, 3, 1, DType::bf16), leaf({200}, 0.5, 1.5, 2, DType::f32)});
}

// ---- RoPE ----

TEST(FusedRope, Gradcheck) {
  auto [c, s] = rope_cos_sin(3, 4, 10000.0, 5, DType::f64);
  const auto f = [c = c, s = s](V v) { return apply_rope(v[0], c, s); };
  expect_gradcheck(f, {leaf({2, 2, 3, 4})});
  Generator g(11);
  Tensor x = rand({2, 3, 2, 4}, -1, 1, DType::f64, &g).permute({0, 2, 1, 3});  // (B, H, T, D) from (B, T, H, D)
  x.set_requires_grad(true);
  expect_gradcheck(f, {x});
  expect_gradcheck(f, {leaf_t({2, 3, 4}, 12)});  // inner stride 3
  // Arbitrary (T, D) tables that require grad: the halves differ, so a wrong sin/cos index shows.
  expect_gradcheck([](V v) { return apply_rope(v[0], v[1], v[2]); },
                   {leaf({2, 3, 6}, -1, 1, 13), leaf({3, 6}, -1, 1, 14), leaf({3, 6}, -1, 1, 15)});
}

// Per-sequence tables (B, 1, T, D): packed examples whose positions restart at 0.
TEST(FusedRope, GradcheckPerSequenceTables) {
  Generator g(16);
  Tensor x = rand({2, 3, 2, 4}, -1, 1, DType::f64, &g).permute({0, 2, 1, 3});  // (B, H, T, D) from (B, T, H, D)
  x.set_requires_grad(true);
  expect_gradcheck([](V v) { return apply_rope(v[0], v[1], v[2]); },
                   {x, leaf({2, 1, 3, 4}, -1, 1, 17), leaf({2, 1, 3, 4}, -1, 1, 18)});
  // rope_cos_sin_at rows equal rope_cos_sin's rows of the same positions, bit for bit.
  const std::vector<double> inv = rope_inv_freq(6, 500.0);
  const auto [ca, sa] = rope_cos_sin_at(inv, from_vector(std::vector<int64_t>{0, 1, 2, 0, 3, 1}, {2, 3}), DType::f64);
  const auto [c4, s4] = rope_cos_sin(inv, 4, 0, DType::f64);
  const auto cav = ca.to_vector<double>(), c4v = c4.to_vector<double>(), sav = sa.to_vector<double>(),
             s4v = s4.to_vector<double>();
  const int64_t rows[6] = {0, 1, 2, 0, 3, 1};
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t d = 0; d < 6; ++d) {
      EXPECT_EQ(cav[static_cast<size_t>(r * 6 + d)], c4v[static_cast<size_t>(rows[r] * 6 + d)]);
      EXPECT_EQ(sav[static_cast<size_t>(r * 6 + d)], s4v[static_cast<size_t>(rows[r] * 6 + d)]);
    }
  // Batch 1's table applies to batch 1 only: rotating with the swapped tables differs.
  Tensor y = leaf({2, 1, 3, 6}, -1, 1, 19);
  const auto ab = apply_rope(y, ca, sa).to_vector<double>();
  const auto [cb, sb] = rope_cos_sin_at(inv, from_vector(std::vector<int64_t>{0, 3, 1, 0, 1, 2}, {2, 3}), DType::f64);
  EXPECT_NE(ab, apply_rope(y, cb, sb).to_vector<double>());
}

TEST(FusedRope, MatchesCompositeF32AndBf16) {
  auto [c, s] = rope_cos_sin(40, 64, 10000.0, 3, DType::f32);
  const auto fused = [c = c, s = s](V v) { return apply_rope(v[0], c, s); };
  const auto ref = [c = c, s = s](V v) { return rope_reference(v[0], c, s); };
  Generator g(5);
  const Tensor xt = rand({2, 40, 3, 64}, -2, 2, DType::f32, &g).transpose(1, 2);
  expect_matches_reference(fused, ref, {xt}, 1e-6);
  auto [cb, sb] = rope_cos_sin(40, 64, 10000.0, 3, DType::bf16);
  const Tensor xb = xt.to(DType::bf16);
  const std::vector<Tensor> a = forward_and_grads([cb = cb, sb = sb](V v) { return apply_rope(v[0], cb, sb); }, {xb});
  const std::vector<Tensor> b =
      forward_and_grads([cb = cb, sb = sb](V v) { return rope_reference(v[0], cb.to(DType::f32), sb.to(DType::f32)); },
                        {xb.to(DType::f32)});
  EXPECT_EQ(a[0].dtype(), DType::bf16);
  for (size_t i = 0; i < 2; ++i) EXPECT_LE(max_abs_diff(a[i], b[i]), 1e-2 * max_abs(b[i])) << "tensor " << i;
}

TEST(FusedRope, KeepsTheLayoutOfATransposedInput) {
  // q = proj(x).view(B, T, H, D).transpose(1, 2): the output and the gradient keep the
  // (B, T, H, D) memory order, so transposing back and flattening the heads is a view.
  auto [c, s] = rope_cos_sin(5, 8, 10000.0, 0, DType::f32);
  Tensor base = leaf({2, 5, 3, 8}, -1, 1, 3, DType::f32);
  Tensor q = base.transpose(1, 2);
  Tensor y = apply_rope(q, c, s);
  EXPECT_EQ(y.strides(), q.strides());
  EXPECT_TRUE(y.transpose(1, 2).is_contiguous());
  y.backward(ones_like(y));
  EXPECT_TRUE(base.grad().is_contiguous());
}

TEST(FusedRope, BitwiseIndependentOfThreads) {
  auto [c, s] = rope_cos_sin(64, 64, 10000.0, 0, DType::f32);
  Generator g(6);
  const Tensor x = rand({2, 64, 4, 64}, -1, 1, DType::f32, &g).transpose(1, 2);
  expect_thread_independent([c = c, s = s](V v) { return apply_rope(v[0], c, s); }, {x});
}

// ---- silu_mul ----

TEST(FusedSiluMul, Gradcheck) {
  const auto f = [](V v) { return silu_mul(v[0], v[1]); };
  expect_gradcheck(f, {leaf({3, 5}, -3, 3, 1), leaf({3, 5}, -2, 2, 2)});
  expect_gradcheck(f, {leaf({3, 1, 4}, -3, 3, 3), leaf_t({2, 4}, 4)});  // broadcast + non-contiguous
  expect_gradcheck(f, {leaf_t({4, 3}, 5), leaf({3}, -2, 2, 6)});
}

TEST(FusedSiluMul, MatchesCompositeF32AndBf16) {
  const auto fused = [](V v) { return silu_mul(v[0], v[1]); };
  const auto ref = [](V v) { return silu_mul_reference(v[0], v[1]); };
  expect_matches_reference(fused, ref, {leaf({64, 300}, -6, 6, 1, DType::f32), leaf({64, 300}, -2, 2, 2, DType::f32)},
                           1e-6);
  expect_matches_reference(fused, ref, {leaf({64, 300}, -6, 6, 1, DType::bf16), leaf({64, 300}, -2, 2, 2, DType::bf16)},
                           2e-2);
  expect_matches_reference(fused, ref, {leaf({64, 300}, -6, 6, 1, DType::f32), leaf({300}, -2, 2, 2, DType::f32)},
                           1e-5);
}

TEST(FusedSiluMul, BitwiseIndependentOfThreads) {
  expect_thread_independent([](V v) { return silu_mul(v[0], v[1]); },
                            {leaf({200, 300}, -6, 6, 1, DType::f32), leaf({200, 300}, -2, 2, 2, DType::f32)});
  expect_thread_independent([](V v) { return silu_mul(v[0], v[1]); },
                            {leaf({200, 300}, -6, 6, 1, DType::bf16), leaf({200, 300}, -2, 2, 2, DType::bf16)});
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

// ---- linear (the cast of mixed precision folded into the GEMM op) ----

Tensor linear_reference(const Tensor& x, const Tensor& w, const Tensor& b) {
  const Tensor y = matmul(x, w.to(x.dtype()).t());
  return b.defined() ? add(y, b.to(x.dtype())) : y;
}

TEST(FusedLinear, Gradcheck) {
  const auto f = [](V v) { return linear(v[0], v[1], v[2]); };
  expect_gradcheck(f, {leaf({2, 3, 4}, -1, 1, 1), leaf({5, 4}, -1, 1, 2), leaf({5}, -1, 1, 3)});
  expect_gradcheck(f, {leaf_t({3, 4}, 4), leaf_t({5, 4}, 5), leaf({5}, -1, 1, 6)});  // non-contiguous x, weight
  expect_gradcheck([](V v) { return linear(v[0], v[1]); }, {leaf({4}, -1, 1, 7), leaf({3, 4}, -1, 1, 8)});  // 1-d x
}

TEST(FusedLinear, MixedPrecisionGradientsComeBackInF32) {
  const auto fused = [](V v) { return linear(v[0], v[1], v[2]); };
  const auto ref = [](V v) { return linear_reference(v[0], v[1], v[2]); };
  expect_matches_reference(fused, ref,
                           {leaf({2, 33, 64}, -1, 1, 1, DType::f32), leaf({48, 64}, -1, 1, 2, DType::f32),
                            leaf({48}, -1, 1, 3, DType::f32)},
                           1e-5);
  // bf16 x with f32 master weight and bias: y and dx are bf16; dweight and dbias f32, equal to
  // the f32 products of the bf16-rounded operands (no bf16 rounding of the gradient itself).
  const std::vector<Tensor> in{leaf({2, 33, 64}, -1, 1, 1, DType::bf16), leaf({48, 64}, -1, 1, 2, DType::f32),
                               leaf({48}, -1, 1, 3, DType::f32)};
  const std::vector<Tensor> a = forward_and_grads(fused, in);
  EXPECT_EQ(a[0].dtype(), DType::bf16);
  EXPECT_EQ(a[1].dtype(), DType::bf16);
  EXPECT_EQ(a[2].dtype(), DType::f32);
  EXPECT_EQ(a[3].dtype(), DType::f32);
  // f32 reference on the bf16-rounded weight; the projection vector is drawn in bf16 too.
  const std::vector<Tensor> b =
      forward_and_grads([](V v) { return linear_reference(v[0], v[1], v[2]).to(DType::bf16); },
                        {in[0].to(DType::f32), in[1].to(DType::bf16).to(DType::f32), in[2]});
  EXPECT_LE(max_abs_diff(a[0], b[0]), 1e-2 * max_abs(b[0]));
  EXPECT_LE(max_abs_diff(a[2], b[2]), 1e-5 * max_abs(b[2]));  // dweight: f32 accumulation of exact products
  EXPECT_LE(max_abs_diff(a[3], b[3]), 1e-5 * max_abs(b[3]));
}

}  // namespace
}  // namespace lowbit
