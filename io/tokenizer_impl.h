// Internals of io/tokenizer.h shared by its translation units (pre-tokenization with PCRE2 in
// tokenizer_pretok.cpp, normalizers and decoders in tokenizer_normalize.cpp, BPE and the trainer
// in tokenizer_bpe.cpp, tokenizer.json in tokenizer_json.cpp, SentencePiece models in
// tokenizer_sentencepiece.cpp). Not part of the public API.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lowbit/io/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace lowbit::tok::detail {

// A compiled PCRE2 pattern (UTF + UCP + MATCH_INVALID_UTF, JIT when available). Immutable
// after construction and safe to share between threads: match data is per thread.
class Regex {
 public:
  // `what` names the pattern's origin in error messages (file and JSON key).
  Regex(std::string_view pattern, bool literal, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Leftmost match in s[from, n); false when none. Lookarounds see all of s[0, n).
  bool find(const char* s, size_t n, size_t from, size_t& begin, size_t& end) const;
  // Whether the pattern matches at exactly s[at, ...) (anchored).
  bool matches_at(const char* s, size_t n, size_t at) const;

 private:
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
  std::string what_;
};

// Open-addressing map (left id, right id) -> (rank, merged id). Built once, read-only.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t id = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  void build(const std::vector<Entry>& entries);
  const Entry* find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
    size_t i = hash(key) & mask_;
    while (true) {
      const Entry& e = slots_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
      i = (i + 1) & mask_;
    }
  }

 private:
  // splitmix64's finalizer: every key bit reaches the low bits the mask keeps.
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return size_t(k);
  }
  std::vector<Entry> slots_;
  size_t mask_ = 0;
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A set of added tokens matched leftmost-longest (one HF matching pass).
struct AddedMatcher {
  std::vector<int> tokens;                    // indices into Impl::added
  std::array<std::vector<int>, 256> by_byte;  // candidates by first byte, longest first
  bool empty() const { return tokens.empty(); }
};

struct Impl {
  std::string source;
  TokenizerData data;
  bool byte_level = true;  // ByteLevel pre-tokenizer: BPE symbols are bytes, else code points
  bool sanitize = false;   // replace invalid UTF-8 by U+FFFD before encoding

  // SentencePiece models: loaded and decoded by libsentencepiece; encoded by sp_bpe when set
  // (tokenizer_sentencepiece.cpp), else by libsentencepiece.
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp;
  std::unique_ptr<Impl> sp_bpe;

  // Normalizers: a compiled regex per Replace step with a regex pattern (else null).
  std::vector<std::unique_ptr<Regex>> normalizer_regex;

  // Model.
  std::vector<int32_t> byte_id;           // 256 entries, -1 when the byte's token is missing
  std::vector<int32_t> byte_fallback_id;  // 256 entries: the <0xXX> tokens, -1 when missing
  MergeTable merges;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> raw_vocab;  // raw bytes -> id
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> file_vocab;  // file spelling -> id
  int32_t unk_id = -1;
  bool split_at_metaspace = false;  // see build_model

  // Ids.
  std::vector<std::string> id_text;  // file spelling (added: content); empty for holes
  std::vector<std::string> id_raw;   // bytes decode emits
  std::vector<uint8_t> id_kind;      // 0 hole, 1 model, 2 added non-special, 3 special

  // Pre-tokenization.
  std::vector<AddedToken> added;
  AddedMatcher added_plain, added_normalized;  // non-normalized first, as HF does
  std::vector<std::unique_ptr<Regex>> split_regex;
  std::unique_ptr<Regex> byte_level_regex;
  std::unique_ptr<Regex> metaspace_regex;  // the replacement character, literally
  std::unique_ptr<Regex> word_char, space_char;  // \w and \s for single_word / lstrip / rstrip

  // Post-processing: ids around the sequence of the "single" template.
  std::vector<int32_t> template_prefix, template_suffix;

  // Per-word cache (raw bytes -> ids), bounded.
  mutable std::shared_mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache;

  Impl(TokenizerData d, std::string src);
  ~Impl();

  // The normalizers, in order, on valid UTF-8.
  void normalize(std::string& s) const;
  // The decoder chain on token strings (not ByteLevel, which decode handles as raw bytes).
  std::string decode_tokens(std::vector<std::string> tokens) const;

  // Calls on_word(bytes) for every pre-token BPE sees and on_added(id) for every added token,
  // in input order.
  void pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& on_word,
                    const std::function<void(int32_t)>& on_added) const;
  // BPE of one pre-token, appended to out (uses the cache).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_cached(std::string_view word, std::vector<int32_t>& out) const;
  void bpe(std::string_view word, std::vector<int32_t>& out) const;
  void sp_encode(std::string_view text, std::vector<int32_t>& out) const;
  // Normalization, pre-tokenization and BPE of text, appended to out (no template ids).
  void encode_text(std::string_view text, std::vector<int32_t>& out) const;
  std::string sp_decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

 private:
  void build_model();
  void build_pre_tokenizer();
  void build_post_processor();
  void build_normalizers_and_decoders();
  void build_sentencepiece();
  void build_sentencepiece_bpe();
  void apply_config();

 public:
  // The id of a token as spelled in the file (added tokens first); -1 when none.
  int32_t lookup(std::string_view token) const;
  // The first of names the vocabulary has.
  std::optional<std::string> known_token(std::initializer_list<const char*> names) const;
  // The tokenizer.json form of this tokenizer: data, with a post-processor template that adds
  // what encode adds; for a SentencePiece model with the BPE path, its Llama-2 layout.
  TokenizerData json_data() const;
};

// Well-known bos / eos tokens, in order of preference.
inline constexpr std::initializer_list<const char*> kBosNames = {"<|begin_of_text|>", "<s>", "<|startoftext|>"};
inline constexpr std::initializer_list<const char*> kEosNames = {"<|end_of_text|>", "<|endoftext|>", "</s>", "<|im_end|>",
                                                                 "<|eot_id|>"};

TokenizerData read_tokenizer_json(std::string_view json_text, const std::string& source);

// Next code point of valid UTF-8 at s[i]; false (and len 1) on an invalid sequence.
bool next_cp(std::string_view s, size_t i, uint32_t& cp, size_t& len);
std::string utf8_encode(uint32_t cp);

// "tokenizer: <source>: " prefix for errors.
std::string where(const std::string& source);

}  // namespace lowbit::tok::detail
