#include "lowbit/models/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "lowbit/engine/autograd/grad_mode.h"

namespace lowbit::models {

void validate(const SamplingOptions& o) {
  LOWBIT_CHECK(o.max_new_tokens >= 0, "sampling: 'max_new_tokens' must be >= 0, got ", o.max_new_tokens);
  LOWBIT_CHECK(std::isfinite(o.temperature) && o.temperature >= 0, "sampling: 'temperature' must be >= 0, got ",
               o.temperature);
  LOWBIT_CHECK(o.top_k >= 0, "sampling: 'top_k' must be >= 0, got ", o.top_k);
  LOWBIT_CHECK(o.top_p > 0 && o.top_p <= 1, "sampling: 'top_p' must be in (0, 1], got ", o.top_p);
}

int64_t sample_token(const std::vector<double>& logits, const SamplingOptions& o, double u) {
  LOWBIT_CHECK(!logits.empty(), "sampling: empty logits");
  const int64_t V = static_cast<int64_t>(logits.size());
  // Descending by logit, lower id first on ties (stable sort over ascending ids).
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return logits[static_cast<size_t>(a)] > logits[static_cast<size_t>(b)]; });
  LOWBIT_CHECK(!std::isnan(logits[static_cast<size_t>(order[0])]), "sampling: logits contain NaN");
  if (o.temperature == 0) return order[0];

  int64_t keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
  const double top = logits[static_cast<size_t>(order[0])] / o.temperature;
  std::vector<double> p(static_cast<size_t>(keep));
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) {
    p[static_cast<size_t>(i)] = std::exp(logits[static_cast<size_t>(order[static_cast<size_t>(i)])] / o.temperature - top);
    total += p[static_cast<size_t>(i)];
  }
  if (o.top_p < 1) {
    double cum = 0;
    int64_t n = 0;
    while (n < keep) {
      cum += p[static_cast<size_t>(n++)] / total;
      if (cum >= o.top_p) break;
    }
    keep = n;
    total = std::accumulate(p.begin(), p.begin() + keep, 0.0);
  }
  double target = u * total, cum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    cum += p[static_cast<size_t>(i)];
    if (target < cum) return order[static_cast<size_t>(i)];
  }
  return order[static_cast<size_t>(keep - 1)];
}

std::vector<int64_t> generate(const CausalLM& model, const std::vector<int64_t>& prompt, const SamplingOptions& o,
                              const std::function<bool(int64_t)>& on_token) {
  validate(o);
  LOWBIT_CHECK(!prompt.empty(), "generate: the prompt is empty");
  const int64_t V = model.config().vocab_size;
  for (int64_t id : prompt) LOWBIT_CHECK(id >= 0 && id < V, "generate: prompt token ", id, " outside [0, ", V, ")");
  NoGradGuard no_grad;
  const int64_t P = static_cast<int64_t>(prompt.size());
  KVCache cache(model.config(), 1, P + std::max<int64_t>(o.max_new_tokens, 1), model.options().compute_dtype,
                model.output_weight().device());
  Generator gen(o.seed);
  std::vector<int64_t> out;
  Tensor ids = from_vector(prompt, {1, P});
  while (static_cast<int64_t>(out.size()) < o.max_new_tokens) {
    const Tensor logits = model.forward(ids, &cache);  // (1, T, V)
    const std::vector<double> last = logits.select(1, logits.size(1) - 1).to(kCPU).to(DType::f64).to_vector<double>();
    const double u = o.temperature == 0 ? 0.0 : rand({1}, 0.0, 1.0, DType::f64, &gen).item();
    const int64_t next = sample_token(last, o, u);
    out.push_back(next);
    if (on_token && !on_token(next)) break;
    if (std::find(o.stop_tokens.begin(), o.stop_tokens.end(), next) != o.stop_tokens.end()) break;
    ids = from_vector(std::vector<int64_t>{next}, {1, 1});
  }
  return out;
}

size_t utf8_complete_length(std::string_view s) {
  const size_t n = s.size();
  for (size_t i = n; i > 0 && n - i < 4; --i) {
    const auto c = static_cast<uint8_t>(s[i - 1]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back for its lead
    const size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
    return n - (i - 1) < need ? i - 1 : n;
  }
  return n;
}

}  // namespace lowbit::models
