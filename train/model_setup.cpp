#include "lowbit/train/model_setup.h"

#include <filesystem>

#include "lowbit/io/checkpoint.h"
#include "lowbit/io/checkpoint_components.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/hf_model.h"
#include "lowbit/nn/lora.h"

namespace lowbit::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

models::ModelOptions model_options(const Config& c) {
  models::ModelOptions mo;
  mo.compute_dtype = c.s("model.compute_dtype") == "bf16" ? DType::bf16 : DType::f32;
  mo.init = c.s("model.init") == "scaled_residual" ? models::InitScheme::scaled_residual : models::InitScheme::hf;
  mo.seed = static_cast<uint64_t>(c.i("train.seed"));
  mo.activation_checkpointing = c.b("model.activation_checkpointing");
  return mo;
}

namespace {

models::ModelConfig model_config_from_keys(const Config& c, int64_t vocab) {
  models::ModelConfig m;
  m.model_type = c.s("model.model_type");
  m.vocab_size = vocab;
  m.hidden_size = c.i("model.hidden_size");
  m.intermediate_size = c.i("model.intermediate_size");
  m.num_hidden_layers = c.i("model.num_hidden_layers");
  m.num_attention_heads = c.i("model.num_attention_heads");
  m.num_key_value_heads = c.i("model.num_key_value_heads");
  m.head_dim = m.hidden_size / m.num_attention_heads;
  m.max_position_embeddings = std::max<int64_t>(c.i("data.seq_len"), 2048);
  m.rope_theta = c.f("model.rope_theta");
  m.tie_word_embeddings = c.b("model.tie_word_embeddings");
  m.rms_norm_eps = 1e-5;
  m.attention_bias = m.model_type == "qwen2";
  m.qk_norm = m.model_type == "qwen3";
  return m;
}

}  // namespace

std::unique_ptr<models::CausalLM> build_model(const Config& c, int64_t vocab, const models::ModelOptions& mo) {
  if (!c.s("model.hf_dir").empty()) {
    std::unique_ptr<models::CausalLM> model;
    if (fs::exists(c.s("model.hf_dir") + "/config.json")) {
      model = io::load_hf_model(c.s("model.hf_dir"), mo);
    } else {  // a train_llama run or checkpoint: its weights, if it is a plain model
      LoadedModel from = load_model(c.s("model.hf_dir"), mo);
      LOWBIT_CHECK(!from.quant.preset && nn::lora_parameters(*from.model).empty(), "key 'model.hf_dir': ",
                   from.description, " is quantized or has LoRA adapters; start from a plain model (export it ",
                   "with `export --format hf` first)");
      model = std::move(from.model);
    }
    LOWBIT_CHECK(model->config().vocab_size >= vocab, "key 'model.hf_dir': the model's vocabulary (",
                 model->config().vocab_size, ") is smaller than the data's (", vocab, ")");
    return model;
  }
  if (!c.s("model.config").empty()) {
    const models::ModelConfig m = models::read_model_config(c.s("model.config"));
    LOWBIT_CHECK(m.vocab_size >= vocab, "key 'model.config': vocab_size ", m.vocab_size, " is smaller than the data's ",
                 vocab);
    return std::make_unique<models::CausalLM>(m, mo);
  }
  return std::make_unique<models::CausalLM>(model_config_from_keys(c, vocab), mo);
}

std::optional<quant::QuantPreset> preset_from_config(const Config& c) {
  if (c.s("quant.preset").empty() && c.s("quant.weight_spec").empty()) return std::nullopt;
  quant::QuantPreset preset;
  if (!c.s("quant.preset").empty())
    preset = quant::resolve_preset(c.s("quant.preset"), {.group_size = c.i("quant.group_size")});
  else
    preset.name = "CUSTOM";
  if (!c.s("quant.weight_spec").empty())
    preset.weight = quant::parse_quant_spec(c.s("quant.weight_spec"), "key 'quant.weight_spec'");
  if (!c.s("quant.input_spec").empty())
    preset.input = quant::parse_quant_spec(c.s("quant.input_spec"), "key 'quant.input_spec'");
  return preset;
}

QuantSetup setup_quant(models::CausalLM& model, const Config& c) {
  QuantSetup q;
  q.preset = preset_from_config(c);
  if (!q.preset) return q;
  quant::prepare(model, *q.preset, q.ctx, {.exclude = c.list("quant.exclude"), .start_step = c.i("quant.start_step"), .embeddings = c.b("quant.embeddings")});
  q.description = quant::describe(*q.preset);
  if (uses_lora(c) && c.b("lora.qlora")) {
    for (auto& [name, m] : model.named_modules())
      if (auto* lin = dynamic_cast<nn::Linear*>(m); lin && lin->quant) {
        lin->quant->convert(lin->weight);
        lin->release_weight();
      }
    q.description += " (QLoRA base: packed weights, real low-bit matmul)";
  }
  return q;
}

bool uses_lora(const Config& c) { return c.i("lora.rank") > 0; }

void setup_lora(models::CausalLM& model, const Config& c, Generator* gen) {
  if (!uses_lora(c)) return;
  nn::add_lora(model, {.rank = c.i("lora.rank"), .alpha = c.f("lora.alpha"), .dropout = c.f("lora.dropout"),
                       .targets = c.list("lora.targets")},
               gen);
}

void register_model_components(io::CheckpointManager& m, models::CausalLM& model, const Config& c,
                               const QuantSetup& q) {
  const std::string text = models::model_config_to_json(model.config(), DType::f32);
  m.register_component(
      "model_config", [text] { return io::ComponentState{{}, json{{"config_json", text}}.dump()}; },
      [text](const io::ComponentState& s) {
        const json j = json::parse(s.json, nullptr, false);
        LOWBIT_CHECK(j.is_object() && j.contains("config_json") && j["config_json"] == text,
                     "checkpoint: the model configuration differs from this run's model");
      });
  if (uses_lora(c)) {
    io::register_tensors(m, "model", nn::lora_parameters(model));
  } else {
    io::register_module(m, "model", model);
  }
  if (q.preset) quant::register_quantizers(m, "quant", model);
}

namespace {

// The step directory path names: itself when it holds a manifest, else the newest checkpoint
// of a run directory that verifies.
std::string find_checkpoint(const std::string& path) {
  if (fs::exists(path + "/manifest.json")) return path;
  const std::string root = path + "/checkpoints";
  LOWBIT_CHECK(fs::is_directory(root), "model path ", path,
               ": neither an HF model directory (config.json), a run directory (checkpoints/) nor a checkpoint "
               "(manifest.json)");
  io::CheckpointManager probe(root);
  const auto steps = probe.complete_steps();
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    try {
      probe.verify(probe.dir_for(*it));
      return probe.dir_for(*it);
    } catch (const io::CorruptCheckpoint& e) {
      std::fprintf(stderr, "skipping checkpoint: %s\n", e.what());
    }
  }
  LOWBIT_FAIL("model path ", path, ": the run directory has no complete checkpoint");
}

}  // namespace

LoadedModel load_model(const std::string& path, const models::ModelOptions& mo) {
  LoadedModel out;
  if (fs::exists(path + "/config.json")) {
    out.model = io::load_hf_model(path, mo);
    for (const char* f : {"/tokenizer.json", "/tokenizer.model"})
      if (out.tokenizer.empty() && fs::exists(path + f)) out.tokenizer = path + f;
    out.description = "HF directory " + path;
    return out;
  }
  const std::string dir = find_checkpoint(path);
  const std::string run = fs::path(dir).parent_path().parent_path().string();
  const std::string root = fs::path(dir).parent_path().string();

  // Pass 1: the run's config and model configuration.
  json run_cfg, model_cfg;
  {
    io::CheckpointManager m(root);
    m.register_component("config", [] { return io::ComponentState{}; },
                         [&](const io::ComponentState& s) { run_cfg = json::parse(s.json); });
    m.register_component("model_config", [] { return io::ComponentState{}; },
                         [&](const io::ComponentState& s) { model_cfg = json::parse(s.json); });
    m.load_registered(dir);
  }
  out.config = Config{run_cfg};
  const Config& c = *out.config;
  const models::ModelConfig mc =
      models::parse_model_config(model_cfg.at("config_json").get<std::string>(), dir + "/model_config.json");
  if (uses_lora(c)) {
    out.model = io::load_hf_model(c.s("model.hf_dir"), mo);
  } else {
    out.model = std::make_unique<models::CausalLM>(mc, mo);
  }
  out.quant = setup_quant(*out.model, c);
  out.lora_gen = std::make_unique<Generator>(static_cast<uint64_t>(c.i("train.seed")) + 7);
  setup_lora(*out.model, c, out.lora_gen.get());

  // Pass 2: the weights (and quantizer state) into the model built as the run built it.
  io::CheckpointManager m(root);
  register_model_components(m, *out.model, c, out.quant);
  out.step = m.load_registered(dir);
  out.quant.ctx->step = out.step;
  // The run's own copy, else the configured tokenizer, else the base model's.
  auto in_dir = [&](const std::string& dir) {
    for (const char* f : {"/tokenizer.json", "/tokenizer.model"})
      if (out.tokenizer.empty() && !dir.empty() && fs::exists(dir + f)) out.tokenizer = dir + f;
  };
  in_dir(run);
  if (out.tokenizer.empty()) out.tokenizer = c.s("data.tokenizer");
  in_dir(c.s("model.hf_dir"));
  out.description = "checkpoint " + dir + " (step " + std::to_string(out.step) + ")";
  return out;
}

}  // namespace lowbit::train
