#include "lowbit/models/model_config.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lowbit/engine/error.h"
#include "lowbit/engine/json_text.h"

namespace lowbit::models {

namespace {

using nlohmann::json;

struct Reader {
  const json& j;
  const std::string& source;

  bool has(const char* key) const { return j.contains(key) && !j.at(key).is_null(); }

  template <class T>
  T required(const char* key) const {
    LOWBIT_CHECK(has(key), source, ": missing required field '", key, "'");
    return get<T>(key);
  }
  template <class T>
  T optional(const char* key, T fallback) const {
    return has(key) ? get<T>(key) : fallback;
  }
  template <class T>
  T get(const char* key) const {
    const json& v = j.at(key);
    if constexpr (std::is_same_v<T, bool>) {
      LOWBIT_CHECK(v.is_boolean(), source, ": field '", key, "' must be true or false, got ", v.dump());
    } else if constexpr (std::is_integral_v<T>) {
      LOWBIT_CHECK(v.is_number_integer(), source, ": field '", key, "' must be an integer, got ", v.dump());
    } else if constexpr (std::is_floating_point_v<T>) {
      LOWBIT_CHECK(v.is_number(), source, ": field '", key, "' must be a number, got ", v.dump());
    } else {
      LOWBIT_CHECK(v.is_string(), source, ": field '", key, "' must be a string, got ", v.dump());
    }
    return v.get<T>();
  }
};

void check_positive(const std::string& source, const char* key, int64_t v) {
  LOWBIT_CHECK(v > 0, source, ": field '", key, "' must be positive, got ", v);
}

DType parse_torch_dtype(const std::string& source, const char* key, const std::string& s) {
  if (s == "float32") return DType::f32;
  if (s == "bfloat16") return DType::bf16;
  if (s == "float16") return DType::f16;
  if (s == "float64") return DType::f64;
  LOWBIT_FAIL(source, ": field '", key, "' has unsupported value '", s, "' (float32, bfloat16, float16, float64)");
}

}  // namespace

ModelConfig parse_model_config(const std::string& text, const std::string& source) {
  const json j = parse_json_text(text, source);
  LOWBIT_CHECK(j.is_object(), source, ": expected a JSON object");
  const Reader r{j, source};
  ModelConfig c;
  c.model_type = r.required<std::string>("model_type");
  const bool llama = c.model_type == "llama", qwen2 = c.model_type == "qwen2", qwen3 = c.model_type == "qwen3";
  LOWBIT_CHECK(llama || qwen2 || qwen3, source, ": field 'model_type' is '", c.model_type,
               "'; supported: llama, qwen2, qwen3");
  c.vocab_size = r.required<int64_t>("vocab_size");
  c.hidden_size = r.required<int64_t>("hidden_size");
  c.intermediate_size = r.required<int64_t>("intermediate_size");
  c.num_hidden_layers = r.required<int64_t>("num_hidden_layers");
  c.num_attention_heads = r.required<int64_t>("num_attention_heads");
  for (auto [key, v] : {std::pair{"vocab_size", c.vocab_size}, {"hidden_size", c.hidden_size},
                        {"intermediate_size", c.intermediate_size}, {"num_hidden_layers", c.num_hidden_layers},
                        {"num_attention_heads", c.num_attention_heads}})
    check_positive(source, key, v);
  // transformers defaults per model_type.
  c.num_key_value_heads = r.optional<int64_t>("num_key_value_heads", c.num_attention_heads);
  check_positive(source, "num_key_value_heads", c.num_key_value_heads);
  LOWBIT_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, source, ": field 'num_key_value_heads' (",
               c.num_key_value_heads, ") must divide num_attention_heads (", c.num_attention_heads, ")");
  if (qwen3) {
    c.head_dim = r.optional<int64_t>("head_dim", 128);
  } else {
    LOWBIT_CHECK(r.has("head_dim") || c.hidden_size % c.num_attention_heads == 0, source,
                 ": field 'hidden_size' (", c.hidden_size, ") is not divisible by num_attention_heads (",
                 c.num_attention_heads, ") and no 'head_dim' is given");
    c.head_dim = r.optional<int64_t>("head_dim", c.hidden_size / c.num_attention_heads);
  }
  check_positive(source, "head_dim", c.head_dim);
  LOWBIT_CHECK(c.head_dim % 2 == 0, source, ": field 'head_dim' must be even for RoPE, got ", c.head_dim);
  c.max_position_embeddings = r.optional<int64_t>("max_position_embeddings", llama ? 2048 : 32768);
  check_positive(source, "max_position_embeddings", c.max_position_embeddings);
  c.rms_norm_eps = r.optional<double>("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.optional<bool>("tie_word_embeddings", false);
  // Qwen2 always has q/k/v biases (its modeling code hard-codes them); llama and qwen3 read the flag.
  c.attention_bias = qwen2 ? true : r.optional<bool>("attention_bias", false);
  c.qk_norm = qwen3;
  c.initializer_range = r.optional<double>("initializer_range", 0.02);
  // transformers >= 5 writes "dtype" and nests the RoPE settings in "rope_parameters"
  // (rope_theta included); older configs have "torch_dtype", "rope_theta" and "rope_scaling".
  const char* dtype_key = r.has("dtype") ? "dtype" : "torch_dtype";
  c.torch_dtype = r.has(dtype_key) ? parse_torch_dtype(source, dtype_key, r.get<std::string>(dtype_key)) : DType::f32;
  if (r.has("bos_token_id")) c.bos_token_id = r.get<int64_t>("bos_token_id");
  if (r.has("eos_token_id")) {
    const json& e = j.at("eos_token_id");
    if (e.is_array()) {
      for (const json& v : e) {
        LOWBIT_CHECK(v.is_number_integer(), source, ": field 'eos_token_id' must be an integer or a list of integers");
        c.eos_token_ids.push_back(v.get<int64_t>());
      }
    } else {
      c.eos_token_ids.push_back(r.get<int64_t>("eos_token_id"));
    }
  }
  const bool nested = r.has("rope_parameters");
  const char* scaling_key = nested ? "rope_parameters" : "rope_scaling";
  if (nested) {
    const json& rp = j.at("rope_parameters");
    LOWBIT_CHECK(rp.is_object(), source, ": field 'rope_parameters' must be an object");
    c.rope_theta = Reader{rp, source + " rope_parameters"}.optional<double>("rope_theta", 10000.0);
  } else {
    c.rope_theta = r.optional<double>("rope_theta", 10000.0);
  }
  LOWBIT_CHECK(c.rms_norm_eps >= 0 && c.rope_theta > 0, source, ": fields 'rms_norm_eps' (", c.rms_norm_eps,
               ") and 'rope_theta' (", c.rope_theta, ") must be >= 0 and > 0");
  if (r.has(scaling_key)) {
    const json& rs = j.at(scaling_key);
    const std::string field = scaling_key;
    LOWBIT_CHECK(rs.is_object(), source, ": field '", field, "' must be an object or null");
    const Reader rr{rs, source + " " + field};
    RopeScaling s;
    s.rope_type = rr.has("rope_type") ? rr.get<std::string>("rope_type") : rr.required<std::string>("type");
    if (s.rope_type != "default") {
      LOWBIT_CHECK(s.rope_type == "llama3", source, ": field '", field, ".rope_type' is '", s.rope_type,
                   "'; supported: llama3, default");
      s.factor = rr.required<double>("factor");
      s.low_freq_factor = rr.required<double>("low_freq_factor");
      s.high_freq_factor = rr.required<double>("high_freq_factor");
      s.original_max_position_embeddings = rr.required<int64_t>("original_max_position_embeddings");
      LOWBIT_CHECK(s.factor > 0 && s.high_freq_factor > s.low_freq_factor && s.low_freq_factor > 0, source,
                   ": field '", field, "' needs factor > 0 and high_freq_factor > low_freq_factor > 0");
      check_positive(source, (field + ".original_max_position_embeddings").c_str(), s.original_max_position_embeddings);
      c.rope_scaling = s;
    }
  }
  return c;
}

ModelConfig read_model_config(const std::string& path) {
  std::ifstream f(path);
  LOWBIT_CHECK(f.good(), path, ": cannot open model config");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_model_config(ss.str(), path);
}

std::string model_config_to_json(const ModelConfig& c, DType saved_dtype) {
  const char* arch = c.model_type == "qwen2" ? "Qwen2ForCausalLM" : c.model_type == "qwen3" ? "Qwen3ForCausalLM"
                                                                                             : "LlamaForCausalLM";
  const char* dtype = saved_dtype == DType::bf16  ? "bfloat16"
                      : saved_dtype == DType::f16 ? "float16"
                      : saved_dtype == DType::f64 ? "float64"
                                                  : "float32";
  nlohmann::ordered_json j;
  j["architectures"] = {arch};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] = c.head_dim;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling) {
    const RopeScaling& s = *c.rope_scaling;
    j["rope_scaling"] = {{"rope_type", s.rope_type},
                         {"factor", s.factor},
                         {"low_freq_factor", s.low_freq_factor},
                         {"high_freq_factor", s.high_freq_factor},
                         {"original_max_position_embeddings", s.original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "qwen2") j["attention_bias"] = c.attention_bias;
  j["hidden_act"] = "silu";
  j["initializer_range"] = c.initializer_range;
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = dtype;
  return j.dump(2) + "\n";
}

}  // namespace lowbit::models
