#include "lowbit/train/config.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

#include "lowbit/engine/error.h"
#include "lowbit/engine/json_text.h"
#include "lowbit/engine/text.h"

namespace lowbit::train {

using json = nlohmann::json;

namespace {

KeyDef key(std::string path, KeyType t, json def, std::string help, double lo = -1e300, double hi = 1e300,
           std::vector<std::string> choices = {}) {
  return KeyDef{std::move(path), t, std::move(def), std::move(help), lo, hi, std::move(choices)};
}

const KeyDef* find_key(const std::string& path) {
  for (const KeyDef& k : schema())
    if (k.path == path) return &k;
  return nullptr;
}

std::string closest_key(const std::string& path) {
  std::vector<std::string> paths;
  for (const KeyDef& k : schema()) paths.push_back(k.path);
  return closest_match(path, paths);
}

// "in [a, b]", ">= a" or "<= b" for k's numeric range.
std::string range_text(const KeyDef& k) {
  std::ostringstream os;
  if (k.max >= 1e300) os << ">= " << k.min;
  else if (k.min <= -1e300) os << "<= " << k.max;
  else os << "in [" << k.min << ", " << k.max << "]";
  return os.str();
}

// Checks v against k and returns it in canonical form (integers stay integers, ...).
json check_value(const KeyDef& k, const json& v, const std::string& source) {
  const std::string where = source + ": key '" + k.path + "'";
  switch (k.type) {
    case KeyType::integer:
      LOWBIT_CHECK(v.is_number_integer(), where, " must be an integer, got ", v.dump());
      LOWBIT_CHECK(static_cast<double>(v.get<int64_t>()) >= k.min && static_cast<double>(v.get<int64_t>()) <= k.max,
                   where, " must be ", range_text(k), ", got ", v.dump());
      return v;
    case KeyType::number:
      LOWBIT_CHECK(v.is_number(), where, " must be a number, got ", v.dump());
      LOWBIT_CHECK(v.get<double>() >= k.min && v.get<double>() <= k.max, where, " must be ", range_text(k), ", got ",
                   v.dump());
      return v.get<double>();
    case KeyType::boolean:
      LOWBIT_CHECK(v.is_boolean(), where, " must be true or false, got ", v.dump());
      return v;
    case KeyType::string:
      LOWBIT_CHECK(v.is_string(), where, " must be a string, got ", v.dump());
      if (!k.choices.empty()) {
        std::string all;
        for (const auto& c : k.choices) all += (all.empty() ? "" : ", ") + c;
        LOWBIT_CHECK(std::find(k.choices.begin(), k.choices.end(), v.get<std::string>()) != k.choices.end(), where,
                     " is '", v.get<std::string>(), "'; expected one of: ", all);
      }
      return v;
    case KeyType::string_list:
      if (v.is_string()) return json::array({v});
      LOWBIT_CHECK(v.is_array(), where, " must be a list of strings, got ", v.dump());
      for (const auto& e : v) LOWBIT_CHECK(e.is_string(), where, " must be a list of strings, got ", v.dump());
      return v;
  }
  return v;
}

void set_path(json& cfg, const std::string& path, const json& v) {
  const size_t dot = path.find('.');
  cfg[path.substr(0, dot)][path.substr(dot + 1)] = v;
}

}  // namespace

std::string type_name(KeyType t) {
  switch (t) {
    case KeyType::integer: return "int";
    case KeyType::number: return "float";
    case KeyType::boolean: return "bool";
    case KeyType::string: return "string";
    case KeyType::string_list: return "list of strings";
  }
  return "?";
}

const std::vector<KeyDef>& schema() {
  using T = KeyType;
  static const std::vector<KeyDef> keys = {
      // model
      key("model.hf_dir", T::string, "", "fine-tune from this Hugging Face model directory (config.json + safetensors), or from a plain train_llama run / checkpoint; empty = pretrain from scratch"),
      key("model.config", T::string, "", "pretrain: path of an HF-style config.json for the architecture (empty = the model.* size keys below)"),
      key("model.model_type", T::string, "llama", "pretrain without model.config: architecture family", 0, 0, {"llama", "qwen2", "qwen3"}),
      key("model.hidden_size", T::integer, 128, "pretrain without model.config: width", 1),
      key("model.intermediate_size", T::integer, 352, "pretrain without model.config: SwiGLU width", 1),
      key("model.num_hidden_layers", T::integer, 4, "pretrain without model.config: decoder layers", 1),
      key("model.num_attention_heads", T::integer, 4, "pretrain without model.config: query heads", 1),
      key("model.num_key_value_heads", T::integer, 4, "pretrain without model.config: key/value heads (divides the query heads)", 1),
      key("model.tie_word_embeddings", T::boolean, true, "pretrain without model.config: share embedding and output weights"),
      key("model.rope_theta", T::number, 10000.0, "pretrain without model.config: RoPE base", 1e-9),
      key("model.compute_dtype", T::string, "f32", "activation dtype; bf16 = mixed precision with f32 master weights", 0, 0, {"f32", "bf16"}),
      key("model.init", T::string, "hf", "initialisation: hf = N(0, initializer_range); scaled_residual = o/down projections / sqrt(2 L)", 0, 0, {"hf", "scaled_residual"}),
      key("model.activation_checkpointing", T::boolean, false, "recompute each decoder layer in backward to save memory"),
      // data
      key("data.train", T::string_list, json::array(), "training token shards (files or directories of *.bin from prepare_data; text or chat shards)"),
      key("data.val", T::string_list, json::array(), "validation token shards (empty = no validation)"),
      key("data.text", T::string_list, json::array(), "alternatively: raw text files, tokenized at start-up into the run directory"),
      key("data.tokenizer", T::string, "", "tokenizer for data.text: tokenizer.json, tokenizer.model or a model directory (empty: train a byte-level BPE tokenizer of data.vocab_size on it)"),
      key("data.vocab_size", T::integer, 1024, "vocabulary of the tokenizer trained for data.text", 258),
      key("data.doc_separator", T::string, "", "data.text: document separator (e.g. \"\\n%\\n\"); empty = one document per file"),
      key("data.val_fraction", T::number, 0.05, "data.text: share of documents held out for validation", 0, 0.9),
      key("data.seq_len", T::integer, 128, "tokens per training sequence", 1),
      key("data.pack", T::boolean, false, "chat shards: pack several examples per sequence (block-diagonal attention, positions restart per example); off: one example per sequence, padded"),
      key("data.batch_size", T::integer, 8, "sequences per micro-batch", 1),
      key("data.seed", T::integer, 0, "data order (shuffle) seed", 0),
      // train
      key("train.steps", T::integer, 200, "optimizer steps to train", 1),
      key("train.grad_accum", T::integer, 1, "micro-batches per optimizer step", 1),
      key("train.max_grad_norm", T::number, 1.0, "global gradient-norm clip (0 = off)", 0),
      key("train.seed", T::integer, 0, "model initialisation and sampling seed", 0),
      key("train.nan_policy", T::string, "abort", "on a NaN/Inf loss or gradient: abort, or skip the step", 0, 0, {"abort", "skip"}),
      key("train.max_nan_skips", T::integer, 10, "nan_policy skip: abort after this many skipped steps", 0),
      key("train.eval_every", T::integer, 100, "validation loss and perplexity every N steps (0 = only at the end)", 0),
      key("train.eval_batches", T::integer, 8, "validation micro-batches per evaluation", 1),
      // optim
      key("optim.name", T::string, "adamw", "optimizer", 0, 0, {"adamw", "sgd"}),
      key("optim.lr", T::number, 3e-3, "peak learning rate", 0),
      key("optim.beta1", T::number, 0.9, "AdamW beta1", 0, 0.999999),
      key("optim.beta2", T::number, 0.95, "AdamW beta2", 0, 0.999999),
      key("optim.eps", T::number, 1e-8, "AdamW eps", 1e-30),
      key("optim.weight_decay", T::number, 0.1, "decoupled weight decay of matrices (norms, biases, embeddings get 0)", 0),
      key("optim.momentum", T::number, 0.9, "SGD momentum", 0, 1),
      key("optim.quant_lr", T::number, 1e-4, "learning rate of learned quantization scales (quant with scale_policy learned)", 0),
      // schedule
      key("schedule.warmup_steps", T::integer, 20, "linear warmup steps", 0),
      key("schedule.decay", T::string, "cosine", "after warmup", 0, 0, {"cosine", "linear", "constant"}),
      key("schedule.min_lr", T::number, 3e-4, "learning rate reached at the last step", 0),
      // quant
      key("quant.preset", T::string, "", "QAT preset (INT8_DEFAULT, W4A8, NVFP4_DEFAULT, ...); empty = no quantization"),
      key("quant.group_size", T::integer, 0, "W4A8 / INT4_WEIGHT_ONLY group size (0 = the preset's)", 0),
      key("quant.weight_spec", T::string, "", "custom weight QuantSpec as JSON (replaces the preset's weight spec)"),
      key("quant.input_spec", T::string, "", "custom input QuantSpec as JSON (replaces the preset's input spec)"),
      key("quant.exclude", T::string_list, json::array({"lm_head"}), "linear layers left unquantized (name or dotted suffix)"),
      key("quant.embeddings", T::boolean, false, "also quantize the token embeddings, weight-only with the preset's weight spec"),
      key("quant.start_step", T::integer, 0, "delayed fake quant: quantizers switch on at this global step", 0),
      key("quant.calibration_batches", T::integer, 4, "batches observed before training for calibrated / learned scales", 0),
      key("quant.calibration_method", T::string, "max", "how calibration picks amax", 0, 0, {"max", "percentile", "mse"}),
      key("quant.percentile", T::number, 99.99, "calibration_method percentile", 1e-9, 100),
      // distill
      key("distill.teacher", T::string, "", "QAD: frozen teacher (HF model directory, run directory or checkpoint); empty = no distillation"),
      key("distill.temperature", T::number, 1.0, "QAD: softmax temperature T of KL(teacher/T || student/T) * T^2", 1e-6),
      key("distill.alpha", T::number, 1.0, "QAD: weight of the KL term; 1 - alpha weights cross-entropy", 0, 1),
      // lora
      key("lora.rank", T::integer, 0, "LoRA rank (0 = no LoRA)", 0),
      key("lora.alpha", T::number, 16.0, "LoRA scaling alpha (scale = alpha / rank)", 0),
      key("lora.dropout", T::number, 0.0, "LoRA dropout", 0, 1),
      key("lora.targets", T::string_list, json::array({"q_proj", "v_proj"}), "LoRA target module names"),
      key("lora.qlora", T::boolean, false, "QLoRA: hold the frozen base in quant.preset's packed low-bit format (real low-bit matmul)"),
      // checkpoint
      key("checkpoint.dir", T::string, "runs/run", "run directory: checkpoints, metrics.jsonl, tokenizer"),
      key("checkpoint.every", T::integer, 100, "save every N steps (0 = only at the end and on SIGINT/SIGTERM)", 0),
      key("checkpoint.keep_last", T::integer, 3, "complete checkpoints kept", 1),
      key("checkpoint.resume", T::boolean, true, "resume from the newest complete checkpoint in checkpoint.dir"),
      // log
      key("log.every", T::integer, 10, "a log line every N steps", 1),
      key("log.progress", T::boolean, true, "progress bar with ETA when stdout is a terminal"),
      // dist
      key("dist.world_size", T::integer, 1, "data-parallel processes (sharding arrives in a later release: > 1 is an error now)", 1),
      key("dist.backend", T::string, "mpi", "communication backend", 0, 0, {"mpi", "nccl"}),
  };
  return keys;
}

json resolve_config(const json& file, const std::vector<std::string>& overrides, const std::string& source) {
  json cfg = json::object();
  for (const KeyDef& k : schema()) set_path(cfg, k.path, k.default_value);
  LOWBIT_CHECK(file.is_object(), source, ": a config must be a JSON object of sections");
  for (const auto& [section, body] : file.items()) {
    LOWBIT_CHECK(body.is_object(), source, ": section '", section, "' must be an object");
    for (const auto& [name, v] : body.items()) {
      const std::string path = section + "." + name;
      const KeyDef* k = find_key(path);
      LOWBIT_CHECK(k, source, ": unknown key '", path, "' (did you mean '", closest_key(path), "'?)");
      set_path(cfg, path, check_value(*k, v, source));
    }
  }
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    LOWBIT_CHECK(eq != std::string::npos && eq > 0, "override '", o, "' must be section.key=value");
    const std::string path = o.substr(0, eq), text = o.substr(eq + 1);
    const KeyDef* k = find_key(path);
    LOWBIT_CHECK(k, "override: unknown key '", path, "' (did you mean '", closest_key(path), "'?)");
    json v = json::parse(text, nullptr, false);
    if (v.is_discarded() || (k->type == KeyType::string && !v.is_string())) v = text;  // bare strings
    set_path(cfg, path, check_value(*k, v, "override"));
  }
  LOWBIT_CHECK(cfg["dist"]["world_size"].get<int64_t>() == 1, source, ": key 'dist.world_size' is ",
               cfg["dist"]["world_size"].get<int64_t>(), "; multi-process training (sharding) is not available yet");
  LOWBIT_CHECK(cfg["model"]["num_attention_heads"].get<int64_t>() % cfg["model"]["num_key_value_heads"].get<int64_t>() == 0,
               source, ": key 'model.num_key_value_heads' must divide model.num_attention_heads");
  LOWBIT_CHECK(cfg["model"]["hidden_size"].get<int64_t>() % cfg["model"]["num_attention_heads"].get<int64_t>() == 0,
               source, ": key 'model.hidden_size' must be divisible by model.num_attention_heads");
  const bool has_data = !cfg["data"]["train"].empty() || !cfg["data"]["text"].empty();
  LOWBIT_CHECK(has_data, source, ": no training data: set 'data.train' (token shards) or 'data.text' (text files)");
  LOWBIT_CHECK(cfg["data"]["train"].empty() || cfg["data"]["text"].empty(), source,
               ": set only one of 'data.train' and 'data.text'");
  const bool lora = cfg["lora"]["rank"].get<int64_t>() > 0;
  const bool quant = !cfg["quant"]["preset"].get<std::string>().empty() || !cfg["quant"]["weight_spec"].get<std::string>().empty();
  LOWBIT_CHECK(!lora || !cfg["model"]["hf_dir"].get<std::string>().empty(), source,
               ": key 'lora.rank': LoRA adapts a pretrained model; set 'model.hf_dir'");
  LOWBIT_CHECK(!cfg["lora"]["qlora"].get<bool>() || (lora && quant), source,
               ": key 'lora.qlora': QLoRA needs 'lora.rank' > 0 and a 'quant.preset' for the base");
  LOWBIT_CHECK(cfg["distill"]["teacher"].get<std::string>().empty() || !lora, source,
               ": key 'distill.teacher': distillation into a LoRA student is not supported; unset 'lora.rank'");
  return cfg;
}

json load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream f(path);
  LOWBIT_CHECK(f.good(), path, ": cannot open config");
  std::stringstream ss;
  ss << f.rdbuf();
  return resolve_config(parse_json_text(ss.str(), path), overrides, path);
}

std::string config_markdown_table() {
  std::ostringstream os;
  os << "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const KeyDef& k : schema()) {
    std::string help = k.help;
    if (!k.choices.empty()) {
      help += " (";
      for (size_t i = 0; i < k.choices.size(); ++i) help += (i ? ", " : "") + k.choices[i];
      help += ")";
    }
    std::string def = k.default_value.dump();
    std::string escaped;
    for (char c : help) escaped += c == '|' ? std::string("\\|") : std::string(1, c);
    os << "| `" << k.path << "` | " << type_name(k.type) << " | `" << def << "` | " << escaped << " |\n";
  }
  return os.str();
}

namespace {
const json& at(const json& j, const std::string& path) {
  const size_t dot = path.find('.');
  return j.at(path.substr(0, dot)).at(path.substr(dot + 1));
}
}  // namespace

int64_t Config::i(const std::string& path) const { return at(j, path).get<int64_t>(); }
double Config::f(const std::string& path) const { return at(j, path).get<double>(); }
bool Config::b(const std::string& path) const { return at(j, path).get<bool>(); }
std::string Config::s(const std::string& path) const { return at(j, path).get<std::string>(); }
std::vector<std::string> Config::list(const std::string& path) const {
  return at(j, path).get<std::vector<std::string>>();
}

}  // namespace lowbit::train
