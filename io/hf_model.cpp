#include "lowbit/io/hf_model.h"

#include "lowbit/io/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/io/tokenizer.h"

namespace lowbit::io {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr const char* kSingle = "model.safetensors";
constexpr const char* kIndex = "model.safetensors.index.json";

// tensor name -> shard file (absolute), from the index or the single file.
std::map<std::string, std::string> weight_files(const std::string& dir) {
  std::map<std::string, std::string> out;
  const std::string index = dir + "/" + kIndex, single = dir + "/" + kSingle;
  if (fs::exists(index)) {
    json j;
    try {
      j = json::parse(read_file(index, "hf model"));
    } catch (const json::exception& e) {
      LOWBIT_FAIL("hf model: ", index, ": invalid JSON: ", e.what());
    }
    LOWBIT_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(), "hf model: ", index,
                 ": missing 'weight_map' object");
    for (const auto& [name, file] : j["weight_map"].items()) {
      LOWBIT_CHECK(file.is_string(), "hf model: ", index, ": weight_map entry '", name, "' must be a file name");
      const std::string f = file.get<std::string>();
      LOWBIT_CHECK(!f.empty() && f.find('/') == std::string::npos && f != "." && f != "..", "hf model: ", index,
                   ": weight_map entry '", name, "' names an invalid file '", f, "'");
      out[name] = dir + "/" + f;
    }
    return out;
  }
  LOWBIT_CHECK(fs::exists(single), "hf model: ", dir, ": neither ", kSingle, " nor ", kIndex, " found");
  const SafetensorsReader r(single);
  for (const std::string& n : r.names()) out[n] = single;
  return out;
}

// Tensors HF checkpoints may carry that are not parameters (recomputed buffers).
bool ignorable(const std::string& name, bool tied) {
  return name.ends_with(".rotary_emb.inv_freq") || (tied && name == "lm_head.weight");
}

}  // namespace

const std::vector<std::string>& hf_tokenizer_files() {
  static const std::vector<std::string> files = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                                 "special_tokens_map.json", "chat_template.jinja"};
  return files;
}

namespace {

tok::Tokenizer load_tokenizer(const std::string& from, const std::string& what) {
  try {
    return tok::Tokenizer::from_file(from);
  } catch (const Error& e) {
    throw Error(what + ": tokenizer " + from + ": " + error_text(e.what()));
  }
}

// t, loaded from `from`, into to_dir (see copy_hf_tokenizer_files).
void write_tokenizer_files(const tok::Tokenizer& t, const std::string& from, const std::string& to_dir,
                           const std::string& what) {
  // A tokenizer file of another name: only it (as the standard name) and the generated files.
  const std::string from_dir = fs::is_directory(from) ? from : fs::path(from).parent_path().string();
  const bool whole_dir =
      fs::is_directory(from) || fs::path(from).filename() == "tokenizer.json" || fs::path(from).filename() == "tokenizer.model";
  // Generated files first (tokenizer_config.json and special_tokens_map.json included), then the
  // source's own files over them: what the source had is kept as it was.
  t.save_files(to_dir);
  // A config's add_bos_token / add_eos_token is in the generated tokenizer.json's template
  // (transformers 5 reads only the template when there is a tokenizer.json): not the source's.
  const bool template_rewritten = t.data().config.add_bos_token || t.data().config.add_eos_token;
  for (const std::string& f : hf_tokenizer_files()) {
    const std::string src = from_dir + "/" + f;
    if (f == "tokenizer.json" && template_rewritten) continue;
    if (whole_dir && fs::exists(src)) write_file_atomic(to_dir + "/" + f, read_file(src, what), what);
  }
}

}  // namespace

void copy_hf_tokenizer_files(const std::string& from, const std::string& to_dir, const std::string& what) {
  write_tokenizer_files(load_tokenizer(from, what), from, to_dir, what);
}

void load_hf_weights(const models::CausalLM& model, const std::string& dir) {
  const auto files = weight_files(dir);
  const bool tied = model.config().tie_word_embeddings;
  std::map<std::string, std::unique_ptr<SafetensorsReader>> readers;
  const auto params = model.named_parameters();
  std::set<std::string> wanted;
  for (const auto& [n, p] : params) wanted.insert(n);
  for (const auto& [name, file] : files)
    LOWBIT_CHECK(wanted.count(name) || ignorable(name, tied), "hf model: ", file, ": tensor '", name,
                 "' is not a parameter of this ", model.config().model_type, " model (wrong config.json?)");
  // Check everything first so a bad checkpoint leaves the model untouched.
  std::vector<const SafetensorsReader*> source;
  for (const auto& [n, p] : params) {
    const auto it = files.find(n);
    LOWBIT_CHECK(it != files.end(), "hf model: ", dir, ": parameter '", n, "' is missing from the checkpoint");
    auto& r = readers[it->second];
    if (!r) r = std::make_unique<SafetensorsReader>(it->second);
    LOWBIT_CHECK(r->has(n), "hf model: ", it->second, ": tensor '", n, "' listed in the index is not in the file");
    const SafetensorsInfo& info = r->info(n);
    LOWBIT_CHECK(info.shape == p.shape(), "hf model: ", it->second, ": tensor '", n, "' has shape ",
                 shape_str(info.shape), ", the model expects ", shape_str(p.shape()));
    LOWBIT_CHECK(is_float(info.dtype), "hf model: ", it->second, ": tensor '", n, "' has non-float dtype ", info.dtype);
    source.push_back(r.get());
  }
  NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) copy_(params[i].second, source[i]->get(params[i].first));
}

std::unique_ptr<models::CausalLM> load_hf_model(const std::string& dir, const models::ModelOptions& opts) {
  const models::ModelConfig c = models::read_model_config(dir + "/config.json");
  auto model = std::make_unique<models::CausalLM>(c, opts);
  load_hf_weights(*model, dir);
  return model;
}

void save_hf_model(const models::CausalLM& model, const std::string& dir, const HfSaveOptions& opts) {
  LOWBIT_CHECK(opts.dtype == DType::bf16 || opts.dtype == DType::f16 || opts.dtype == DType::f32 ||
                   opts.dtype == DType::f64,
               "hf model: save dtype must be bf16, f16, f32 or f64, got ", opts.dtype);
  LOWBIT_CHECK(opts.max_shard_bytes > 0, "hf model: max_shard_bytes must be positive");
  std::error_code ec;
  fs::create_directories(dir, ec);
  LOWBIT_CHECK(!ec, "hf model: cannot create ", dir, ": ", ec.message());

  // Greedy shards in parameter order, as transformers does.
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  int64_t shard_bytes = 0, total = 0;
  for (const auto& [n, p] : model.named_parameters()) {
    const Tensor t = p.detach().to(opts.dtype);
    const int64_t nb = dtype_nbytes(t.dtype(), t.numel());
    if (!shards.back().empty() && shard_bytes + nb > opts.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().emplace_back(n, t);
    shard_bytes += nb;
    total += nb;
  }
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  std::set<std::string> written;
  if (shards.size() == 1) {
    save_safetensors(dir + "/" + kSingle, shards[0], meta);
    written.insert(kSingle);
  } else {
    json map = json::object();
    for (size_t i = 0; i < shards.size(); ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, shards.size());
      save_safetensors(dir + "/" + name, shards[i], meta);
      written.insert(name);
      for (const auto& [n, t] : shards[i]) map[n] = name;
    }
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", map}};
    write_file_atomic(dir + "/" + kIndex, index.dump(2) + "\n", "hf model");
    written.insert(kIndex);
  }
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    const bool model_file = n == kSingle || n == kIndex || (n.rfind("model-", 0) == 0 && n.ends_with(".safetensors"));
    if (model_file && !written.count(n)) fs::remove(e.path());
  }

  // A config without bos/eos ids (a model pretrained here) takes them from its tokenizer: its
  // bos, its eos and the end-of-turn tokens it has, so HF generate() stops where ours does.
  models::ModelConfig c = model.config();
  std::optional<tok::Tokenizer> t;
  if (!opts.tokenizer_dir.empty()) t = load_tokenizer(opts.tokenizer_dir, "hf model");
  if (t && !c.bos_token_id && c.eos_token_ids.empty()) {
    const tok::TokenizerConfig tc = t->effective_config();
    if (tc.bos_token) c.bos_token_id = t->token_to_id(*tc.bos_token);
    if (tc.eos_token) c.eos_token_ids.push_back(*t->token_to_id(*tc.eos_token));
    for (const char* end_of_turn : {"<|eot_id|>", "<|im_end|>"})
      if (const auto id = t->token_to_id(end_of_turn))
        if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), *id) == c.eos_token_ids.end())
          c.eos_token_ids.push_back(*id);
  }
  write_file_atomic(dir + "/config.json", models::model_config_to_json(c, opts.dtype), "hf model");
  json gen = {{"_from_model_config", true}};
  if (c.bos_token_id) gen["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) gen["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) gen["eos_token_id"] = c.eos_token_ids;
  write_file_atomic(dir + "/generation_config.json", gen.dump(2) + "\n", "hf model");
  if (t) write_tokenizer_files(*t, opts.tokenizer_dir, dir, "hf model");
}

}  // namespace lowbit::io
