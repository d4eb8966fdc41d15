// Perplexity evaluation: the library's sums against an independent brute force (one forward per
// scored token over exactly the context its window gives it, log-softmax by hand in f64), the
// identity of the two window modes when a window covers a document, lm-eval's word and byte
// counts, the quant modes, one-line errors; and the UTF-8 completeness rule of streaming.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/random.h"
#include "lowbit/models/generate.h"
#include "lowbit/quant/linear_quant.h"
#include "lowbit/train/eval_ppl.h"

namespace lowbit::train {
namespace {

namespace fs = std::filesystem;

models::ModelConfig tiny_config(int64_t vocab) {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = vocab;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  return c;
}

// Weights of std 0.5 instead of HF's 0.02, so predictions depend strongly on the context and a
// token scored with the wrong context shows in the sums.
std::unique_ptr<models::CausalLM> tiny_model(int64_t vocab = 23) {
  auto m = std::make_unique<models::CausalLM>(tiny_config(vocab));
  Generator g(11);
  NoGradGuard no_grad;
  for (const auto& [name, p] : m->named_parameters())
    if (p.dim() == 2) copy_(p, randn(p.shape(), 0.0, 0.5, DType::f32, &g));
  m->eval();
  return m;
}

std::vector<int64_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  Generator g(seed);
  return randint({n}, 0, vocab, DType::i64, &g).to_vector<int64_t>();
}

// -log p(S[j] | context) with the context passed alone through the model, in f64 by hand.
double token_nll(const models::CausalLM& m, const std::vector<int64_t>& context, int64_t target) {
  NoGradGuard no_grad;
  const Tensor logits = m.forward(from_vector(context, {1, static_cast<int64_t>(context.size())}));
  const std::vector<double> row = logits.select(1, logits.size(1) - 1).to(DType::f64).to_vector<double>();
  double mx = -INFINITY, sum = 0;
  for (double v : row) mx = std::max(mx, v);
  for (double v : row) sum += std::exp(v - mx);
  return -(row[static_cast<size_t>(target)] - mx - std::log(sum));
}

// The documented windows in closed form: token j of the stream S = [P, t_1..t_n] (1 <= j <= n)
// is scored by the first window when j <= min(W, n), else by window k = ceil((j - W) / s) whose
// inputs end at e = min(W + k s, n) and start at e - W; its context is S[start, j).
double brute_force_nll(const models::CausalLM& m, const std::vector<std::vector<int64_t>>& docs, int64_t prefix,
                       int64_t window, int64_t stride) {
  double total = 0;
  for (const auto& d : docs) {
    std::vector<int64_t> s{prefix};
    s.insert(s.end(), d.begin(), d.end());
    const int64_t n = static_cast<int64_t>(d.size());
    for (int64_t j = 1; j <= n; ++j) {
      int64_t start = 0;
      if (j > std::min(window, n)) {
        const int64_t k = (j - window + stride - 1) / stride;
        start = std::min(window + k * stride, n) - window;
      }
      total += token_nll(m, std::vector<int64_t>(s.begin() + start, s.begin() + j), s[static_cast<size_t>(j)]);
    }
  }
  return total;
}

std::vector<Document> token_docs(const std::vector<std::vector<int64_t>>& docs) {
  std::vector<Document> out;
  for (const auto& d : docs) out.push_back({d, std::nullopt});
  return out;
}

TEST(EvalPpl, NonOverlappingWindowsMatchBruteForce) {
  const auto m = tiny_model();
  const std::vector<std::vector<int64_t>> docs = {random_tokens(5, 23, 1), random_tokens(37, 23, 2),
                                                  random_tokens(8, 23, 3), random_tokens(17, 23, 4)};
  const PplOptions o{.window = 8, .stride = 0, .batch = 3, .prefix_token = 22};
  const PplResult r = evaluate_perplexity(*m, token_docs(docs), o);
  const double want = brute_force_nll(*m, docs, 22, 8, 8);
  EXPECT_NEAR(r.nll_sum, want, 1e-5 * want);
  EXPECT_EQ(r.n_tokens, 5 + 37 + 8 + 17);
  EXPECT_EQ(r.n_windows, 1 + 5 + 1 + 3);  // 37 = 8 + 3 * 8 + 5, 17 = 8 + 8 + 1
  EXPECT_EQ(r.n_documents, 4);
  EXPECT_FALSE(r.n_words.has_value());
  EXPECT_FALSE(r.word_perplexity().has_value());
  EXPECT_DOUBLE_EQ(r.token_perplexity(), std::exp(r.nll_sum / 67.0));
  const nlohmann::ordered_json j = to_json(r);
  EXPECT_TRUE(j["n_words"].is_null());
  EXPECT_TRUE(j["bits_per_byte"].is_null());
  EXPECT_EQ(j["n_tokens"], 67);
}

TEST(EvalPpl, StridedWindowsMatchBruteForce) {
  const auto m = tiny_model();
  const std::vector<std::vector<int64_t>> docs = {random_tokens(37, 23, 5), random_tokens(6, 23, 6),
                                                  random_tokens(9, 23, 7)};
  for (int64_t stride : {1, 3, 7}) {
    const PplResult r =
        evaluate_perplexity(*m, token_docs(docs), {.window = 8, .stride = stride, .batch = 4, .prefix_token = 0});
    const double want = brute_force_nll(*m, docs, 0, 8, stride);
    EXPECT_NEAR(r.nll_sum, want, 1e-5 * want) << "stride " << stride;
    const int64_t windows = 1 + (29 + stride - 1) / stride + 1 + 1 + (1 + stride - 1) / stride;
    EXPECT_EQ(r.n_windows, windows) << "stride " << stride;
  }
  // The check can fail: the contexts of stride 1 and stride 7 give clearly different sums.
  const double a = brute_force_nll(*m, docs, 0, 8, 1), b = brute_force_nll(*m, docs, 0, 8, 7);
  EXPECT_GT(std::abs(a - b), 1e-3 * a);
}

TEST(EvalPpl, WindowCoveringTheDocumentGivesTheSameResultInBothModes) {
  const auto m = tiny_model();
  const std::vector<std::vector<int64_t>> docs = {random_tokens(12, 23, 8), random_tokens(20, 23, 9)};
  const PplResult plain = evaluate_perplexity(*m, token_docs(docs), {.window = 20, .batch = 2, .prefix_token = 3});
  for (int64_t stride : {1, 5, 19}) {
    const PplResult strided =
        evaluate_perplexity(*m, token_docs(docs), {.window = 20, .stride = stride, .batch = 2, .prefix_token = 3});
    EXPECT_EQ(strided.nll_sum, plain.nll_sum) << "stride " << stride;
    EXPECT_EQ(strided.n_windows, 2);
  }
  const double want = brute_force_nll(*m, docs, 3, 20, 20);
  EXPECT_NEAR(plain.nll_sum, want, 1e-5 * want);
  // The batch only changes which windows share a forward (padding never reaches a scored row).
  const PplResult one = evaluate_perplexity(*m, token_docs(docs), {.window = 20, .batch = 1, .prefix_token = 3});
  EXPECT_NEAR(one.nll_sum, plain.nll_sum, 1e-6 * plain.nll_sum);
}

TEST(EvalPpl, CountsWordsAsLmEvalDoes) {
  // Expected values: len(re.split(r"\s+", s)) in Python 3.
  EXPECT_EQ(count_words("hello world"), 2);
  EXPECT_EQ(count_words("one"), 1);
  EXPECT_EQ(count_words(" "), 2);
  EXPECT_EQ(count_words(""), 1);
  EXPECT_EQ(count_words("  h\xC3\xA9llo\tworld\xC2\xA0na\xC3\xAFve\xE3\x80\x80"
                        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E  \n\nend "),
            7);
  EXPECT_EQ(count_words("a\xE2\x80\xA8" "b\xE2\x80\x8B" "c\x1F" "d\xC2\x85" "e"), 4);  // U+200B is not space
  EXPECT_EQ(count_words("x\xC2\xA0\xC2\xA0y"), 2);
  EXPECT_EQ(count_words("\xC3\xBCn\xC3\xAF  spaces\r\n"), 3);
  EXPECT_EQ(count_words("a\xC0\xA0" "b\xE0\x80\xA0" "c\xFF d"), 2);  // overlong / invalid bytes are not space
}

TEST(EvalPpl, TextDocumentsCountWordsAndBytesOfTheOriginalText) {
  const std::string text =
      "  Caf\xC3\xA9 na\xC3\xAFve\xC2\xA0r\xC3\xA9sum\xC3\xA9\n%\n\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\t\ttext  "
      "\n\n%\n\n%\nlast one\n";
  const std::vector<std::string> pieces = split_documents(text, "\n%\n");
  ASSERT_EQ(pieces.size(), 3u);  // the empty piece between two separators is dropped
  EXPECT_EQ(pieces[2], "last one\n");
  EXPECT_EQ(split_documents("abc", "").size(), 1u);
  EXPECT_TRUE(split_documents("", "\n").empty());

  tok::BpeTrainerOptions bo;
  bo.vocab_size = 280;
  bo.special_tokens = {"<|endoftext|>"};
  const std::vector<std::string> corpus = {text};
  const tok::Tokenizer t = tok::train_bpe(corpus, bo);
  const std::vector<Document> docs = text_documents(text, "\n%\n", t);
  ASSERT_EQ(docs.size(), 3u);
  int64_t words = 0, bytes = 0;
  for (const std::string& p : pieces) words += count_words(p), bytes += static_cast<int64_t>(p.size());
  EXPECT_EQ(words, 4 + 3 + 3);  // ["", "Café", "naïve", "résumé"], ["日本語", "text", ""], ["last", "one", ""]
  const auto m = tiny_model(static_cast<int64_t>(t.vocab_size()));
  const auto prefix = default_prefix_token(m->config(), &t);
  ASSERT_TRUE(prefix.has_value());
  EXPECT_EQ(*prefix, *t.token_to_id("<|endoftext|>"));
  const PplResult r = evaluate_perplexity(*m, docs, {.window = 6, .stride = 4, .batch = 2, .prefix_token = *prefix});
  ASSERT_TRUE(r.n_words && r.n_bytes);
  EXPECT_EQ(*r.n_words, words);
  EXPECT_EQ(*r.n_bytes, bytes);
  EXPECT_DOUBLE_EQ(*r.word_perplexity(), std::exp(r.nll_sum / static_cast<double>(words)));
  EXPECT_DOUBLE_EQ(*r.byte_perplexity(), std::exp(r.nll_sum / static_cast<double>(bytes)));
  EXPECT_DOUBLE_EQ(*r.bits_per_byte(), r.nll_sum / static_cast<double>(bytes) / std::log(2.0));
  std::vector<std::vector<int64_t>> ids;
  for (const Document& d : docs) ids.push_back(d.tokens);
  const double want = brute_force_nll(*m, ids, *prefix, 6, 4);
  EXPECT_NEAR(r.nll_sum, want, 1e-5 * want);
}

TEST(EvalPpl, ShardDocumentsAreTheRunsBetweenEos) {
  const std::string dir = ::testing::TempDir() + "lowbit_eval_ppl_shard";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    io::TokenShardWriter w(dir + "/val_00000.bin", 23, 22);
    w.add_document({1, 2, 3});
    w.add_document({4});
    w.close();
  }
  const io::TokenShard shard(dir + "/val_00000.bin");
  const std::vector<Document> docs = shard_documents(shard);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].tokens, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(docs[1].tokens, (std::vector<int64_t>{4}));
  EXPECT_FALSE(docs[0].text.has_value());
  fs::remove_all(dir);
}

TEST(EvalPpl, PrefixTokenPrefersBosThenEos) {
  models::ModelConfig c = tiny_config(300);
  EXPECT_FALSE(default_prefix_token(c, nullptr).has_value());
  c.eos_token_ids = {7};
  EXPECT_EQ(default_prefix_token(c, nullptr), 7);
  c.bos_token_id = 5;
  EXPECT_EQ(default_prefix_token(c, nullptr), 5);
  c.bos_token_id = 300;  // outside the vocabulary: ignored
  EXPECT_EQ(default_prefix_token(c, nullptr), 7);
}

void expect_one_line_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(part), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(EvalPpl, ErrorsAreOneLine) {
  auto m = tiny_model();
  const std::vector<Document> docs = token_docs({random_tokens(10, 23, 1)});
  expect_one_line_error([&] { evaluate_perplexity(*m, docs, {.window = 1, .prefix_token = 0}); },
                        "window must be >= 2 tokens, got 1");
  expect_one_line_error([&] { evaluate_perplexity(*m, docs, {.window = 8, .stride = 9, .prefix_token = 0}); },
                        "stride must be in [1, window = 8] (0 = window), got 9");
  expect_one_line_error([&] { evaluate_perplexity(*m, docs, {.window = 8, .batch = 0, .prefix_token = 0}); },
                        "batch must be >= 1");
  expect_one_line_error([&] { evaluate_perplexity(*m, docs, {.window = 8, .prefix_token = 23}); },
                        "prefix token 23 is outside the model's vocabulary [0, 23)");
  expect_one_line_error([&] { evaluate_perplexity(*m, token_docs({{1, 30}}), {.window = 8, .prefix_token = 0}); },
                        "document 0 holds token 30 outside the model's vocabulary");
  expect_one_line_error([&] { evaluate_perplexity(*m, token_docs({{}}), {.window = 8, .prefix_token = 0}); },
                        "document 0 has no tokens");
  m->train();
  expect_one_line_error([&] { evaluate_perplexity(*m, docs, {.window = 8, .prefix_token = 0}); }, "call eval() first");
}

TEST(EvalPpl, QuantModes) {
  const std::vector<Document> docs = token_docs({random_tokens(30, 23, 12), random_tokens(9, 23, 13)});
  const PplOptions o{.window = 8, .stride = 4, .batch = 2, .prefix_token = 1};
  auto plain = tiny_model();
  const double base = evaluate_perplexity(*plain, docs, o).nll_sum;

  QuantSetup q;
  EXPECT_EQ(apply_quant_choice(*plain, q, {}), "none");
  expect_one_line_error([&] { apply_quant_choice(*plain, q, {.mode = "real"}); },
                        "quant mode real needs a quantized model");
  expect_one_line_error([&] { apply_quant_choice(*plain, q, {.mode = "int4"}); },
                        "quant mode must be fake, dequantized, real or none, got 'int4'");
  expect_one_line_error([&] { apply_quant_choice(*plain, q, {.mode = "none", .preset = "W4A8"}); },
                        "a preset with quant mode none");

  // PTQ: fake, then the converted weights (dequantized equals fake bit for bit; real is close).
  double fake = 0;
  for (const char* mode : {"fake", "dequantized", "real", ""}) {
    auto m = tiny_model();
    QuantSetup qs;
    bool calibrated = false;
    const std::string got = apply_quant_choice(*m, qs, {.mode = mode, .preset = "INT8_PER_CHANNEL_PER_TOKEN"},
                                               [&] { calibrated = true; });
    EXPECT_EQ(got, *mode ? mode : "real");
    EXPECT_TRUE(calibrated);
    ASSERT_TRUE(qs.preset.has_value());
    EXPECT_EQ(qs.preset->name, "INT8_PER_CHANNEL_PER_TOKEN");
    const double v = evaluate_perplexity(*m, docs, o).nll_sum;
    if (got == "fake") fake = v;
    if (got == "dequantized") EXPECT_EQ(v, fake);
    if (got == "real") EXPECT_NEAR(v, fake, 1e-2 * fake);
    EXPECT_NE(v, base);
    expect_one_line_error([&] { apply_quant_choice(*m, qs, {.preset = "W4A8"}); },
                          "the model is already quantized");
  }

  // A prepared (QAT) model: "none" disables every quantizer and gives the plain numbers back.
  auto qat = tiny_model();
  QuantSetup qq;
  qq.preset = quant::resolve_preset("INT8_PER_CHANNEL_PER_TOKEN");
  quant::prepare(*qat, *qq.preset, qq.ctx);
  EXPECT_EQ(apply_quant_choice(*qat, qq, {}), "fake");
  EXPECT_EQ(evaluate_perplexity(*qat, docs, o).nll_sum, fake);
  EXPECT_EQ(apply_quant_choice(*qat, qq, {.mode = "none"}), "none");
  EXPECT_EQ(evaluate_perplexity(*qat, docs, o).nll_sum, base);
}

TEST(EvalPpl, CalibrationRunsOnTheEvaluationWindows) {
  const std::vector<Document> docs = token_docs({random_tokens(30, 23, 14)});
  const PplOptions o{.window = 8, .batch = 2, .prefix_token = 1};
  auto m = tiny_model();
  QuantSetup q;
  apply_quant_choice(*m, q, {.mode = "fake", .preset = "INT8_DEFAULT"},
                     [&] { calibrate_on_documents(*m, docs, o, 1); });
  for (const auto& [name, layer] : quant::prepared_layers(*m)) EXPECT_TRUE(layer->weight().has_params()) << name;
  EXPECT_TRUE(std::isfinite(evaluate_perplexity(*m, docs, o).nll_sum));
}

TEST(Utf8Stream, PrintsOnlyCompleteSequences) {
  using models::utf8_complete_length;
  EXPECT_EQ(utf8_complete_length(""), 0u);
  EXPECT_EQ(utf8_complete_length("abc"), 3u);
  EXPECT_EQ(utf8_complete_length("a\xE2\x82"), 1u);      // € = E2 82 AC, one byte missing
  EXPECT_EQ(utf8_complete_length("a\xE2\x82\xAC"), 4u);
  EXPECT_EQ(utf8_complete_length("\xF0\x9F\x98"), 0u);   // 😀 = F0 9F 98 80
  EXPECT_EQ(utf8_complete_length("\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(utf8_complete_length("\xC3"), 0u);
  EXPECT_EQ(utf8_complete_length("\x80"), 1u);           // a stray continuation byte never waits
  EXPECT_EQ(utf8_complete_length("x\xFF"), 2u);          // nor an invalid byte
  EXPECT_EQ(utf8_complete_length("\xE2" "a"), 2u);       // a broken sequence is complete
  // Byte by byte, a multi-byte text comes out whole characters at a time and in full.
  const std::string text = "h\xC3\xA9 \xE2\x82\xAC\xF0\x9F\x98\x80!";
  std::string pending, printed;
  std::vector<size_t> sizes;
  for (char c : text) {
    pending += c;
    const size_t n = utf8_complete_length(pending);
    printed += pending.substr(0, n);
    pending.erase(0, n);
    sizes.push_back(printed.size());
  }
  EXPECT_EQ(printed, text);
  EXPECT_EQ(sizes, (std::vector<size_t>{1, 1, 3, 4, 4, 4, 7, 7, 7, 7, 11, 12}));
}

}  // namespace
}  // namespace lowbit::train
