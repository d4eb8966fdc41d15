#include "lowbit/models/llama.h"

#include <cmath>
#include <numbers>

#include "lowbit/engine/autograd/checkpoint.h"
#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/ops/attention.h"
#include "lowbit/engine/ops/cross_entropy.h"
#include "lowbit/engine/ops/elementwise.h"
#include "lowbit/engine/ops/matmul.h"
#include "lowbit/engine/ops/rope.h"

namespace lowbit::models {

std::vector<double> llama3_scaled_inv_freq(const std::vector<double>& inv_freq, const RopeScaling& s) {
  const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = old_ctx / s.low_freq_factor, high_wavelen = old_ctx / s.high_freq_factor;
  std::vector<double> out(inv_freq.size());
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    const double f = inv_freq[i], wavelen = 2 * std::numbers::pi / f;
    if (wavelen < high_wavelen) {
      out[i] = f;
    } else if (wavelen > low_wavelen) {
      out[i] = f / s.factor;
    } else {
      const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      out[i] = (1 - smooth) * f / s.factor + smooth * f;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// KVCache

KVCache::KVCache(const ModelConfig& c, int64_t batch, int64_t capacity, DType dtype, Device device)
    : batch_(batch), capacity_(capacity) {
  LOWBIT_CHECK(batch > 0 && capacity > 0, "KVCache: batch and capacity must be positive, got ", batch, " and ",
               capacity);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    k_.push_back(zeros({batch, c.num_key_value_heads, capacity, c.head_dim}, dtype, device));
    v_.push_back(zeros({batch, c.num_key_value_heads, capacity, c.head_dim}, dtype, device));
  }
}

std::pair<Tensor, Tensor> KVCache::append(size_t layer, const Tensor& k, const Tensor& v) {
  LOWBIT_CHECK(layer < k_.size(), "KVCache: layer ", layer, " out of range (", k_.size(), " layers)");
  LOWBIT_CHECK(!grad_enabled(), "KVCache: the cache is for inference; disable grad mode (NoGradGuard)");
  const Tensor& K = k_[layer];
  const int64_t T = k.size(2);
  LOWBIT_CHECK(k.dim() == 4 && k.size(0) == batch_ && k.size(1) == K.size(1) && k.size(3) == K.size(3),
               "KVCache: keys ", shape_str(k.shape()), " do not match the cache ", shape_str(K.shape()));
  LOWBIT_CHECK(length_ + T <= capacity_, "KVCache: ", length_, " cached + ", T, " new positions exceed capacity ",
               capacity_);
  copy_(K.narrow(2, length_, T), k);
  copy_(v_[layer].narrow(2, length_, T), v);
  return {K.narrow(2, 0, length_ + T), v_[layer].narrow(2, 0, length_ + T)};
}

void KVCache::advance(int64_t T) { length_ += T; }

// ---------------------------------------------------------------------------------------------
// Attention

namespace {

nn::LinearOptions linear_opts(const ModelConfig& c, const ModelOptions& o, bool bias) {
  nn::LinearOptions lo;
  lo.bias = bias;
  lo.init_std = c.initializer_range;
  lo.dtype = o.param_dtype;
  lo.device = o.device;
  return lo;
}

// Rescales a freshly initialised residual-output projection (scaled_residual init).
void scale_init(const ModelConfig& c, const ModelOptions& o, const Tensor& w) {
  if (o.init != InitScheme::scaled_residual || o.device.is_meta()) return;
  NoGradGuard no_grad;
  mul_(w, 1.0 / std::sqrt(2.0 * static_cast<double>(c.num_hidden_layers)));
}

}  // namespace

Attention::Attention(const ModelConfig& c, const ModelOptions& o, size_t layer_index, Generator* gen)
    : heads_(c.num_attention_heads), kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim), layer_(layer_index) {
  const int64_t C = c.hidden_size;
  // Qwen2 biases q/k/v only; Llama and Qwen3 bias all four projections when attention_bias.
  const bool o_bias = c.attention_bias && c.model_type != "qwen2";
  q_proj = &register_module("q_proj", std::make_unique<nn::Linear>(C, heads_ * head_dim_, linear_opts(c, o, c.attention_bias), gen));
  k_proj = &register_module("k_proj", std::make_unique<nn::Linear>(C, kv_heads_ * head_dim_, linear_opts(c, o, c.attention_bias), gen));
  v_proj = &register_module("v_proj", std::make_unique<nn::Linear>(C, kv_heads_ * head_dim_, linear_opts(c, o, c.attention_bias), gen));
  o_proj = &register_module("o_proj", std::make_unique<nn::Linear>(heads_ * head_dim_, C, linear_opts(c, o, o_bias), gen));
  scale_init(c, o, o_proj->weight);
  if (c.qk_norm) {
    q_norm = &register_module("q_norm", std::make_unique<nn::RMSNorm>(head_dim_, c.rms_norm_eps, o.param_dtype, o.device));
    k_norm = &register_module("k_norm", std::make_unique<nn::RMSNorm>(head_dim_, c.rms_norm_eps, o.param_dtype, o.device));
  }
}

Tensor Attention::forward(const Tensor& x, const Tensor& cos, const Tensor& sin, KVCache* cache,
                          const Tensor& segments) const {
  LOWBIT_CHECK(x.dim() == 3, "Attention: x must be (B, T, C), got ", shape_str(x.shape()));
  const int64_t B = x.size(0), T = x.size(1);
  // (B, T, H * D) -> (B, T, H, D), per-head norm (qwen3), -> (B, H, T, D), rotate.
  auto heads = [&](const nn::Linear* proj, const nn::RMSNorm* norm, int64_t H) {
    Tensor t = proj->forward(x).view({B, T, H, head_dim_});
    if (norm) t = norm->forward(t);
    return t.transpose(1, 2);
  };
  Tensor q = apply_rope(heads(q_proj, q_norm, heads_), cos, sin);
  Tensor k = apply_rope(heads(k_proj, k_norm, kv_heads_), cos, sin);
  Tensor v = heads(v_proj, nullptr, kv_heads_);
  if (cache) std::tie(k, v) = cache->append(layer_, k, v);
  const Tensor y = scaled_dot_product_attention(q, k, v, /*causal=*/true, 0.0, segments);  // (B, H, T, D)
  return o_proj->forward(y.transpose(1, 2).reshape({B, T, heads_ * head_dim_}));
}

// ---------------------------------------------------------------------------------------------
// DecoderLayer, DecoderStack

DecoderLayer::DecoderLayer(const ModelConfig& c, const ModelOptions& o, size_t layer_index, Generator* gen) {
  input_layernorm = &register_module("input_layernorm",
                                     std::make_unique<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, o.param_dtype, o.device));
  self_attn = &register_module("self_attn", std::make_unique<Attention>(c, o, layer_index, gen));
  post_attention_layernorm = &register_module(
      "post_attention_layernorm", std::make_unique<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, o.param_dtype, o.device));
  mlp = &register_module("mlp", std::make_unique<nn::SwiGLU>(c.hidden_size, c.intermediate_size,
                                                             linear_opts(c, o, false), gen));
  scale_init(c, o, mlp->down_proj->weight);
}

Tensor DecoderLayer::forward(const Tensor& x, const Tensor& cos, const Tensor& sin, KVCache* cache,
                             const Tensor& segments) const {
  const Tensor h = add(x, self_attn->forward(input_layernorm->forward(x), cos, sin, cache, segments));
  return add(h, mlp->forward(post_attention_layernorm->forward(h)));
}

DecoderStack::DecoderStack(const ModelConfig& c, const ModelOptions& o, Generator* gen) : compute_(o.compute_dtype) {
  embed_tokens = &register_module("embed_tokens", std::make_unique<nn::Embedding>(c.vocab_size, c.hidden_size,
                                                                                   c.initializer_range, o.param_dtype,
                                                                                   o.device, gen));
  layers = &register_module("layers", std::make_unique<nn::ModuleList<DecoderLayer>>());
  for (int64_t l = 0; l < c.num_hidden_layers; ++l)
    layers->append(std::make_unique<DecoderLayer>(c, o, static_cast<size_t>(l), gen));
  norm = &register_module("norm", std::make_unique<nn::RMSNorm>(c.hidden_size, c.rms_norm_eps, o.param_dtype, o.device));
  inv_freq_ = rope_inv_freq(c.head_dim, c.rope_theta);
  if (c.rope_scaling) inv_freq_ = llama3_scaled_inv_freq(inv_freq_, *c.rope_scaling);
}

Tensor DecoderStack::forward(const Tensor& ids, KVCache* cache, bool checkpoint_layers, const Packing* packing) const {
  LOWBIT_CHECK(ids.dim() == 2, "model: ids must be (B, T), got ", shape_str(ids.shape()));
  const int64_t T = ids.size(1), offset = cache ? cache->length() : 0;
  Tensor segments;
  std::pair<Tensor, Tensor> cs;
  if (packing) {
    LOWBIT_CHECK(!cache, "model: packed rows cannot use a KV cache");
    LOWBIT_CHECK(packing->positions.shape() == ids.shape() && packing->segments.shape() == ids.shape(),
                 "model: packing positions ", shape_str(packing->positions.shape()), " and segments ",
                 shape_str(packing->segments.shape()), " must have the shape of ids ", shape_str(ids.shape()));
    cs = rope_cos_sin_at(inv_freq_, packing->positions, compute_);
    cs = {cs.first.to(ids.device()), cs.second.to(ids.device())};
    segments = packing->segments.contiguous();
  } else {
    cs = rope_cos_sin(inv_freq_, T, offset, compute_, ids.device());
  }
  const Tensor &cos = cs.first, &sin = cs.second;
  Tensor h = embed_tokens->forward(ids).to(compute_);
  for (const DecoderLayer* layer : *layers) {
    if (checkpoint_layers) {
      h = checkpoint([layer, cos, sin, segments](const Tensor& x) { return layer->forward(x, cos, sin, nullptr, segments); },
                     h, layer->parameters());
    } else {
      h = layer->forward(h, cos, sin, cache, segments);
    }
  }
  if (cache) cache->advance(T);
  return norm->forward(h);
}

// ---------------------------------------------------------------------------------------------
// CausalLM

CausalLM::CausalLM(const ModelConfig& config, const ModelOptions& options) : config_(config), options_(options) {
  LOWBIT_CHECK(is_float(options.param_dtype) && is_float(options.compute_dtype),
               "CausalLM: param_dtype and compute_dtype must be floating point");
  Generator gen(options.seed);
  model = &register_module("model", std::make_unique<DecoderStack>(config, options, &gen));
  if (!config.tie_word_embeddings)
    lm_head = &register_module("lm_head", std::make_unique<nn::Linear>(config.hidden_size, config.vocab_size,
                                                                      linear_opts(config, options, false), &gen));
}

const Tensor& CausalLM::output_weight() const { return lm_head ? lm_head->weight : model->embed_tokens->weight; }

Tensor CausalLM::forward(const Tensor& ids, KVCache* cache, const Packing* packing) const {
  // Recomputation must not append to a cache twice, so checkpointing is for cache-free passes.
  const bool ckpt = options_.activation_checkpointing && is_training() && grad_enabled() && cache == nullptr;
  const Tensor h = model->forward(ids, cache, ckpt, packing);
  return linear(h, output_weight());  // casts the f32 (tied) weight to h.dtype() inside
}

Tensor CausalLM::loss(const Tensor& ids, const Tensor& targets, const Packing* packing) const {
  LOWBIT_CHECK(targets.shape() == ids.shape(), "CausalLM::loss: targets ", shape_str(targets.shape()),
               " must have the shape of ids ", shape_str(ids.shape()));
  return cross_entropy(forward(ids, nullptr, packing), targets);
}

double CausalLM::train_flops(int64_t tokens, int64_t seq) const {
  const double n = static_cast<double>(num_parameters() - config_.vocab_size * config_.hidden_size *
                                                              (config_.tie_word_embeddings ? 0 : 1));
  return 6.0 * n * static_cast<double>(tokens) + 12.0 * static_cast<double>(config_.num_hidden_layers) *
                                                     static_cast<double>(config_.hidden_size) *
                                                     static_cast<double>(seq) * static_cast<double>(tokens);
}

}  // namespace lowbit::models
