// Perplexity of a causal LM on documents, computed as lm-evaluation-harness computes its wikitext
// task (loglikelihood_rolling, then the word / byte perplexity metrics), so numbers compare with
// published ones. Used by the eval_ppl tool, and by anything else that wants a quality number
// for a (quantized) model.
//
// Scoring. Each document is scored on its own, never conditioned on another. Its token stream
// is [P, t_1, ..., t_n] with P the prefix token (lm-eval: the tokenizer's BOS, else its EOS), so
// every text token is scored - t_1 predicted from P alone - and P never is. The model sees at
// most `window` tokens per forward:
//   - the first window is [P, t_1 .. t_{w-1}] and scores t_1 .. t_w  (w = min(window, n));
//   - every next window scores the next min(stride, remaining) tokens; its input is the
//     `window` stream tokens right before the last of them, so each scored token keeps at
//     least window - stride + 1 tokens of context (the last window slides back to a full one).
// stride = window (the default) is lm-eval's own setting (context_len = 1): the windows' inputs
// tile the stream without overlap. stride < window is HF's "strided" evaluation with lm-eval's
// full-length last window. Every token is scored exactly once in both modes, so with a window
// that covers a whole document the two give identical sums.
//
// Metrics (lm_eval/api/metrics.py, lm_eval/tasks/wikitext): with L = Σ log p over all scored
// tokens of all documents,
//   token_perplexity = exp(-L / n_tokens)      word_perplexity = exp(-L / n_words)
//   byte_perplexity  = exp(-L / n_bytes)       bits_per_byte   = -L / n_bytes / ln 2
// n_words and n_bytes count the original text of each document (summed over documents):
// n_words = len(re.split(r"\s+", text)) as lm-eval writes it (Python's Unicode whitespace; a
// leading or trailing whitespace run adds an empty "word"), n_bytes = its UTF-8 bytes. Token
// input (shards) has no text: those metrics are absent.
//
// Numerics: logits come from model.forward in its compute dtype; log-softmax and all sums are
// f64. Windows are batched longest first and right-padded (causal attention: padding never
// reaches earlier positions; but an activation quantizer with a per-tensor dynamic scale sees
// the whole batch, padding included - use batch 1 to keep such numbers batch-independent).
// The logits of a batch take B × window × vocab × 4 bytes.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/io/token_data.h"
#include "lowbit/io/tokenizer.h"
#include "lowbit/models/llama.h"
#include "lowbit/train/model_setup.h"

namespace lowbit::train {

struct Document {
  std::vector<int64_t> tokens;      // the text's tokens, without P (non-empty)
  std::optional<std::string> text;  // the original text (word and byte counts); none for token input
};

struct PplOptions {
  int64_t window = 0;        // tokens per forward, >= 2
  int64_t stride = 0;        // tokens scored per window after the first, in [1, window]; 0 = window
  int64_t batch = 1;         // windows per forward
  int64_t prefix_token = -1;  // P, in [0, vocab)
  std::function<void(int64_t done, int64_t total)> progress;  // windows done, after each batch
};

struct PplResult {
  int64_t n_documents = 0, n_windows = 0, n_tokens = 0;
  std::optional<int64_t> n_words, n_bytes;  // none unless every document has its text
  double nll_sum = 0;                       // -L
  double seconds = 0;
  double token_perplexity() const;
  std::optional<double> word_perplexity() const;
  std::optional<double> byte_perplexity() const;
  std::optional<double> bits_per_byte() const;
};

// Checks window / stride / batch / prefix_token; throws naming the option.
void validate(const PplOptions& opts, int64_t vocab_size);

// Sums the negative log-likelihood of every document token as described above. The model must
// be in eval mode (no dropout); runs under NoGradGuard.
PplResult evaluate_perplexity(const models::CausalLM& model, const std::vector<Document>& docs,
                              const PplOptions& opts);

// Post-training calibration on the evaluation windows: begin_calibration on every prepared
// layer, forwards of the first `batches` batches (as evaluate_perplexity forms them), finish.
void calibrate_on_documents(models::CausalLM& model, const std::vector<Document>& docs, const PplOptions& opts,
                            int64_t batches);

// n_documents ... bits_per_byte as an ordered JSON object; null where a metric is absent.
nlohmann::ordered_json to_json(const PplResult& r);

// The pieces of text between separators (prepare_data's --doc-separator rule: empty separator =
// one document; empty pieces are dropped).
std::vector<std::string> split_documents(const std::string& text, const std::string& separator);
// len(re.split(r"\s+", text)) in Python 3: 1 + the number of maximal runs of Unicode whitespace
// (str.isspace: \t \n \v \f \r, \x1c-\x1f, space, U+0085, U+00A0, U+1680, U+2000-U+200A,
// U+2028, U+2029, U+202F, U+205F, U+3000). Bytes that are not valid UTF-8 count as non-space.
int64_t count_words(std::string_view text);
// Documents from text: split, then tokenized without special tokens (lm-eval encodes the text
// as is; P is added at scoring).
std::vector<Document> text_documents(const std::string& text, const std::string& separator,
                                     const tok::Tokenizer& tokenizer);
// Documents of a token shard: the runs between its EOS ids (the EOS itself is not scored;
// empty runs are dropped).
std::vector<Document> shard_documents(const io::TokenShard& shard);

// The prefix token lm-eval would use: the BOS (config.json's bos_token_id, else
// <|begin_of_text|> / <s> in the tokenizer), else the EOS (config.json's eos_token_id, else
// <|end_of_text|> / <|endoftext|> / </s> / <|im_end|>). nullopt when none is known.
std::optional<int64_t> default_prefix_token(const models::ModelConfig& config, const tok::Tokenizer* tokenizer);

// How a loaded model computes, shared by eval_ppl and generate:
//   ""           as loaded: fake quant for a QAT run, real for a QLoRA base, else none
//   fake         fake quant (QAT numerics)
//   dequantized  packed weights on the fake path's matmul (a reference, equal to fake)
//   real         packed weights through the real low-bit matmul (deployed numerics)
//   none         quantizers disabled: the f32 master weights
// A preset (an unquantized model only) is prepared first (PTQ), then `calibrate` runs (when
// set), then the weights are converted unless the mode is fake; default mode then: real.
struct QuantChoice {
  std::string mode;
  std::string preset;
  int64_t group_size = 0;  // preset group size; 0 = the preset's default
};
// Returns the mode in effect ("none", "fake", "dequantized" or "real"); q gains the preset.
std::string apply_quant_choice(models::CausalLM& model, QuantSetup& q, const QuantChoice& choice,
                               const std::function<void()>& calibrate = {});

}  // namespace lowbit::train
