// GGUF export and reader: every tensor type round trips (F32 bitwise, F16/BF16 equal to our casts,
// Q8_0/Q4_0 equal to our codecs' dequantize bit for bit), llama's q/k permutation is llama.cpp's
// and inverts, the metadata holds what llama.cpp reads, qwen2/qwen3/tied/rope-scaled models map
// to the right tensors, unsupported inputs are refused, truncated and corrupt files give
// one-line errors, and our bytes equal the golden files written by the `gguf` Python package
// (tests/reference/gguf_golden.py) byte for byte.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "../test_util.h"
#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/gguf.h"
#include "lowbit/io/hf_model.h"
#include "lowbit/io/tokenizer.h"
#include "lowbit/quant/qtensor.h"

namespace lowbit::io {
namespace {

namespace fs = std::filesystem;

std::string data_path(const std::string& rel) { return std::string(LOWBIT_TEST_DATA_DIR) + "/" + rel; }
const std::string kGpt2Tokenizer = data_path("tokenizer/gpt2_style.tokenizer.json");      // 2001 ids
const std::string kLlama3Tokenizer = data_path("tokenizer/llama3_style.tokenizer.json");  // 2000 ids
const std::string kGoldenDir = data_path("gguf");

// One directory per test: ctest runs the tests of this file in parallel processes.
std::string temp_dir(const std::string& name) { return test::temp_dir("gguf_" + name); }

using test::error_of;

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  const std::string msg = error_of(f);
  ASSERT_FALSE(msg.empty()) << "no error; expected one containing '" << parts.front() << "'";
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
}

models::ModelConfig tiny_config(const std::string& type, int64_t vocab) {
  models::ModelConfig c;
  c.model_type = type;
  c.vocab_size = vocab;
  c.hidden_size = 64;
  c.intermediate_size = 80;  // down_proj rows of 80: not whole Q8_0/Q4_0 blocks
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 16;
  c.max_position_embeddings = 128;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000;
  c.attention_bias = type == "qwen2";
  c.qk_norm = type == "qwen3";
  return c;
}

// Seeded weights; norms and biases randomized too, so no tensor is trivially constant.
std::unique_ptr<models::CausalLM> tiny_model(const models::ModelConfig& c, uint64_t seed = 7) {
  auto m = std::make_unique<models::CausalLM>(c, models::ModelOptions{.seed = seed});
  NoGradGuard ng;
  Generator gen(seed + 1);
  for (const auto& [n, p] : m->named_parameters())
    if (p.dim() == 1) copy_(p, randn(p.shape(), n.ends_with("bias") ? 0.0 : 1.0, 0.1, DType::f32, &gen));
  return m;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.contiguous().raw_data());
  return {p, p + t.numel() * (traits(t.dtype()).bits / 8)};
}

std::map<std::string, Tensor> params_of(const models::CausalLM& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [n, p] : m.named_parameters()) out.emplace(n, p.detach());
  return out;
}

GgufFile save_and_read(const models::CausalLM& m, const std::string& path, GgmlType type,
                       const std::string& tokenizer = kGpt2Tokenizer) {
  save_gguf(m, path, GgufSaveOptions{.type = type, .tokenizer = tokenizer, .name = "tiny"});
  return read_gguf(path);
}

// The f32 value each GGUF tensor must decode to, given the tensor's type in the file.
Tensor expected_f32(const Tensor& w, GgmlType type) {
  switch (type) {
    case GgmlType::f32: return w;
    case GgmlType::f16: return w.to(DType::f16).to(DType::f32);
    case GgmlType::bf16: return w.to(DType::bf16).to(DType::f32);
    default: {
      quant::QuantSpec spec;
      spec.format = type == GgmlType::q8_0 ? quant::Format::gguf_q8_0 : quant::Format::gguf_q4_0;
      spec.granularity = quant::Granularity::per_group;
      spec.group_size = 32;
      return quant::dequantize(quant::quantize(w, spec));
    }
  }
}

TEST(GgufRoundTrip, EveryTypeParsesBackToTheWeights) {
  const models::ModelConfig c = tiny_config("llama", 2048);
  const auto m = tiny_model(c);
  const auto params = params_of(*m);
  const std::string d = temp_dir("roundtrip");
  const std::map<std::string, std::string> names = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.1.attn_norm.weight", "model.layers.1.input_layernorm.weight"},
      {"blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight"},
      {"blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight"},
      {"blk.1.attn_v.weight", "model.layers.1.self_attn.v_proj.weight"},
      {"blk.1.attn_output.weight", "model.layers.1.self_attn.o_proj.weight"},
      {"blk.1.ffn_norm.weight", "model.layers.1.post_attention_layernorm.weight"},
      {"blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight"},
      {"blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"},
      {"blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight"}};
  for (GgmlType type : {GgmlType::f32, GgmlType::f16, GgmlType::bf16, GgmlType::q8_0, GgmlType::q4_0}) {
    SCOPED_TRACE(ggml_type_name(type));
    const GgufFile f = save_and_read(*m, d + "/m.gguf", type);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.tensors().size(), 2 + 9 * 2 + 1u);
    for (const auto& [gg, hf] : names) {
      SCOPED_TRACE(gg);
      Tensor w = params.at(hf);
      if (gg.find("attn_q.") != std::string::npos) w = gguf_permute_qk(w, c.num_attention_heads);
      if (gg.find("attn_k.") != std::string::npos) w = gguf_permute_qk(w, c.num_key_value_heads);
      const GgufTensorInfo& info = f.tensor(gg);
      EXPECT_EQ(info.shape(), w.shape());
      EXPECT_EQ(info.ne.front(), w.shape().back()) << "ne[0] is the row length";
      // 1-D tensors stay F32; Q8_0/Q4_0 keep ffn_down (rows of 80) in F32.
      const bool quant = type == GgmlType::q8_0 || type == GgmlType::q4_0;
      const GgmlType want = w.dim() == 1 || (quant && w.shape().back() % 32 != 0) ? GgmlType::f32 : type;
      ASSERT_EQ(info.type, want);
      const std::span<const uint8_t> raw = f.tensor_data(info);
      if (want == GgmlType::f32 || want == GgmlType::f16 || want == GgmlType::bf16) {
        const DType dt = want == GgmlType::f32 ? DType::f32 : want == GgmlType::f16 ? DType::f16 : DType::bf16;
        EXPECT_EQ(std::vector<uint8_t>(raw.begin(), raw.end()), bytes_of(w.to(dt))) << "raw bytes = our cast";
      }
      EXPECT_EQ(bytes_of(gguf_tensor_to_f32(f, gg)), bytes_of(expected_f32(w, want))) << "decoded bitwise";
    }
  }
}

TEST(GgufRoundTrip, QkPermutationIsLlamaCppsAndInverts) {
  // Two heads of head_dim 4: rotate-half rows (0 1 | 2 3) become interleaved (0 2 1 3).
  const Tensor rows = arange(8, DType::f32).reshape({8, 1}).expand({8, 3}).contiguous();
  const std::vector<float> first_col = gguf_permute_qk(rows, 2).select(1, 0).contiguous().to_vector<float>();
  EXPECT_EQ(first_col, (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
  const Tensor bias = arange(8, DType::f32);
  EXPECT_EQ(gguf_permute_qk(bias, 2).to_vector<float>(), first_col);
  const Tensor w = randn({4 * 16, 64});
  EXPECT_EQ(bytes_of(gguf_unpermute_qk(gguf_permute_qk(w, 4), 4)), bytes_of(w));
  EXPECT_NE(bytes_of(gguf_permute_qk(w, 4)), bytes_of(w));
  expect_error([&] { gguf_permute_qk(randn({10, 4}), 4); }, {"gguf_permute_qk", "4 heads"});

  // In the file: llama's q (4 heads) and k (2 kv heads) undo to the HF weights; qwen2 is not permuted.
  const std::string d = temp_dir("perm");
  const auto llama = tiny_model(tiny_config("llama", 2048));
  const GgufFile f = save_and_read(*llama, d + "/llama.gguf", GgmlType::f32);
  const auto p = params_of(*llama);
  EXPECT_EQ(bytes_of(gguf_unpermute_qk(gguf_tensor_to_f32(f, "blk.0.attn_q.weight"), 4)),
            bytes_of(p.at("model.layers.0.self_attn.q_proj.weight")));
  EXPECT_EQ(bytes_of(gguf_unpermute_qk(gguf_tensor_to_f32(f, "blk.0.attn_k.weight"), 2)),
            bytes_of(p.at("model.layers.0.self_attn.k_proj.weight")));
  const auto qwen = tiny_model(tiny_config("qwen2", 2048));
  const GgufFile q = save_and_read(*qwen, d + "/qwen2.gguf", GgmlType::f32);
  const auto qp = params_of(*qwen);
  for (const char* t : {"q", "k"}) {
    const std::string hf = std::string("model.layers.0.self_attn.") + t + "_proj.";
    EXPECT_EQ(bytes_of(gguf_tensor_to_f32(q, std::string("blk.0.attn_") + t + ".weight")), bytes_of(qp.at(hf + "weight")));
    EXPECT_EQ(bytes_of(gguf_tensor_to_f32(q, std::string("blk.0.attn_") + t + ".bias")), bytes_of(qp.at(hf + "bias")));
  }
}

TEST(GgufMetadata, HoldsWhatLlamaCppReads) {
  const models::ModelConfig c = tiny_config("llama", 2048);
  const auto m = tiny_model(c);
  const std::string d = temp_dir("meta");
  const GgufFile f = save_and_read(*m, d + "/m.gguf", GgmlType::q8_0);
  const auto u = [&](const std::string& k) {
    EXPECT_EQ(f.get(k).type, GgufType::u32) << k;
    return f.get(k).as_uint();
  };
  EXPECT_EQ(f.metadata().front().first, "general.architecture");
  EXPECT_EQ(f.get("general.architecture").as_string(), "llama");
  EXPECT_EQ(f.get("general.name").as_string(), "tiny");
  EXPECT_EQ(u("general.alignment"), 32u);
  EXPECT_EQ(u("general.file_type"), 7u);  // MOSTLY_Q8_0
  EXPECT_EQ(u("general.quantization_version"), 2u);
  EXPECT_EQ(u("llama.vocab_size"), 2048u);
  EXPECT_EQ(u("llama.context_length"), 128u);
  EXPECT_EQ(u("llama.embedding_length"), 64u);
  EXPECT_EQ(u("llama.block_count"), 2u);
  EXPECT_EQ(u("llama.feed_forward_length"), 80u);
  EXPECT_EQ(u("llama.attention.head_count"), 4u);
  EXPECT_EQ(u("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(u("llama.attention.key_length"), 16u);
  EXPECT_EQ(u("llama.rope.dimension_count"), 16u);
  EXPECT_EQ(f.get("llama.rope.freq_base").type, GgufType::f32);
  EXPECT_EQ(f.get("llama.rope.freq_base").as_float(), 10000.0);
  EXPECT_EQ(f.get("llama.attention.layer_norm_rms_epsilon").as_float(), static_cast<double>(1e-5f));
  EXPECT_EQ(f.get("tokenizer.ggml.model").as_string(), "gpt2");
  EXPECT_EQ(f.get("tokenizer.ggml.pre").as_string(), "gpt-2");

  // Tokens: the file's spelling by id, padded to the model's vocab with unused [PADn].
  const tok::Tokenizer t = tok::Tokenizer::from_file(kGpt2Tokenizer);
  const GgufArray& tokens = f.get("tokenizer.ggml.tokens").as_array();
  const GgufArray& types = f.get("tokenizer.ggml.token_type").as_array();
  ASSERT_EQ(tokens.type, GgufType::string);
  ASSERT_EQ(types.type, GgufType::i32);
  ASSERT_EQ(tokens.items.size(), 2048u);
  ASSERT_EQ(types.items.size(), 2048u);
  for (int32_t id : {5, 300, 1999}) EXPECT_EQ(tokens.items[id].as_string(), *t.id_to_token(id));
  EXPECT_EQ(tokens.items[0].as_string(), "<|endoftext|>");
  EXPECT_EQ(types.items[0].as_int(), 3) << "special added token: control";
  EXPECT_EQ(types.items[1110].as_int(), 4) << "non-special added token: user-defined";
  EXPECT_EQ(types.items[2000].as_int(), 3);
  EXPECT_EQ(types.items[5].as_int(), 1);
  EXPECT_EQ(tokens.items[2001].as_string(), "[PAD2001]");
  EXPECT_EQ(types.items[2047].as_int(), 5) << "padding: unused";
  const GgufArray& merges = f.get("tokenizer.ggml.merges").as_array();
  ASSERT_EQ(merges.items.size(), t.data().merges.size());
  EXPECT_EQ(merges.items[0].as_string(), t.data().merges[0].first + " " + t.data().merges[0].second);
  // GPT-2 convention: <|endoftext|> is both, and nothing is added when encoding.
  EXPECT_EQ(u("tokenizer.ggml.bos_token_id"), 0u);
  EXPECT_EQ(u("tokenizer.ggml.eos_token_id"), 0u);
  EXPECT_FALSE(f.get("tokenizer.ggml.add_bos_token").as_bool());
  EXPECT_FALSE(f.get("tokenizer.ggml.add_eos_token").as_bool());

  // A Llama-3 tokenizer: its template adds <|begin_of_text|>; the config's eos wins.
  models::ModelConfig c3 = c;
  c3.eos_token_ids = {1};
  const auto m3 = tiny_model(c3);
  const GgufFile f3 = save_and_read(*m3, d + "/l3.gguf", GgmlType::f16, kLlama3Tokenizer);
  EXPECT_EQ(f3.get("tokenizer.ggml.pre").as_string(), "llama-bpe");
  EXPECT_EQ(f3.get("tokenizer.ggml.bos_token_id").as_uint(), 0u);
  EXPECT_EQ(f3.get("tokenizer.ggml.eos_token_id").as_uint(), 1u);
  EXPECT_TRUE(f3.get("tokenizer.ggml.add_bos_token").as_bool());
  EXPECT_EQ(f3.get("general.file_type").as_uint(), 1u);

  // Qwen2's layout: Llama-3's with single-digit numbers, without ignore_merges.
  tok::TokenizerData qd = tok::Tokenizer::from_file(kLlama3Tokenizer).data();
  qd.pre_tokenizer.splits.at(0).pattern =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  qd.ignore_merges = false;
  tok::Tokenizer(qd).save(d + "/qwen2.json");
  EXPECT_EQ(save_and_read(*m3, d + "/q.gguf", GgmlType::f16, d + "/qwen2.json").get("tokenizer.ggml.pre").as_string(),
            "qwen2");

  // Extra metadata follows general.*; a key the writer owns is a duplicate.
  save_gguf(*m, d + "/extra.gguf",
            GgufSaveOptions{.type = GgmlType::f32, .tokenizer = kGpt2Tokenizer,
                            .extra = {{"lowbit.quant.preset", GgufValue::string("W4A8")}}});
  const GgufFile fe = read_gguf(d + "/extra.gguf");
  EXPECT_EQ(fe.get("lowbit.quant.preset").as_string(), "W4A8");
  EXPECT_EQ(fe.metadata().at(5).first, "lowbit.quant.preset");
  expect_error([&] {
    save_gguf(*m, d + "/dup.gguf",
              GgufSaveOptions{.type = GgmlType::f32, .tokenizer = kGpt2Tokenizer,
                              .extra = {{"general.name", GgufValue::string("again")}}});
  }, {"duplicate metadata key 'general.name'"});
  EXPECT_FALSE(fs::exists(d + "/dup.gguf"));

  // The name defaults to the file's stem.
  save_gguf(*m, d + "/my-model.gguf", GgufSaveOptions{.type = GgmlType::f32, .tokenizer = kGpt2Tokenizer});
  EXPECT_EQ(read_gguf(d + "/my-model.gguf").get("general.name").as_string(), "my-model");
  EXPECT_EQ(parse_gguf_save_type("Q4_0"), GgmlType::q4_0);
  expect_error([] { parse_gguf_save_type("q5_k"); }, {"q5_k", "q8_0"});
}

// SentencePiece-style vocabularies: llama.cpp's "llama" tokenizer with scores and token types,
// from a tokenizer.model (its own scores and types) or a tokenizer.json (scores in merge order);
// normalizers llama.cpp does not apply are refused with the reason.
TEST(GgufMetadata, SentencePieceVocabulariesAreLlamaWithScoresAndTypes) {
  const std::string d = temp_dir("gguf_spm");
  const auto m = tiny_model(tiny_config("llama", 1024));
  const tok::Tokenizer model_file = tok::Tokenizer::from_file(data_path("tokenizer/llama2_style.model"));
  const GgufFile f = save_and_read(*m, d + "/sp.gguf", GgmlType::f32, data_path("tokenizer/llama2_style.model"));
  EXPECT_EQ(f.get("tokenizer.ggml.model").as_string(), "llama");
  EXPECT_EQ(f.find("tokenizer.ggml.merges"), nullptr);
  EXPECT_EQ(f.find("tokenizer.ggml.pre"), nullptr);
  EXPECT_TRUE(f.get("tokenizer.ggml.add_space_prefix").as_bool());
  const GgufArray& scores = f.get("tokenizer.ggml.scores").as_array();
  const GgufArray& types = f.get("tokenizer.ggml.token_type").as_array();
  ASSERT_EQ(scores.type, GgufType::f32);
  ASSERT_EQ(scores.items.size(), 1024u);
  EXPECT_EQ(types.items[0].as_int(), 2);  // <unk>
  EXPECT_EQ(types.items[1].as_int(), 3);  // <s>
  const int32_t a_byte = *model_file.token_to_id("<0x41>");
  EXPECT_EQ(types.items[static_cast<size_t>(a_byte)].as_int(), 6);
  EXPECT_EQ(scores.items[500].as_float(), static_cast<double>(model_file.data().scores[500]));
  EXPECT_EQ(f.get("tokenizer.ggml.unknown_token_id").as_uint(), 0u);
  EXPECT_EQ(f.get("tokenizer.ggml.bos_token_id").as_uint(), 1u);
  EXPECT_EQ(f.get("tokenizer.ggml.eos_token_id").as_uint(), 2u);
  EXPECT_TRUE(f.get("tokenizer.ggml.add_bos_token").as_bool());

  // The converted tokenizer.json: the same pieces, and scores that order merged tokens by rank.
  const tok::Tokenizer json_file = tok::Tokenizer::from_file(data_path("tokenizer/llama2_style.tokenizer.json"));
  const GgufFile j = save_and_read(*m, d + "/json.gguf", GgmlType::f32, data_path("tokenizer/llama2_style.tokenizer.json"));
  EXPECT_EQ(j.get("tokenizer.ggml.model").as_string(), "llama");
  EXPECT_TRUE(j.get("tokenizer.ggml.add_space_prefix").as_bool());
  const GgufArray& js = j.get("tokenizer.ggml.scores").as_array();
  const auto& merges = json_file.data().merges;
  // Each merged token scores minus the rank of the first merge that spells it.
  std::map<std::string, size_t> first_rank;
  for (size_t r = 0; r < merges.size(); ++r) first_rank.emplace(merges[r].first + merges[r].second, r);
  for (size_t r : {size_t{0}, size_t{9}, merges.size() - 1}) {
    const std::string joined = merges[r].first + merges[r].second;
    EXPECT_EQ(js.items[static_cast<size_t>(*json_file.token_to_id(joined))].as_float(), -double(first_rank[joined]));
  }
  EXPECT_LT(js.items[static_cast<size_t>(a_byte)].as_float(), -1e8);  // made by no merge: last
  EXPECT_EQ(j.get("tokenizer.ggml.token_type").as_array().items[static_cast<size_t>(a_byte)].as_int(), 6);
  const GgufArray& tokens = j.get("tokenizer.ggml.tokens").as_array();
  for (int32_t id : {3, 300, 999}) EXPECT_EQ(tokens.items[static_cast<size_t>(id)].as_string(), *model_file.id_to_token(id));

  // Mistral's Metaspace layout: llama too. A normalizer llama.cpp lacks: refused.
  EXPECT_EQ(save_and_read(*m, d + "/mistral.gguf", GgmlType::f32, data_path("tokenizer/mistral_style.tokenizer.json"))
                .get("tokenizer.ggml.model").as_string(),
            "llama");
  const auto big = tiny_model(tiny_config("llama", 2048));
  expect_error([&] { save_and_read(*big, d + "/nfkc.gguf", GgmlType::f32, data_path("tokenizer/metaspace_style.tokenizer.json")); },
               {"metaspace_style.tokenizer.json", "applies no normalizer"});
  EXPECT_FALSE(fs::exists(d + "/nfkc.gguf"));
}

TEST(GgufArchitectures, QwenTiedAndRopeScaledModelsMapToLlamaCppTensors) {
  const std::string d = temp_dir("arch");
  const auto names_of = [](const GgufFile& f) {
    std::set<std::string> s;
    for (const GgufTensorInfo& t : f.tensors()) s.insert(t.name);
    return s;
  };
  const GgufFile q2 = save_and_read(*tiny_model(tiny_config("qwen2", 2048)), d + "/q2.gguf", GgmlType::q4_0);
  EXPECT_EQ(q2.get("general.architecture").as_string(), "qwen2");
  EXPECT_EQ(q2.get("qwen2.block_count").as_uint(), 2u);
  EXPECT_EQ(q2.tensor("blk.0.attn_v.bias").type, GgmlType::f32);
  EXPECT_EQ(q2.tensor("blk.0.attn_v.weight").type, GgmlType::q4_0);
  EXPECT_EQ(names_of(q2).count("blk.0.attn_output.bias"), 0u);

  models::ModelConfig c3 = tiny_config("qwen3", 2048);
  c3.tie_word_embeddings = true;
  const auto m3 = tiny_model(c3);
  const GgufFile q3 = save_and_read(*m3, d + "/q3.gguf", GgmlType::bf16);
  EXPECT_EQ(q3.get("general.architecture").as_string(), "qwen3");
  EXPECT_EQ(q3.tensor("blk.1.attn_q_norm.weight").ne, (std::vector<int64_t>{16}));
  EXPECT_EQ(bytes_of(gguf_tensor_to_f32(q3, "blk.1.attn_k_norm.weight")),
            bytes_of((*m3->model->layers)[1].self_attn->k_norm->weight.detach()));
  EXPECT_EQ(names_of(q3).count("output.weight"), 0u) << "tied: llama.cpp reuses token_embd";
  EXPECT_EQ(q3.tensors().size(), 1 + 11 * 2 + 1u);

  // Llama-3 rope scaling: rope_freqs holds each frequency's divisor (1 short wavelengths, factor long).
  models::ModelConfig cr = tiny_config("llama", 2048);
  cr.rope_theta = 500000;
  cr.rope_scaling = models::RopeScaling{.factor = 8, .original_max_position_embeddings = 64};
  const GgufFile fr = save_and_read(*tiny_model(cr), d + "/rope.gguf", GgmlType::f16);
  const std::vector<float> fac = gguf_tensor_to_f32(fr, "rope_freqs.weight").to_vector<float>();
  ASSERT_EQ(fac.size(), 8u);
  EXPECT_FLOAT_EQ(fac.front(), 1.0f);
  EXPECT_FLOAT_EQ(fac.back(), 8.0f);
  EXPECT_EQ(fr.tensors().front().name, "rope_freqs.weight");
}

TEST(GgufArchitectures, RefusesWhatLlamaCppCannotLoad) {
  const std::string d = temp_dir("refuse");
  const auto save = [&](const models::CausalLM& m, const std::string& tokenizer) {
    save_gguf(m, d + "/x.gguf", GgufSaveOptions{.type = GgmlType::f16, .tokenizer = tokenizer});
  };
  models::ModelConfig c = tiny_config("llama", 2048);
  c.qk_norm = true;
  expect_error([&] { save(*tiny_model(c), kGpt2Tokenizer); }, {"x.gguf", "qk_norm"});
  c = tiny_config("qwen3", 2048);
  c.attention_bias = true;
  expect_error([&] { save(*tiny_model(c), kGpt2Tokenizer); }, {"qwen3 has no attention biases"});
  const auto small = tiny_model(tiny_config("llama", 1000));
  expect_error([&] { save(*small, kGpt2Tokenizer); }, {"2001 ids do not fit the model's vocab_size 1000"});
  const auto m = tiny_model(tiny_config("llama", 2048));
  expect_error([&] { save(*m, ""); }, {"tokenizer", "required"});
  expect_error([&] { save_gguf(*m, d + "/x.gguf", {.type = static_cast<GgmlType>(12), .tokenizer = kGpt2Tokenizer}); },
               {"type 12 is not written"});
  // A pre-tokenizer llama.cpp has no name for.
  tok::TokenizerData td = tok::Tokenizer::from_file(kGpt2Tokenizer).data();
  td.pre_tokenizer.add_prefix_space = true;
  tok::Tokenizer(td).save(d + "/prefix.json");
  expect_error([&] { save(*m, d + "/prefix.json"); }, {"prefix.json", "none of GPT-2's, Llama-3's or Qwen2's"});
  // A Llama-3 layout keeps llama.cpp's ignore_merges (true).
  td = tok::Tokenizer::from_file(kLlama3Tokenizer).data();
  td.ignore_merges = false;
  tok::Tokenizer(td).save(d + "/merges.json");
  expect_error([&] { save(*m, d + "/merges.json"); }, {"'llama-bpe' pre-tokenizer has ignore_merges true"});
  EXPECT_FALSE(fs::exists(d + "/x.gguf"));
}

// ---- reader: a small hand-built file, then corruptions of each field ----

struct Mini {
  std::string bytes;
  std::map<std::string, size_t> at;  // field -> byte offset
  template <class T>
  void put(const std::string& field, T v) {
    at[field] = bytes.size();
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void put_str(const std::string& field, const std::string& s) {
    put<uint64_t>(field + ".len", s.size());
    at[field] = bytes.size();
    bytes += s;
  }
  template <class T>
  Mini with(const std::string& field, T v) const {
    Mini m = *this;
    std::memcpy(m.bytes.data() + at.at(field), &v, sizeof v);
    return m;
  }
  Mini patch(const std::string& field, const std::string& s) const {
    Mini m = *this;
    m.bytes.replace(at.at(field), s.size(), s);
    return m;
  }
};

// Two tensors: "a" F32 (2, 32) at 0 and "b" Q8_0 (64) at 256; four keys.
Mini mini_gguf() {
  Mini m;
  m.put<uint32_t>("magic", 0x46554747);
  m.put<uint32_t>("version", 3);
  m.put<uint64_t>("n_tensors", 2);
  m.put<uint64_t>("n_kv", 4);
  m.put_str("k0", "general.architecture");
  m.put<uint32_t>("k0.type", 8);
  m.put_str("k0.value", "llama");
  m.put_str("k1", "general.alignment");
  m.put<uint32_t>("k1.type", 4);
  m.put<uint32_t>("k1.value", 32);
  m.put_str("k2", "test.arr");
  m.put<uint32_t>("k2.type", 9);
  m.put<uint32_t>("k2.elem", 5);
  m.put<uint64_t>("k2.count", 3);
  for (int32_t i : {1, 2, 3}) m.put<int32_t>("k2.item", i);
  m.put_str("k3", "test.flg");
  m.put<uint32_t>("k3.type", 7);
  m.put<uint8_t>("k3.value", 1);
  m.put_str("a", "a");
  m.put<uint32_t>("a.n_dims", 2);
  m.put<uint64_t>("a.ne0", 32);
  m.put<uint64_t>("a.ne1", 2);
  m.put<uint32_t>("a.type", 0);
  m.put<uint64_t>("a.offset", 0);
  m.put_str("b", "b");
  m.put<uint32_t>("b.n_dims", 1);
  m.put<uint64_t>("b.ne0", 64);
  m.put<uint32_t>("b.type", 8);
  m.put<uint64_t>("b.offset", 256);
  m.bytes.resize((m.bytes.size() + 31) / 32 * 32, '\0');
  m.at["data"] = m.bytes.size();
  for (int i = 0; i < 64; ++i) m.put<float>("a.data", static_cast<float>(i));
  for (int blk = 0; blk < 2; ++blk) {
    m.put<uint16_t>("b.d", f32_to_f16_bits(0.5f));
    for (int i = 0; i < 32; ++i) m.put<int8_t>("b.q", static_cast<int8_t>(i - 16));
  }
  m.bytes.resize(m.at["data"] + 256 + 96, '\0');
  return m;
}

std::string write_bytes(const std::string& dir, const std::string& name, const std::string& bytes) {
  const std::string p = dir + "/" + name;
  std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p;
}

TEST(GgufReader, ParsesAHandBuiltFile) {
  const std::string d = temp_dir("mini");
  const GgufFile f = read_gguf(write_bytes(d, "mini.gguf", mini_gguf().bytes));
  EXPECT_EQ(f.metadata().size(), 4u);
  EXPECT_EQ(f.get("general.architecture").as_string(), "llama");
  EXPECT_EQ(f.get("test.arr"), GgufValue::i32s({1, 2, 3}));
  EXPECT_TRUE(f.get("test.flg").as_bool());
  expect_error([&] { f.get("test.flg").as_string(); }, {"expected a string, got a bool"});
  expect_error([&] { f.get("nope"); }, {"mini.gguf", "no metadata key 'nope'"});
  EXPECT_EQ(f.tensor("a").shape(), (Shape{2, 32}));
  EXPECT_EQ(f.tensor("b").nbytes, 68u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  const std::vector<float> a = gguf_tensor_to_f32(f, "a").to_vector<float>();
  EXPECT_EQ(a[63], 63.0f);
  const std::vector<float> b = gguf_tensor_to_f32(f, "b").to_vector<float>();
  EXPECT_EQ(b[0], -8.0f);
  EXPECT_EQ(b[63], 7.5f);
  expect_error([&] { f.tensor("c"); }, {"mini.gguf", "no tensor 'c'"});
}

TEST(GgufReader, RejectsEveryTruncation) {
  const std::string d = temp_dir("trunc");
  const std::string full = mini_gguf().bytes;
  const size_t end = mini_gguf().at.at("data") + 256 + 68;  // the last tensor's padding is optional
  for (size_t n = 0; n < end; ++n) {
    SCOPED_TRACE(n);
    const std::string p = write_bytes(d, "t.gguf", full.substr(0, n));
    const std::string msg = error_of([&] { read_gguf(p); });
    ASSERT_FALSE(msg.empty()) << "a file cut to " << n << " bytes parsed";
    EXPECT_NE(msg.find(p), std::string::npos) << msg;
    EXPECT_TRUE(msg.find("truncated") != std::string::npos || msg.find("past the end") != std::string::npos ||
                msg.find("cannot fit") != std::string::npos)
        << msg;
  }
  EXPECT_NO_THROW(read_gguf(write_bytes(d, "t.gguf", full.substr(0, end))));
}

TEST(GgufReader, RejectsCorruptFieldsWithOneLineErrors) {
  const std::string d = temp_dir("corrupt");
  const Mini m = mini_gguf();
  const auto rejects = [&](const Mini& bad, const std::vector<std::string>& parts) {
    const std::string p = write_bytes(d, "c.gguf", bad.bytes);
    std::vector<std::string> all = parts;
    all.push_back(p);
    expect_error([&] { read_gguf(p); }, all);
  };
  rejects(m.with<uint32_t>("magic", 0x46554746), {"not a GGUF file", "bad magic"});
  rejects(m.with<uint32_t>("version", 1), {"unsupported GGUF version 1"});
  rejects(m.with<uint64_t>("n_tensors", uint64_t{1} << 60), {"tensor count"});
  rejects(m.with<uint64_t>("n_kv", ~uint64_t{0}), {"metadata count"});
  rejects(m.with<uint64_t>("k0.len", uint64_t{1} << 62), {"truncated", "metadata key #0"});
  rejects(m.with<uint64_t>("k0.value.len", 1000), {"truncated", "key 'general.architecture'"});
  rejects(m.with<uint32_t>("k0.type", 13), {"key 'general.architecture' value type 13", "not a GGUF value type"});
  rejects(m.with<uint32_t>("k2.elem", 99), {"key 'test.arr' (array element type) 99"});
  rejects(m.with<uint64_t>("k2.count", 1000), {"key 'test.arr'", "array of 1000 i32 values cannot fit"});
  rejects(m.with<uint64_t>("k2.count", uint64_t{1} << 61), {"key 'test.arr'", "longer than the 16777216 read"});
  rejects(m.with<uint8_t>("k3.value", 2), {"key 'test.flg'", "bool byte must be 0 or 1"});
  rejects(m.with<uint32_t>("k1.value", 48), {"general.alignment 48 is not a power of two"});
  rejects(m.with<uint32_t>("k1.type", 5).with<uint32_t>("k1.value", 32), {"general.alignment must be u32"});
  rejects(m.patch("k3", "test.arr"), {"duplicate metadata key 'test.arr'"});
  rejects(m.with<uint32_t>("a.n_dims", 0), {"tensor 'a'", "n_dims 0"});
  rejects(m.with<uint32_t>("a.n_dims", 5), {"tensor 'a'", "n_dims 5"});
  rejects(m.with<uint32_t>("a.type", 4), {"tensor 'a'", "unknown ggml type 4"});
  rejects(m.with<uint64_t>("a.ne1", ~uint64_t{0}), {"tensor 'a'", "too large"});
  rejects(m.with<uint64_t>("a.ne1", uint64_t{1} << 62), {"tensor 'a'", "overflows"});
  rejects(m.with<uint64_t>("a.ne1", 1 << 20), {"tensor 'a'", "past the end"});
  rejects(m.with<uint64_t>("b.ne0", 48), {"tensor 'b'", "48", "Q8_0 blocks"});
  rejects(m.with<uint64_t>("b.offset", 8), {"tensor 'b'", "offset 8 is not a multiple of the alignment 32"});
  rejects(m.with<uint64_t>("b.offset", 224), {"tensor 'b' overlaps tensor 'a'"});
  rejects(m.with<uint64_t>("b.offset", uint64_t{1} << 63), {"tensor 'b'", "past the end"});
  rejects(m.patch("b", "a"), {"duplicate tensor 'a'"});
  rejects(m.with<uint64_t>("b.len", 64), {"tensor #1 name of 64 bytes is longer than 63"});
}

TEST(GgufWriter, RejectsInconsistentTensorsAndKeys) {
  const std::string d = temp_dir("writer");
  const std::string p = d + "/w.gguf";
  const GgufTensorBytes ok{"t", {32}, GgmlType::f32, std::vector<uint8_t>(128)};
  expect_error([&] { write_gguf(p, {}, {{"t", {32}, GgmlType::f32, std::vector<uint8_t>(100)}}); },
               {"w.gguf", "tensor 't'", "does not match its 100 bytes"});
  expect_error([&] { write_gguf(p, {}, {ok, ok}); }, {"duplicate name"});
  expect_error([&] { write_gguf(p, {{"k", GgufValue::u32(1)}, {"k", GgufValue::u32(2)}}, {}); },
               {"duplicate metadata key 'k'"});
  expect_error([&] { write_gguf(p, {{"general.alignment", GgufValue::u32(24)}}, {}); }, {"power of two"});
  expect_error([&] { write_gguf(p, {{"k", GgufValue{GgufType::u8, uint64_t{300}}}}, {}); }, {"300 does not fit u8"});
  expect_error([&] { write_gguf(p, {{"k", GgufValue{GgufType::string, uint64_t{3}}}}, {}); },
               {"key 'k': a string value holding an unsigned integer"});
  EXPECT_FALSE(fs::exists(p));
  // Every value type written reads back identically, with a custom alignment.
  GgufArray nested{GgufType::array, {GgufValue::i32s({-1}), GgufValue::i32s({2, 3})}};
  const std::vector<std::pair<std::string, GgufValue>> kv = {
      {"general.alignment", GgufValue::u32(64)},
      {"u8", {GgufType::u8, uint64_t{255}}},
      {"i8", {GgufType::i8, int64_t{-128}}},
      {"u16", {GgufType::u16, uint64_t{65535}}},
      {"i16", {GgufType::i16, int64_t{-32768}}},
      {"i32", {GgufType::i32, int64_t{-5}}},
      {"u64", {GgufType::u64, ~uint64_t{0}}},
      {"i64", {GgufType::i64, int64_t{-(int64_t{1} << 62)}}},
      {"f32", GgufValue::f32(0.1f)},
      {"f64", {GgufType::f64, 0.1}},
      {"b", GgufValue::boolean(false)},
      {"s", GgufValue::string(std::string("a\0b", 3))},
      {"nested", {GgufType::array, nested}}};
  write_gguf(p, kv, {ok, {"u", {64, 2}, GgmlType::q4_0, std::vector<uint8_t>(72, 0x88)}});
  const GgufFile f = read_gguf(p);
  EXPECT_EQ(f.metadata(), kv);
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.tensor("u").offset, 128u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  const std::vector<float> u = gguf_tensor_to_f32(f, "u").to_vector<float>();
  EXPECT_EQ(u.size(), 128u);
}

// ---- golden files from the gguf Python package ----

const char* const kGoldenTypes[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};

TEST(GgufGolden, MatchesTheGgufPackageByteForByte) {
  const std::string d = temp_dir("golden");
  const auto m = load_hf_model(kGoldenDir + "/tiny_llama");
  for (const char* type : kGoldenTypes) {
    SCOPED_TRACE(type);
    const std::string ours = d + "/tiny_llama." + type + ".gguf";
    save_gguf(*m, ours,
              GgufSaveOptions{.type = parse_gguf_save_type(type), .tokenizer = kGoldenDir + "/tiny_llama", .name = "tiny-llama"});
    const std::string a = read_file(ours, "test"), b = read_file(kGoldenDir + "/tiny_llama." + type + ".gguf", "test");
    size_t first = 0;
    while (first < std::min(a.size(), b.size()) && a[first] == b[first]) ++first;
    EXPECT_EQ(a.size(), b.size());
    EXPECT_EQ(first, std::min(a.size(), b.size())) << "first differing byte";
  }
}

// Writes the golden model's inputs (tests/data/gguf/tiny_llama: f32 weights, config, a 300-id BPE
// tokenizer trained on the fortunes sample). Run by hand, then tests/reference/gguf_golden.py:
//   lowbit_unit_tests --gtest_also_run_disabled_tests --gtest_filter='GgufGolden.DISABLED_WriteInputs'
TEST(GgufGolden, DISABLED_WriteInputs) {
  tok::BpeTrainerOptions o;
  o.vocab_size = 300;
  o.special_tokens = {"<|endoftext|>"};
  const std::vector<std::string> texts = {read_file(data_path("tokenizer/fortunes_sample.txt"), "test")};
  const std::string tmp = temp_dir("golden_inputs");
  tok::train_bpe(texts, o).save(tmp + "/tokenizer.json");
  models::ModelConfig c = tiny_config("llama", 300);
  c.eos_token_ids = {*tok::Tokenizer::from_file(tmp + "/tokenizer.json").token_to_id("<|endoftext|>")};
  const auto m = tiny_model(c, 2024);
  save_hf_model(*m, kGoldenDir + "/tiny_llama", HfSaveOptions{.dtype = DType::f32, .tokenizer_dir = tmp});
}

}  // namespace
}  // namespace lowbit::io
