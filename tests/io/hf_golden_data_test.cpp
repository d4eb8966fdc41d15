// Structure of the Hugging Face golden files (tests/data/hf_golden/<model>/, written by
// tests/reference/hf_golden.py): every expected key with its shape and dtype, token ids in the
// vocabulary, one gradient per checkpoint tensor and nothing else, and finite values. The
// numerical comparison against lowbit's models lives with the model tests.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

#include "lowbit/io/safetensors.h"

namespace lowbit::io {
namespace {

constexpr int64_t kVocab = 64, kBatch = 2, kSeq = 12;

struct GoldenModel {
  const char* name;
  size_t num_params;  // named parameters (a tied lm_head counts once)
  bool tied;
  std::vector<std::pair<std::string, Shape>> must_have;  // keys that make the variant
};

const std::vector<GoldenModel>& golden_models() {
  static const std::vector<GoldenModel> models = {
      {"llama", 21, false, {{"lm_head.weight", {64, 32}}, {"model.layers.1.self_attn.k_proj.weight", {16, 32}}}},
      {"llama3_rope_scaling", 20, true, {{"model.embed_tokens.weight", {64, 32}}}},
      {"qwen2", 27, false,
       {{"lm_head.weight", {64, 32}}, {"model.layers.0.self_attn.q_proj.bias", {32}},
        {"model.layers.1.self_attn.v_proj.bias", {16}}}},
      {"qwen3", 24, true,
       {{"model.layers.0.self_attn.q_proj.weight", {64, 32}}, {"model.layers.1.self_attn.q_norm.weight", {16}},
        {"model.layers.1.self_attn.k_norm.weight", {16}}, {"model.layers.0.self_attn.o_proj.weight", {32, 64}}}},
  };
  return models;
}

std::string golden_dir(const char* name) { return std::string(LOWBIT_TEST_DATA_DIR) + "/hf_golden/" + name; }

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector<double>())
    if (!std::isfinite(v)) return false;
  return true;
}

TEST(HfGoldenData, EveryModelDirectoryHasItsFiles) {
  for (const GoldenModel& m : golden_models()) {
    for (const char* f : {"config.json", "model.safetensors", "golden.safetensors"})
      EXPECT_TRUE(std::filesystem::is_regular_file(golden_dir(m.name) + "/" + f)) << m.name << "/" << f;
  }
}

TEST(HfGoldenData, CheckpointsAreFloat64WithTheExpectedTensors) {
  for (const GoldenModel& m : golden_models()) {
    SCOPED_TRACE(m.name);
    const SafetensorsReader ckpt(golden_dir(m.name) + "/model.safetensors");
    EXPECT_EQ(ckpt.names().size(), m.num_params);
    EXPECT_EQ(ckpt.has("lm_head.weight"), !m.tied);
    for (const std::string& n : ckpt.names()) {
      EXPECT_EQ(ckpt.info(n).dtype, DType::f64) << n;
      EXPECT_TRUE(all_finite(ckpt.get(n))) << n;
    }
    for (const auto& [key, shape] : m.must_have) {
      ASSERT_TRUE(ckpt.has(key)) << key;
      EXPECT_EQ(ckpt.info(key).shape, shape) << key;
    }
  }
}

TEST(HfGoldenData, GoldenFilesHoldInputsLogitsLossAndOneGradPerParameter) {
  for (const GoldenModel& m : golden_models()) {
    SCOPED_TRACE(m.name);
    const SafetensorsReader ckpt(golden_dir(m.name) + "/model.safetensors");
    const SafetensorsReader golden(golden_dir(m.name) + "/golden.safetensors");

    std::set<std::string> expected = {"input_ids", "logits", "loss"};
    for (const std::string& n : ckpt.names()) expected.insert("grad." + n);
    EXPECT_EQ(std::set<std::string>(golden.names().begin(), golden.names().end()), expected);

    ASSERT_TRUE(golden.has("input_ids"));
    EXPECT_EQ(golden.info("input_ids").dtype, DType::i64);
    EXPECT_EQ(golden.info("input_ids").shape, (Shape{kBatch, kSeq}));
    for (int64_t id : golden.get("input_ids").to_vector<int64_t>()) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, kVocab);
    }
    ASSERT_TRUE(golden.has("logits") && golden.has("loss"));
    EXPECT_EQ(golden.info("logits").dtype, DType::f64);
    EXPECT_EQ(golden.info("logits").shape, (Shape{kBatch, kSeq, kVocab}));
    EXPECT_TRUE(all_finite(golden.get("logits")));
    EXPECT_EQ(golden.info("loss").dtype, DType::f64);
    EXPECT_EQ(golden.info("loss").shape, Shape{});
    const double loss = golden.get("loss").item();
    EXPECT_TRUE(std::isfinite(loss) && loss > 0) << loss;

    for (const std::string& n : ckpt.names()) {
      const std::string g = "grad." + n;
      if (!golden.has(g)) continue;  // reported by the key-set comparison above
      EXPECT_EQ(golden.info(g).dtype, DType::f64) << g;
      EXPECT_EQ(golden.info(g).shape, ckpt.info(n).shape) << g;
      EXPECT_TRUE(all_finite(golden.get(g))) << g;
    }
    for (const char* k : {"python", "torch", "transformers", "safetensors"})
      EXPECT_TRUE(golden.metadata().count(k)) << "metadata lacks " << k;
  }
}

}  // namespace
}  // namespace lowbit::io
