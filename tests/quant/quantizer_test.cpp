// Quantizer state: delayed activation as a pure function of the step (also across a resume),
// calibration (max, percentile, MSE) and freezing, learned-scale initialisation, and strict
// versioned save / restore, alone and through the checkpoint registry.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "lowbit/engine/lowbit.h"
#include "lowbit/io/checkpoint_components.h"
#include "lowbit/quant/quantizer.h"

namespace lowbit::quant {
namespace {

std::vector<float> vals(const Tensor& t) { return t.to(DType::f32).contiguous().to_vector<float>(); }

QuantSpec int8_channel_calibrated() {
  QuantSpec s;
  s.format = Format::int8;
  s.granularity = Granularity::per_channel;
  s.scale_policy = ScalePolicy::calibrated;
  return s;
}

TEST(Quantizer, DelayIsAPureFunctionOfTheStepAcrossAResume) {
  QuantSpec s;
  s.format = Format::int4;
  s.granularity = Granularity::per_group;
  s.group_size = 4;
  Quantizer q(s);
  q.set_start_step(5);
  const Tensor x = from_vector(std::vector<float>{0.1f, 0.23f, -0.7f, 0.41f, 1, 2, 3, 4}, {2, 4});
  EXPECT_TRUE(q.forward(x, 4).same(x));  // inactive: x itself
  EXPECT_NE(vals(q.forward(x, 5)), vals(x));
  EXPECT_EQ(vals(q.forward(x, 5)), vals(fake_quant(x, s)));
  // A quantizer restored at step 3 (inside the delay window) behaves like the original.
  Quantizer r(s);
  r.load_state(q.state_json(), q.state_tensors());
  for (int64_t step = 3; step < 8; ++step) {
    EXPECT_EQ(r.active(step), q.active(step)) << step;
    EXPECT_EQ(vals(r.forward(x, step)), vals(q.forward(x, step))) << step;
  }
  q.set_enabled(false);
  EXPECT_TRUE(q.forward(x, 100).same(x));
  EXPECT_THROW(q.set_start_step(-1), Error);
}

TEST(Quantizer, MaxCalibrationFreezesPerChannelAmax) {
  Quantizer q(int8_channel_calibrated());
  const Tensor x = zeros({2, 4});
  EXPECT_THROW(q.forward(x, 0), Error);  // calibrated policy without calibration
  q.begin_calibration();
  q.observe(from_vector(std::vector<float>{1, -2, 0.5f, 0, 0.1f, 0.2f, 0.3f, -0.4f}, {2, 4}));
  q.observe(from_vector(std::vector<float>{-3, 1, 0, 0, 0.2f, 0.1f, 0.1f, 0.1f}, {2, 4}));
  EXPECT_THROW(q.observe(zeros({3, 4})), Error);  // the scale grid must not change
  q.finish_calibration();
  EXPECT_EQ(vals(q.params().amax), (std::vector<float>{3, 0.4f}));
  // Frozen: a later, larger batch is clipped at the calibrated amax, as fake_quant with
  // those parameters computes it.
  const Tensor big = from_vector(std::vector<float>{10, -10, 1, 2, 1, -1, 0.5f, 0.25f}, {2, 4});
  QParams p;
  p.amax = from_vector(std::vector<float>{3, 0.4f}, {2});
  EXPECT_EQ(vals(q.forward(big, 0)), vals(fake_quant(big, int8_channel_calibrated(), &p)));
  EXPECT_NEAR(vals(q.forward(big, 0))[0], 3 * 127 / 127.5, 1e-6);  // torchao int8: 127 * amax / 127.5
}

TEST(Quantizer, PercentileAndMseCalibration) {
  QuantSpec s;
  s.format = Format::int8;
  s.scale_policy = ScalePolicy::calibrated;
  Quantizer pq(s);
  pq.begin_calibration(CalibOptions{.method = CalibMethod::percentile, .percentile = 99.0});
  std::vector<float> v;
  for (int i = 1; i <= 1000; ++i) v.push_back(static_cast<float>(i % 2 ? i : -i));
  pq.observe(from_vector(v, {1000}));
  pq.finish_calibration();
  EXPECT_EQ(vals(pq.params().amax), std::vector<float>{990});  // the 990th smallest |x| of 1..1000

  // MSE: a Gaussian group with one huge outlier; the search clips the outlier and reduces the
  // error relative to plain max calibration, measured with fake_quant itself.
  QuantSpec s4 = s;
  s4.format = Format::int4;
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0, 1);
  std::vector<float> g(4096);
  for (auto& x : g) x = d(rng);
  g[17] = 40;
  const Tensor x = from_vector(g, {4096});
  Quantizer mq(s4), maxq(s4);
  mq.begin_calibration(CalibOptions{.method = CalibMethod::mse});
  maxq.begin_calibration();
  mq.observe(x);
  maxq.observe(x);
  mq.finish_calibration();
  maxq.finish_calibration();
  const float chosen = vals(mq.params().amax)[0];
  EXPECT_EQ(vals(maxq.params().amax)[0], 40.0f);
  EXPECT_LT(chosen, 20.0f);
  auto sse = [&](const Quantizer& q) {
    const auto y = vals(q.forward(x, 0));
    double e = 0;
    for (size_t i = 0; i < g.size(); ++i) e += (y[i] - g[i]) * (y[i] - g[i]);
    return e;
  };
  EXPECT_LT(sse(mq), 0.5 * sse(maxq));
}

TEST(Quantizer, LearnedScalesStartFromCalibrationAndRestoreInPlace) {
  QuantSpec s;
  s.format = Format::int4;
  s.granularity = Granularity::per_channel;
  s.scale_policy = ScalePolicy::learned;
  s.grad = GradRule::lsq;
  Quantizer q(s);
  q.begin_calibration();
  q.observe(from_vector(std::vector<float>{0.75f, -0.3f, 1.5f, 0.2f}, {2, 2}));
  q.finish_calibration();
  const auto learn = q.learnable_parameters();
  ASSERT_EQ(learn.size(), 1u);
  EXPECT_TRUE(learn[0].requires_grad());
  EXPECT_EQ(vals(learn[0]), (std::vector<float>{0.1f, 0.2f}));  // amax / 7.5 (torchao divisor)
  // Training moves the scale; loading a saved state writes into the same tensor.
  const auto json = q.state_json();
  const auto tensors = q.state_tensors();
  {
    NoGradGuard no_grad;
    fill_(learn[0], 0.5);
  }
  q.load_state(json, tensors);
  EXPECT_TRUE(q.learnable_parameters()[0].same(learn[0]));
  EXPECT_EQ(vals(learn[0]), (std::vector<float>{0.1f, 0.2f}));
}

TEST(Quantizer, StateIsCheckedStrictly) {
  Quantizer q(int8_channel_calibrated());
  q.begin_calibration();
  q.observe(from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}));
  q.finish_calibration();
  q.set_start_step(7);
  const std::string json = q.state_json();
  const auto tensors = q.state_tensors();
  Quantizer same(int8_channel_calibrated());
  same.load_state(json, tensors);
  EXPECT_EQ(same.start_step(), 7);
  EXPECT_EQ(vals(same.params().amax), (std::vector<float>{2, 4}));
  auto error = [](Quantizer& target, const std::string& j, const std::vector<std::pair<std::string, Tensor>>& t) {
    try {
      target.load_state(j, t, "ckpt/quant.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  QuantSpec other = int8_channel_calibrated();
  other.format = Format::int4;
  Quantizer different(other);
  EXPECT_NE(error(different, json, tensors).find("ckpt/quant.json: spec mismatch"), std::string::npos);
  auto j = nlohmann::json::parse(json);
  j["schema"] = 2;
  EXPECT_NE(error(same, j.dump(), tensors).find("schema 2 is not the supported version 1"), std::string::npos);
  EXPECT_NE(error(same, json, {{"amax", zeros({3})}}).find("tensor 'amax' is"), std::string::npos);
  EXPECT_NE(error(same, json, {}).find("missing tensor 'amax'"), std::string::npos);
  EXPECT_NE(error(same, json, {{"amax", full({2}, NAN)}}).find("non-finite"), std::string::npos);
  EXPECT_NE(error(same, "{", tensors).find("invalid JSON"), std::string::npos);
  EXPECT_EQ(same.start_step(), 7);  // failed loads change nothing
}

TEST(Quantizer, RoundTripsThroughTheCheckpointRegistry) {
  const std::string dir = ::testing::TempDir() + "lowbit_quantizer_ckpt";
  std::filesystem::remove_all(dir);
  Quantizer q(int8_channel_calibrated());
  q.begin_calibration();
  q.observe(from_vector(std::vector<float>{1, -2, 3, 0.5f}, {2, 2}));
  q.finish_calibration();
  q.set_start_step(3);
  {
    io::CheckpointManager m(dir);
    io::register_quantizer(m, "quant_w", q);
    m.save(10);
  }
  Quantizer r(int8_channel_calibrated());
  io::CheckpointManager m(dir);
  io::register_quantizer(m, "quant_w", r);
  EXPECT_EQ(m.resume(), std::optional<int64_t>(10));
  EXPECT_EQ(r.start_step(), 3);
  EXPECT_EQ(vals(r.params().amax), vals(q.params().amax));
  QuantSpec other = int8_channel_calibrated();
  other.convention = Convention::modelopt;
  Quantizer wrong(other);
  io::CheckpointManager m2(dir);
  io::register_quantizer(m2, "quant_w", wrong);
  EXPECT_THROW(m2.resume(), Error);  // a spec mismatch is an error, not a silent fallback
}

}  // namespace
}  // namespace lowbit::quant
