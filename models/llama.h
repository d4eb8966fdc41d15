// The Llama-family decoder (Llama 2/3/3.x, Qwen2/2.5, Qwen3 dense), structured and named exactly
// like Hugging Face transformers' *ForCausalLM so checkpoint keys map one to one:
//
//   model.embed_tokens.weight
//   model.layers.N.input_layernorm.weight
//   model.layers.N.self_attn.{q,k,v,o}_proj.{weight,bias}   bias: see ModelConfig::attention_bias
//   model.layers.N.self_attn.{q,k}_norm.weight               qwen3 only (per-head RMSNorm)
//   model.layers.N.post_attention_layernorm.weight
//   model.layers.N.mlp.{gate,up,down}_proj.weight
//   model.norm.weight
//   lm_head.weight                                           absent when embeddings are tied
//
// Mixed precision: parameters (and optimizer states) stay in param_dtype (f32 masters); with
// compute_dtype bf16 every activation is bf16 and weights are cast on use, so gradients reach
// the f32 masters through the casts.
#pragma once
#include <cstdint>
#include <vector>

#include "lowbit/engine/random.h"
#include "lowbit/models/model_config.h"
#include "lowbit/nn/linear.h"
#include "lowbit/nn/mlp.h"
#include "lowbit/nn/norm_embedding.h"

namespace lowbit::models {

enum class InitScheme {
  hf,              // every Linear and Embedding weight ~ N(0, initializer_range), as transformers does
  scaled_residual  // the same, but o_proj and down_proj scaled by 1/sqrt(2 * layers) (GPT-2, Megatron)
};

struct ModelOptions {
  DType param_dtype = DType::f32;
  DType compute_dtype = DType::f32;  // bf16 = mixed precision
  Device device = kCPU;              // kMeta builds shapes only
  InitScheme init = InitScheme::hf;
  uint64_t seed = 0;                     // initialisation
  bool activation_checkpointing = false;  // per decoder layer, in training mode under grad
};

// Keys and values of every layer for incremental decoding: (B, Hkv, capacity, head_dim) each,
// in the compute dtype. Only for inference (grad mode off).
class KVCache {
 public:
  KVCache(const ModelConfig& config, int64_t batch, int64_t capacity, DType dtype = DType::f32, Device device = kCPU);
  int64_t length() const { return length_; }  // positions already cached
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  void reset() { length_ = 0; }

  // Writes k, v: (B, Hkv, T, D) of `layer` at positions length() .. length()+T-1 and returns
  // views of all cached positions including them: (B, Hkv, length()+T, D).
  std::pair<Tensor, Tensor> append(size_t layer, const Tensor& k, const Tensor& v);
  void advance(int64_t T);  // called once per forward after every layer appended T positions

 private:
  std::vector<Tensor> k_, v_;
  int64_t batch_, capacity_, length_ = 0;
};

// Several examples packed into each row of a batch: attention stays inside an example
// (block-diagonal causal) and positions restart at 0 for each, so every example is computed as
// if it were alone in its row.
struct Packing {
  Tensor positions;  // (B, T) i64: the position of each token inside its example
  Tensor segments;   // (B, T) i64: which example each token belongs to
};

class Attention : public nn::Module {
 public:
  Attention(const ModelConfig& c, const ModelOptions& o, size_t layer_index, Generator* gen);
  // x: (B, T, C), cos/sin: (T, head_dim) or (B, 1, T, head_dim) -> (B, T, C); segments: see Packing
  Tensor forward(const Tensor& x, const Tensor& cos, const Tensor& sin, KVCache* cache,
                 const Tensor& segments = Tensor()) const;

  nn::Linear *q_proj, *k_proj, *v_proj, *o_proj;
  nn::RMSNorm *q_norm = nullptr, *k_norm = nullptr;

 private:
  int64_t heads_, kv_heads_, head_dim_;
  size_t layer_;
};

class DecoderLayer : public nn::Module {
 public:
  DecoderLayer(const ModelConfig& c, const ModelOptions& o, size_t layer_index, Generator* gen);
  // x: (B, T, C) -> (B, T, C):  h = x + attn(norm(x));  out = h + mlp(norm(h))
  Tensor forward(const Tensor& x, const Tensor& cos, const Tensor& sin, KVCache* cache,
                 const Tensor& segments = Tensor()) const;

  nn::RMSNorm* input_layernorm;
  Attention* self_attn;
  nn::RMSNorm* post_attention_layernorm;
  nn::SwiGLU* mlp;
};

// HF's *Model: embeddings, decoder layers, final norm.
class DecoderStack : public nn::Module {
 public:
  DecoderStack(const ModelConfig& c, const ModelOptions& o, Generator* gen);
  // ids: (B, T) integer -> hidden states (B, T, C) in the compute dtype
  Tensor forward(const Tensor& ids, KVCache* cache, bool checkpoint_layers, const Packing* packing = nullptr) const;

  nn::Embedding* embed_tokens;
  nn::ModuleList<DecoderLayer>* layers;
  nn::RMSNorm* norm;

 private:
  std::vector<double> inv_freq_;
  DType compute_;
};

class CausalLM : public nn::Module {
 public:
  explicit CausalLM(const ModelConfig& config, const ModelOptions& options = {});

  // ids: (B, T) integer -> logits (B, T, V) in the compute dtype. With a cache, ids are the
  // next T positions after cache->length() and the cache advances by T. With packing (no
  // cache), each row holds several examples (see Packing).
  Tensor forward(const Tensor& ids, KVCache* cache = nullptr, const Packing* packing = nullptr) const;
  // Mean next-token cross-entropy of forward(ids) against targets (B, T); targets equal to
  // ignore_index (-100) are skipped.
  Tensor loss(const Tensor& ids, const Tensor& targets, const Packing* packing = nullptr) const;

  // The output projection: lm_head.weight, or model.embed_tokens.weight when tied.
  const Tensor& output_weight() const;
  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  // Model FLOPs of one training step over `tokens` tokens of sequence length `seq`:
  // 6 * N * tokens + 12 * L * C * seq * tokens, N = non-embedding parameters + lm_head.
  double train_flops(int64_t tokens, int64_t seq) const;

  DecoderStack* model;
  nn::Linear* lm_head = nullptr;

 private:
  ModelConfig config_;
  ModelOptions options_;
};

// Llama-3 `rope_scaling` applied to plain frequencies (rope_type "llama3"): wavelengths longer
// than original_max / low_freq_factor are divided by factor, shorter than original_max /
// high_freq_factor kept, and the band between interpolated smoothly.
std::vector<double> llama3_scaled_inv_freq(const std::vector<double>& inv_freq, const RopeScaling& s);

}  // namespace lowbit::models
