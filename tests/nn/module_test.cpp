#include <gtest/gtest.h>

#include "lowbit/engine/lowbit.h"
#include "lowbit/nn/linear.h"
#include "lowbit/nn/norm_embedding.h"

namespace lowbit::nn {
namespace {

// A two-level module tree shaped like a piece of a Llama block.
class Attn : public Module {
 public:
  explicit Attn(Generator* g) {
    q_proj = &register_module("q_proj", std::make_unique<Linear>(8, 8, LinearOptions{}, g));
    o_proj = &register_module("o_proj", std::make_unique<Linear>(8, 8, LinearOptions{true}, g));
  }
  Linear* q_proj;
  Linear* o_proj;
};
class Block : public Module {
 public:
  explicit Block(Generator* g) {
    input_layernorm = &register_module("input_layernorm", std::make_unique<RMSNorm>(8));
    self_attn = &register_module("self_attn", std::make_unique<Attn>(g));
  }
  RMSNorm* input_layernorm;
  Attn* self_attn;
};

TEST(Module, DottedNamesAreTheCheckpointKeys) {
  Generator g(1);
  Block b(&g);
  std::vector<std::string> names;
  for (auto& [n, t] : b.named_parameters("model.layers.0.")) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"model.layers.0.input_layernorm.weight",
                                             "model.layers.0.self_attn.q_proj.weight",
                                             "model.layers.0.self_attn.o_proj.weight",
                                             "model.layers.0.self_attn.o_proj.bias"}));
  EXPECT_EQ(b.num_parameters(), 8 + 64 + 64 + 8);
  EXPECT_TRUE(b.parameter("self_attn.o_proj.bias").same(b.self_attn->o_proj->bias));
  EXPECT_THROW(b.parameter("self_attn.k_proj.weight"), Error);
  b.eval();
  EXPECT_FALSE(b.self_attn->q_proj->is_training());
  b.train();
  EXPECT_TRUE(b.self_attn->q_proj->is_training());
  for (const Tensor& p : b.parameters()) EXPECT_TRUE(p.requires_grad());
}

TEST(Module, LinearIsXTimesWeightTransposedPlusBias) {
  Generator g(2);
  Linear lin(3, 2, LinearOptions{true, 0.5, DType::f64}, &g);
  {
    NoGradGuard ng;
    copy_(lin.bias, from_vector(std::vector<double>{0.25, -1.0}, {2}, DType::f64));
  }
  Tensor x = from_vector(std::vector<double>{1, 2, 3, -1, 0, 2}, {2, 3}, DType::f64);
  std::vector<double> w = lin.weight.to_vector<double>(), y = lin.forward(x).to_vector<double>(), xv = x.to_vector<double>();
  for (int r = 0; r < 2; ++r)
    for (int o = 0; o < 2; ++o) {
      double s = o == 0 ? 0.25 : -1.0;
      for (int i = 0; i < 3; ++i) s += xv[r * 3 + i] * w[o * 3 + i];
      EXPECT_NEAR(y[r * 2 + o], s, 1e-14);
    }
  GradcheckResult res = gradcheck([&](const std::vector<Tensor>& in) { return lin.forward(in[0]); },
                                  {rand({4, 3}, -1, 1, DType::f64, &g).set_requires_grad(true)});
  EXPECT_TRUE(res.ok) << res.message;
  EXPECT_THROW(lin.forward(zeros({2, 4}, DType::f64)), Error);
}

TEST(Module, MetaModulesAllocateNothing) {
  const int64_t before = cpu_memory_stats().live_bytes;
  Linear big(4096, 4096, LinearOptions{false, 0.02, DType::f32, kMeta});
  Embedding emb(32000, 4096, 0.02, DType::f32, kMeta);
  EXPECT_EQ(cpu_memory_stats().live_bytes, before);
  EXPECT_EQ(big.num_parameters() + emb.num_parameters(), 4096 * 4096 + 32000 * 4096);
  EXPECT_EQ(big.forward(empty({2, 4096}, DType::f32, kMeta)).shape(), (Shape{2, 4096}));
}

TEST(Module, DuplicateNamesAreRejected) {
  class Bad : public Module {
   public:
    Bad() {
      register_parameter("w", zeros({1}));
      register_parameter("w", zeros({1}));
    }
  };
  EXPECT_THROW(Bad(), Error);
}

}  // namespace
}  // namespace lowbit::nn

#include "lowbit/nn/mlp.h"

namespace lowbit::nn {
namespace {

TEST(Module, SwiGLUMatchesItsFormulaAndGradchecks) {
  Generator g(5);
  SwiGLU mlp(4, 6, LinearOptions{false, 0.5, DType::f64}, &g);
  std::vector<std::string> names;
  for (auto& [n, t] : mlp.named_parameters()) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"gate_proj.weight", "up_proj.weight", "down_proj.weight"}));
  Tensor x = rand({2, 4}, -1, 1, DType::f64, &g);
  // Reference with plain loops from the weights.
  std::vector<double> xv = x.to_vector<double>(), wg = mlp.gate_proj->weight.to_vector<double>(),
                      wu = mlp.up_proj->weight.to_vector<double>(), wd = mlp.down_proj->weight.to_vector<double>(),
                      y = mlp.forward(x).to_vector<double>();
  for (int r = 0; r < 2; ++r) {
    double h[6];
    for (int j = 0; j < 6; ++j) {
      double a = 0, b = 0;
      for (int i = 0; i < 4; ++i) {
        a += xv[r * 4 + i] * wg[j * 4 + i];
        b += xv[r * 4 + i] * wu[j * 4 + i];
      }
      h[j] = a / (1 + std::exp(-a)) * b;
    }
    for (int o = 0; o < 4; ++o) {
      double s = 0;
      for (int j = 0; j < 6; ++j) s += h[j] * wd[o * 6 + j];
      EXPECT_NEAR(y[r * 4 + o], s, 1e-13);
    }
  }
  GradcheckResult res =
      gradcheck([&](const std::vector<Tensor>& in) { return mlp.forward(in[0]); }, {x.detach().set_requires_grad(true)});
  EXPECT_TRUE(res.ok) << res.message;
}

}  // namespace
}  // namespace lowbit::nn
