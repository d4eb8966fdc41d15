// Scaled dot-product attention with a blocked, memory-efficient (flash-attention style) CPU
// kernel in forward and backward. Memory is O(B * H * T * D): neither pass ever holds a T x S
// (or block-row x S) score matrix; the forward saves only its output and the per-row
// logsumexp, and the backward recomputes scores block by block.
#pragma once
#include "lowbit/engine/tensor.h"

namespace lowbit {

// q: (B, Hq, T, D), k, v: (B, Hkv, S, D) -> (B, Hq, T, D)
//
//   out[b, h, i] = sum_j softmax_j(scale * <q[b, h, i], k[b, g, j]>) * v[b, g, j],
//   g = h / (Hq / Hkv)   (grouped-query attention: Hq % Hkv == 0; Hq == Hkv is plain MHA)
//
// scale == 0 selects 1 / sqrt(D).
// causal: requires T <= S and aligns the query block with the END of the keys: query i sees
// keys j <= i + (S - T). With T == S this is the usual lower-triangular mask; with T < S the
// queries are the last T positions of a length-S sequence whose earlier keys/values are
// cached (KV-cache decode / chunked prefill); T == 1 sees every key.
// Non-causal: every query sees all S keys. S == 0 (non-causal) gives zeros.
// segments (optional, causal with T == S only): a contiguous i64 (B, T) tensor of segment ids;
// query i also sees key j only when segments[b, i] == segments[b, j]. Several sequences packed
// into one row then attend block-diagonally, each as if alone (not differentiable).
//
// q, k, v: same dtype (f64, f32, bf16 or f16; bf16/f16 compute in f32), same device (CPU, or
// meta for shape propagation), any strides (e.g. q = x.transpose(1, 2) of a (B, T, H, D)
// tensor is read in place; blocks are copied to per-thread scratch only when the dtype or the
// innermost stride requires it). The output is a new contiguous tensor of q's dtype.
// Differentiable w.r.t. q, k and v (once: the backward itself is not recorded).
// Results are bitwise reproducible for a given OpenMP thread count.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = true,
                                    double scale = 0, const Tensor& segments = Tensor());

namespace detail {
// Testing hook: the backward schedule (see attention.cpp). Auto picks the fused single pass
// when the (batch, kv head) pairs balance over the threads, else the two-pass KV + Q schedule.
// Process-wide; not for use while other threads run attention.
enum class AttentionBackward { Auto, Fused, TwoPass };
void set_attention_backward_for_testing(AttentionBackward schedule);
}  // namespace detail

}  // namespace lowbit
