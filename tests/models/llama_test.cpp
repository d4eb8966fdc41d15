// The Llama-family model: HF parameter names, whole-model f64 gradcheck, KV cache equals a
// full forward, checkpointed backward equals plain backward bitwise, deterministic training
// at 1 and 2 threads, bf16 mixed precision, initialisation schemes and sampling.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <map>
#include <numbers>

#include "lowbit/engine/autograd/gradcheck.h"
#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/cpu/gemm.h"
#include "lowbit/engine/lowbit.h"
#include "lowbit/models/generate.h"
#include "lowbit/models/llama.h"
#include "lowbit/optim/adamw.h"

namespace lowbit::models {
namespace {

ModelConfig tiny(const std::string& type) {
  ModelConfig c;
  c.model_type = type;
  c.vocab_size = 11;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  c.max_position_embeddings = 32;
  c.rms_norm_eps = 1e-5;
  if (type == "qwen2") c.attention_bias = true;
  if (type == "qwen3") {
    c.qk_norm = true;
    c.head_dim = 6;  // != hidden / heads, as in real Qwen3
    c.tie_word_embeddings = true;
  }
  return c;
}

std::vector<std::string> names_of(const nn::Module& m) {
  std::vector<std::string> out;
  for (const auto& [n, t] : m.named_parameters()) out.push_back(n);
  return out;
}

struct ThreadsGuard {
  explicit ThreadsGuard(int n) : prev(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadsGuard() { omp_set_num_threads(prev); }
  int prev;
};

Tensor batch_ids(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  Generator g(seed);
  return randint({B, T}, 0, V, DType::i64, &g);
}

// Makes norms and biases non-trivial so the tests see them.
void perturb(const nn::Module& m, uint64_t seed) {
  Generator g(seed);
  NoGradGuard no_grad;
  for (const auto& [n, p] : m.named_parameters())
    if (n.find("norm") != std::string::npos || n.find("bias") != std::string::npos)
      add_(p, randn(p.shape(), 0.0, 0.2, p.dtype(), &g));
}

TEST(Llama, ParameterNamesAreTheHfKeys) {
  const std::vector<std::string> layer0 = {"model.layers.0.input_layernorm.weight",
                                           "model.layers.0.self_attn.q_proj.weight",
                                           "model.layers.0.self_attn.k_proj.weight",
                                           "model.layers.0.self_attn.v_proj.weight",
                                           "model.layers.0.self_attn.o_proj.weight",
                                           "model.layers.0.post_attention_layernorm.weight",
                                           "model.layers.0.mlp.gate_proj.weight",
                                           "model.layers.0.mlp.up_proj.weight",
                                           "model.layers.0.mlp.down_proj.weight"};
  ModelConfig c = tiny("llama");
  c.num_hidden_layers = 1;
  std::vector<std::string> want = {"model.embed_tokens.weight"};
  want.insert(want.end(), layer0.begin(), layer0.end());
  want.insert(want.end(), {"model.norm.weight", "lm_head.weight"});
  EXPECT_EQ(names_of(CausalLM(c)), want);

  ModelConfig q2 = tiny("qwen2");
  q2.num_hidden_layers = 1;
  const auto n2 = names_of(CausalLM(q2));
  for (const char* b : {"q_proj.bias", "k_proj.bias", "v_proj.bias"})
    EXPECT_NE(std::find(n2.begin(), n2.end(), std::string("model.layers.0.self_attn.") + b), n2.end()) << b;
  EXPECT_EQ(std::find(n2.begin(), n2.end(), "model.layers.0.self_attn.o_proj.bias"), n2.end());

  ModelConfig q3 = tiny("qwen3");
  const CausalLM m3(q3);
  const auto n3 = names_of(m3);
  EXPECT_NE(std::find(n3.begin(), n3.end(), "model.layers.1.self_attn.q_norm.weight"), n3.end());
  EXPECT_NE(std::find(n3.begin(), n3.end(), "model.layers.1.self_attn.k_norm.weight"), n3.end());
  EXPECT_EQ(std::find(n3.begin(), n3.end(), "lm_head.weight"), n3.end());  // tied
  EXPECT_TRUE(m3.output_weight().same(m3.model->embed_tokens->weight));
  EXPECT_EQ(m3.parameter("model.layers.0.self_attn.q_proj.weight").shape(), (Shape{2 * 6, 8}));
  EXPECT_EQ(m3.parameter("model.layers.0.self_attn.q_norm.weight").shape(), (Shape{6}));

  // Llama with attention_bias biases all four projections.
  ModelConfig lb = tiny("llama");
  lb.attention_bias = true;
  EXPECT_NO_THROW(CausalLM(lb).parameter("model.layers.0.self_attn.o_proj.bias"));
}

TEST(Llama, ParameterCountMatchesTheFormula) {
  const ModelConfig c = tiny("qwen2");
  const int64_t C = 8, I = 12, V = 11, D = 4, H = 2, K = 1;
  const int64_t attn = C * H * D + (H * D) + 2 * (C * K * D + K * D) + H * D * C;
  const int64_t layer = 2 * C + attn + 3 * C * I;
  EXPECT_EQ(CausalLM(c).num_parameters(), V * C + 2 * layer + C + V * C);
}

class WholeModelGradcheck : public ::testing::TestWithParam<std::string> {};

TEST_P(WholeModelGradcheck, Float64) {
  ModelConfig c = tiny(GetParam());
  if (GetParam() == "llama") {
    c.attention_bias = true;
    c.rope_scaling = RopeScaling{"llama3", 4.0, 1.0, 4.0, 8};
  }
  ModelOptions o;
  o.param_dtype = o.compute_dtype = DType::f64;
  o.seed = 3;
  c.initializer_range = 0.5;
  CausalLM m(c, o);
  perturb(m, 4);
  const Tensor ids = batch_ids(2, 5, c.vocab_size, 5);
  const Tensor targets = batch_ids(2, 5, c.vocab_size, 6);
  const auto r = gradcheck([&](const std::vector<Tensor>&) { return m.loss(ids, targets); }, m.parameters());
  EXPECT_TRUE(r.ok) << r.message;
}

INSTANTIATE_TEST_SUITE_P(Llama, WholeModelGradcheck, ::testing::Values("llama", "qwen2", "qwen3"));

TEST(Llama, GradcheckCatchesAWrongModel) {
  // The same check fails when the loss it differentiates is not the one it perturbs.
  ModelConfig c = tiny("llama");
  ModelOptions o;
  o.param_dtype = o.compute_dtype = DType::f64;
  CausalLM m(c, o);
  const Tensor ids = batch_ids(1, 4, c.vocab_size, 5);
  bool first = true;
  const auto r = gradcheck(
      [&](const std::vector<Tensor>&) {
        const Tensor l = m.loss(ids, ids);
        if (first) {
          first = false;
          return mul(l, 1.01);
        }
        return l;
      },
      m.parameters());
  EXPECT_FALSE(r.ok);
}

// Two examples packed into one row (positions restarting at 0, block-diagonal attention) give
// the logits of each example run alone, for every family (qwen3: q/k norm before the rotation).
class PackedRowsAgree : public ::testing::TestWithParam<std::string> {};

TEST_P(PackedRowsAgree, WithSeparateExamples) {
  const ModelConfig c = tiny(GetParam());
  ModelOptions o;
  o.param_dtype = o.compute_dtype = DType::f64;
  o.seed = 7;
  CausalLM m(c, o);
  const Tensor a = batch_ids(1, 5, c.vocab_size, 21), b = batch_ids(1, 7, c.vocab_size, 22);
  const auto av = a.to_vector<int64_t>(), bv = b.to_vector<int64_t>();
  std::vector<int64_t> ids = av, pos, seg;
  ids.insert(ids.end(), bv.begin(), bv.end());
  for (int64_t t = 0; t < 5; ++t) pos.push_back(t), seg.push_back(0);
  for (int64_t t = 0; t < 7; ++t) pos.push_back(t), seg.push_back(1);
  const Packing packing{from_vector(pos, {1, 12}), from_vector(seg, {1, 12})};
  const auto packed = m.forward(from_vector(ids, {1, 12}), nullptr, &packing).to_vector<double>();
  const auto la = m.forward(a).to_vector<double>(), lb = m.forward(b).to_vector<double>();
  const size_t V = static_cast<size_t>(c.vocab_size);
  for (size_t i = 0; i < la.size(); ++i) EXPECT_NEAR(packed[i], la[i], 1e-12) << i;
  for (size_t i = 0; i < lb.size(); ++i) EXPECT_NEAR(packed[5 * V + i], lb[i], 1e-12) << i;
  // Without the packing the second example sees the first: its logits differ.
  const auto unpacked = m.forward(from_vector(ids, {1, 12})).to_vector<double>();
  double diff = 0;
  for (size_t i = 0; i < lb.size(); ++i) diff = std::max(diff, std::abs(unpacked[5 * V + i] - lb[i]));
  EXPECT_GT(diff, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Llama, PackedRowsAgree, ::testing::Values("llama", "qwen2", "qwen3"));

class KVCacheAgrees : public ::testing::TestWithParam<std::string> {};

TEST_P(KVCacheAgrees, WithAFullForward) {
  ModelConfig c = tiny(GetParam());
  c.rope_scaling = RopeScaling{"llama3", 4.0, 1.0, 4.0, 8};
  ModelOptions o;
  o.param_dtype = o.compute_dtype = DType::f64;
  CausalLM m(c, o);
  perturb(m, 9);
  const Tensor ids = batch_ids(2, 9, c.vocab_size, 7);
  NoGradGuard no_grad;
  const std::vector<double> full = m.forward(ids).to_vector<double>();  // (2, 9, V)
  KVCache cache(c, 2, 16, DType::f64);
  std::vector<Tensor> parts;
  parts.push_back(m.forward(ids.narrow(1, 0, 4), &cache));  // prefill 4
  parts.push_back(m.forward(ids.narrow(1, 4, 3), &cache));  // a chunk of 3
  for (int64_t t = 7; t < 9; ++t) parts.push_back(m.forward(ids.narrow(1, t, 1), &cache));
  EXPECT_EQ(cache.length(), 9);
  const std::vector<double> inc = cat(parts, 1).to_vector<double>();
  ASSERT_EQ(inc.size(), full.size());
  for (size_t i = 0; i < full.size(); ++i) ASSERT_NEAR(inc[i], full[i], 1e-12 * (1 + std::fabs(full[i]))) << i;
}

INSTANTIATE_TEST_SUITE_P(Llama, KVCacheAgrees, ::testing::Values("llama", "qwen2", "qwen3"));

TEST(Llama, KVCacheRefusesOverflowAndGrad) {
  const ModelConfig c = tiny("llama");
  CausalLM m(c);
  KVCache cache(c, 1, 4);
  EXPECT_THROW(m.forward(batch_ids(1, 2, c.vocab_size, 1), &cache), Error);  // grad mode on
  NoGradGuard no_grad;
  m.forward(batch_ids(1, 3, c.vocab_size, 1), &cache);
  EXPECT_THROW(m.forward(batch_ids(1, 2, c.vocab_size, 1), &cache), Error);
}

std::map<std::string, std::vector<float>> grads_of(const nn::Module& m) {
  std::map<std::string, std::vector<float>> g;
  for (const auto& [n, p] : m.named_parameters()) g[n] = p.grad().to_vector<float>();
  return g;
}

TEST(Llama, CheckpointedBackwardEqualsPlainBitwise) {
  for (const char* type : {"llama", "qwen3"}) {
    ModelConfig c = tiny(type);
    c.num_hidden_layers = 3;
    ModelOptions o;
    o.seed = 11;
    CausalLM plain(c, o);
    o.activation_checkpointing = true;
    CausalLM ckpt(c, o);
    const Tensor ids = batch_ids(2, 7, c.vocab_size, 12), targets = batch_ids(2, 7, c.vocab_size, 13);
    const Tensor lp = plain.loss(ids, targets), lc = ckpt.loss(ids, targets);
    EXPECT_EQ(lp.item(), lc.item());
    lp.backward();
    lc.backward();
    const auto gp = grads_of(plain), gc = grads_of(ckpt);
    ASSERT_EQ(gp.size(), gc.size());
    for (const auto& [n, g] : gp) EXPECT_EQ(g, gc.at(n)) << type << " " << n;
  }
}

TEST(Llama, CheckpointingKeepsOnlyLayerInputsAlive) {
  ModelConfig c = tiny("llama");
  c.num_hidden_layers = 4;
  c.hidden_size = 64;
  c.intermediate_size = 256;
  c.num_attention_heads = c.num_key_value_heads = 4;
  c.head_dim = 16;
  const Tensor ids = batch_ids(4, 64, c.vocab_size, 1);
  auto graph_bytes = [&](bool ckpt) {
    CausalLM m(c, ModelOptions{.activation_checkpointing = ckpt});
    const int64_t before = cpu_memory_stats().live_bytes;
    const Tensor loss = m.loss(ids, ids);
    return cpu_memory_stats().live_bytes - before;
  };
  const int64_t plain = graph_bytes(false), ckpt = graph_bytes(true);
  // Plain keeps every intermediate of every layer (the MLP alone saves >= 3 x (B, T, 256));
  // checkpointed keeps one (B, T, 64) input per layer plus the head.
  EXPECT_LT(ckpt * 4, plain) << ckpt << " vs " << plain;
}

// Runs `steps` AdamW steps on a fixed batch sequence and returns every parameter's bytes.
std::vector<float> train_params(int threads, const ModelOptions& o, int steps) {
  ThreadsGuard tg(threads);
  ModelConfig c = tiny("llama");
  c.vocab_size = 37;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  CausalLM m(c, o);
  optim::AdamW opt({optim::ParamGroup{m.parameters(), 0.1}}, optim::AdamWOptions{1e-2});
  for (int s = 0; s < steps; ++s) {
    const Tensor ids = batch_ids(4, 33, c.vocab_size, 100 + static_cast<uint64_t>(s));
    opt.zero_grad();
    m.loss(ids.narrow(1, 0, 32), ids.narrow(1, 1, 32)).backward();
    opt.step();
  }
  std::vector<float> all;
  for (const Tensor& p : m.parameters()) {
    const auto v = p.to(DType::f32).to_vector<float>();
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

// Run to run, training is bitwise reproducible at a fixed thread count on every CPU.
TEST(Llama, TrainingIsBitwiseDeterministicAtAFixedThreadCount) {
  for (bool bf16 : {false, true}) {
    ModelOptions o;
    o.seed = 21;
    if (bf16) o.compute_dtype = DType::bf16;
    for (int threads : {1, 2}) {
      const auto a = train_params(threads, o, 4), b = train_params(threads, o, 4);
      EXPECT_EQ(a, b) << "bf16=" << bf16 << " threads=" << threads;
    }
  }
}

// Every kernel but GEMM is thread-count invariant: with the GEMMs pinned to one thread, training
// at two threads equals training at one. (GEMM itself is not invariant on every CPU: oneDNN's
// AVX2 sgemm splits K by thread count; docs/ARCHITECTURE.md "Determinism".)
TEST(Llama, TrainingIsThreadCountInvariantWithGemmPinned) {
  const int prev = cpu::set_gemm_max_threads(1);
  for (bool bf16 : {false, true}) {
    ModelOptions o;
    o.seed = 21;
    if (bf16) o.compute_dtype = DType::bf16;
    const auto a1 = train_params(1, o, 4), a2 = train_params(2, o, 4);
    EXPECT_EQ(a1, a2) << "bf16=" << bf16;
  }
  cpu::set_gemm_max_threads(prev);
}

TEST(Llama, Bf16MixedPrecisionKeepsF32MastersAndTracksF32) {
  ModelConfig c = tiny("qwen2");
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  ModelOptions o;
  o.seed = 5;
  CausalLM ref(c, o);
  o.compute_dtype = DType::bf16;
  CausalLM mp(c, o);
  const Tensor ids = batch_ids(2, 16, c.vocab_size, 1), targets = batch_ids(2, 16, c.vocab_size, 2);
  const Tensor logits = mp.forward(ids);
  EXPECT_EQ(logits.dtype(), DType::bf16);
  const Tensor l32 = ref.loss(ids, targets), l16 = mp.loss(ids, targets);
  EXPECT_NEAR(l16.item(), l32.item(), 0.01 * l32.item());
  l32.backward();
  l16.backward();
  for (const auto& [n, p] : mp.named_parameters()) {
    EXPECT_EQ(p.dtype(), DType::f32) << n;
    ASSERT_EQ(p.grad().dtype(), DType::f32) << n;
    // bf16 has 8 significant bits: the gradient direction must match f32's closely.
    const Tensor g16 = p.grad(), g32 = ref.parameter(n).grad();
    const double cosine = sum(mul(g16, g32)).item() / std::sqrt(sum(mul(g16, g16)).item() * sum(mul(g32, g32)).item());
    EXPECT_GT(cosine, 0.99) << n;
  }
}

TEST(Llama, InitSchemes) {
  ModelConfig c = tiny("llama");
  c.hidden_size = 64;
  c.intermediate_size = 128;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 16;
  c.num_hidden_layers = 8;
  c.initializer_range = 0.05;
  auto std_of = [](const Tensor& t) { return std::sqrt(mean(mul(t, t)).item()); };
  ModelOptions o;
  const CausalLM hf(c, o);
  o.init = InitScheme::scaled_residual;
  const CausalLM scaled(c, o);
  for (const char* n : {"model.layers.3.self_attn.q_proj.weight", "model.layers.3.mlp.up_proj.weight",
                        "model.embed_tokens.weight", "lm_head.weight"}) {
    EXPECT_NEAR(std_of(hf.parameter(n)), 0.05, 0.005) << n;
    EXPECT_EQ(hf.parameter(n).to_vector<float>(), scaled.parameter(n).to_vector<float>()) << n;
  }
  for (const char* n : {"model.layers.3.self_attn.o_proj.weight", "model.layers.3.mlp.down_proj.weight"}) {
    EXPECT_NEAR(std_of(hf.parameter(n)), 0.05, 0.005) << n;
    EXPECT_NEAR(std_of(scaled.parameter(n)), 0.05 / 4.0, 0.0005) << n;  // 1/sqrt(2 * 8)
  }
  EXPECT_EQ(hf.parameter("model.norm.weight").to_vector<float>(), std::vector<float>(64, 1.0f));
}

TEST(Llama, TrainFlopsFollowTheIssueFormula) {
  const ModelConfig c = tiny("llama");  // untied: N = all parameters - embedding
  const CausalLM m(c);
  const double n = static_cast<double>(m.num_parameters() - 11 * 8);
  EXPECT_DOUBLE_EQ(m.train_flops(64, 16), 6 * n * 64 + 12.0 * 2 * 8 * 16 * 64);
}

TEST(Llama, Llama3RopeScalingBands) {
  // original context 8, low/high factors 1/4: wavelengths < 2 kept, > 8 divided by factor 4,
  // between smoothly interpolated.
  const RopeScaling s{"llama3", 4.0, 1.0, 4.0, 8};
  const double two_pi = 2 * std::numbers::pi;
  const std::vector<double> f = {two_pi / 1.0, two_pi / 4.0, two_pi / 16.0};
  const auto g = llama3_scaled_inv_freq(f, s);
  EXPECT_DOUBLE_EQ(g[0], f[0]);
  const double smooth = (8.0 / 4.0 - 1.0) / (4.0 - 1.0);  // wavelength 4
  EXPECT_DOUBLE_EQ(g[1], (1 - smooth) * f[1] / 4.0 + smooth * f[1]);
  EXPECT_DOUBLE_EQ(g[2], f[2] / 4.0);
}

TEST(Sampling, GreedyTopKTopPAndTemperature) {
  const std::vector<double> logits = {1.0, 3.0, 2.0, 3.0, -1.0};
  SamplingOptions o;
  o.temperature = 0;
  EXPECT_EQ(sample_token(logits, o, 0.9), 1);  // tie between ids 1 and 3: lower id
  o.temperature = 1.0;
  o.top_k = 1;
  EXPECT_EQ(sample_token(logits, o, 0.99), 1);
  o.top_k = 2;  // ids 1 and 3, equal mass
  EXPECT_EQ(sample_token(logits, o, 0.49), 1);
  EXPECT_EQ(sample_token(logits, o, 0.51), 3);
  // top_p: sorted probs of softmax(logits); keep the smallest prefix reaching top_p.
  std::vector<double> p;
  double z = 0;
  for (double l : logits) z += std::exp(l);
  for (double l : logits) p.push_back(std::exp(l) / z);
  o.top_k = 0;
  o.top_p = p[1] + p[3] + 0.5 * p[2];  // needs ids 1, 3 and 2
  std::map<int64_t, int> seen;
  for (int i = 0; i < 1000; ++i) seen[sample_token(logits, o, (i + 0.5) / 1000)]++;
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen.count(0), 0u);
  const double kept = p[1] + p[3] + p[2];
  EXPECT_NEAR(seen[2] / 1000.0, p[2] / kept, 0.002);
  // Temperature sharpens: at T=0.25 the mass of id 2 is exp(-4) of id 1's.
  o.top_p = 1;
  o.temperature = 0.25;
  seen.clear();
  for (int i = 0; i < 10000; ++i) seen[sample_token(logits, o, (i + 0.5) / 10000)]++;
  const double z4 = 2 * std::exp(12.0) + std::exp(8.0) + std::exp(4.0) + std::exp(-4.0);
  EXPECT_NEAR(seen[2] / 10000.0, std::exp(8.0) / z4, 2e-4);
  o.top_p = 0;
  EXPECT_THROW(validate(o), Error);
}

TEST(Generate, GreedyWithCacheEqualsArgmaxOfFullForwards) {
  ModelConfig c = tiny("qwen3");
  c.vocab_size = 23;
  CausalLM m(c, ModelOptions{.seed = 2});
  perturb(m, 3);
  SamplingOptions o;
  o.temperature = 0;
  o.max_new_tokens = 10;
  std::vector<int64_t> streamed;
  const std::vector<int64_t> prompt = {3, 1, 4, 1, 5};
  const auto out = generate(m, prompt, o, [&](int64_t t) {
    streamed.push_back(t);
    return true;
  });
  EXPECT_EQ(out, streamed);
  ASSERT_EQ(out.size(), 10u);
  std::vector<int64_t> seq = prompt;
  NoGradGuard no_grad;
  for (int64_t want : out) {
    const Tensor logits = m.forward(from_vector(seq, {1, static_cast<int64_t>(seq.size())}));
    const auto last = logits.select(1, logits.size(1) - 1).to(DType::f64).to_vector<double>();
    const int64_t arg = std::max_element(last.begin(), last.end()) - last.begin();
    EXPECT_EQ(arg, want);
    seq.push_back(arg);
  }
  // Stop tokens end generation after they are emitted; sampling is reproducible per seed.
  o.stop_tokens = {out[2]};
  EXPECT_EQ(generate(m, prompt, o).size(), static_cast<size_t>(std::find(out.begin(), out.end(), out[2]) - out.begin() + 1));
  o.stop_tokens.clear();
  o.temperature = 1.0;
  o.seed = 7;
  EXPECT_EQ(generate(m, prompt, o), generate(m, prompt, o));
  EXPECT_THROW(generate(m, {}, o), Error);
  EXPECT_THROW(generate(m, {23}, o), Error);
}

}  // namespace
}  // namespace lowbit::models
