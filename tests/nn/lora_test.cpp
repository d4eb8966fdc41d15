// LoRA on nn::Linear: PEFT's init (B = 0: the adapted layer starts as the base), an f64
// finite-difference gradcheck of x, lora_A and lora_B (contiguous and transposed x), a frozen
// base, dropout only in training, and merge_lora reproducing the adapted layer.
#include <gtest/gtest.h>

#include "../test_util.h"
#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/models/llama.h"
#include "lowbit/nn/lora.h"

namespace lowbit::nn {
namespace {

struct Net : Module {
  Net() {
    q = &register_module("q_proj", std::make_unique<Linear>(6, 5, LinearOptions{.bias = true, .dtype = DType::f64}));
    o = &register_module("o_proj", std::make_unique<Linear>(5, 6, LinearOptions{.dtype = DType::f64}));
  }
  Linear *q, *o;
};

double max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to(DType::f64).contiguous().to_vector<double>(), y = b.to(DType::f64).contiguous().to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

TEST(Lora, StartsAsTheBaseAndFreezesIt) {
  Net net;
  Generator g(1);
  const Tensor x = randn({3, 6}, 0, 1, DType::f64, &g);
  const Tensor before = net.q->forward(x);
  const auto adapted = add_lora(net, {.rank = 2, .alpha = 4, .targets = {"q_proj"}}, &g);
  ASSERT_EQ(adapted.size(), 1u);
  EXPECT_EQ(adapted[0].first, "q_proj");
  EXPECT_EQ(max_abs_diff(net.q->forward(x), before), 0.0);  // B = 0
  for (const auto& [n, p] : net.named_parameters())
    EXPECT_EQ(p.requires_grad(), n.find(".lora_") != std::string::npos) << n;
  const auto names = lora_parameters(net);
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0].first, "q_proj.lora_A.weight");
  EXPECT_EQ(names[1].first, "q_proj.lora_B.weight");
  EXPECT_EQ(names[0].second.shape(), (Shape{2, 6}));
  EXPECT_EQ(names[1].second.shape(), (Shape{5, 2}));
}

TEST(Lora, GradcheckOfInputAndAdapters) {
  Net net;
  Generator g(2);
  add_lora(net, {.rank = 3, .alpha = 6, .targets = {"q_proj"}}, &g);
  {
    NoGradGuard ng;
    copy_(net.q->lora_B().weight, randn({5, 3}, 0, 1, DType::f64, &g));
  }
  for (bool transposed : {false, true}) {
    Tensor x = transposed ? randn({6, 4}, 0, 1, DType::f64, &g).transpose(0, 1) : randn({4, 6}, 0, 1, DType::f64, &g);
    x.set_requires_grad(true);
    const GradcheckResult r = gradcheck([&](const std::vector<Tensor>& in) { return net.q->forward(in[0]); },
                                        {x, net.q->lora_A().weight, net.q->lora_B().weight});
    EXPECT_TRUE(r.ok) << r.message;
  }
}

TEST(Lora, WholeModelGradcheckWithAFrozenBase) {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 11;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.max_position_embeddings = 16;
  c.initializer_range = 0.5;
  models::CausalLM m(c, {.param_dtype = DType::f64, .compute_dtype = DType::f64, .seed = 3});
  Generator g(5);
  add_lora(m, {.rank = 2, .alpha = 3, .targets = {"q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"}}, &g);
  std::vector<Tensor> adapters;
  {
    NoGradGuard ng;
    for (auto& [n, p] : lora_parameters(m)) {
      copy_(p, randn(p.shape(), 0, 0.5, DType::f64, &g));
      adapters.push_back(p);
    }
  }
  const Tensor ids = randint({2, 5}, 0, 11, DType::i64, &g), targets = randint({2, 5}, 0, 11, DType::i64, &g);
  const auto r = gradcheck([&](const std::vector<Tensor>&) { return m.loss(ids, targets); }, adapters);
  EXPECT_TRUE(r.ok) << r.message;
}

TEST(Lora, DropoutOnlyInTrainingAndMergeReproducesTheLayer) {
  Net net;
  Generator g(3);
  add_lora(net, {.rank = 2, .alpha = 2, .dropout = 0.5, .targets = {"q_proj", "o_proj"}}, &g);
  {
    NoGradGuard ng;
    for (auto& [n, p] : lora_parameters(net)) copy_(p, randn(p.shape(), 0, 1, DType::f64, &g));
  }
  const Tensor x = randn({8, 6}, 0, 1, DType::f64, &g);
  net.eval();
  const Tensor y_eval = net.o->forward(net.q->forward(x));
  EXPECT_EQ(max_abs_diff(net.o->forward(net.q->forward(x)), y_eval), 0.0);
  net.train();
  EXPECT_GT(max_abs_diff(net.o->forward(net.q->forward(x)), y_eval), 1e-3);  // masks drawn
  net.eval();
  EXPECT_EQ(merge_lora(net), 2);
  EXPECT_TRUE(lora_parameters(net).empty());
  EXPECT_LE(max_abs_diff(net.o->forward(net.q->forward(x)), y_eval), 1e-12);
  for (const auto& [n, p] : net.named_parameters()) EXPECT_TRUE(p.requires_grad()) << n;
}

TEST(Lora, Errors) {
  Net net;
  Generator g(4);
  EXPECT_NE(test::error_of([&] { add_lora(net, {.rank = 2, .targets = {"k_proj"}}, &g); })
                .find("target 'k_proj' matches no linear layer"),
            std::string::npos);
  add_lora(net, {.rank = 2, .targets = {"q_proj"}}, &g);
  EXPECT_NE(test::error_of([&] { add_lora(net, {.rank = 2, .targets = {"q_proj"}}, &g); }).find("already has LoRA"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { net.o->merge_lora(); }).find("no LoRA adapters"), std::string::npos);
}

}  // namespace
}  // namespace lowbit::nn
