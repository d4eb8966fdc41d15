// Byte-level BPE tokenizer of the GPT-2 / Llama-3 family, compatible with Hugging Face
// `tokenizer.json` files (model type BPE, ByteLevel pre-tokenizer and decoder).
//
// Encoding runs the same pipeline as the `tokenizers` library, so ids match it:
//   1. added tokens (bos/eos/pad, ...) are cut out of the input first (leftmost-longest, with
//      their single_word/lstrip/rstrip flags); everything below runs on the text between them;
//   2. the Split pre-tokenizers (PCRE2 regexes, e.g. Llama-3's) cut the text into pieces;
//   3. ByteLevel optionally prepends a space and splits with the GPT-2 regex, and maps bytes to
//      the GPT-2 byte-to-unicode alphabet (done implicitly: merges work on raw bytes);
//   4. each piece is merged by BPE rank (lowest rank first, leftmost on ties); results of
//      pieces are cached.
//   5. with add_special_tokens, the TemplateProcessing "single" template adds bos/eos ids.
//
// Invalid UTF-8: regexes run with PCRE2_MATCH_INVALID_UTF, so no match can contain an invalid
// byte. Bytes that no regex item matches (every run of invalid bytes, for the GPT-2 and
// Llama-3 regexes) become pre-tokens of their own and are merged by BPE like any other bytes.
// Nothing is replaced or dropped, so decode(encode(s)) == s for every byte string s (unless an
// added token with lstrip/rstrip absorbs spaces, or a Split with behavior Removed drops text,
// which is what those options mean). decode returns raw bytes, not U+FFFD replacements.
//
// Anything in a tokenizer.json that this implementation does not do identically (a normalizer,
// a non-BPE model, BPE dropout or byte fallback, a decoder other than ByteLevel, truncation or
// padding, ...) is refused with a one-line lowbit::Error naming the file and the JSON key.
// Not provided: offsets, pair encoding (a template's "pair" is kept for writing back only),
// batch encoding. Thread safety: a Tokenizer may be used by many threads at once (the word
// cache is behind a shared mutex); copies share the cache.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lowbit::tok {

namespace detail {
struct Impl;
}

// A token matched verbatim in the input before pre-tokenization (HF "added_tokens").
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;  // only match when not inside a word (\w on either side)
  bool lstrip = false;       // absorb the whitespace before it
  bool rstrip = false;       // absorb the whitespace after it
  bool normalized = false;   // matched after the non-normalized ones (no normalizer here)
  bool special = true;       // skipped by decode(..., skip_special_tokens = true)
};

// HF SplitDelimiterBehavior.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// One Split pre-tokenizer: a PCRE2 regex (is_regex) or a literal string.
struct SplitRule {
  std::string pattern;
  bool is_regex = true;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
};

// The Split rules in order, then the final ByteLevel step.
struct PreTokenizerConfig {
  std::vector<SplitRule> splits;
  bool byte_level_use_regex = true;  // ByteLevel's own GPT-2 regex split (Isolated)
  bool add_prefix_space = false;     // prepend ' ' to every piece not starting with one
  bool trim_offsets = true;          // kept for writing back; offsets are not computed here

  static PreTokenizerConfig gpt2();    // ByteLevel(use_regex = true)
  static PreTokenizerConfig llama3();  // Sequence[Split(Llama-3 regex), ByteLevel(use_regex = false)]
};

// The regexes as they appear in real tokenizer.json files.
extern const char* const kGpt2Regex;
extern const char* const kLlama3Regex;

// One item of a TemplateProcessing template: a special token (by its name in the template's
// special_tokens table) or a sequence ("A"/"B").
struct TemplatePiece {
  bool is_special = false;
  std::string id;
  int type_id = 0;
};
struct TemplateSpecial {
  std::string name;
  std::vector<int32_t> ids;
  std::vector<std::string> tokens;
};
struct PostProcessorConfig {
  bool has_byte_level = false;  // ByteLevel post-processor (offsets only)
  bool has_template = false;
  std::vector<TemplatePiece> single, pair;
  std::vector<TemplateSpecial> specials;
};

// Everything a tokenizer.json holds that we use. Model tokens are spelled as in the file, in
// the GPT-2 byte-to-unicode alphabet (" the" is "Ġthe"); added tokens keep their literal content.
struct TokenizerData {
  std::vector<std::pair<std::string, int32_t>> vocab;       // token -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added_tokens;
  std::optional<std::string> unk_token;
  bool ignore_merges = false;            // a piece that is a whole vocab token is not merged
  bool fuse_unk = false;
  PreTokenizerConfig pre_tokenizer = PreTokenizerConfig::gpt2();
  PostProcessorConfig post_processor;
};

class Tokenizer {
 public:
  // Validates and indexes `data`; errors name `source` (a file name or "<trainer>").
  explicit Tokenizer(TokenizerData data, std::string source = "<memory>");
  ~Tokenizer();
  Tokenizer(const Tokenizer&);
  Tokenizer& operator=(const Tokenizer&);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  static Tokenizer from_file(const std::string& path);
  // `source` names the text in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& source = "<string>");
  std::string to_json() const;          // merges written in the [a, b] array form
  void save(const std::string& path) const;  // atomic (temp file + rename)

  // Ids of `text` (any bytes). add_special_tokens applies the post-processor template.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Raw bytes; unknown ids are an error.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Pre-tokenization only: the pieces BPE sees (raw bytes, prefix space included), with
  // added tokens as their content.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  // Tokens as spelled in the file (byte-level alphabet; added tokens literally).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  // Number of ids: max id + 1 (HF get_vocab_size(with_added_tokens = true)).
  size_t vocab_size() const;
  const TokenizerData& data() const;

 private:
  std::shared_ptr<detail::Impl> impl_;
};

// Trains byte-level BPE on `texts`: ids 0..255 are the 256 bytes, then one id per merge learned
// greedily (the most frequent adjacent pair over all pre-tokenized words, counted with word
// multiplicity; ties go to the smallest (left id, right id)), then the special tokens. Stops at
// vocab_size ids in total or when no pair occurs at least min_frequency times. Special tokens
// found in the training text are cut out before counting, as encode would.
struct BpeTrainerOptions {
  size_t vocab_size = 1000;
  size_t min_frequency = 2;
  std::vector<std::string> special_tokens;
  PreTokenizerConfig pre_tokenizer = PreTokenizerConfig::gpt2();
  bool ignore_merges = false;
};
Tokenizer train_bpe(std::span<const std::string> texts, const BpeTrainerOptions& options);

// GPT-2's byte <-> unicode alphabet: printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100.. in byte order. byte_to_unicode returns the UTF-8 of that code point;
// unicode_to_bytes undoes it for a whole token and returns nullopt when some code point is
// not in the alphabet.
const std::string& byte_to_unicode(uint8_t b);
std::string bytes_to_unicode(std::string_view raw);
std::optional<std::string> unicode_to_bytes(std::string_view token);

}  // namespace lowbit::tok
