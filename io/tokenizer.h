// Hugging Face `tokenizer.json` BPE tokenizers (GPT-2, Llama-3, Qwen2/2.5/3, Llama-2, Mistral
// layouts) and SentencePiece `tokenizer.model` files, with ids identical to the reference
// (`tokenizers` for tokenizer.json, libsentencepiece itself for .model files).
//
// tokenizer.json encoding runs the same pipeline as the `tokenizers` library:
//   1. added tokens with normalized = false are cut out of the raw input (leftmost-longest,
//      with their single_word/lstrip/rstrip flags); everything below runs per remaining piece;
//   2. the normalizers (NFC/NFD/NFKC/NFKD through utf8proc, Lowercase, Strip, Prepend, Replace,
//      in Sequence order), then the added tokens with normalized = true are cut out;
//   3. the Split pre-tokenizers (PCRE2 regexes, e.g. Llama-3's) cut the text into pieces;
//   4. the last pre-tokenizer: ByteLevel (optional prefix space, the GPT-2 regex, the GPT-2
//      byte-to-unicode alphabet: merges then work on raw bytes), Metaspace (' ' -> '▁',
//      prepend_scheme first/always/never, optional split before each '▁'), or none;
//   5. BPE merges each piece by rank (lowest first, leftmost on ties). Without ByteLevel the
//      symbols are code points; one missing from the vocabulary becomes its UTF-8 bytes as
//      <0xXX> tokens (byte_fallback) or the unk token (fused when fuse_unk);
//   6. with add_special_tokens, the TemplateProcessing "single" template adds bos/eos ids.
// decode runs the decoders (ByteLevel, or a Sequence of Metaspace, ByteFallback, Fuse, Strip,
// Replace) on the token strings, as the reference does.
//
// Invalid UTF-8: a tokenizer that is byte-level and has no normalizer keeps every byte (regexes
// run with PCRE2_MATCH_INVALID_UTF; unmatched bytes are pre-tokens of their own), so
// decode(encode(s)) == s for every byte string and decode returns raw bytes. Every other
// tokenizer (SentencePiece models too) first replaces each maximal invalid subsequence by U+FFFD, exactly as Python's
// bytes.decode("utf-8", errors="replace") does (the reference only ever sees valid text).
//
// Anything in a tokenizer.json that this implementation does not do identically (a Unigram or
// WordPiece model, BPE dropout, the Precompiled normalizer, truncation or padding, ...) is
// refused with a one-line lowbit::Error naming the file and the JSON key.
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
  bool normalized = false;   // matched in the normalized text (after the non-normalized ones)
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

// One normalizer of a (flattened) Sequence.
struct NormalizerStep {
  enum class Kind { NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, Replace };
  Kind kind = Kind::NFC;
  std::string content;     // Prepend: the prefix; Replace: the replacement
  std::string pattern;     // Replace: what to replace
  bool is_regex = false;   // Replace: pattern is a regex (else a literal string)
  bool strip_left = true;  // Strip: which ends lose their whitespace
  bool strip_right = true;
};

enum class PrependScheme { First, Always, Never };

// One decoder of a (flattened) Sequence.
struct DecoderStep {
  enum class Kind { ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace };
  Kind kind = Kind::ByteLevel;
  std::string content;      // Strip: the character; Replace: the replacement; Metaspace: replacement
  std::string pattern;      // Replace: what to replace (a literal string)
  int start = 0, stop = 0;  // Strip: how many leading / trailing `content` characters to remove
  PrependScheme prepend_scheme = PrependScheme::Always;  // Metaspace
  bool split = true;                                     // Metaspace (kept for writing back)
};

// The Split rules in order, then the final step: ByteLevel, Metaspace or none.
struct PreTokenizerConfig {
  enum class Final { ByteLevel, Metaspace, None };
  std::vector<SplitRule> splits;
  Final final_step = Final::ByteLevel;
  bool byte_level_use_regex = true;  // ByteLevel's own GPT-2 regex split (Isolated)
  bool add_prefix_space = false;     // ByteLevel: prepend ' ' to every piece not starting with one
  bool trim_offsets = true;          // kept for writing back; offsets are not computed here
  std::string metaspace_replacement = "\xE2\x96\x81";  // Metaspace: '▁' (U+2581)
  PrependScheme prepend_scheme = PrependScheme::Always;  // Metaspace
  bool metaspace_split = true;                           // Metaspace: split before each '▁'

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

// What tokenizer_config.json and special_tokens_map.json say: transformers' special tokens and
// settings. add_bos_token / add_eos_token, when given, replace the post-processor template's
// ids around the sequence (as transformers' fast Llama tokenizer rebuilds its template).
struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, pad_token, unk_token;
  std::optional<bool> add_bos_token, add_eos_token;
  std::string chat_template;  // the Jinja text, "" when none
  bool empty() const {
    return !bos_token && !eos_token && !pad_token && !unk_token && !add_bos_token && !add_eos_token &&
           chat_template.empty();
  }
};

// Everything a tokenizer.json holds that we use. Model tokens are spelled as in the file: in
// the GPT-2 byte-to-unicode alphabet for byte-level files (" the" is "Ġthe"), with '▁' for
// spaces in SentencePiece-style files; added tokens keep their literal content.
//
// A SentencePiece tokenizer.model is held as its serialized bytes (sentencepiece_model) and
// encoded by libsentencepiece; vocab, scores and piece_types then describe its pieces.
struct TokenizerData {
  std::vector<std::pair<std::string, int32_t>> vocab;       // token -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added_tokens;
  std::optional<std::string> unk_token;
  bool ignore_merges = false;            // a piece that is a whole vocab token is not merged
  bool fuse_unk = false;
  bool byte_fallback = false;            // code points missing from vocab -> <0xXX> tokens
  std::vector<NormalizerStep> normalizers;
  PreTokenizerConfig pre_tokenizer = PreTokenizerConfig::gpt2();
  PostProcessorConfig post_processor;
  std::vector<DecoderStep> decoders = {DecoderStep{}};  // ByteLevel
  TokenizerConfig config;  // from tokenizer_config.json beside the file, when there is one

  // SentencePiece only.
  std::string sentencepiece_model;
  bool sentencepiece_library_encoder = false;  // never the BPE fast path (tests, benchmarks)
  enum class PieceType : uint8_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };
  std::vector<float> scores;          // by id
  std::vector<PieceType> piece_types;  // by id
  bool is_sentencepiece() const { return !sentencepiece_model.empty(); }
  bool is_byte_level() const { return pre_tokenizer.final_step == PreTokenizerConfig::Final::ByteLevel; }
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

  // A tokenizer.json, a SentencePiece .model (by the name's extension), or a model directory
  // (from_directory). A file named tokenizer.json or tokenizer.model takes the
  // tokenizer_config.json / special_tokens_map.json beside it.
  static Tokenizer from_file(const std::string& path);
  // `source` names the text in error messages.
  static Tokenizer from_json(std::string_view json_text, const std::string& source = "<string>");
  static Tokenizer from_sentencepiece(std::string model_bytes, const std::string& source = "<string>",
                                      TokenizerConfig config = {});
  // Which code encodes: "byte-level BPE", "BPE", "libsentencepiece" or "BPE (SentencePiece model)".
  std::string encoder_name() const;
  // A model directory: tokenizer.json, else tokenizer.model. Throws naming the directory.
  static Tokenizer from_directory(const std::string& dir);
  // Merges written in the [a, b] array form; the post-processor template is what encode adds
  // (after tokenizer_config.json's add_bos_token / add_eos_token). A SentencePiece BPE model with
  // the identity normalizer gets transformers' Llama-2 layout; other SentencePiece models throw.
  std::string to_json() const;
  // Atomic (temp file + rename): tokenizer.json, or the .model bytes for SentencePiece.
  void save(const std::string& path) const;
  // "tokenizer.json" or "tokenizer.model": the file name save() should be given in a model dir.
  std::string file_name() const;
  // Writes a model directory's tokenizer files: file_name() (a SentencePiece model: also its
  // tokenizer.json form where it has one), tokenizer_config.json (bos/eos/pad/unk,
  // add_bos_token, add_eos_token, chat_template when known, the added tokens) and
  // special_tokens_map.json, from config() completed by what the tokenizer itself shows.
  void save_files(const std::string& dir) const;
  // config() with bos/eos/unk and add_bos_token/add_eos_token filled in where the files were silent.
  TokenizerConfig effective_config() const;

  // Ids of `text` (any bytes). add_special_tokens applies the post-processor template.
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Through the decoders (raw bytes for ByteLevel); unknown ids are an error.
  std::string decode(std::span<const int32_t> ids, bool skip_special_tokens = false) const;

  // Normalization and pre-tokenization only: the pieces BPE sees (raw bytes, prefix space
  // included), with added tokens as their content. Not for SentencePiece.
  std::vector<std::string> pre_tokenize(std::string_view text) const;

  // Tokens as spelled in the file (byte-level alphabet or '▁'; added tokens literally).
  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  // Number of ids: max id + 1 (HF get_vocab_size(with_added_tokens = true)).
  size_t vocab_size() const;
  const TokenizerData& data() const;

 private:
  std::shared_ptr<detail::Impl> impl_;
};

// tokenizer_config.json (and special_tokens_map.json for tokens it lacks) in `dir`; absent files
// give an empty config; malformed ones are errors naming the file and key.
TokenizerConfig read_tokenizer_config(const std::string& dir);

// Text with every maximal invalid UTF-8 subsequence replaced by U+FFFD (Python's
// errors="replace"); valid text is returned unchanged.
std::string replace_invalid_utf8(std::string_view s);
bool is_valid_utf8(std::string_view s);

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
