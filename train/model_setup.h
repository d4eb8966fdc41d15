// Model setup shared by train_llama and the tools: the model, quantization (QAT or a QLoRA
// base) and LoRA adapters built from a resolved config, and loading a model from an HF
// directory, a run directory or one checkpoint, as it was trained.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "lowbit/engine/random.h"
#include "lowbit/io/checkpoint.h"
#include "lowbit/models/llama.h"
#include "lowbit/quant/linear_quant.h"
#include "lowbit/train/config.h"

namespace lowbit::train {

// Dtypes, init, seed and activation checkpointing from model.* / train.seed.
models::ModelOptions model_options(const Config& c);
// From model.hf_dir, model.config or the model.* size keys (vocab: the data's vocabulary).
std::unique_ptr<models::CausalLM> build_model(const Config& c, int64_t vocab, const models::ModelOptions& mo);

struct QuantSetup {
  std::shared_ptr<quant::QuantContext> ctx = std::make_shared<quant::QuantContext>();
  std::optional<quant::QuantPreset> preset;  // none: no quantization
  std::string description = "none";
};
// quant.preset (+ group_size) with quant.weight_spec / input_spec overrides; nullopt when the
// config asks for no quantization.
std::optional<quant::QuantPreset> preset_from_config(const Config& c);
// Prepares the model per quant.* (fake quant for QAT); with lora.qlora the base is converted at
// once to packed low-bit weights running the real low-bit matmul, its f32 weights released.
QuantSetup setup_quant(models::CausalLM& model, const Config& c);
// LoRA adapters per lora.* (rank 0: none); gen draws their init and dropout masks.
void setup_lora(models::CausalLM& model, const Config& c, Generator* gen);
bool uses_lora(const Config& c);

// Checkpoint components describing the model: "model_config" (checked on load), "model" (all
// parameters; only the adapters in a LoRA run, whose base comes from model.hf_dir) and, when
// quantized, "quant" (every quantizer's state).
void register_model_components(io::CheckpointManager& m, models::CausalLM& model, const Config& c,
                               const QuantSetup& q);

struct LoadedModel {
  std::unique_ptr<models::CausalLM> model;
  QuantSetup quant;
  std::optional<Config> config;  // the run's resolved config (checkpoints only)
  std::string tokenizer;         // the tokenizer.json / tokenizer.model that goes with the model, or ""
  int64_t step = -1;             // the checkpoint's global step (-1: an HF directory)
  std::string description;       // where it came from, for logs
  std::unique_ptr<Generator> lora_gen;  // LoRA runs: the dropout generator the adapters use
};

// path: an HF model directory (config.json + safetensors), a train_llama run directory (its
// newest checkpoint that verifies) or one checkpoint step directory. A checkpoint comes back as
// trained: fake-quantized when its run was QAT (quantizer state restored, the quant context at
// the checkpoint's step) and with its LoRA adapters on the run's base model.
LoadedModel load_model(const std::string& path, const models::ModelOptions& mo = {});

}  // namespace lowbit::train
