// Weight-only quantization of token embeddings: prepare(.embeddings = true) attaches a
// weight-only quantizer to nn::Embedding; the fake forward looks up rows of
// dequantize(quantize(W)) bit for bit with the straight-through gradient, and after convert()
// only the looked-up rows are decoded from the packed table, equal to the fake rows bit for bit.
#include <gtest/gtest.h>

#include <cstring>

#include "lowbit/engine/lowbit.h"
#include "lowbit/models/llama.h"
#include "lowbit/quant/linear_quant.h"

namespace lowbit::quant {
namespace {

models::ModelConfig tiny() {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 48;
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.max_position_embeddings = 32;
  c.tie_word_embeddings = false;
  return c;
}

Tensor ids() {
  Generator g(3);
  return randint({2, 9}, 0, 48, DType::i64, &g);
}

bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(DType::f32).contiguous(), y = b.to(DType::f32).contiguous();
  return x.shape() == y.shape() && std::memcmp(x.raw_data(), y.raw_data(), sizeof(float) * x.numel()) == 0;
}

// The rows ids of table, by plain lookup.
Tensor rows_of(const Tensor& table, const Tensor& i) {
  NoGradGuard ng;
  return embedding(table, i);
}

class EmbeddingQuant : public ::testing::TestWithParam<std::string> {};

TEST_P(EmbeddingQuant, FakeRowsAreTheCodecsAndConvertedRowsEqualThem) {
  const bool grouped = GetParam() == "W4A8" || GetParam() == "INT4_WEIGHT_ONLY";
  const QuantPreset preset = resolve_preset(GetParam(), {.group_size = grouped ? 32 : 0});
  models::CausalLM model(tiny(), {.seed = 5});
  auto ctx = std::make_shared<QuantContext>();
  const auto layers = prepare(model, preset, ctx, {.embeddings = true});
  LinearQuant* emb = nullptr;
  for (auto& [name, l] : layers) {
    EXPECT_NE(name, "lm_head");
    if (name == "model.embed_tokens") emb = l;
  }
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->input(), nullptr);  // weight-only
  EXPECT_EQ(emb->quantizers().size(), 1u);
  begin_calibration(model);
  {
    NoGradGuard ng;
    model.forward(ids());
  }
  finish_calibration(model);

  const Tensor w = model.model->embed_tokens->weight;
  const Tensor i = ids();
  const Tensor table_dq = dequantize(quantize(w, emb->weight().spec(), emb->weight().has_params() ? &emb->weight().params() : nullptr));
  const Tensor fake = model.model->embed_tokens->forward(i);
  EXPECT_TRUE(same_bits(fake, rows_of(table_dq, i)));
  EXPECT_FALSE(same_bits(fake, rows_of(w, i)));  // it does quantize

  // Straight-through gradient through the lookup: each element of a looked-up row gets the
  // row's count, or 0 where the gradient rule masks a clipped value (the rule itself is tested
  // in fake_quant's tests; here only the few extremes of symmetric int4 / Q4_0 ranges clip).
  sum(fake).backward();
  const auto g = w.grad().to(DType::f32).contiguous().to_vector<float>();
  const auto iv = i.contiguous().to_vector<int64_t>();
  std::vector<float> count(48, 0);
  for (int64_t id : iv) count[static_cast<size_t>(id)] += 1;
  int64_t clipped = 0, looked_up = 0;
  for (int64_t e = 0; e < 48 * 64; ++e) {
    const float want = count[static_cast<size_t>(e / 64)], got = g[static_cast<size_t>(e)];
    looked_up += want != 0;
    if (got == 0 && want != 0) ++clipped;
    else EXPECT_EQ(got, want) << "element " << e;
  }
  EXPECT_LT(clipped, looked_up / 10);

  convert(model);
  EXPECT_TRUE(emb->converted());
  NoGradGuard ng;
  EXPECT_TRUE(same_bits(model.model->embed_tokens->forward(i), fake));
  set_mode(model, LinearMode::dequantized);
  EXPECT_TRUE(same_bits(model.model->embed_tokens->forward(i), fake));
}

INSTANTIATE_TEST_SUITE_P(Presets, EmbeddingQuant,
                         ::testing::Values("INT8_DEFAULT", "W4A8", "INT4_WEIGHT_ONLY", "FP8_DEFAULT", "NVFP4_WEIGHT_ONLY",
                                           "MXFP4", "GGUF_Q4_0", "GGUF_Q8_0"));

TEST(EmbeddingQuantOptions, EmbeddingsStayPlainByDefaultAndBadIdsAreRejected) {
  models::CausalLM model(tiny(), {.seed = 5});
  auto ctx = std::make_shared<QuantContext>();
  for (auto& [name, l] : prepare(model, resolve_preset("INT8_DEFAULT"), ctx)) EXPECT_NE(name, "model.embed_tokens");
  EXPECT_EQ(model.model->embed_tokens->quant, nullptr);

  models::CausalLM m2(tiny(), {.seed = 5});
  prepare(m2, resolve_preset("INT4_WEIGHT_ONLY", {.group_size = 32}), ctx, {.embeddings = true});
  convert(m2);
  const Tensor bad = from_vector(std::vector<int64_t>{1, 48}, {2}, DType::i64);
  try {
    m2.model->embed_tokens->forward(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("id 48 is outside the vocabulary [0, 48)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lowbit::quant
