// Autoregressive generation with a KV cache: greedy, temperature, top-k and top-p (nucleus)
// sampling, applied in that order as transformers does. Streaming through a callback.
#pragma once
#include <functional>
#include <string_view>
#include <vector>

#include "lowbit/engine/random.h"
#include "lowbit/models/llama.h"

namespace lowbit::models {

struct SamplingOptions {
  int64_t max_new_tokens = 64;
  double temperature = 1.0;  // 0 = greedy (argmax, lowest id on ties)
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = off
  double top_p = 1.0;        // keep the smallest set whose probability reaches top_p; 1 = off
  std::vector<int64_t> stop_tokens;  // generation ends after emitting one of these
  uint64_t seed = 0;
};

// Checks ranges; throws naming the field.
void validate(const SamplingOptions& opts);

// One token from a row of logits under opts (temperature, top_k, top_p); u in [0, 1) is the
// uniform draw (unused when greedy). Ties in probability keep the lower id first.
int64_t sample_token(const std::vector<double>& logits, const SamplingOptions& opts, double u);

// Generates up to max_new_tokens after prompt (non-empty ids) and returns them (without the
// prompt). on_token sees each token as it is produced; returning false stops early.
std::vector<int64_t> generate(const CausalLM& model, const std::vector<int64_t>& prompt, const SamplingOptions& opts,
                              const std::function<bool(int64_t)>& on_token = {});

// Streaming text: the length of the longest prefix of `bytes` that does not end inside an
// unfinished UTF-8 sequence (a lead byte still waiting for continuation bytes), so a
// character split across byte-level tokens is printed only once complete. Invalid bytes never
// wait.
size_t utf8_complete_length(std::string_view bytes);

}  // namespace lowbit::models
