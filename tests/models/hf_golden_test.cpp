// Our models against Hugging Face transformers: tiny Llama, Llama-3 with rope_scaling, Qwen2
// and Qwen3 built by tests/reference/hf_golden.py (versions in tests/reference/README.md),
// their float64 weights loaded by name, must reproduce transformers' logits, loss and the
// loss gradient of every parameter to 1e-5 relative (f64); the f32 model to 1e-4.
#include <gtest/gtest.h>

#include <cmath>

#include "lowbit/engine/lowbit.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/models/llama.h"

namespace lowbit::models {
namespace {

std::string golden_dir(const std::string& name) { return std::string(LOWBIT_TEST_DATA_DIR) + "/hf_golden/" + name; }

// Worst |ours - golden| over the largest |golden| of the tensor: the relative error of the
// tensor as a whole, so entries that cancel to ~0 are judged at the tensor's scale.
double rel_error(const Tensor& ours, const Tensor& golden) {
  EXPECT_EQ(ours.shape(), golden.shape());
  const auto a = ours.to(DType::f64).to_vector<double>(), b = golden.to(DType::f64).to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return diff / scale;
}

void check_model(const std::string& name, DType dtype, double tol) {
  SCOPED_TRACE(name + " " + std::string(dtype_name(dtype)));
  const ModelConfig c = read_model_config(golden_dir(name) + "/config.json");
  ModelOptions o;
  o.param_dtype = o.compute_dtype = dtype;
  CausalLM m(c, o);
  const io::SafetensorsReader weights(golden_dir(name) + "/model.safetensors");
  const auto params = m.named_parameters();
  ASSERT_EQ(weights.names().size(), params.size()) << "checkpoint keys vs model parameters";
  {
    NoGradGuard no_grad;
    for (const auto& [n, p] : params) {
      ASSERT_TRUE(weights.has(n)) << "checkpoint lacks " << n;
      const Tensor w = weights.get(n);
      ASSERT_EQ(w.shape(), p.shape()) << n;
      copy_(p, w);
    }
  }
  const io::SafetensorsReader golden(golden_dir(name) + "/golden.safetensors");
  const Tensor ids = golden.get("input_ids");
  const int64_t T = ids.size(1);
  const Tensor logits = m.forward(ids);
  EXPECT_LE(rel_error(logits, golden.get("logits")), tol);
  const Tensor loss = cross_entropy(logits.narrow(1, 0, T - 1), ids.narrow(1, 1, T - 1));
  EXPECT_LE(rel_error(loss, golden.get("loss")), tol);
  loss.backward();
  for (const auto& [n, p] : params) {
    ASSERT_TRUE(p.grad().defined()) << n;
    EXPECT_LE(rel_error(p.grad(), golden.get("grad." + n)), tol) << n;
  }
}

class HfGoldenModel : public ::testing::TestWithParam<std::string> {};

TEST_P(HfGoldenModel, Float64LogitsLossAndGradientsMatchTransformers) { check_model(GetParam(), DType::f64, 1e-5); }
TEST_P(HfGoldenModel, Float32MatchesToo) { check_model(GetParam(), DType::f32, 1e-4); }

INSTANTIATE_TEST_SUITE_P(Transformers, HfGoldenModel,
                         ::testing::Values("llama", "llama3_rope_scaling", "qwen2", "qwen3"));

TEST(HfGoldenModel, ConfigsCarryTheFeaturesUnderTest) {
  EXPECT_TRUE(read_model_config(golden_dir("llama3_rope_scaling") + "/config.json").rope_scaling.has_value());
  EXPECT_TRUE(read_model_config(golden_dir("qwen2") + "/config.json").attention_bias);
  const ModelConfig q3 = read_model_config(golden_dir("qwen3") + "/config.json");
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_NE(q3.head_dim * q3.num_attention_heads, q3.hidden_size);
}

}  // namespace
}  // namespace lowbit::models
