// Pre-tokenization for io/tokenizer.h: PCRE2 regexes, added-token matching, Split behaviors,
// the ByteLevel step and GPT-2's byte <-> unicode alphabet.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstring>

#include "lowbit/engine/error.h"
#include "lowbit/io/tokenizer_impl.h"

namespace lowbit::tok {

const char* const kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

PreTokenizerConfig PreTokenizerConfig::gpt2() { return PreTokenizerConfig{}; }

PreTokenizerConfig PreTokenizerConfig::llama3() {
  PreTokenizerConfig c;
  c.splits.push_back(SplitRule{kLlama3Regex, true, SplitBehavior::Isolated, false});
  c.byte_level_use_regex = false;
  return c;
}

namespace {

// GPT-2's table: bytes that are printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ') keep their
// code point; the remaining 68 get U+0100 + k in byte order.
struct ByteAlphabet {
  std::array<std::string, 256> to_unicode;
  std::unordered_map<uint32_t, uint8_t> to_byte;
  ByteAlphabet() {
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const uint32_t cp = keep ? b : next++;
      to_unicode[b] = detail::utf8_encode(cp);
      to_byte[cp] = uint8_t(b);
    }
  }
};

const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

struct MatchData {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* ctx = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchData() { md = pcre2_match_data_create(1, nullptr); }
  ~MatchData() {
    pcre2_match_data_free(md);
    if (ctx) pcre2_match_context_free(ctx);
    if (stack) pcre2_jit_stack_free(stack);
  }
  // A large JIT stack, made on first need (deep backtracking on huge inputs).
  pcre2_match_context* big_stack() {
    if (!ctx) {
      ctx = pcre2_match_context_create(nullptr);
      stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
      LOWBIT_CHECK(ctx && stack, "tokenizer: cannot allocate a PCRE2 JIT stack");
      pcre2_jit_stack_assign(ctx, nullptr, stack);
    }
    return ctx;
  }
};

MatchData& match_data() {
  thread_local MatchData m;
  return m;
}

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

using detail::next_cp;

const std::string& byte_to_unicode(uint8_t b) { return alphabet().to_unicode[b]; }

std::string bytes_to_unicode(std::string_view raw) {
  std::string s;
  s.reserve(raw.size() * 2);
  for (char c : raw) s += alphabet().to_unicode[uint8_t(c)];
  return s;
}

std::optional<std::string> unicode_to_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  const auto& map = alphabet().to_byte;
  for (size_t i = 0; i < token.size();) {
    uint32_t cp;
    size_t len;
    if (!next_cp(token, i, cp, len)) return std::nullopt;
    auto it = map.find(cp);
    if (it == map.end()) return std::nullopt;
    out += char(it->second);
    i += len;
  }
  return out;
}

namespace detail {

bool next_cp(std::string_view s, size_t i, uint32_t& cp, size_t& len) {
  const auto c = uint8_t(s[i]);
  len = 1;
  if (c < 0x80) {
    cp = c;
    return true;
  }
  size_t n;
  uint32_t min;
  if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return false;
  }
  if (i + n > s.size()) return false;
  for (size_t k = 1; k < n; ++k) {
    const auto d = uint8_t(s[i + k]);
    if ((d & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (d & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  len = n;
  return true;
}

std::string utf8_encode(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string where(const std::string& source) { return "tokenizer: " + source + ": "; }

Regex::Regex(std::string_view pattern, bool literal, const std::string& what) : what_(what) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
  opts |= literal ? PCRE2_LITERAL : PCRE2_UCP;  // LITERAL refuses UCP (it has no classes anyway)
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err,
                                   &offset, nullptr);
  LOWBIT_CHECK(code, what, ": cannot compile regex at offset ", offset, ": ", pcre2_message(err));
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

bool Regex::find(const char* s, size_t n, size_t from, size_t& begin, size_t& end) const {
  auto* code = static_cast<pcre2_code*>(code_);
  MatchData& m = match_data();
  const auto subject = reinterpret_cast<PCRE2_SPTR>(s);
  int rc = jit_ ? pcre2_jit_match(code, subject, n, from, 0, m.md, nullptr)
                : pcre2_match(code, subject, n, from, 0, m.md, nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_jit_match(code, subject, n, from, 0, m.md, m.big_stack());
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  LOWBIT_CHECK(rc >= 0, "tokenizer: ", what_, ": regex match failed: ", pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
  begin = ov[0];
  end = ov[1];
  return true;
}

bool Regex::matches_at(const char* s, size_t n, size_t at) const {
  auto* code = static_cast<pcre2_code*>(code_);
  MatchData& m = match_data();
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s), n, at, PCRE2_ANCHORED, m.md, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  LOWBIT_CHECK(rc >= 0, "tokenizer: ", what_, ": regex match failed: ", pcre2_message(rc));
  return true;
}

void Impl::build_pre_tokenizer() {
  const PreTokenizerConfig& pc = data.pre_tokenizer;
  for (size_t i = 0; i < pc.splits.size(); ++i) {
    const SplitRule& r = pc.splits[i];
    LOWBIT_CHECK(!r.pattern.empty(), where(source), "pre_tokenizer: split pattern ", i, " is empty");
    split_regex.push_back(std::make_unique<Regex>(r.pattern, !r.is_regex,
                                                  where(source) + "pre_tokenizer.pretokenizers[" + std::to_string(i) + "].pattern"));
  }
  if (pc.final_step == PreTokenizerConfig::Final::ByteLevel && pc.byte_level_use_regex)
    byte_level_regex = std::make_unique<Regex>(kGpt2Regex, false, "ByteLevel regex");
  if (pc.final_step == PreTokenizerConfig::Final::Metaspace) {
    uint32_t cp;
    size_t len;
    const std::string& rep = pc.metaspace_replacement;
    LOWBIT_CHECK(!rep.empty() && next_cp(rep, 0, cp, len) && len == rep.size(), where(source),
                 "pre_tokenizer.replacement: expected one character, got '", rep, "'");
    metaspace_regex = std::make_unique<Regex>(rep, true, "Metaspace replacement");
  }
  // The reference's \w and \s (Rust regex, Unicode): PCRE2's UCP \w would also take letter-like
  // numbers such as U+2460, so spell the Unicode definitions out (binary properties: PCRE2 10.40).
  word_char = std::make_unique<Regex>(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])", false, "word class");
  space_char = std::make_unique<Regex>(R"(\p{White_Space})", false, "space class");

  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& t = added[i];
    if (t.content.empty()) continue;
    AddedMatcher& m = t.normalized ? added_normalized : added_plain;
    m.tokens.push_back(int(i));
    m.by_byte[uint8_t(t.content[0])].push_back(int(i));
  }
  for (AddedMatcher* m : {&added_plain, &added_normalized})
    for (auto& v : m->by_byte)
      std::stable_sort(v.begin(), v.end(),
                       [&](int a, int b) { return added[a].content.size() > added[b].content.size(); });
}

namespace {

struct Span {
  size_t b, e;
  int32_t added;  // -1: text to pre-tokenize
};

// Start of the code point that ends at `end` (invalid bytes count as one each).
size_t prev_cp_start(std::string_view s, size_t end) {
  size_t k = end - 1;
  for (size_t back = 0; back < 3 && k > 0 && (uint8_t(s[k]) & 0xC0) == 0x80; ++back) --k;
  uint32_t cp;
  size_t len;
  if (next_cp(s, k, cp, len) && k + len == end) return k;
  return end - 1;
}

size_t cp_len(std::string_view s, size_t i) {
  uint32_t cp;
  size_t len;
  next_cp(s, i, cp, len);
  return len;
}

}  // namespace

// One HF AddedVocabulary pass over s[b, e): leftmost-longest matches, single_word matches
// that touch a word character are skipped, lstrip/rstrip widen the match over whitespace.
static void split_added(const Impl& im, const AddedMatcher& m, std::string_view s, size_t b, size_t e,
                        std::vector<Span>& out) {
  std::string_view piece = s.substr(b, e - b);
  const char* p = piece.data();
  const size_t n = piece.size();
  size_t start_offset = 0, i = 0;
  auto is_word_end = [&](size_t pos) {  // the code point before pos is \w
    return pos > 0 && im.word_char->matches_at(p, n, prev_cp_start(piece, pos));
  };
  while (i < n) {
    const auto& cands = m.by_byte[uint8_t(p[i])];
    int hit = -1;
    for (int t : cands) {
      const std::string& c = im.added[t].content;
      if (c.size() <= n - i && std::memcmp(p + i, c.data(), c.size()) == 0) {
        hit = t;
        break;
      }
    }
    if (hit < 0) {
      ++i;
      continue;
    }
    const AddedToken& tok = im.added[hit];
    size_t start = i, stop = i + tok.content.size();
    i = stop;
    if (tok.single_word) {
      const bool start_ok = start == 0 || !is_word_end(start);
      const bool stop_ok = stop == n || !im.word_char->matches_at(p, n, stop);
      if (!start_ok || !stop_ok) continue;
    }
    if (tok.lstrip) {
      size_t ns = start;
      while (ns > 0) {
        const size_t k = prev_cp_start(piece, ns);
        if (!im.space_char->matches_at(p, n, k)) break;
        ns = k;
      }
      start = std::max(ns, start_offset);
    }
    if (tok.rstrip) {
      while (stop < n && im.space_char->matches_at(p, n, stop)) stop += cp_len(piece, stop);
      i = std::max(i, stop);
    }
    if (start_offset < start) out.push_back({b + start_offset, b + start, -1});
    out.push_back({b + start, b + stop, tok.id});
    start_offset = stop;
  }
  if (start_offset < n) out.push_back({b + start_offset, b + n, -1});
}

namespace {

struct Part {
  size_t b, e;
  bool match;  // after the behavior: true means "remove"
};

// Cuts s at the matches of `re` with HF's SplitDelimiterBehavior (NormalizedString::split).
std::vector<Part> split_by(const Regex& re, std::string_view s, SplitBehavior behavior, bool invert) {
  // (begin, end, is_match) over the whole piece, as HF's find_matches builds them.
  std::vector<Part> parts;
  size_t from = 0, prev = 0, mb, me;
  while (from <= s.size() && re.find(s.data(), s.size(), from, mb, me)) {
    if (prev != mb) parts.push_back({prev, mb, false});
    parts.push_back({mb, me, true});
    prev = me;
    if (me > mb) {
      from = me;
    } else {
      if (mb >= s.size()) break;
      from = mb + cp_len(s, mb);
    }
  }
  if (prev != s.size()) parts.push_back({prev, s.size(), false});
  if (invert)
    for (Part& p : parts) p.match = !p.match;

  std::vector<Part> out;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (Part p : parts) out.push_back({p.b, p.e, false});
      break;
    case SplitBehavior::Removed:
      out = parts;
      break;
    case SplitBehavior::Contiguous:
      for (Part p : parts) {
        if (p.match == previous_match && !out.empty()) {
          out.back().e = p.e;
        } else {
          out.push_back({p.b, p.e, false});
        }
        previous_match = p.match;
      }
      break;
    case SplitBehavior::MergedWithPrevious:
      for (Part p : parts) {
        if (p.match && !previous_match && !out.empty()) {
          out.back().e = p.e;
        } else {
          out.push_back({p.b, p.e, false});
        }
        previous_match = p.match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->match && !previous_match && !out.empty()) {
          out.back().b = it->b;
        } else {
          out.push_back({it->b, it->e, false});
        }
        previous_match = it->match;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  return out;
}

// Runs the Split rules from `level` on, then the final step (ByteLevel, Metaspace or none).
struct PreTokenizer {
  const Impl& im;
  const std::function<void(std::string_view)>& emit;

  void byte_level(std::string_view s) const {
    std::string prefixed;
    if (im.data.pre_tokenizer.add_prefix_space && s[0] != ' ') {
      prefixed.reserve(s.size() + 1);
      prefixed += ' ';
      prefixed += s;
      s = prefixed;
    }
    if (!im.byte_level_regex) {
      emit(s);
      return;
    }
    // Isolated: matches and the gaps between them (bytes no regex item matches) in order.
    size_t from = 0, prev = 0, mb, me;
    while (from <= s.size() && im.byte_level_regex->find(s.data(), s.size(), from, mb, me)) {
      if (mb > prev) emit(s.substr(prev, mb - prev));
      if (me > mb) emit(s.substr(mb, me - mb));
      prev = me;
      if (me > mb) {
        from = me;
      } else {
        if (mb >= s.size()) break;
        from = mb + cp_len(s, mb);
      }
    }
    if (prev < s.size()) emit(s.substr(prev));
  }

  // HF Metaspace: ' ' -> replacement, the prefix by prepend_scheme ("first": only for the piece
  // that starts the input), then optionally split before each replacement (MergedWithNext).
  void metaspace(std::string_view s, bool at_input_start) const {
    const PreTokenizerConfig& pc = im.data.pre_tokenizer;
    const std::string& rep = pc.metaspace_replacement;
    std::string t;
    t.reserve(s.size() + rep.size() * 4);
    for (char c : s) {
      if (c == ' ') t += rep;
      else t += c;
    }
    const bool prepend = pc.prepend_scheme == PrependScheme::Always ||
                         (pc.prepend_scheme == PrependScheme::First && at_input_start);
    if (prepend && t.compare(0, rep.size(), rep) != 0) t.insert(0, rep);
    if (!pc.metaspace_split) {
      emit(t);
      return;
    }
    for (const Part& p : split_by(*im.metaspace_regex, t, SplitBehavior::MergedWithNext, false))
      if (p.e > p.b) emit(std::string_view(t).substr(p.b, p.e - p.b));
  }

  // `offset`: where s starts in its normalized piece; `piece_at_start`: that piece starts the input.
  void run(std::string_view s, size_t level, size_t offset, bool piece_at_start) const {
    if (s.empty()) return;
    if (level == im.split_regex.size()) {
      switch (im.data.pre_tokenizer.final_step) {
        case PreTokenizerConfig::Final::ByteLevel: byte_level(s); break;
        case PreTokenizerConfig::Final::Metaspace: metaspace(s, piece_at_start && offset == 0); break;
        case PreTokenizerConfig::Final::None: emit(s); break;
      }
      return;
    }
    const SplitRule& rule = im.data.pre_tokenizer.splits[level];
    for (const Part& p : split_by(*im.split_regex[level], s, rule.behavior, rule.invert))
      if (!p.match && p.e > p.b) run(s.substr(p.b, p.e - p.b), level + 1, offset + p.b, piece_at_start);
  }
};

}  // namespace

void Impl::pre_tokenize(std::string_view text, const std::function<void(std::string_view)>& on_word,
                        const std::function<void(int32_t)>& on_added) const {
  std::string clean;
  if (sanitize && !is_valid_utf8(text)) {
    clean = replace_invalid_utf8(text);
    text = clean;
  }
  std::vector<Span> spans;
  if (added_plain.empty()) {
    spans.push_back({0, text.size(), -1});
  } else {
    split_added(*this, added_plain, text, 0, text.size(), spans);
  }
  PreTokenizer pt{*this, on_word};
  std::string normalized;
  std::vector<Span> inner;
  for (const Span& sp : spans) {
    if (sp.added >= 0) {
      on_added(sp.added);
      continue;
    }
    // Normalize the piece, then cut the normalized added tokens out of it.
    std::string_view piece = text.substr(sp.b, sp.e - sp.b);
    if (!data.normalizers.empty()) {
      normalized.assign(piece);
      normalize(normalized);
      piece = normalized;
    }
    inner.clear();
    if (added_normalized.empty()) {
      inner.push_back({0, piece.size(), -1});
    } else {
      split_added(*this, added_normalized, piece, 0, piece.size(), inner);
    }
    for (const Span& in : inner) {
      if (in.added >= 0) {
        on_added(in.added);
      } else {
        pt.run(piece.substr(in.b, in.e - in.b), 0, in.b, sp.b == 0);
      }
    }
  }
}

}  // namespace detail
}  // namespace lowbit::tok
