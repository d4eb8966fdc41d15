// Model configuration read from a Hugging Face config.json, with HF field names. Fields real
// configs may omit take the transformers default for their model_type (llama, qwen2, qwen3);
// required sizes, an unknown model_type or inconsistent sizes give a one-line error naming
// the file and the field.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "lowbit/engine/dtype.h"

namespace lowbit::models {

// Llama-3 `rope_scaling` (rope_type "llama3"); absent = plain RoPE.
struct RopeScaling {
  std::string rope_type = "llama3";
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;

  bool operator==(const RopeScaling&) const = default;
};

struct ModelConfig {
  std::string model_type;  // llama | qwen2 | qwen3
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v (and for llama also o) projection bias
  bool qk_norm = false;         // per-head RMSNorm on q and k (qwen3)
  double initializer_range = 0.02;
  DType torch_dtype = DType::f32;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // HF's eos_token_id: one id or a list

  bool operator==(const ModelConfig&) const = default;
};

// text: the JSON document; source: the file name used in error messages.
ModelConfig parse_model_config(const std::string& text, const std::string& source = "config.json");
ModelConfig read_model_config(const std::string& path);
// The config.json text transformers reads for this config (architectures, model_type, sizes,
// rope_theta / rope_scaling, torch_dtype as `dtype_name`, ...); parse_model_config inverts it.
std::string model_config_to_json(const ModelConfig& c, DType saved_dtype);

}  // namespace lowbit::models
