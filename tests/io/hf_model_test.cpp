// HF model directories: the transformers-written golden dirs load and reproduce transformers'
// logits; save -> load round trips single-file and sharded, in f32 and bf16; config.json
// round trips; bad directories give one-line errors and leave the model untouched.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "../test_util.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/hf_model.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/io/tokenizer.h"

namespace lowbit::io {
namespace {

namespace fs = std::filesystem;

std::string golden(const std::string& name) { return std::string(LOWBIT_TEST_DATA_DIR) + "/hf_golden/" + name; }

std::string temp_dir(const std::string& name) { return test::temp_dir("hf_" + name); }

using test::error_of;

std::vector<std::vector<float>> params_of(const models::CausalLM& m) {
  std::vector<std::vector<float>> out;
  for (const Tensor& p : m.parameters()) out.push_back(p.to(DType::f32).to_vector<float>());
  return out;
}

TEST(HfModel, LoadsTransformersDirectoriesAndReproducesTheirLogits) {
  for (const char* name : {"llama", "llama3_rope_scaling", "qwen2", "qwen3"}) {
    const auto m = load_hf_model(golden(name), models::ModelOptions{.param_dtype = DType::f64, .compute_dtype = DType::f64});
    const SafetensorsReader g(golden(name) + "/golden.safetensors");
    const Tensor logits = m->forward(g.get("input_ids"));
    const auto a = logits.to_vector<double>(), b = g.get("logits").to_vector<double>();
    double worst = 0, scale = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, std::fabs(a[i] - b[i]));
      scale = std::max(scale, std::fabs(b[i]));
    }
    EXPECT_LE(worst / scale, 1e-5) << name;
  }
}

TEST(HfModel, SaveLoadRoundTripsSingleAndSharded) {
  const auto src = load_hf_model(golden("qwen2"));  // f32 params
  const std::string d = temp_dir("roundtrip");
  save_hf_model(*src, d + "/single", HfSaveOptions{.dtype = DType::f32});
  EXPECT_TRUE(fs::exists(d + "/single/model.safetensors"));
  EXPECT_FALSE(fs::exists(d + "/single/model.safetensors.index.json"));
  EXPECT_EQ(params_of(*load_hf_model(d + "/single")), params_of(*src));

  // Sharded at 20 KB: several shards, an index whose total_size is the bytes of all tensors.
  save_hf_model(*src, d + "/single", HfSaveOptions{.dtype = DType::f32, .max_shard_bytes = 20000});
  EXPECT_FALSE(fs::exists(d + "/single/model.safetensors")) << "the stale single file must go";
  const auto index = nlohmann::json::parse(read_file(d + "/single/model.safetensors.index.json", "t"));
  std::set<std::string> shard_files;
  for (const auto& [n, f] : index["weight_map"].items()) shard_files.insert(f.get<std::string>());
  EXPECT_GT(shard_files.size(), 2u);
  int64_t total = 0;
  for (const auto& [n, p] : src->named_parameters()) total += 4 * p.numel();
  EXPECT_EQ(index["metadata"]["total_size"].get<int64_t>(), total);
  EXPECT_EQ(params_of(*load_hf_model(d + "/single")), params_of(*src));

  // bf16: each value is the bf16 rounding of the f32 master; config says bfloat16.
  save_hf_model(*src, d + "/bf16");
  const auto b = load_hf_model(d + "/bf16");
  for (const auto& [n, p] : src->named_parameters())
    EXPECT_EQ(b->parameter(n).to_vector<float>(), p.to(DType::bf16).to(DType::f32).to_vector<float>()) << n;
  EXPECT_EQ(models::read_model_config(d + "/bf16/config.json").torch_dtype, DType::bf16);
  EXPECT_TRUE(fs::exists(d + "/bf16/generation_config.json"));

  // Tokenizer files are copied when asked (verbatim), completed by a generated tokenizer_config.json
  // and special_tokens_map.json when the source has none.
  fs::create_directories(d + "/tok");
  const std::string tok_json =
      read_file(std::string(LOWBIT_TEST_DATA_DIR) + "/tokenizer/llama3_chat_style.tokenizer.json", "t");
  write_file_atomic(d + "/tok/tokenizer.json", tok_json, "t");
  save_hf_model(*src, d + "/withtok", HfSaveOptions{.tokenizer_dir = d + "/tok"});
  EXPECT_EQ(read_file(d + "/withtok/tokenizer.json", "t"), tok_json);
  const auto cfg = nlohmann::json::parse(read_file(d + "/withtok/tokenizer_config.json", "t"));
  EXPECT_EQ(cfg["bos_token"], "<|begin_of_text|>");
  EXPECT_EQ(cfg["eos_token"], "<|end_of_text|>");
  EXPECT_EQ(cfg["add_bos_token"], true);
  EXPECT_EQ(cfg["added_tokens_decoder"]["2002"]["content"], "<|eot_id|>");
  const auto map = nlohmann::json::parse(read_file(d + "/withtok/special_tokens_map.json", "t"));
  EXPECT_EQ(map["eos_token"], "<|end_of_text|>");
  // The model's config had no bos/eos ids: config.json and generation_config.json take the
  // tokenizer's, with its end-of-turn token, so HF generate() stops at <|eot_id|> too.
  for (const char* f : {"/withtok/config.json", "/withtok/generation_config.json"}) {
    const auto mc = nlohmann::json::parse(read_file(d + f, "t"));
    EXPECT_EQ(mc["bos_token_id"], 0) << f;
    EXPECT_EQ(mc["eos_token_id"], nlohmann::json::array({1, 2002})) << f;
  }
  // A source tokenizer_config.json is kept as it was, and read back with its settings.
  write_file_atomic(d + "/tok/tokenizer_config.json",
                    R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "add_bos_token": false,
                        "chat_template": "{{ bos_token }}"})",
                    "t");
  save_hf_model(*src, d + "/withcfg", HfSaveOptions{.tokenizer_dir = d + "/tok/tokenizer.json"});
  EXPECT_EQ(read_file(d + "/withcfg/tokenizer_config.json", "t"), read_file(d + "/tok/tokenizer_config.json", "t"));
  const tok::Tokenizer t = tok::Tokenizer::from_directory(d + "/withcfg");
  EXPECT_EQ(t.data().config.chat_template, "{{ bos_token }}");
  EXPECT_EQ(t.data().config.eos_token, "<|eot_id|>");
  EXPECT_EQ(t.encode("hi", true), t.encode("hi"));  // add_bos_token false overrides the template
  EXPECT_EQ(nlohmann::json::parse(read_file(d + "/withcfg/special_tokens_map.json", "t"))["eos_token"], "<|eot_id|>");
  EXPECT_THROW(save_hf_model(*src, d + "/x", HfSaveOptions{.tokenizer_dir = d + "/single"}), Error);
}

TEST(HfModel, ConfigJsonRoundTrips) {
  for (const char* name : {"llama", "llama3_rope_scaling", "qwen2", "qwen3"}) {
    models::ModelConfig c = models::read_model_config(golden(name) + "/config.json");
    c.eos_token_ids = {2, 7};
    c.bos_token_id = 1;
    EXPECT_EQ(models::parse_model_config(models::model_config_to_json(c, c.torch_dtype)), c) << name;
  }
}

TEST(HfModel, BadDirectoriesGiveOneLineErrorsAndLeaveTheModelUntouched) {
  const std::string d = temp_dir("bad");
  const auto src = load_hf_model(golden("llama"));
  save_hf_model(*src, d + "/m", HfSaveOptions{.dtype = DType::f32, .max_shard_bytes = 20000});
  models::CausalLM target(src->config(), models::ModelOptions{.seed = 3});
  const auto before = params_of(target);
  auto expect_error = [&](const std::string& want) {
    const std::string e = error_of([&] { load_hf_weights(target, d + "/m"); });
    EXPECT_NE(e.find(want), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    EXPECT_EQ(params_of(target), before) << "model changed by a failed load";
  };
  const std::string index_path = d + "/m/model.safetensors.index.json";
  const std::string index = read_file(index_path, "t");
  auto j = nlohmann::json::parse(index);
  j["weight_map"].erase("model.norm.weight");
  std::ofstream(index_path, std::ios::trunc) << j.dump();
  expect_error("parameter 'model.norm.weight' is missing");
  j = nlohmann::json::parse(index);
  j["weight_map"]["model.extra.weight"] = j["weight_map"]["model.norm.weight"];
  std::ofstream(index_path, std::ios::trunc) << j.dump();
  expect_error("tensor 'model.extra.weight' is not a parameter");
  j = nlohmann::json::parse(index);
  j["weight_map"]["model.norm.weight"] = "../evil.safetensors";
  std::ofstream(index_path, std::ios::trunc) << j.dump();
  expect_error("invalid file '../evil.safetensors'");
  std::ofstream(index_path, std::ios::trunc) << "{not json";
  expect_error("model.safetensors.index.json: invalid JSON");
  std::ofstream(index_path, std::ios::trunc) << index;
  models::ModelConfig wider = src->config();
  wider.intermediate_size += 2;
  models::CausalLM other(wider);
  EXPECT_NE(error_of([&] { load_hf_weights(other, d + "/m"); }).find("has shape"), std::string::npos);
  EXPECT_NE(error_of([&] { load_hf_model(d + "/nothing"); }).find("config.json"), std::string::npos);
  fs::create_directories(d + "/noweights");
  fs::copy_file(d + "/m/config.json", d + "/noweights/config.json");
  EXPECT_NE(error_of([&] { load_hf_model(d + "/noweights"); }).find("neither model.safetensors nor"), std::string::npos);
}

}  // namespace
}  // namespace lowbit::io
