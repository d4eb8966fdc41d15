#include "lowbit/train/eval_ppl.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/error.h"
#include "lowbit/quant/linear_quant.h"

namespace lowbit::train {

double PplResult::token_perplexity() const { return std::exp(nll_sum / static_cast<double>(n_tokens)); }

std::optional<double> PplResult::word_perplexity() const {
  if (!n_words) return std::nullopt;
  return std::exp(nll_sum / static_cast<double>(*n_words));
}

std::optional<double> PplResult::byte_perplexity() const {
  if (!n_bytes) return std::nullopt;
  return std::exp(nll_sum / static_cast<double>(*n_bytes));
}

std::optional<double> PplResult::bits_per_byte() const {
  if (!n_bytes) return std::nullopt;
  return nll_sum / static_cast<double>(*n_bytes) / std::log(2.0);
}

void validate(const PplOptions& o, int64_t vocab_size) {
  LOWBIT_CHECK(o.window >= 2, "window must be >= 2 tokens, got ", o.window);
  LOWBIT_CHECK(o.stride >= 0 && o.stride <= o.window, "stride must be in [1, window = ", o.window,
               "] (0 = window), got ", o.stride);
  LOWBIT_CHECK(o.batch >= 1, "batch must be >= 1, got ", o.batch);
  LOWBIT_CHECK(o.prefix_token >= 0 && o.prefix_token < vocab_size, "prefix token ", o.prefix_token,
               " is outside the model's vocabulary [0, ", vocab_size, ")");
}

namespace {

// Inputs are stream positions [begin, begin + length) of one document; they predict positions
// begin + 1 .. begin + length, of which the last `scored` count.
struct Window {
  size_t doc;
  int64_t begin, length, scored;
};

// Every window of every document, in document order, plus the batch order (longest first).
struct Plan {
  std::vector<std::vector<int64_t>> streams;  // [P, t_1, ..., t_n] per document
  std::vector<Window> windows;
  std::vector<size_t> order;
  int64_t batch = 1;
  int64_t num_batches() const { return (static_cast<int64_t>(order.size()) + batch - 1) / batch; }
};

Plan make_plan(const models::CausalLM& model, const std::vector<Document>& docs, const PplOptions& o) {
  const int64_t vocab = model.config().vocab_size;
  validate(o, vocab);
  const int64_t stride = o.stride == 0 ? o.window : o.stride;
  Plan p;
  p.batch = o.batch;
  for (size_t d = 0; d < docs.size(); ++d) {
    const std::vector<int64_t>& t = docs[d].tokens;
    LOWBIT_CHECK(!t.empty(), "perplexity: document ", d, " has no tokens");
    for (int64_t id : t)
      LOWBIT_CHECK(id >= 0 && id < vocab, "perplexity: document ", d, " holds token ", id,
                   " outside the model's vocabulary [0, ", vocab, ")");
    std::vector<int64_t> s{o.prefix_token};
    s.insert(s.end(), t.begin(), t.end());
    p.streams.push_back(std::move(s));
    const int64_t n = static_cast<int64_t>(t.size()), first = std::min(o.window, n);
    p.windows.push_back({d, 0, first, first});
    for (int64_t done = first; done < n;) {
      const int64_t end = done + std::min(n - done, stride);
      p.windows.push_back({d, end - o.window, o.window, end - done});
      done = end;
    }
  }
  p.order.resize(p.windows.size());
  std::iota(p.order.begin(), p.order.end(), size_t{0});
  std::stable_sort(p.order.begin(), p.order.end(),
                   [&](size_t a, size_t b) { return p.windows[a].length > p.windows[b].length; });
  return p;
}

// The windows of batch b and their right-padded (rows, longest) ids.
std::pair<std::vector<size_t>, Tensor> batch_ids(const Plan& p, int64_t b) {
  const size_t lo = static_cast<size_t>(b * p.batch);
  const size_t hi = std::min(p.order.size(), lo + static_cast<size_t>(p.batch));
  std::vector<size_t> rows(p.order.begin() + static_cast<std::ptrdiff_t>(lo),
                           p.order.begin() + static_cast<std::ptrdiff_t>(hi));
  const int64_t len = p.windows[rows.front()].length;
  std::vector<int64_t> ids(rows.size() * static_cast<size_t>(len), p.streams[0][0]);
  for (size_t r = 0; r < rows.size(); ++r) {
    const Window& w = p.windows[rows[r]];
    const auto src = p.streams[w.doc].begin() + w.begin;
    std::copy(src, src + w.length, ids.begin() + static_cast<std::ptrdiff_t>(r * static_cast<size_t>(len)));
  }
  return {std::move(rows), from_vector(ids, {static_cast<int64_t>(hi - lo), len})};
}

}  // namespace

PplResult evaluate_perplexity(const models::CausalLM& model, const std::vector<Document>& docs,
                              const PplOptions& o) {
  LOWBIT_CHECK(!model.is_training(), "perplexity: the model is in training mode; call eval() first");
  LOWBIT_CHECK(!docs.empty(), "perplexity: no documents");
  const auto t0 = std::chrono::steady_clock::now();
  NoGradGuard no_grad;
  const Plan p = make_plan(model, docs, o);
  const int64_t V = model.config().vocab_size;
  std::vector<double> window_nll(p.windows.size(), 0.0);
  for (int64_t b = 0; b < p.num_batches(); ++b) {
    const auto [rows, ids] = batch_ids(p, b);
    const int64_t len = ids.size(1);
    const Tensor logits = model.forward(ids).to(kCPU).to(DType::f32).contiguous();
    const float* base = logits.data<float>();
    for (size_t r = 0; r < rows.size(); ++r) {
      const Window& w = p.windows[rows[r]];
      const std::vector<int64_t>& s = p.streams[w.doc];
      double nll = 0;
      for (int64_t pos = w.length - w.scored; pos < w.length; ++pos) {
        const float* x = base + (static_cast<int64_t>(r) * len + pos) * V;
        double m = -INFINITY;
        for (int64_t v = 0; v < V; ++v) m = std::max(m, static_cast<double>(x[v]));
        double sum = 0;
        for (int64_t v = 0; v < V; ++v) sum += std::exp(static_cast<double>(x[v]) - m);
        nll += m + std::log(sum) - static_cast<double>(x[s[static_cast<size_t>(w.begin + pos + 1)]]);
      }
      window_nll[rows[r]] = nll;
    }
    if (o.progress)
      o.progress(std::min<int64_t>((b + 1) * p.batch, static_cast<int64_t>(p.windows.size())),
                 static_cast<int64_t>(p.windows.size()));
  }

  PplResult r;
  r.n_documents = static_cast<int64_t>(docs.size());
  r.n_windows = static_cast<int64_t>(p.windows.size());
  for (double v : window_nll) r.nll_sum += v;  // document order, whatever the batches were
  bool texts = true;
  int64_t words = 0, bytes = 0;
  for (const Document& d : docs) {
    r.n_tokens += static_cast<int64_t>(d.tokens.size());
    texts = texts && d.text.has_value();
    if (d.text) {
      words += count_words(*d.text);
      bytes += static_cast<int64_t>(d.text->size());
    }
  }
  if (texts) {
    r.n_words = words;
    r.n_bytes = bytes;
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

void calibrate_on_documents(models::CausalLM& model, const std::vector<Document>& docs, const PplOptions& o,
                            int64_t batches) {
  LOWBIT_CHECK(batches >= 0, "calibration batches must be >= 0, got ", batches);
  if (batches == 0) return;
  NoGradGuard no_grad;
  const Plan p = make_plan(model, docs, o);
  quant::begin_calibration(model);
  for (int64_t b = 0; b < std::min(batches, p.num_batches()); ++b) model.forward(batch_ids(p, b).second);
  quant::finish_calibration(model);
}

nlohmann::ordered_json to_json(const PplResult& r) {
  auto opt = [](const auto& v) { return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr); };
  nlohmann::ordered_json j;
  j["n_documents"] = r.n_documents;
  j["n_windows"] = r.n_windows;
  j["n_tokens"] = r.n_tokens;
  j["n_words"] = opt(r.n_words);
  j["n_bytes"] = opt(r.n_bytes);
  j["nll_sum"] = r.nll_sum;
  j["token_perplexity"] = r.token_perplexity();
  j["word_perplexity"] = opt(r.word_perplexity());
  j["byte_perplexity"] = opt(r.byte_perplexity());
  j["bits_per_byte"] = opt(r.bits_per_byte());
  j["seconds"] = r.seconds;
  return j;
}

std::vector<std::string> split_documents(const std::string& text, const std::string& separator) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = separator.empty() ? std::string::npos : text.find(separator, pos);
    if (end == std::string::npos) end = text.size();
    if (end > pos) out.push_back(text.substr(pos, end - pos));
    if (end == text.size()) break;
    pos = end + separator.size();
  }
  return out;
}

namespace {

bool is_py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Decodes the UTF-8 sequence at s[i]; sets len to its byte length (1 for an invalid byte, which
// decodes to an invalid code point).
uint32_t decode_utf8(std::string_view s, size_t i, size_t& len) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = b(i);
  len = 1;
  if (c < 0x80) return c;
  const size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0xFFFFFFFF;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0xFFFFFFFF;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0xFFFFFFFF;  // overlong, surrogate or out of range: invalid, as Python's decoder says
  len = n;
  return cp;
}

}  // namespace

int64_t count_words(std::string_view text) {
  int64_t runs = 0;
  bool in_space = false;
  for (size_t i = 0; i < text.size();) {
    size_t len = 1;
    const bool space = is_py_space(decode_utf8(text, i, len));
    if (space && !in_space) ++runs;
    in_space = space;
    i += len;
  }
  return runs + 1;
}

std::vector<Document> text_documents(const std::string& text, const std::string& separator,
                                     const tok::Tokenizer& tokenizer) {
  std::vector<Document> out;
  for (std::string& piece : split_documents(text, separator)) {
    const std::vector<int32_t> ids = tokenizer.encode(piece);
    out.push_back({std::vector<int64_t>(ids.begin(), ids.end()), std::move(piece)});
  }
  return out;
}

std::vector<Document> shard_documents(const io::TokenShard& shard) {
  std::vector<Document> out;
  const uint32_t eos = shard.header().eos_id;
  Document cur;
  for (uint64_t i = 0; i < shard.size(); ++i) {
    const uint32_t id = shard[i];
    if (id != eos) {
      cur.tokens.push_back(id);
    } else if (!cur.tokens.empty()) {
      out.push_back(std::move(cur));
      cur = {};
    }
  }
  if (!cur.tokens.empty()) out.push_back(std::move(cur));
  return out;
}

std::optional<int64_t> default_prefix_token(const models::ModelConfig& c, const tok::Tokenizer* t) {
  const auto in_vocab = [&](int64_t id) { return id >= 0 && id < c.vocab_size; };
  const auto named = [&](std::initializer_list<const char*> names) -> std::optional<int64_t> {
    if (t)
      for (const char* n : names)
        if (const auto id = t->token_to_id(n); id && in_vocab(*id)) return *id;
    return std::nullopt;
  };
  if (c.bos_token_id && in_vocab(*c.bos_token_id)) return *c.bos_token_id;
  if (const auto id = named({"<|begin_of_text|>", "<s>"})) return id;
  if (!c.eos_token_ids.empty() && in_vocab(c.eos_token_ids.front())) return c.eos_token_ids.front();
  return named({"<|end_of_text|>", "<|endoftext|>", "</s>", "<|im_end|>"});
}

namespace {

const char* mode_name(quant::LinearMode m) {
  return m == quant::LinearMode::fake ? "fake" : m == quant::LinearMode::real ? "real" : "dequantized";
}

}  // namespace

std::string apply_quant_choice(models::CausalLM& model, QuantSetup& q, const QuantChoice& c,
                               const std::function<void()>& calibrate) {
  LOWBIT_CHECK(c.mode.empty() || c.mode == "fake" || c.mode == "dequantized" || c.mode == "real" || c.mode == "none",
               "quant mode must be fake, dequantized, real or none, got '", c.mode, "'");
  const auto layers = quant::prepared_layers(model);
  if (!layers.empty()) {
    LOWBIT_CHECK(c.preset.empty(), "the model is already quantized (", q.description,
                 "); a preset is for an unquantized model");
    const bool packed = layers.front().second->converted();  // a QLoRA base
    if (c.mode.empty()) return packed ? mode_name(layers.front().second->mode()) : "fake";
    if (c.mode == "fake" || c.mode == "none") {
      LOWBIT_CHECK(!packed, "quant mode ", c.mode,
                   ": the model's base weights are packed (QLoRA), only real and dequantized are available");
      if (c.mode == "none")
        for (const auto& [name, layer] : layers)
          for (const auto& [role, quantizer] : layer->quantizers()) quantizer->set_enabled(false);
      return c.mode;
    }
    if (!packed) quant::convert(model);
    quant::set_mode(model, c.mode == "real" ? quant::LinearMode::real : quant::LinearMode::dequantized);
    return c.mode;
  }
  if (c.preset.empty()) {
    LOWBIT_CHECK(c.mode.empty() || c.mode == "none", "quant mode ", c.mode,
                 " needs a quantized model: a QAT checkpoint or a preset");
    return "none";
  }
  LOWBIT_CHECK(c.mode != "none", "a preset with quant mode none: choose fake, dequantized or real");
  q.preset = quant::resolve_preset(c.preset, {.group_size = c.group_size});
  q.description = quant::describe(*q.preset);
  quant::prepare(model, *q.preset, q.ctx);
  if (calibrate) calibrate();
  if (c.mode == "fake") return "fake";
  quant::convert(model);
  if (c.mode == "dequantized") quant::set_mode(model, quant::LinearMode::dequantized);
  return c.mode.empty() ? "real" : c.mode;
}

}  // namespace lowbit::train
