#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "lowbit/engine/lowbit.h"
#include "lowbit/engine/ops/attention.h"

namespace lowbit {
namespace {

// ---- Independent reference: naive double-precision loops ----
struct Dims {
  int64_t B, Hq, Hkv, T, S, D;
  bool causal;
  double scale = 0;  // 0 -> 1/sqrt(D)
};

std::string dims_str(const Dims& d) {
  return "B=" + std::to_string(d.B) + " Hq=" + std::to_string(d.Hq) + " Hkv=" + std::to_string(d.Hkv) +
         " T=" + std::to_string(d.T) + " S=" + std::to_string(d.S) + " D=" + std::to_string(d.D) +
         (d.causal ? " causal" : " full");
}

struct Ref {
  std::vector<double> out, dq, dk, dv;
};

// q, dout: (B, Hq, T, D), k, v: (B, Hkv, S, D), row-major. Softmax is the stable max-shifted
// one; the gradients are the analytic ones, written out loop by loop.
Ref reference(const Dims& d, const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
              const std::vector<double>& dout) {
  const double scale = d.scale == 0 ? 1.0 / std::sqrt(static_cast<double>(d.D)) : d.scale;
  const int64_t G = d.Hq / d.Hkv, D = d.D;
  Ref r;
  r.out.assign(q.size(), 0.0);
  r.dq.assign(q.size(), 0.0);
  r.dk.assign(k.size(), 0.0);
  r.dv.assign(v.size(), 0.0);
  std::vector<double> p(static_cast<size_t>(d.S)), dp(static_cast<size_t>(d.S));
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.Hq; ++h) {
      const int64_t hk = h / G;
      for (int64_t i = 0; i < d.T; ++i) {
        const double* qi = &q[static_cast<size_t>(((b * d.Hq + h) * d.T + i) * D)];
        const double* gi = &dout[static_cast<size_t>(((b * d.Hq + h) * d.T + i) * D)];
        auto kv_row = [&](const std::vector<double>& x, int64_t j) {
          return &x[static_cast<size_t>(((b * d.Hkv + hk) * d.S + j) * D)];
        };
        const int64_t nvis = d.causal ? i + (d.S - d.T) + 1 : d.S;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < nvis; ++j) {
          double s = 0;
          for (int64_t e = 0; e < D; ++e) s += qi[e] * kv_row(k, j)[e];
          p[j] = s * scale;
          mx = std::max(mx, p[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < nvis; ++j) z += (p[j] = std::exp(p[j] - mx));
        for (int64_t j = 0; j < nvis; ++j) p[j] /= z;
        double* oi = &r.out[static_cast<size_t>(((b * d.Hq + h) * d.T + i) * D)];
        for (int64_t j = 0; j < nvis; ++j)
          for (int64_t e = 0; e < D; ++e) oi[e] += p[j] * kv_row(v, j)[e];
        // dv_j += p_j g; dp_j = g . v_j; ds_j = p_j (dp_j - sum_l p_l dp_l)
        double pdp = 0;
        for (int64_t j = 0; j < nvis; ++j) {
          double s = 0;
          for (int64_t e = 0; e < D; ++e) s += gi[e] * kv_row(v, j)[e];
          dp[j] = s;
          pdp += p[j] * s;
        }
        double* dqi = &r.dq[static_cast<size_t>(((b * d.Hq + h) * d.T + i) * D)];
        for (int64_t j = 0; j < nvis; ++j) {
          const double ds = p[j] * (dp[j] - pdp);
          double* dkj = &r.dk[static_cast<size_t>(((b * d.Hkv + hk) * d.S + j) * D)];
          double* dvj = &r.dv[static_cast<size_t>(((b * d.Hkv + hk) * d.S + j) * D)];
          for (int64_t e = 0; e < D; ++e) {
            dqi[e] += scale * ds * kv_row(k, j)[e];
            dkj[e] += scale * ds * qi[e];
            dvj[e] += p[j] * gi[e];
          }
        }
      }
    }
  return r;
}

std::vector<double> random_values(int64_t n, uint64_t seed, double amp = 1.0) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(-amp, amp);
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = dist(rng);
  return v;
}

Tensor leaf(const std::vector<double>& vals, const Shape& shape, DType dt) {
  Tensor t = from_vector(vals, shape, dt);
  t.set_requires_grad(true);
  return t;
}

// |got - ref| <= atol * max|ref| + rtol * |ref| elementwise.
void expect_close(const std::vector<double>& got, const std::vector<double>& ref, double atol, double rtol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double scale = 0;
  for (double x : ref) scale = std::max(scale, std::fabs(x));
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double err = std::fabs(got[i] - ref[i]);
    worst = std::max(worst, err / std::max(scale, 1e-300));
    if (!(err <= atol * scale + rtol * std::fabs(ref[i]))) {
      if (bad++ == 0) first = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << ref.size() << " elements off; first at " << first
                     << ": got " << got[first] << ", want " << ref[first] << " (max |err|/max|ref| = " << worst
                     << ")";
}

struct Tol {
  double atol, rtol;
};

// Sets the OpenMP thread count for a scope.
class ThreadsGuard {
 public:
  explicit ThreadsGuard(int n) : prev_(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadsGuard() { omp_set_num_threads(prev_); }

 private:
  int prev_;
};

// Forces the backward schedule (fused single pass, or KV pass + Q pass) for a scope.
using detail::AttentionBackward;
class ScheduleGuard {
 public:
  explicit ScheduleGuard(AttentionBackward s) { detail::set_attention_backward_for_testing(s); }
  ~ScheduleGuard() { detail::set_attention_backward_for_testing(AttentionBackward::Auto); }
};

// Both backward schedules on 2 threads, and the serial path (1 thread, automatic schedule).
// With the schedule pinned the thread count does not change any bit (see
// DeterministicForAGivenThreadCount), so these cover every code path.
template <class F>
void for_each_config(F&& f) {
  const struct {
    int threads;
    AttentionBackward schedule;
    const char* name;
  } configs[] = {{2, AttentionBackward::Fused, "threads=2 fused"},
                 {2, AttentionBackward::TwoPass, "threads=2 two-pass"},
                 {1, AttentionBackward::Auto, "threads=1 auto"}};
  for (const auto& c : configs) {
    ThreadsGuard tg(c.threads);
    ScheduleGuard sg(c.schedule);
    SCOPED_TRACE(c.name);
    f();
  }
}

// Runs forward + backward of the op in dtype dt under every configuration and compares
// everything with the reference computed (once) from the (dtype-rounded) inputs.
void check_against_reference(const Dims& d, DType dt, Tol out_tol, Tol grad_tol, uint64_t seed = 1,
                             double amp = 1.0) {
  const Shape qs{d.B, d.Hq, d.T, d.D}, ks{d.B, d.Hkv, d.S, d.D};
  Tensor q = leaf(random_values(shape_numel(qs), seed, amp), qs, dt);
  Tensor k = leaf(random_values(shape_numel(ks), seed + 1, amp), ks, dt);
  Tensor v = leaf(random_values(shape_numel(ks), seed + 2), ks, dt);
  Tensor g = from_vector(random_values(shape_numel(qs), seed + 3), qs, dt);
  const Ref r = reference(d, q.to_vector<double>(), k.to_vector<double>(), v.to_vector<double>(),
                          g.to_vector<double>());
  const std::string tag = dims_str(d) + " " + std::string(dtype_name(dt));
  for_each_config([&] {
    for (const Tensor* t : {&q, &k, &v}) t->zero_grad();
    Tensor out = scaled_dot_product_attention(q, k, v, d.causal, d.scale);
    ASSERT_EQ(out.shape(), qs);
    ASSERT_EQ(out.dtype(), dt);
    out.backward(g);
    expect_close(out.to_vector<double>(), r.out, out_tol.atol, out_tol.rtol, tag + " out");
    expect_close(q.grad().to_vector<double>(), r.dq, grad_tol.atol, grad_tol.rtol, tag + " dq");
    expect_close(k.grad().to_vector<double>(), r.dk, grad_tol.atol, grad_tol.rtol, tag + " dk");
    expect_close(v.grad().to_vector<double>(), r.dv, grad_tol.atol, grad_tol.rtol, tag + " dv");
  });
}

// Shapes around the kernel's 128-row blocks: T, S not multiples of 128 (several blocks and a
// partial one), T < S, GQA and MHA, D = 8/16, causal and not, a decode step (T = 1).
const std::vector<Dims> kShapes = {
    {2, 4, 2, 150, 150, 16, true}, {1, 4, 2, 150, 300, 8, true},   {1, 2, 2, 260, 260, 8, false},
    {1, 4, 1, 1, 77, 8, true},     {1, 2, 1, 130, 270, 16, false}, {1, 1, 1, 257, 257, 8, true},
};

TEST(Attention, MatchesReferenceF64) {
  for (const Dims& d : kShapes) check_against_reference(d, DType::f64, {1e-12, 1e-10}, {1e-12, 1e-10});
}

TEST(Attention, MatchesReferenceF32) {
  // f32 accumulation over <= 300 keys and D <= 16 terms: errors of a few f32 ulps of the
  // largest magnitudes (2^-24 ~ 6e-8; observed <= 6.1e-7 of max|ref|), far inside 1e-5.
  for (const Dims& d : kShapes) check_against_reference(d, DType::f32, {1e-5, 1e-5}, {1e-5, 1e-5});
}

TEST(Attention, MatchesReferenceBF16AndF16) {
  // The reference sees the same bf16-rounded inputs, and the kernel computes in f32, so the
  // error comes from rounding the results to bf16 (relative 2^-9 ~ 2e-3 per element) and, in
  // backward, from D_i = rowsum(dO * O) using the rounded O: each dS = P (dP - D_i) is off by
  // about P * 2^-9 * sum|dO * O|, which spreads into dQ, dK as an absolute error of order
  // 1e-3..1e-2 of the largest gradient. Hence 2^-8 relative + 1% of max|ref| absolute for the
  // output and 2% of max|ref| for the gradients (f16, 2^-11, gets 4x tighter bounds). Observed:
  // max |err| / max|ref| <= 3.8e-3 for bf16 and <= 4.5e-4 for f16 on these shapes.
  for (const Dims& d : kShapes) check_against_reference(d, DType::bf16, {1e-2, 4e-3}, {2e-2, 1e-2});
  for (const Dims& d : {kShapes[0], kShapes[1]})
    check_against_reference(d, DType::f16, {2.5e-3, 1e-3}, {5e-3, 2.5e-3});
}

TEST(Attention, LargeScoresStayStable) {
  // Scores up to ~|scale * D| = 64: exp would overflow f32 without the running max; the online
  // softmax rescales the accumulator across key blocks.
  const Dims d{1, 2, 2, 190, 300, 16, true, 4.0};
  check_against_reference(d, DType::f32, {1e-4, 1e-4}, {1e-4, 1e-4}, 7, 1.0);
  check_against_reference(d, DType::f64, {1e-12, 1e-10}, {1e-12, 1e-10}, 7, 1.0);
}

TEST(Attention, ExplicitScaleAndDefaultScale) {
  const Dims d{1, 2, 1, 33, 40, 8, false};
  Dims d2 = d;
  d2.scale = 1.0 / std::sqrt(8.0);
  const Shape qs{1, 2, 33, 8}, ks{1, 1, 40, 8};
  Tensor q = from_vector(random_values(shape_numel(qs), 3), qs, DType::f64);
  Tensor k = from_vector(random_values(shape_numel(ks), 4), ks, DType::f64);
  Tensor v = from_vector(random_values(shape_numel(ks), 5), ks, DType::f64);
  EXPECT_EQ(scaled_dot_product_attention(q, k, v, false).to_vector<double>(),
            scaled_dot_product_attention(q, k, v, false, d2.scale).to_vector<double>());
  check_against_reference(Dims{1, 2, 1, 33, 40, 8, false, 0.3}, DType::f64, {1e-12, 1e-10}, {1e-12, 1e-10});
}

TEST(Attention, NonContiguousInputsAndExpandedGrad) {
  // q, k, v made by transposing (B, T, H, D) leaves (rows H * D apart), and a loss whose
  // gradient reaches the op as an expanded (stride 0) tensor.
  const Dims d{2, 4, 2, 150, 150, 16, true};
  for (DType dt : {DType::f64, DType::f32, DType::bf16}) {
    const Shape qs{d.B, d.T, d.Hq, d.D}, ks{d.B, d.S, d.Hkv, d.D};
    Tensor q0 = leaf(random_values(shape_numel(qs), 11), qs, dt);
    Tensor k0 = leaf(random_values(shape_numel(ks), 12), ks, dt);
    Tensor v0 = leaf(random_values(shape_numel(ks), 13), ks, dt);
    auto bhtd = [](const Tensor& x) { return x.transpose(1, 2); };  // (B, T, H, D) -> (B, H, T, D)
    ASSERT_FALSE(bhtd(q0).is_contiguous());
    const Ref r = reference(d, bhtd(q0).contiguous().to_vector<double>(), bhtd(k0).contiguous().to_vector<double>(),
                            bhtd(v0).contiguous().to_vector<double>(),
                            std::vector<double>(static_cast<size_t>(shape_numel(qs)), 1.0));
    const Tol tol = dt == DType::f64 ? Tol{1e-12, 1e-10} : dt == DType::f32 ? Tol{1e-5, 1e-5} : Tol{2e-2, 1e-2};
    const std::string tag(dtype_name(dt));
    for_each_config([&] {
      for (const Tensor* t : {&q0, &k0, &v0}) t->zero_grad();
      Tensor out = scaled_dot_product_attention(bhtd(q0), bhtd(k0), bhtd(v0), true);
      sum(out).backward();
      expect_close(out.to_vector<double>(), r.out, tol.atol, tol.rtol, tag + " out");
      expect_close(bhtd(q0.grad()).contiguous().to_vector<double>(), r.dq, tol.atol, tol.rtol, tag + " dq");
      expect_close(bhtd(k0.grad()).contiguous().to_vector<double>(), r.dk, tol.atol, tol.rtol, tag + " dk");
      expect_close(bhtd(v0.grad()).contiguous().to_vector<double>(), r.dv, tol.atol, tol.rtol, tag + " dv");
    });
  }
}

TEST(Attention, PartialGradientsMatchFull) {
  // Only q, or only k and v, requiring grad runs the Q pass or the KV pass alone.
  const Dims d{1, 4, 2, 140, 200, 8, true};
  const Shape qs{d.B, d.Hq, d.T, d.D}, ks{d.B, d.Hkv, d.S, d.D};
  const auto qv = random_values(shape_numel(qs), 21), kv = random_values(shape_numel(ks), 22),
             vv = random_values(shape_numel(ks), 23), gv = random_values(shape_numel(qs), 24);
  const Ref r = reference(d, qv, kv, vv, gv);
  const Tensor g = from_vector(gv, qs, DType::f64);
  {
    Tensor q = leaf(qv, qs, DType::f64);
    Tensor k = from_vector(kv, ks, DType::f64), v = from_vector(vv, ks, DType::f64);
    scaled_dot_product_attention(q, k, v, true).backward(g);
    expect_close(q.grad().to_vector<double>(), r.dq, 1e-12, 1e-10, "q only");
  }
  {
    Tensor q = from_vector(qv, qs, DType::f64);
    Tensor k = leaf(kv, ks, DType::f64), v = leaf(vv, ks, DType::f64);
    scaled_dot_product_attention(q, k, v, true).backward(g);
    expect_close(k.grad().to_vector<double>(), r.dk, 1e-12, 1e-10, "k, v only: dk");
    expect_close(v.grad().to_vector<double>(), r.dv, 1e-12, 1e-10, "k, v only: dv");
  }
  {
    Tensor q = from_vector(qv, qs, DType::f64), k = from_vector(kv, ks, DType::f64);
    Tensor v = leaf(vv, ks, DType::f64);
    scaled_dot_product_attention(q, k, v, true).backward(g);
    expect_close(v.grad().to_vector<double>(), r.dv, 1e-12, 1e-10, "v only");
  }
}

TEST(Attention, DeterministicForAGivenThreadCount) {
  const Shape qs{2, 4, 300, 16}, ks{2, 2, 300, 16};
  auto run = [&] {
    Tensor q = leaf(random_values(shape_numel(qs), 31), qs, DType::f32);
    Tensor k = leaf(random_values(shape_numel(ks), 32), ks, DType::f32);
    Tensor v = leaf(random_values(shape_numel(ks), 33), ks, DType::f32);
    Tensor out = scaled_dot_product_attention(q, k, v, true);
    out.backward(from_vector(random_values(shape_numel(qs), 34), qs, DType::f32));
    return std::vector<std::vector<float>>{out.to_vector<float>(), q.grad().to_vector<float>(),
                                           k.grad().to_vector<float>(), v.grad().to_vector<float>()};
  };
  std::vector<std::vector<float>> one;
  {
    ThreadsGuard tg(1);
    one = run();
  }
  {
    ThreadsGuard tg(2);
    const auto a = run(), b = run();
    EXPECT_EQ(a, b);
    EXPECT_EQ(a[0], one[0]);  // the forward does not depend on the thread count at all
  }
  // With the schedule pinned, every result is computed by one task in a fixed order: the
  // thread count does not matter either.
  for (AttentionBackward s : {AttentionBackward::Fused, AttentionBackward::TwoPass}) {
    ScheduleGuard sg(s);
    std::vector<std::vector<float>> r1, r2;
    {
      ThreadsGuard tg(1);
      r1 = run();
    }
    {
      ThreadsGuard tg(2);
      r2 = run();
    }
    EXPECT_EQ(r1, r2);
  }
}

TEST(Attention, GradcheckF64) {
  GradcheckOptions opts;
  // Non-contiguous q (a transposed (B, T, H, D) leaf), GQA 4/2, causal with T < S.
  {
    Tensor q0 = leaf(random_values(1 * 5 * 4 * 3, 41), {1, 5, 4, 3}, DType::f64);
    Tensor k = leaf(random_values(1 * 2 * 7 * 3, 42), {1, 2, 7, 3}, DType::f64);
    Tensor v = leaf(random_values(1 * 2 * 7 * 3, 43), {1, 2, 7, 3}, DType::f64);
    auto f = [](const std::vector<Tensor>& in) {
      return scaled_dot_product_attention(in[0].transpose(1, 2), in[1], in[2], true);
    };
    const GradcheckResult r = gradcheck(f, {q0, k, v}, opts);
    EXPECT_TRUE(r.ok) << r.message;
  }
  // Non-causal, non-contiguous k and v, explicit scale, B = 2.
  {
    Tensor q = leaf(random_values(2 * 2 * 4 * 5, 44), {2, 2, 4, 5}, DType::f64);
    Tensor k0 = leaf(random_values(2 * 6 * 1 * 5, 45), {2, 6, 1, 5}, DType::f64);
    Tensor v0 = leaf(random_values(2 * 6 * 1 * 5, 46), {2, 6, 1, 5}, DType::f64);
    auto f = [](const std::vector<Tensor>& in) {
      return scaled_dot_product_attention(in[0], in[1].transpose(1, 2), in[2].transpose(1, 2), false, 0.7);
    };
    const GradcheckResult r = gradcheck(f, {q, k0, v0}, opts);
    EXPECT_TRUE(r.ok) << r.message;
  }
  // Two 128-row blocks (T = S = 130, D = 1), causal, with the two-pass backward (the small
  // cases above run serially, hence fused).
  {
    ScheduleGuard sg(AttentionBackward::TwoPass);
    Tensor q = leaf(random_values(130, 47), {1, 1, 130, 1}, DType::f64);
    Tensor k = leaf(random_values(130, 48), {1, 1, 130, 1}, DType::f64);
    Tensor v = leaf(random_values(130, 49), {1, 1, 130, 1}, DType::f64);
    auto f = [](const std::vector<Tensor>& in) { return scaled_dot_product_attention(in[0], in[1], in[2], true); };
    const GradcheckResult r = gradcheck(f, {q, k, v}, opts);
    EXPECT_TRUE(r.ok) << r.message;
  }
}

// Segments: a row of packed sequences attends block-diagonally, so each sequence's outputs and
// gradients equal those of attention run on it alone (f64; the segment boundary falls inside
// the first 128-row block and a third segment spans the block edge).
TEST(Attention, SegmentsEqualSeparateSequences) {
  for (AttentionBackward sched : {AttentionBackward::Fused, AttentionBackward::TwoPass}) {
    ScheduleGuard sg(sched);
    const int64_t T = 150, D = 4, Hq = 2, Hkv = 1;
    const std::vector<int64_t> bounds = {0, 37, 120, 150};
    std::vector<int64_t> seg(T);
    for (size_t s = 0; s + 1 < bounds.size(); ++s)
      for (int64_t t = bounds[s]; t < bounds[s + 1]; ++t) seg[static_cast<size_t>(t)] = int64_t(s) * 7 + 3;
    const Tensor segments = from_vector(seg, {1, T});
    Tensor q = leaf(random_values(Hq * T * D, 61), {1, Hq, T, D}, DType::f64);
    Tensor k = leaf(random_values(Hkv * T * D, 62), {1, Hkv, T, D}, DType::f64);
    Tensor v = leaf(random_values(Hkv * T * D, 63), {1, Hkv, T, D}, DType::f64);
    const Tensor g = from_vector(random_values(Hq * T * D, 64), {1, Hq, T, D}, DType::f64);
    const Tensor packed = scaled_dot_product_attention(q, k, v, true, 0, segments);
    sum(mul(packed, g)).backward();
    const auto po = packed.to_vector<double>();
    const auto pdq = q.grad().to_vector<double>(), pdk = k.grad().to_vector<double>(), pdv = v.grad().to_vector<double>();
    for (size_t s = 0; s + 1 < bounds.size(); ++s) {
      const int64_t b0 = bounds[s], n = bounds[s + 1] - b0;
      Tensor qs = leaf(q.narrow(2, b0, n).contiguous().to_vector<double>(), {1, Hq, n, D}, DType::f64);
      Tensor ks = leaf(k.narrow(2, b0, n).contiguous().to_vector<double>(), {1, Hkv, n, D}, DType::f64);
      Tensor vs = leaf(v.narrow(2, b0, n).contiguous().to_vector<double>(), {1, Hkv, n, D}, DType::f64);
      const Tensor alone = scaled_dot_product_attention(qs, ks, vs, true);
      sum(mul(alone, g.narrow(2, b0, n))).backward();
      auto expect_rows = [&](const std::vector<double>& full, const Tensor& part, int64_t H, const char* what) {
        const auto p = part.to_vector<double>();
        for (int64_t h = 0; h < H; ++h)
          for (int64_t t = 0; t < n; ++t)
            for (int64_t d = 0; d < D; ++d)
              EXPECT_NEAR(full[static_cast<size_t>((h * T + b0 + t) * D + d)], p[static_cast<size_t>((h * n + t) * D + d)],
                          1e-12)
                  << what << " segment " << s << " h " << h << " t " << t;
      };
      expect_rows(po, alone, Hq, "out");
      expect_rows(pdq, qs.grad(), Hq, "dq");
      expect_rows(pdk, ks.grad(), Hkv, "dk");
      expect_rows(pdv, vs.grad(), Hkv, "dv");
    }
  }
}

TEST(Attention, GradcheckF64WithSegments) {
  GradcheckOptions opts;
  // Non-contiguous q, GQA 4/2, two batches with different segmentations.
  Tensor q0 = leaf(random_values(2 * 6 * 4 * 3, 71), {2, 6, 4, 3}, DType::f64);
  Tensor k = leaf(random_values(2 * 2 * 6 * 3, 72), {2, 2, 6, 3}, DType::f64);
  Tensor v = leaf(random_values(2 * 2 * 6 * 3, 73), {2, 2, 6, 3}, DType::f64);
  const Tensor segments = from_vector(std::vector<int64_t>{0, 0, 1, 1, 1, 2, 5, 5, 5, 5, 6, 6}, {2, 6});
  auto f = [&](const std::vector<Tensor>& in) {
    return scaled_dot_product_attention(in[0].transpose(1, 2), in[1], in[2], true, 0, segments);
  };
  const GradcheckResult r = gradcheck(f, {q0, k, v}, opts);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Attention, BadSegmentsThrow) {
  const Tensor q = zeros({1, 1, 4, 2}), kv = zeros({1, 1, 4, 2});
  EXPECT_THROW(scaled_dot_product_attention(q, kv, kv, true, 0, from_vector(std::vector<int64_t>{0, 0, 1}, {1, 3})), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, kv, kv, false, 0, from_vector(std::vector<int64_t>{0, 0, 1, 1}, {1, 4})),
               Error);
  EXPECT_THROW(scaled_dot_product_attention(q, zeros({1, 1, 5, 2}), zeros({1, 1, 5, 2}), true, 0,
                                            from_vector(std::vector<int64_t>{0, 0, 1, 1}, {1, 4})),
               Error);
}

TEST(Attention, CausalAlignsQueriesWithTheLastKeys) {
  // T = 1 sees all S keys: equals non-causal. T = S: query 0 sees key 0 only, so out[0] = v[0].
  const Shape ks{1, 1, 9, 4};
  Tensor k = from_vector(random_values(36, 51), ks, DType::f64);
  Tensor v = from_vector(random_values(36, 52), ks, DType::f64);
  Tensor q1 = from_vector(random_values(4, 53), {1, 1, 1, 4}, DType::f64);
  EXPECT_EQ(scaled_dot_product_attention(q1, k, v, true).to_vector<double>(),
            scaled_dot_product_attention(q1, k, v, false).to_vector<double>());
  Tensor q9 = from_vector(random_values(36, 54), ks, DType::f64);
  const auto o = scaled_dot_product_attention(q9, k, v, true).to_vector<double>();
  const auto vv = v.to_vector<double>();
  for (int e = 0; e < 4; ++e) EXPECT_DOUBLE_EQ(o[static_cast<size_t>(e)], vv[static_cast<size_t>(e)]);
}

TEST(Attention, EmptyAndMetaShapes) {
  Tensor q = zeros({1, 2, 0, 8}), k = ones({1, 1, 5, 8}), v = ones({1, 1, 5, 8});
  k.set_requires_grad(true);
  Tensor out = scaled_dot_product_attention(q, k, v, true);
  EXPECT_EQ(out.shape(), (Shape{1, 2, 0, 8}));
  sum(out).backward();
  EXPECT_EQ(k.grad().to_vector<float>(), std::vector<float>(40, 0.0f));
  // Non-causal with no keys: zeros.
  Tensor z = scaled_dot_product_attention(ones({1, 1, 3, 4}), zeros({1, 1, 0, 4}), zeros({1, 1, 0, 4}), false);
  EXPECT_EQ(z.to_vector<float>(), std::vector<float>(12, 0.0f));
  // Meta: shapes only.
  Tensor m = scaled_dot_product_attention(empty({2, 8, 128, 64}, DType::bf16, kMeta),
                                          empty({2, 2, 256, 64}, DType::bf16, kMeta),
                                          empty({2, 2, 256, 64}, DType::bf16, kMeta), true);
  EXPECT_EQ(m.shape(), (Shape{2, 8, 128, 64}));
  EXPECT_TRUE(m.device().is_meta());
}

TEST(Attention, BadInputsThrow) {
  auto t = [](const Shape& s, DType dt = DType::f32, Device dev = kCPU) { return zeros(s, dt, dev); };
  auto sdpa = [](const Tensor& q, const Tensor& k, const Tensor& v, bool causal = true) {
    return scaled_dot_product_attention(q, k, v, causal);
  };
  auto expect_error = [](auto&& fn, const std::string& needle) {
    try {
      fn();
      ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("scaled_dot_product_attention"), std::string::npos) << msg;
      EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  };
  // Mismatched head dims.
  expect_error([&] { sdpa(t({1, 2, 4, 8}), t({1, 2, 4, 16}), t({1, 2, 4, 16})); }, "[1, 2, 4, 8]");
  // Hq % Hkv != 0.
  expect_error([&] { sdpa(t({1, 3, 4, 8}), t({1, 2, 4, 8}), t({1, 2, 4, 8})); }, "multiple");
  // Causal needs T <= S (fine without the mask).
  expect_error([&] { sdpa(t({1, 2, 5, 8}), t({1, 2, 4, 8}), t({1, 2, 4, 8})); }, "T <= S");
  EXPECT_NO_THROW(sdpa(t({1, 2, 5, 8}), t({1, 2, 4, 8}), t({1, 2, 4, 8}), false));
  // Different devices.
  expect_error([&] { sdpa(t({1, 2, 4, 8}), t({1, 2, 4, 8}, DType::f32, kMeta), t({1, 2, 4, 8})); }, "device");
  // k / v shape mismatch, batch mismatch, rank, dtypes.
  expect_error([&] { sdpa(t({1, 2, 4, 8}), t({1, 2, 4, 8}), t({1, 2, 5, 8})); }, "differ");
  expect_error([&] { sdpa(t({2, 2, 4, 8}), t({1, 2, 4, 8}), t({1, 2, 4, 8})); }, "batch");
  expect_error([&] { sdpa(t({2, 4, 8}), t({1, 2, 4, 8}), t({1, 2, 4, 8})); }, "(B, Hq, T, D)");
  expect_error([&] { sdpa(t({1, 2, 4, 8}, DType::f64), t({1, 2, 4, 8}), t({1, 2, 4, 8})); }, "dtypes");
  expect_error([&] { sdpa(t({1, 2, 4, 8}, DType::i32), t({1, 2, 4, 8}, DType::i32), t({1, 2, 4, 8}, DType::i32)); },
               "dtype");
}

}  // namespace
}  // namespace lowbit
