// Byte-level BPE tokenizer: ids equal Hugging Face `tokenizers` ids (golden files written by
// tests/reference/tokenizer_golden.py) for a GPT-2-style and a Llama-3-style tokenizer.json,
// decode(encode(s)) == s for random byte strings (invalid UTF-8, NUL), tokenizer.json write ->
// read round trips, the trainer's first merges on a hand-counted corpus, the Split behaviors
// and regex details, and one test per malformed-file rule checking the one-line error.
#include "lowbit/io/tokenizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "../test_util.h"
#include "lowbit/engine/error.h"

namespace lowbit::tok {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kDir = std::string(LOWBIT_TEST_DATA_DIR) + "/tokenizer/";

using test::read_bytes;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(::testing::TempDir()) / (std::string("lowbit_tok_") + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

const json& golden() {
  static const json g = json::parse(read_bytes(kDir + "golden_ids.json"));
  return g;
}
const Tokenizer& gpt2() {
  static const Tokenizer t = Tokenizer::from_file(kDir + "gpt2_style.tokenizer.json");
  return t;
}
const Tokenizer& llama3() {
  static const Tokenizer t = Tokenizer::from_file(kDir + "llama3_style.tokenizer.json");
  return t;
}
const std::string& sample() {
  static const std::string s = read_bytes(kDir + "fortunes_sample.txt");
  return s;
}

std::vector<int32_t> ids_of(const json& a) { return a.get<std::vector<int32_t>>(); }

// First index where two id lists differ, for readable failures on long lists.
std::string first_diff(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  std::ostringstream os;
  os << "sizes " << a.size() << " vs " << b.size() << ", first difference at " << i;
  return os.str();
}

TEST(Tokenizer, GoldenCasesGpt2Style) {
  for (const json& c : golden()["cases"]) {
    const std::string text = c["text"];
    const auto expect = ids_of(c["gpt2"]);
    const auto got = gpt2().encode(text);
    EXPECT_EQ(got, expect) << c["name"] << ": " << first_diff(got, expect);
  }
}

TEST(Tokenizer, GoldenCasesLlama3Style) {
  for (const json& c : golden()["cases"]) {
    const std::string text = c["text"];
    const auto expect = ids_of(c["llama3"]);
    const auto got = llama3().encode(text);
    EXPECT_EQ(got, expect) << c["name"] << ": " << first_diff(got, expect);
    const auto expect_special = ids_of(c["llama3_with_special"]);
    EXPECT_EQ(llama3().encode(text, /*add_special_tokens=*/true), expect_special) << c["name"];
  }
}

// Seeded random concatenations of Unicode whitespace, letter-like numbers, combining marks,
// specials and contractions: the places where regex and word-class definitions can differ.
TEST(Tokenizer, GoldenRandomMixBothStyles) {
  ASSERT_EQ(golden()["random_mix"].size(), 300u);
  for (const json& c : golden()["random_mix"]) {
    const std::string text = c["text"];
    EXPECT_EQ(gpt2().encode(text), ids_of(c["gpt2"])) << json(text).dump();
    EXPECT_EQ(llama3().encode(text), ids_of(c["llama3"])) << json(text).dump();
  }
}

TEST(Tokenizer, GoldenSampleBothStyles) {
  ASSERT_EQ(golden()["sample_file"], "fortunes_sample.txt");
  const auto g = gpt2().encode(sample());
  const auto l = llama3().encode(sample());
  const auto eg = ids_of(golden()["sample"]["gpt2"]);
  const auto el = ids_of(golden()["sample"]["llama3"]);
  EXPECT_EQ(g, eg) << first_diff(g, eg);
  EXPECT_EQ(l, el) << first_diff(l, el);
  EXPECT_GT(sample().size(), 2 * g.size());  // a vocabulary of 2000 compresses English > 2x
}

TEST(Tokenizer, DecodeInvertsEncodeOnSampleAndCases) {
  for (const Tokenizer* t : {&gpt2(), &llama3()}) {
    EXPECT_EQ(t->decode(t->encode(sample())), sample());
    for (const json& c : golden()["cases"]) {
      const std::string text = c["text"];
      if (text.find("<mask>") != std::string::npos) continue;  // lstrip absorbs the space before it
      EXPECT_EQ(t->decode(t->encode(text)), text) << c["name"];
    }
  }
}

// Random byte strings of several flavours: uniform bytes (mostly invalid UTF-8, NULs),
// fragments of valid multi-byte characters cut anywhere, and text-like runs.
std::vector<std::string> random_strings(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  const std::vector<std::string> pieces = {"a", "the", " ", "  ", "\n", "\t", "'s", "'LL", "123", "9999",
                                           "é", "Ω", "語", "😀", "\xF0\x9F", "\xE2\x82", "\x80", "\xFF",
                                           std::string(1, '\0'), "<|endoftext|", "<|end_of_text|>", "xyzzy",
                                           "!?", "\r\n", "\xC3", "Ġ", "\xED\xA0\x80"};
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    const size_t len = rng() % 120;
    std::string s;
    switch (i % 3) {
      case 0:
        for (size_t k = 0; k < len; ++k) s += char(rng() & 0xFF);
        break;
      case 1:
        for (size_t k = 0; k < len / 3; ++k) s += pieces[rng() % pieces.size()];
        break;
      default:
        for (size_t k = 0; k < len; ++k) {
          const uint32_t r = rng() % 10;
          s += r < 6 ? char('a' + rng() % 26) : r < 8 ? ' ' : r < 9 ? char(0x80 + rng() % 64) : char(rng() % 32);
        }
    }
    out.push_back(std::move(s));
  }
  return out;
}

TEST(Tokenizer, DecodeInvertsEncodeOnRandomBytes) {
  const auto strings = random_strings(3000, 1234);
  for (const Tokenizer* t : {&gpt2(), &llama3()}) {
    size_t failures = 0;
    for (const std::string& s : strings) {
      const auto ids = t->encode(s);
      if (t->decode(ids) != s && ++failures < 5) ADD_FAILURE() << "round trip failed for " << json(s).dump(-1, ' ', true, json::error_handler_t::replace);
    }
    EXPECT_EQ(failures, 0u);
  }
}

TEST(Tokenizer, InvalidUtf8BytesArePreTokensOfTheirOwn) {
  const std::string s = std::string("ab\xFF\xFE") + "cd " + "\xE2\x82" + "x";
  EXPECT_EQ(gpt2().pre_tokenize(s), (std::vector<std::string>{"ab", "\xFF\xFE", "cd", " ", "\xE2\x82", "x"}));
  EXPECT_EQ(llama3().pre_tokenize(s), (std::vector<std::string>{"ab", "\xFF\xFE", "cd", " ", "\xE2\x82", "x"}));
  // A NUL is an ordinary (valid) character: [^\s\p{L}\p{N}]+.
  EXPECT_EQ(gpt2().pre_tokenize(std::string("a\0\0b", 4)),
            (std::vector<std::string>{"a", std::string("\0\0", 2), "b"}));
}

TEST(Tokenizer, Llama3RegexDetails) {
  // Case-insensitive contractions, numbers in groups of at most three digits, a leading
  // non-letter glued to a word, newlines kept together with preceding whitespace.
  EXPECT_EQ(llama3().pre_tokenize("I'M he'S 1234567$x  \n\nz"),
            (std::vector<std::string>{"I", "'M", " he", "'S", " ", "123", "456", "7", "$x", "  \n\n", "z"}));
  EXPECT_EQ(gpt2().pre_tokenize("I'M he's 1234567"),
            (std::vector<std::string>{"I", "'", "M", " he", "'s", " 1234567"}));
}

TEST(Tokenizer, SpecialTokens) {
  const Tokenizer& t = llama3();
  const int32_t bos = *t.token_to_id("<|begin_of_text|>");
  const int32_t eos = *t.token_to_id("<|end_of_text|>");
  EXPECT_TRUE(t.is_special(bos));
  EXPECT_TRUE(t.is_special(eos));
  EXPECT_EQ(t.encode("<|begin_of_text|>"), std::vector<int32_t>{bos});
  EXPECT_EQ(t.encode("", true), std::vector<int32_t>{bos});
  const auto ids = t.encode("<|begin_of_text|>hi<|end_of_text|>");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), bos);
  EXPECT_EQ(ids.back(), eos);
  EXPECT_EQ(t.decode(ids), "<|begin_of_text|>hi<|end_of_text|>");
  EXPECT_EQ(t.decode(ids, /*skip_special_tokens=*/true), "hi");
  EXPECT_EQ(t.id_to_token(bos), "<|begin_of_text|>");

  // lstrip: <mask> takes the spaces before it; single_word: xyzzy only as a whole word.
  const Tokenizer& g = gpt2();
  const int32_t mask = *g.token_to_id("<mask>");
  const int32_t xyzzy = *g.token_to_id("xyzzy");
  EXPECT_EQ(g.pre_tokenize("a  <mask>b"), (std::vector<std::string>{"a", "<mask>", "b"}));
  EXPECT_EQ(g.encode("  <mask>"), std::vector<int32_t>{mask});
  EXPECT_EQ(g.encode("xyzzy"), std::vector<int32_t>{xyzzy});
  const auto inside = g.encode("axyzzy");
  EXPECT_EQ(std::count(inside.begin(), inside.end(), xyzzy), 0);
  EXPECT_FALSE(g.is_special(xyzzy));
  EXPECT_EQ(g.decode(g.encode("xyzzy"), true), "xyzzy");  // not special: kept
}

TEST(Tokenizer, DecodeRejectsUnknownIds) {
  const int32_t n = int32_t(gpt2().vocab_size());
  EXPECT_EQ(n, 2001);  // the reference's get_vocab_size(with_added_tokens=True)
  for (int32_t bad : {n, -1}) {
    try {
      gpt2().decode(std::vector<int32_t>{5, bad});
      ADD_FAILURE() << "no error for id " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("position 1"), std::string::npos) << e.what();
    }
  }
}

TEST(Tokenizer, WriteReadRoundTrip) {
  const std::string dir = test_dir();
  for (const Tokenizer* t : {&gpt2(), &llama3()}) {
    const std::string path = dir + "/tokenizer.json";
    t->save(path);
    const Tokenizer back = Tokenizer::from_file(path);
    EXPECT_EQ(back.encode(sample()), t->encode(sample()));
    for (const json& c : golden()["cases"]) {
      const std::string text = c["text"];
      EXPECT_EQ(back.encode(text, true), t->encode(text, true)) << c["name"];
    }
    EXPECT_EQ(back.vocab_size(), t->vocab_size());
    EXPECT_EQ(back.to_json(), t->to_json());  // a fixed point after one write
    // The [a, b] array form is written; the GPT-2-style file has "a b" strings.
    const json j = json::parse(read_bytes(path));
    EXPECT_TRUE(j["model"]["merges"][0].is_array());
  }
  EXPECT_TRUE(json::parse(read_bytes(kDir + "gpt2_style.tokenizer.json"))["model"]["merges"][0].is_string());
}

TEST(Tokenizer, ThreadsShareOneTokenizer) {
  const auto strings = random_strings(400, 99);
  std::vector<std::vector<int32_t>> serial;
  for (const auto& s : strings) serial.push_back(llama3().encode(s));
  std::vector<int> bad(2, 0);
  std::vector<std::thread> th;
  for (int k = 0; k < 2; ++k)
    th.emplace_back([&, k] {
      for (size_t i = 0; i < strings.size(); ++i) bad[k] += llama3().encode(strings[i]) != serial[i];
    });
  for (auto& t : th) t.join();
  EXPECT_EQ(bad[0] + bad[1], 0);
}

// ---------------------------------------------------------------------------------------------
// Trainer.

// Classic example, counted by hand (one word per text, so no spaces enter):
//   hug x10, pug x5, pun x12, bun x4, hugs x5
// pairs: u g 20, p u 17, u n 16, h u 15, g s 5, b u 4          -> merge u+g (256)
// then:  u n 16, h ug 15, p u 12, p ug 5, ug s 5, b u 4        -> merge u+n (257)
// then:  h ug 15, p un 12, p ug 5, ug s 5, b un 4              -> h+ug (258), p+un (259)
// then:  p ug 5 and hug s 5 tie: (p=112, ug=256) < (hug=258, s=115) -> p+ug (260), hug+s (261)
// then:  b un 4                                                -> b+un (262)
std::vector<std::string> hand_corpus() {
  std::vector<std::string> texts;
  auto add = [&](const char* w, int n) {
    for (int i = 0; i < n; ++i) texts.emplace_back(w);
  };
  add("hug", 10);
  add("pug", 5);
  add("pun", 12);
  add("bun", 4);
  add("hugs", 5);
  return texts;
}

TEST(Tokenizer, TrainerLearnsMostFrequentPairsFirst) {
  BpeTrainerOptions opt;
  opt.vocab_size = 1000;
  opt.min_frequency = 1;
  opt.special_tokens = {"<|endoftext|>"};
  const Tokenizer t = train_bpe(hand_corpus(), opt);
  const std::vector<std::pair<std::string, std::string>> expect = {
      {"u", "g"}, {"u", "n"}, {"h", "ug"}, {"p", "un"}, {"p", "ug"}, {"hug", "s"}, {"b", "un"}};
  EXPECT_EQ(t.data().merges, expect);
  EXPECT_EQ(t.vocab_size(), 256u + 7u + 1u);
  EXPECT_EQ(t.token_to_id("hugs"), 261);
  EXPECT_EQ(t.token_to_id("<|endoftext|>"), 263);
  EXPECT_EQ(t.token_to_id("a"), int32_t('a'));
  // " bun": 'Ġ' (the space, id 32) has no merge with 'b'.
  EXPECT_EQ(t.encode("hugs bun<|endoftext|>"), (std::vector<int32_t>{261, 32, 262, 263}));

  opt.min_frequency = 5;  // b+un (4) is not learned
  EXPECT_EQ(train_bpe(hand_corpus(), opt).data().merges.size(), 6u);
  opt.min_frequency = 1;
  opt.vocab_size = 256 + 3 + 1;  // three merges, then the special token
  const Tokenizer small = train_bpe(hand_corpus(), opt);
  EXPECT_EQ(small.data().merges.size(), 3u);
  EXPECT_EQ(small.vocab_size(), 260u);
}

TEST(Tokenizer, TrainedTokenizerIsValidAndRoundTrips) {
  // Train on the sample (split at the fortune separator), Llama-3 layout.
  std::vector<std::string> docs;
  const std::string& s = sample();
  for (size_t b = 0; b < s.size();) {
    size_t e = s.find("\n%\n", b);
    if (e == std::string::npos) e = s.size();
    docs.push_back(s.substr(b, e - b));
    b = e + 3;
  }
  BpeTrainerOptions opt;
  opt.vocab_size = 800;
  opt.special_tokens = {"<|begin_of_text|>", "<|end_of_text|>"};
  opt.pre_tokenizer = PreTokenizerConfig::llama3();
  opt.ignore_merges = true;
  const Tokenizer t = train_bpe(docs, opt);
  EXPECT_EQ(t.vocab_size(), 800u);
  EXPECT_GE(t.data().merges.size(), 800u - 256u - 2u);  // more if two merges spell one token
  const auto ids = t.encode(sample());
  EXPECT_LT(ids.size(), sample().size() / 2);
  EXPECT_EQ(t.decode(ids), sample());
  for (const std::string& r : random_strings(300, 7)) EXPECT_EQ(t.decode(t.encode(r)), r);

  const std::string path = test_dir() + "/trained.json";
  t.save(path);
  const Tokenizer back = Tokenizer::from_file(path);
  EXPECT_EQ(back.encode(sample()), ids);
  EXPECT_EQ(back.data().pre_tokenizer.splits.size(), 1u);

  // Training is deterministic.
  EXPECT_EQ(train_bpe(docs, opt).to_json(), t.to_json());
}

// ---------------------------------------------------------------------------------------------
// Split behaviors (the examples of the reference documentation, "the-final--countdown" split
// on "-") and byte-level details.

TokenizerData bytes_only(std::vector<SplitRule> splits, bool use_regex, bool prefix) {
  TokenizerData d;
  for (int b = 0; b < 256; ++b) d.vocab.emplace_back(byte_to_unicode(uint8_t(b)), b);
  d.pre_tokenizer.splits = std::move(splits);
  d.pre_tokenizer.byte_level_use_regex = use_regex;
  d.pre_tokenizer.add_prefix_space = prefix;
  return d;
}

TEST(Tokenizer, SplitBehaviors) {
  using V = std::vector<std::string>;
  auto run = [](SplitBehavior b, bool invert = false) {
    return Tokenizer(bytes_only({SplitRule{"-", false, b, invert}}, false, false)).pre_tokenize("the-final--countdown");
  };
  EXPECT_EQ(run(SplitBehavior::Removed), (V{"the", "final", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::Isolated), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::MergedWithPrevious), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::MergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(run(SplitBehavior::Contiguous), (V{"the", "-", "final", "--", "countdown"}));
  EXPECT_EQ(run(SplitBehavior::Removed, /*invert=*/true), (V{"-", "-", "-"}));
}

TEST(Tokenizer, AddPrefixSpaceAndBytesAlphabet) {
  const Tokenizer t(bytes_only({}, true, true));
  EXPECT_EQ(t.pre_tokenize("hi there"), (std::vector<std::string>{" hi", " there"}));
  EXPECT_EQ(t.pre_tokenize(" hi"), (std::vector<std::string>{" hi"}));
  // GPT-2's alphabet: space -> U+0120, newline -> U+010A, '!' and 'é' (0xE9) unchanged.
  EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");
  EXPECT_EQ(byte_to_unicode('\n'), "\xC4\x8A");
  EXPECT_EQ(byte_to_unicode('!'), "!");
  EXPECT_EQ(byte_to_unicode(0xE9), "\xC3\xA9");
  EXPECT_EQ(byte_to_unicode(0xAD), "\xC5\x83");  // soft hyphen: the 68th remapped byte is U+0143
  std::string all;
  for (int b = 0; b < 256; ++b) all += char(b);
  EXPECT_EQ(unicode_to_bytes(bytes_to_unicode(all)), all);
  EXPECT_EQ(unicode_to_bytes("a b"), std::nullopt);  // a raw space is not in the alphabet
}

// ---------------------------------------------------------------------------------------------
// Malformed files: one test per rule, each error one line naming the file and the key.

json minimal() {
  json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = json::array({{{"id", 3}, {"content", "<s>"}, {"special", true}}});
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  j["post_processor"] = nullptr;
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}}}, {"merges", json::array({"a b"})}};
  return j;
}

void expect_error(const std::string& text, const std::string& key, const std::string& detail = "") {
  const std::string path = test_dir() + "/bad.json";
  write_bytes(path, text);
  try {
    Tokenizer::from_file(path);
    ADD_FAILURE() << "no error for key " << key;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
    if (!detail.empty()) EXPECT_NE(msg.find(detail), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

void expect_error(const std::function<void(json&)>& edit, const std::string& key, const std::string& detail = "") {
  json j = minimal();
  edit(j);
  expect_error(j.dump(), key, detail);
}

TEST(TokenizerFile, MinimalIsValid) {
  const std::string path = test_dir() + "/ok.json";
  write_bytes(path, minimal().dump());
  const Tokenizer t = Tokenizer::from_file(path);
  EXPECT_EQ(t.encode("abba<s>"), (std::vector<int32_t>{2, 1, 0, 3}));  // "b" has no merge with "b"/"a"
}

TEST(TokenizerFile, BadJson) {
  expect_error("{\"model\": {", "JSON", "malformed");
  expect_error(std::string("{}\0x", 4), "JSON", "NUL");
  expect_error("[1, 2]", "top level");
}

TEST(TokenizerFile, MissingFile) {
  try {
    Tokenizer::from_file(test_dir() + "/none.json");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("none.json"), std::string::npos) << e.what();
  }
}

TEST(TokenizerFile, MissingModel) {
  expect_error([](json& j) { j.erase("model"); }, "model", "missing");
  expect_error([](json& j) { j["model"].erase("vocab"); }, "model.vocab", "missing");
  expect_error([](json& j) { j["model"].erase("merges"); }, "model.merges", "missing");
  expect_error([](json& j) { j["model"].erase("type"); }, "model.type", "missing");
  expect_error([](json& j) { j.erase("pre_tokenizer"); }, "pre_tokenizer", "missing");
  expect_error([](json& j) { j.erase("decoder"); }, "decoder", "missing");
}

TEST(TokenizerFile, MergesNamingUnknownTokens) {
  expect_error([](json& j) { j["model"]["merges"] = json::array({"a c"}); }, "model.merges[0]", "'c' is not in model.vocab");
  expect_error([](json& j) { j["model"]["merges"] = json::array({"b a"}); }, "model.merges[0]", "'ba'");
  expect_error([](json& j) { j["model"]["merges"] = json::array({"ab"}); }, "model.merges[0]", "one space");
  expect_error([](json& j) { j["model"]["merges"] = json::array({json::array({"a"})}); }, "model.merges[0]");
  expect_error([](json& j) { j["model"]["unk_token"] = "<unk>"; }, "model.unk_token", "'<unk>'");
}

TEST(TokenizerFile, UnsupportedFeatures) {
  expect_error([](json& j) { j["normalizer"] = {{"type", "Precompiled"}}; }, "normalizer.type", "'Precompiled' is not supported");
  expect_error(
      [](json& j) {
        j["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFC"}}, {{"type", "BertNormalizer"}}})}};
      },
      "normalizer.normalizers[1].type", "'BertNormalizer'");
  expect_error([](json& j) { j["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Regex", "(x"}}}, {"content", ""}}; },
               "normalizer[0].pattern", "cannot compile regex");
  expect_error([](json& j) { j["decoder"] = {{"type", "Metaspace"}}; }, "decoder", "ByteLevel decoder alone");
  expect_error([](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}, {"prepend_scheme", "sometimes"}}; },
               "pre_tokenizer.prepend_scheme", "'sometimes'");
  expect_error([](json& j) { j["model"]["type"] = "WordPiece"; }, "model.type", "'WordPiece'");
  expect_error([](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }, "decoder.type", "'WordPiece'");
  expect_error([](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }, "pre_tokenizer.type", "'Whitespace'");
  expect_error([](json& j) { j["pre_tokenizer"] = nullptr; }, "decoder", "ByteLevel pre-tokenizer");
  expect_error([](json& j) { j["model"]["byte_fallback"] = true; }, "model.byte_fallback", "ByteLevel");
  expect_error([](json& j) { j["model"]["dropout"] = 0.1; }, "model.dropout");
  expect_error([](json& j) { j["model"]["continuing_subword_prefix"] = "##"; }, "model.continuing_subword_prefix");
  expect_error([](json& j) { j["truncation"] = {{"max_length", 8}}; }, "truncation");
  expect_error([](json& j) { j["padding"] = {{"strategy", "BatchLongest"}}; }, "padding");
  expect_error([](json& j) { j["post_processor"] = {{"type", "BertProcessing"}}; }, "post_processor.type", "'BertProcessing'");
  expect_error(
      [](json& j) {
        j["pre_tokenizer"] = {{"type", "Sequence"},
                              {"pretokenizers", json::array({{{"type", "ByteLevel"}}, {{"type", "Digits"}}})}};
      },
      "pre_tokenizer.pretokenizers[0].type");
  expect_error(
      [](json& j) {
        j["pre_tokenizer"] = {
            {"type", "Sequence"},
            {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}},
                                           {{"type", "ByteLevel"}, {"use_regex", false}}})}};
      },
      "pre_tokenizer.pretokenizers[0].pattern", "cannot compile regex");
  expect_error(
      [](json& j) {
        j["pre_tokenizer"] = {
            {"type", "Sequence"},
            {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Sideways"}},
                                           {{"type", "ByteLevel"}}})}};
      },
      "pre_tokenizer.pretokenizers[0].behavior", "'Sideways'");
}

TEST(TokenizerFile, WrongTypes) {
  expect_error([](json& j) { j["model"]["vocab"]["a"] = "zero"; }, "model.vocab['a']", "integer");
  expect_error([](json& j) { j["model"]["vocab"]["a"] = -4; }, "model.vocab['a']", "negative");
  expect_error([](json& j) { j["model"]["vocab"] = json::array(); }, "model.vocab", "object");
  expect_error([](json& j) { j["model"]["merges"] = "a b"; }, "model.merges", "array");
  expect_error([](json& j) { j["model"]["merges"] = json::array({7}); }, "model.merges[0]", "string or an array");
  expect_error([](json& j) { j["model"]["ignore_merges"] = "yes"; }, "model.ignore_merges", "boolean");
  expect_error([](json& j) { j["added_tokens"][0]["id"] = "3"; }, "added_tokens[0].id", "integer");
  expect_error([](json& j) { j["added_tokens"][0]["special"] = 1; }, "added_tokens[0].special", "boolean");
  expect_error([](json& j) { j["added_tokens"][0].erase("content"); }, "added_tokens[0].content", "missing");
  expect_error([](json& j) { j["added_tokens"] = json::object(); }, "added_tokens", "array");
  expect_error([](json& j) { j["model"]["type"] = 3; }, "model.type", "string");
}

TEST(TokenizerFile, InconsistentIds) {
  expect_error([](json& j) { j["model"]["vocab"]["b"] = 0; }, "model.vocab", "id 0");
  expect_error([](json& j) { j["added_tokens"][0]["id"] = 1; }, "added_tokens", "'b'");
  expect_error([](json& j) { j["added_tokens"][0]["content"] = "a"; }, "added_tokens", "'a'");
  expect_error(
      [](json& j) {
        j["post_processor"] = {{"type", "TemplateProcessing"},
                               {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                       {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                               {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", json::array({99})}}}}}};
      },
      "post_processor.TemplateProcessing", "id 99");
}

}  // namespace
}  // namespace lowbit::tok
