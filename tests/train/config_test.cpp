// train_llama's config: schema defaults, file values and overrides, one-line errors naming the
// key path (closest key for unknown ones), and docs/config.md kept in sync with the schema.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <tuple>
#include <sstream>

#include "lowbit/engine/error.h"
#include "lowbit/train/config.h"

namespace lowbit::train {
namespace {

using json = nlohmann::json;

json minimal() { return json{{"data", {{"train", json::array({"shards"})}}}}; }

std::string error_of(const json& file, const std::vector<std::string>& overrides = {}) {
  try {
    resolve_config(file, overrides, "run.json");
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    return m;
  }
  return "";
}

TEST(TrainConfig, DefaultsFileValuesAndOverrides) {
  json file = minimal();
  file["optim"] = {{"lr", 1e-3}};
  file["model"] = {{"hidden_size", 64}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}};
  const Config c{resolve_config(file, {"train.steps=7", "optim.name=sgd", "quant.exclude=[\"lm_head\",\"mlp.down_proj\"]",
                                       "model.compute_dtype=bf16", "schedule.min_lr=0"})};
  EXPECT_EQ(c.i("train.steps"), 7);
  EXPECT_EQ(c.f("optim.lr"), 1e-3);
  EXPECT_EQ(c.s("optim.name"), "sgd");
  EXPECT_EQ(c.list("quant.exclude"), (std::vector<std::string>{"lm_head", "mlp.down_proj"}));
  EXPECT_EQ(c.s("model.compute_dtype"), "bf16");
  EXPECT_EQ(c.i("model.hidden_size"), 64);
  EXPECT_EQ(c.f("schedule.min_lr"), 0.0);
  EXPECT_EQ(c.i("data.seq_len"), 128);  // default
  EXPECT_EQ(c.list("data.train"), std::vector<std::string>{"shards"});
  // Every schema key is present in a resolved config.
  for (const KeyDef& k : schema()) {
    const size_t dot = k.path.find('.');
    EXPECT_TRUE(c.j.at(k.path.substr(0, dot)).contains(k.path.substr(dot + 1))) << k.path;
  }
}

TEST(TrainConfig, ErrorsNameTheKeyPath) {
  json f = minimal();
  f["optim"] = {{"learning_rate", 1e-3}};
  EXPECT_NE(error_of(f).find("run.json: unknown key 'optim.learning_rate'"), std::string::npos);
  f = minimal();
  f["trian"] = {{"steps", 3}};
  EXPECT_NE(error_of(f).find("did you mean 'train.steps'?"), std::string::npos);
  f = minimal();
  f["train"] = {{"steps", "many"}};
  EXPECT_NE(error_of(f).find("key 'train.steps' must be an integer"), std::string::npos);
  f["train"] = {{"steps", 0}};
  EXPECT_NE(error_of(f).find("key 'train.steps' must be >= 1"), std::string::npos);
  f = minimal();
  f["optim"] = {{"name", "adam"}};
  EXPECT_NE(error_of(f).find("key 'optim.name' is 'adam'; expected one of: adamw, sgd"), std::string::npos);
  EXPECT_NE(error_of(minimal(), {"train.stepz=3"}).find("override: unknown key 'train.stepz' (did you mean 'train.steps'?)"),
            std::string::npos);
  EXPECT_NE(error_of(minimal(), {"train.steps"}).find("must be section.key=value"), std::string::npos);
  EXPECT_NE(error_of(minimal(), {"dist.world_size=2"}).find("'dist.world_size' is 2"), std::string::npos);
  EXPECT_NE(error_of(json{{"train", {{"steps", 3}}}}).find("no training data"), std::string::npos);
  EXPECT_NE(error_of(minimal(), {"model.num_key_value_heads=3"}).find("'model.num_key_value_heads' must divide"),
            std::string::npos);
  EXPECT_NE(error_of(json::array()).find("must be a JSON object"), std::string::npos);
  f = minimal();
  f["optim"] = 3;
  EXPECT_NE(error_of(f).find("section 'optim' must be an object"), std::string::npos);
}

// The message without its "file.cpp:NN: " source location, as the tools print it.
std::string message_of(const json& file, const std::vector<std::string>& overrides = {}) {
  const std::string m = error_of(file, overrides);
  const size_t at = m.find(".cpp:");
  return at == std::string::npos ? m : m.substr(m.find(": ", at) + 2);
}

TEST(TrainConfig, BadConfigsGiveTheseExactMessages) {
  auto with = [](const char* section, json body) {
    json f = minimal();
    f[section] = std::move(body);
    return f;
  };
  json data_twice = minimal();
  data_twice["data"]["text"] = {"a.txt"};
  const std::vector<std::tuple<json, std::vector<std::string>, std::string>> table = {
      {with("train", {{"setps", 5}}), {}, "run.json: unknown key 'train.setps' (did you mean 'train.steps'?)"},
      {minimal(), {"optim.lrr=0.1"}, "override: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"},
      {with("train", {{"steps", "many"}}), {}, "run.json: key 'train.steps' must be an integer, got \"many\""},
      {with("train", {{"steps", 0}}), {}, "run.json: key 'train.steps' must be >= 1, got 0"},
      {with("optim", {{"name", "adam"}}), {}, "run.json: key 'optim.name' is 'adam'; expected one of: adamw, sgd"},
      {minimal(), {"lora.dropout=1.5"}, "override: key 'lora.dropout' must be in [0, 1], got 1.5"},
      {minimal(), {"train.steps"}, "override 'train.steps' must be section.key=value"},
      {with("optim", 3), {}, "run.json: section 'optim' must be an object"},
      {json{{"train", {{"steps", 3}}}}, {}, "run.json: no training data: set 'data.train' (token shards) or 'data.text' (text files)"},
      {data_twice, {}, "run.json: set only one of 'data.train' and 'data.text'"},
      {minimal(), {"dist.world_size=4"},
       "run.json: key 'dist.world_size' is 4; multi-process training (sharding) is not available yet"},
      {minimal(), {"lora.rank=8"}, "run.json: key 'lora.rank': LoRA adapts a pretrained model; set 'model.hf_dir'"},
      {minimal(), {"lora.qlora=true"},
       "run.json: key 'lora.qlora': QLoRA needs 'lora.rank' > 0 and a 'quant.preset' for the base"},
      {minimal(), {"model.num_key_value_heads=3"},
       "run.json: key 'model.num_key_value_heads' must divide model.num_attention_heads"},
  };
  for (const auto& [file, overrides, want] : table) EXPECT_EQ(message_of(file, overrides), want) << file.dump();
}

TEST(TrainConfig, EveryShippedConfigResolves) {
  const std::string dir = std::string(LOWBIT_TEST_DATA_DIR) + "/../../configs";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    EXPECT_NO_THROW(load_config(e.path().string(), {})) << e.path();
    ++n;
  }
  EXPECT_GE(n, 7);
}

TEST(TrainConfig, DocsListEveryKeyWithTypeAndDefault) {
  std::ifstream in(std::string(LOWBIT_TEST_DATA_DIR) + "/../../docs/config.md");
  ASSERT_TRUE(in.good()) << "docs/config.md is missing";
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find(config_markdown_table()), std::string::npos)
      << "docs/config.md is out of date: regenerate its table with `train_llama --print-config-docs`";
}

}  // namespace
}  // namespace lowbit::train
