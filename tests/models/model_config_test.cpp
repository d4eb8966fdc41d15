// HF config.json parsing: real-shaped configs, transformers defaults for omitted fields, and
// one-line errors that name the file and field.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "lowbit/engine/error.h"
#include "lowbit/models/model_config.h"

namespace lowbit::models {
namespace {

std::string error_of(const std::string& text) {
  try {
    parse_model_config(text, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ModelConfig, Llama32WithRopeScaling) {
  // Shaped like meta-llama/Llama-3.2-1B's config.json.
  const ModelConfig c = parse_model_config(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
    "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
    "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": true, "torch_dtype": "bfloat16", "attention_bias": false})");
  EXPECT_EQ(c.num_key_value_heads, 8);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rope_theta, 500000.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->factor, 32.0);
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, DType::bf16);
  EXPECT_FALSE(c.qk_norm);
}

TEST(ModelConfig, OmittedFieldsTakeTransformersDefaults) {
  const std::string sizes =
      R"("vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8)";
  const ModelConfig llama = parse_model_config(R"({"model_type": "llama", )" + sizes + "}");
  EXPECT_EQ(llama.num_key_value_heads, 8);  // = num_attention_heads
  EXPECT_EQ(llama.head_dim, 32);            // hidden / heads
  EXPECT_EQ(llama.max_position_embeddings, 2048);
  EXPECT_EQ(llama.rms_norm_eps, 1e-6);
  EXPECT_EQ(llama.rope_theta, 10000.0);
  EXPECT_FALSE(llama.rope_scaling.has_value());
  EXPECT_FALSE(llama.tie_word_embeddings);
  EXPECT_FALSE(llama.attention_bias);
  const ModelConfig qwen2 = parse_model_config(R"({"model_type": "qwen2", )" + sizes + "}");
  EXPECT_TRUE(qwen2.attention_bias);  // Qwen2's q/k/v projections always have a bias
  EXPECT_EQ(qwen2.max_position_embeddings, 32768);
  const ModelConfig qwen3 = parse_model_config(R"({"model_type": "qwen3", )" + sizes + "}");
  EXPECT_EQ(qwen3.head_dim, 128);  // Qwen3Config's default, independent of hidden_size
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_FALSE(qwen3.attention_bias);
  const ModelConfig nulls = parse_model_config(R"({"model_type": "llama", "rope_scaling": null, )" + sizes + "}");
  EXPECT_FALSE(nulls.rope_scaling.has_value());
}

TEST(ModelConfig, Transformers5NestedRopeParametersAndDtype) {
  // transformers >= 5 writes "dtype" and nests rope_theta with the scaling in "rope_parameters".
  const std::string sizes =
      R"("vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4)";
  const ModelConfig c = parse_model_config(R"({"model_type": "llama", "dtype": "bfloat16", "rope_parameters": {
      "factor": 4.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 32,
      "rope_theta": 100.0, "rope_type": "llama3"}, )" + sizes + "}");
  EXPECT_EQ(c.torch_dtype, DType::bf16);
  EXPECT_EQ(c.rope_theta, 100.0);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 32);
  const ModelConfig d = parse_model_config(
      R"({"model_type": "qwen3", "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, )" + sizes + "}");
  EXPECT_EQ(d.rope_theta, 1e6);
  EXPECT_FALSE(d.rope_scaling.has_value());
  EXPECT_NE(error_of(R"({"model_type": "llama", "rope_parameters": {"rope_type": "yarn", "rope_theta": 1.0}, )" + sizes + "}")
                .find("field 'rope_parameters.rope_type' is 'yarn'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", "dtype": "int8", )" + sizes + "}").find("field 'dtype'"),
            std::string::npos);
}

TEST(ModelConfig, ErrorsNameTheFileAndField) {
  EXPECT_NE(error_of(R"({"model_type": "gpt2"})").find("cfg.json: field 'model_type' is 'gpt2'"), std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", "vocab_size": 10})").find("missing required field 'hidden_size'"),
            std::string::npos);
  const std::string sizes =
      R"("vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 8)";
  EXPECT_NE(error_of(R"({"model_type": "llama", "num_key_value_heads": 3, )" + sizes + "}").find("'num_key_value_heads'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", "hidden_size": "big", "vocab_size": 1})").find("'hidden_size' must be an integer"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model_type": "llama", "rope_scaling": {"rope_type": "yarn"}, )" + sizes + "}").find("'yarn'"),
            std::string::npos);
  EXPECT_NE(error_of("{not json").find("cfg.json: invalid JSON"), std::string::npos);
  for (const std::string& text : {std::string(R"({"model_type": "llama"})"), std::string("[]")}) {
    const std::string e = error_of(text);
    EXPECT_FALSE(e.empty());
    EXPECT_EQ(e.find('\n'), std::string::npos) << "error must be one line: " << e;
  }
  EXPECT_THROW(read_model_config("/nonexistent/config.json"), Error);
}

TEST(ModelConfig, ReadsAFile) {
  const std::string path = ::testing::TempDir() + "lowbit_config_test.json";
  {
    std::ofstream f(path);
    f << R"({"model_type": "qwen2", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
             "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2})";
  }
  const ModelConfig c = read_model_config(path);
  EXPECT_EQ(c.num_key_value_heads, 2);
  EXPECT_EQ(c.head_dim, 8);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace lowbit::models
