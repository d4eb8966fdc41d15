// Presets and prepare(): which layers get quantizers, that parameter names stay the HF keys,
// that a prepared layer computes exactly matmul(fake_quant(x), fake_quant(w)^T), delayed
// activation, calibration-based presets, QAT training, and quantizer checkpoints.
#include <gtest/gtest.h>

#include <filesystem>

#include "lowbit/engine/lowbit.h"
#include "lowbit/models/llama.h"
#include "lowbit/nn/linear.h"
#include "lowbit/optim/adamw.h"
#include "lowbit/quant/linear_quant.h"

namespace lowbit::quant {
namespace {

std::vector<float> vals(const Tensor& t) { return t.to(DType::f32).contiguous().to_vector<float>(); }

models::ModelConfig tiny() {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 40;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 32;
  return c;
}

Tensor ids_of(uint64_t seed, int64_t B = 2, int64_t T = 12) {
  Generator g(seed);
  return randint({B, T}, 0, 40, DType::i64, &g);
}

TEST(Presets, EveryNameResolvesAndUnknownNamesSuggest) {
  for (const std::string& n : preset_names()) {
    const QuantPreset p = resolve_preset(n);
    EXPECT_EQ(p.name, n);
    EXPECT_NO_THROW(validate(p.weight)) << n;
    EXPECT_FALSE(describe(p).empty());
  }
  const QuantPreset w4a8 = resolve_preset("W4A8", PresetOptions{.group_size = 64});
  EXPECT_EQ(w4a8.weight.format, Format::int4);
  EXPECT_EQ(w4a8.weight.group_size, 64);
  ASSERT_TRUE(w4a8.input.has_value());
  EXPECT_EQ(w4a8.input->granularity, Granularity::per_token);
  EXPECT_FALSE(w4a8.input->symmetric);
  EXPECT_EQ(resolve_preset("W4A8").weight.group_size, 32);
  EXPECT_EQ(resolve_preset("INT4_WEIGHT_ONLY").weight.group_size, 128);
  try {
    resolve_preset("W4A9");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown preset 'W4A9' (did you mean W4A8?"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_preset("FP8_DEFAULT", PresetOptions{.group_size = 64}), Error);
}

TEST(Prepare, QuantizesEveryLinearButLmHeadAndKeepsNames) {
  models::CausalLM m(tiny());
  const auto names_before = m.named_parameters();
  auto ctx = std::make_shared<QuantContext>();
  const auto layers = prepare(m, resolve_preset("W4A8"), ctx);
  EXPECT_EQ(layers.size(), 2u * 7u);  // q, k, v, o, gate, up, down per layer
  for (const auto& [name, l] : layers) EXPECT_EQ(name.find("lm_head"), std::string::npos);
  EXPECT_EQ(m.lm_head->quant, nullptr);
  const auto names_after = m.named_parameters();
  ASSERT_EQ(names_after.size(), names_before.size());
  for (size_t i = 0; i < names_after.size(); ++i) EXPECT_EQ(names_after[i].first, names_before[i].first);
  EXPECT_THROW(prepare(m, resolve_preset("W4A8"), ctx), Error);  // already prepared
  models::CausalLM m2(tiny());
  EXPECT_THROW(prepare(m2, resolve_preset("W4A8"), ctx,
                       PrepareOptions{.exclude = {"lm_head", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                  "up_proj", "down_proj"}}),
               Error);  // nothing left to quantize
  const auto some = prepare(m2, resolve_preset("W4A8"), ctx, PrepareOptions{.exclude = {"lm_head", "mlp.down_proj"}});
  EXPECT_EQ(some.size(), 2u * 6u);
}

TEST(Prepare, LayerComputesMatmulOfFakeQuantizedOperandsAndHonoursTheDelay) {
  auto ctx = std::make_shared<QuantContext>();
  nn::Linear lin(64, 16, nn::LinearOptions{.bias = true});
  {
    NoGradGuard ng;
    fill_(lin.bias, 0.25);
  }
  const Tensor x = randn({3, 64});
  const Tensor plain = lin.forward(x);
  // prepare() works on any module tree; build one around the layer.
  struct Tree : nn::Module {
    Tree() { l = &register_module("proj", std::make_unique<nn::Linear>(64, 16, nn::LinearOptions{.bias = true})); }
    nn::Linear* l;
  } tree;
  {
    NoGradGuard ng;
    copy_(tree.l->weight, lin.weight);
    copy_(tree.l->bias, lin.bias);
  }
  const QuantPreset p = resolve_preset("W4A8");
  prepare(tree, p, ctx, PrepareOptions{.exclude = {}, .start_step = 3});
  ctx->step = 2;
  EXPECT_EQ(vals(tree.l->forward(x)), vals(plain));  // before the start step: the plain layer, bitwise
  ctx->step = 3;
  const Tensor want = add(matmul(fake_quant(x, *p.input), fake_quant(lin.weight, p.weight).t()), lin.bias);
  EXPECT_EQ(vals(tree.l->forward(x)), vals(want));
  EXPECT_NE(vals(tree.l->forward(x)), vals(plain));
}

TEST(Prepare, CalibratedPresetsNeedCalibrationThenCheckpointTheirState) {
  const std::string dir = ::testing::TempDir() + "lowbit_qat_ckpt";
  std::filesystem::remove_all(dir);
  auto ctx = std::make_shared<QuantContext>();
  models::CausalLM m(tiny(), models::ModelOptions{.seed = 4});
  prepare(m, resolve_preset("INT8_DEFAULT"), ctx);
  EXPECT_THROW(m.forward(ids_of(1)), Error);  // calibrated scales missing
  begin_calibration(m);
  for (uint64_t b = 0; b < 3; ++b) m.forward(ids_of(b, 2, 8 + static_cast<int64_t>(b)));  // lengths differ
  finish_calibration(m);
  const Tensor logits = m.forward(ids_of(9));
  {
    io::CheckpointManager mgr(dir);
    register_quantizers(mgr, "quant", m);
    mgr.save(1);
  }
  // A fresh process: same model weights, prepared the same way, resumes the quantizer state.
  models::CausalLM m2(tiny(), models::ModelOptions{.seed = 4});
  prepare(m2, resolve_preset("INT8_DEFAULT"), std::make_shared<QuantContext>());
  io::CheckpointManager mgr(dir);
  register_quantizers(mgr, "quant", m2);
  EXPECT_EQ(mgr.resume(), std::optional<int64_t>(1));
  EXPECT_EQ(vals(m2.forward(ids_of(9))), vals(logits));
  // Another preset does not load silently.
  models::CausalLM m3(tiny(), models::ModelOptions{.seed = 4});
  prepare(m3, resolve_preset("INT8_PER_CHANNEL_PER_TOKEN"), std::make_shared<QuantContext>());
  io::CheckpointManager mgr3(dir);
  register_quantizers(mgr3, "quant", m3);
  EXPECT_THROW(mgr3.resume(), Error);
}

TEST(Prepare, EveryPresetRunsForwardAndBackward) {
  models::ModelConfig c = tiny();  // 128-wide so 128-element groups and 128 x 128 tiles fit
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  {
    models::CausalLM small(tiny());
    try {
      prepare(small, resolve_preset("INT4_WEIGHT_ONLY"), std::make_shared<QuantContext>());
      ADD_FAILURE() << "a 32-wide layer accepted 128-element groups";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("prepare: layer 'model.layers.0.self_attn.q_proj' (weight [32, 32])"),
                std::string::npos)
          << e.what();
    }
  }
  for (const std::string& name : preset_names()) {
    SCOPED_TRACE(name);
    auto ctx = std::make_shared<QuantContext>();
    models::CausalLM m(c, models::ModelOptions{.seed = 1});
    prepare(m, resolve_preset(name), ctx);
    begin_calibration(m);
    m.forward(ids_of(1));
    finish_calibration(m);
    const Tensor loss = m.loss(ids_of(2), ids_of(3));
    EXPECT_TRUE(std::isfinite(loss.item()));
    loss.backward();
    const Tensor g = m.parameter("model.layers.0.mlp.up_proj.weight").grad();
    ASSERT_TRUE(g.defined());
    EXPECT_GT(sum(mul(g, g)).item(), 0.0);
  }
}

TEST(Prepare, QatTrainingLowersTheLoss) {
  auto ctx = std::make_shared<QuantContext>();
  models::CausalLM m(tiny(), models::ModelOptions{.seed = 7});
  prepare(m, resolve_preset("W4A8", PresetOptions{.group_size = 16}), ctx);
  optim::AdamW opt({{m.parameters(), 0.0}}, optim::AdamWOptions{3e-3});
  const Tensor data = ids_of(3, 4, 17);
  const Tensor x = data.narrow(1, 0, 16), y = data.narrow(1, 1, 16);
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    ctx->step = step;
    opt.zero_grad();
    const Tensor loss = m.loss(x, y);
    if (step == 0) first = loss.item();
    last = loss.item();
    loss.backward();
    opt.step();
  }
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;
}

}  // namespace
}  // namespace lowbit::quant
