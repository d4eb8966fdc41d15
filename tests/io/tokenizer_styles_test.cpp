// Every tokenizer style of the supported families against Hugging Face `tokenizers` (and, for
// the SentencePiece .model, the sentencepiece package): tests/data/tokenizer/golden_styles.json,
// written by tests/reference/tokenizer_styles_golden.py. One test per style runs every case
// (ids without and with special tokens, decode, decode skipping specials); plus unit checks of
// the pieces the goldens exercise only together (U+FFFD replacement, normalizers, decoders,
// write-back of the new keys).
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../test_util.h"
#include "lowbit/engine/error.h"
#include "lowbit/io/tokenizer.h"

namespace lowbit::tok {
namespace {

using nlohmann::json;

const std::string kDir = std::string(LOWBIT_TEST_DATA_DIR) + "/tokenizer/";

using test::read_bytes;

const json& golden() {
  static const json g = json::parse(read_bytes(kDir + "golden_styles.json"));
  return g;
}

std::string from_hex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out += char(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

const json& style(const std::string& name) {
  for (const json& s : golden()["styles"])
    if (s["name"] == name) return s;
  throw std::runtime_error("no style " + name);
}

void check_style(const std::string& name) {
  const json& st = style(name);
  const Tokenizer t = Tokenizer::from_file(kDir + st["file"].get<std::string>());
  // Byte-level tokenizers without a normalizer keep invalid bytes (their own golden in
  // tokenizer_test); the reference only saw Python's replaced text, so they are given that.
  const bool keeps_bytes = t.data().is_byte_level() && t.data().normalizers.empty() && !t.data().is_sentencepiece();
  int checked = 0;
  for (const json& c : golden()["cases"]) {
    const json& g = c["styles"][name];
    std::string text = c.contains("text") ? c["text"].get<std::string>() : from_hex(c["bytes_hex"]);
    if (keeps_bytes) text = replace_invalid_utf8(text);
    const std::string label = name + " / " + c["name"].get<std::string>() + ": \"" + printable(text) + "\"";
    const auto ids = g["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.encode(text), ids) << label;
    EXPECT_EQ(t.encode(text, true), g["ids_with_special"].get<std::vector<int32_t>>()) << label;
    EXPECT_EQ(t.decode(ids), g["decoded"].get<std::string>()) << label;
    const auto with_special = g["ids_with_special"].get<std::vector<int32_t>>();
    EXPECT_EQ(t.decode(with_special, true), g["decoded_skip_special"].get<std::string>()) << label;
    ++checked;
  }
  EXPECT_GT(checked, 150);
}

TEST(TokenizerStyles, Qwen2Nfc) { check_style("qwen2"); }
TEST(TokenizerStyles, Llama2SentencePieceBpeByteFallback) { check_style("llama2"); }
TEST(TokenizerStyles, MistralMetaspaceFirst) { check_style("mistral"); }
TEST(TokenizerStyles, MetaspaceBpeWithoutByteFallback) { check_style("metaspace"); }
TEST(TokenizerStyles, MetaspaceNeverNoSplit) { check_style("metaspace_never"); }
TEST(TokenizerStyles, NormalizerSequence) { check_style("normalizers"); }
TEST(TokenizerStyles, Llama3Chat) { check_style("llama3_chat"); }
TEST(TokenizerStyles, Gpt2) { check_style("gpt2"); }
TEST(TokenizerStyles, Llama3) { check_style("llama3"); }
TEST(TokenizerStyles, SentencePieceModel) { check_style("sentencepiece"); }

// Python's bytes.decode("utf-8", errors="replace"): one U+FFFD per maximal invalid subpart.
TEST(TokenizerStyles, InvalidUtf8ReplacedLikePython) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(replace_invalid_utf8("abc"), "abc");
  EXPECT_EQ(replace_invalid_utf8("a\x80z"), "a" + r + "z");
  EXPECT_EQ(replace_invalid_utf8("\xE2\x82"), r);                   // truncated 3-byte sequence: one
  EXPECT_EQ(replace_invalid_utf8("\xE2\x82z"), r + "z");
  EXPECT_EQ(replace_invalid_utf8("\xC0\xAF"), r + r);               // overlong lead: each byte
  EXPECT_EQ(replace_invalid_utf8("\xED\xA0\x80"), r + r + r);       // surrogate: each byte
  EXPECT_EQ(replace_invalid_utf8("\xF0\x9F\x98"), r);               // truncated 4-byte sequence
  EXPECT_EQ(replace_invalid_utf8("\xF4\x90\x80\x80"), r + r + r + r);  // above U+10FFFF
  EXPECT_EQ(replace_invalid_utf8("\xFF\xFE"), r + r);
  EXPECT_EQ(replace_invalid_utf8(std::string("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_TRUE(is_valid_utf8("\xF0\x9F\x98\x80 \xE2\x82\xAC"));
  EXPECT_FALSE(is_valid_utf8("\xE2\x82"));
}

// A tokenizer.json of the new kinds writes back to an equal tokenizer (same ids on the golden
// texts) and the keys survive the round trip.
TEST(TokenizerStyles, WriteReadRoundTripKeepsNormalizersDecodersAndByteFallback) {
  for (const char* file : {"llama2_style.tokenizer.json", "mistral_style.tokenizer.json", "normalizers_style.tokenizer.json",
                           "metaspace_never_style.tokenizer.json"}) {
    const Tokenizer a = Tokenizer::from_file(kDir + file);
    const Tokenizer b = Tokenizer::from_json(a.to_json(), file);
    EXPECT_EQ(b.data().normalizers.size(), a.data().normalizers.size()) << file;
    EXPECT_EQ(b.data().decoders.size(), a.data().decoders.size()) << file;
    EXPECT_EQ(b.data().byte_fallback, a.data().byte_fallback) << file;
    EXPECT_EQ(b.data().pre_tokenizer.final_step, a.data().pre_tokenizer.final_step) << file;
    EXPECT_EQ(b.data().pre_tokenizer.prepend_scheme, a.data().pre_tokenizer.prepend_scheme) << file;
    for (const json& c : golden()["cases"]) {
      if (!c.contains("text")) continue;
      const std::string text = c["text"];
      EXPECT_EQ(a.encode(text, true), b.encode(text, true)) << file << " " << printable(text);
      const auto ids = a.encode(text);
      EXPECT_EQ(a.decode(ids), b.decode(ids)) << file;
    }
  }
}

// The BPE path for a SentencePiece BPE model encodes exactly as libsentencepiece: the whole
// sample, every golden text (and its raw bytes), random code point mixes and random bytes.
TEST(TokenizerStyles, SentencePieceBpePathEqualsLibsentencepiece) {
  const std::string bytes = read_bytes(kDir + "llama2_style.model");
  const Tokenizer fast = Tokenizer::from_sentencepiece(bytes, "fast");
  TokenizerData d;
  d.sentencepiece_model = bytes;
  d.sentencepiece_library_encoder = true;
  const Tokenizer lib(d, "library");
  ASSERT_EQ(fast.encoder_name(), "BPE (SentencePiece model)");
  ASSERT_EQ(lib.encoder_name(), "libsentencepiece");
  std::vector<std::string> texts = {read_bytes(kDir + "fortunes_sample.txt")};
  for (const json& c : golden()["cases"]) texts.push_back(c.contains("text") ? c["text"].get<std::string>() : from_hex(c["bytes_hex"]));
  std::mt19937 rng(7);
  const std::vector<std::string> pieces = {" ", "  ", "\t", "\n", "a", "the", "\xE2\x96\x81", "\xC3\xA9", "e\xCC\x81", "\xE8\xAA\x9E",
                                           "\xF0\x9F\x98\x80", "<s>", "</s>", "<0x41>", "12", "\xC2\xA0", "'s", "\x7F"};
  for (int i = 0; i < 300; ++i) {
    std::string t;
    for (int k = int(rng() % 20); k > 0; --k) t += pieces[rng() % pieces.size()];
    texts.push_back(t);
  }
  for (int i = 0; i < 50; ++i) {
    std::string t(rng() % 64, '\0');
    for (char& ch : t) ch = char(rng() & 0xFF);
    texts.push_back(t);
  }
  for (const std::string& t : texts) ASSERT_EQ(fast.encode(t, true), lib.encode(t, true)) << printable(t);
  // A byte-level tokenizer.json and a SentencePiece-style one name their encoders too.
  EXPECT_EQ(Tokenizer::from_file(kDir + "gpt2_style.tokenizer.json").encoder_name(), "byte-level BPE");
  EXPECT_EQ(Tokenizer::from_file(kDir + "llama2_style.tokenizer.json").encoder_name(), "BPE");
}

// tokenizer_config.json's add_bos_token / add_eos_token change what encode adds, and the
// tokenizer.json written from it carries that template (transformers 5 reads only the template).
TEST(TokenizerStyles, ConfigAddBosAndEosOverrideTheTemplate) {
  TokenizerData d = Tokenizer::from_file(kDir + "llama2_style.tokenizer.json").data();
  const Tokenizer plain(d, "plain");
  d.config.add_bos_token = false;
  d.config.add_eos_token = true;  // no eos_token named: the well-known </s>
  const Tokenizer t(d, "config");
  const auto ids = plain.encode("Hello world");
  EXPECT_EQ(plain.encode("Hello world", true).front(), 1);
  std::vector<int32_t> want = ids;
  want.push_back(2);
  EXPECT_EQ(t.encode("Hello world", true), want);
  const Tokenizer back = Tokenizer::from_json(t.to_json(), "written");
  EXPECT_FALSE(back.data().config.add_bos_token.has_value());
  EXPECT_EQ(back.encode("Hello world", true), want);
  EXPECT_EQ(*t.effective_config().eos_token, "</s>");
}

// A SentencePiece model: pieces, scores and types from the model.
TEST(TokenizerStyles, SentencePieceModelMetadata) {
  const Tokenizer t = Tokenizer::from_file(kDir + "llama2_style.model");
  const TokenizerData& d = t.data();
  ASSERT_TRUE(d.is_sentencepiece());
  EXPECT_EQ(t.file_name(), "tokenizer.model");
  EXPECT_EQ(d.scores.size(), t.vocab_size());
  EXPECT_EQ(t.id_to_token(0), "<unk>");
  EXPECT_EQ(t.token_to_id("</s>"), 2);
  EXPECT_EQ(t.token_to_id("<0x41>"), t.token_to_id("<0x41>"));
  EXPECT_EQ(d.piece_types[0], TokenizerData::PieceType::Unknown);
  EXPECT_EQ(d.piece_types[1], TokenizerData::PieceType::Control);
  EXPECT_EQ(d.piece_types[*t.token_to_id("<0x41>")], TokenizerData::PieceType::Byte);
  EXPECT_TRUE(t.is_special(1));
  EXPECT_FALSE(t.token_to_id("no such piece").has_value());
  EXPECT_THROW(t.pre_tokenize("x"), Error);
  // Its tokenizer.json form (transformers' Llama-2 layout) encodes and decodes as the model does,
  // but for special-token strings in the text (SentencePiece treats them as text).
  const Tokenizer j = Tokenizer::from_json(t.to_json(), "converted");
  EXPECT_EQ(j.encoder_name(), "BPE");
  for (const json& c : golden()["cases"]) {
    if (!c.contains("text")) continue;
    const std::string text = c["text"];
    if (text.find("<s>") != std::string::npos || text.find("</s>") != std::string::npos ||
        text.find("<unk>") != std::string::npos)
      continue;
    EXPECT_EQ(j.encode(text, true), t.encode(text, true)) << printable(text);
    const auto ids = t.encode(text);
    EXPECT_EQ(j.decode(ids), t.decode(ids)) << printable(text);
  }
  TokenizerData lib;
  lib.sentencepiece_model = t.data().sentencepiece_model;
  lib.sentencepiece_library_encoder = true;
  EXPECT_THROW(Tokenizer(lib, "library").to_json(), Error);
  // A tokenizer.model that is not a model: one-line error naming the file.
  const std::string bad = ::testing::TempDir() + "/not_a.model";
  std::ofstream(bad) << "{\"model\": 1}";
  try {
    Tokenizer::from_file(bad);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a SentencePiece model"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lowbit::tok
