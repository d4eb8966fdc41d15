// BPE model of io/tokenizer.h: vocabulary and merge-rank tables, the per-word merge loop and
// its cache, encode/decode, and the trainer.
#include <algorithm>
#include <climits>
#include <cstdio>
#include <mutex>
#include <queue>
#include <unordered_set>

#include "lowbit/engine/error.h"
#include "lowbit/io/tokenizer_impl.h"

namespace lowbit::tok {
namespace detail {

namespace {
constexpr int32_t kMaxId = 1 << 24;          // ids must be below this (memory is per id)
constexpr size_t kCacheEntries = 1 << 16;    // words cached per tokenizer
constexpr size_t kCacheMaxWordBytes = 256;   // longer words are not cached
constexpr size_t kQuadraticMaxSymbols = 48;  // longer words use the heap merge loop
}  // namespace

void MergeTable::build(const std::vector<Entry>& entries) {
  size_t cap = 16;
  while (cap < entries.size() * 2) cap *= 2;
  slots_.assign(cap, Entry{});
  mask_ = cap - 1;
  for (const Entry& e : entries) {
    size_t i = hash(e.key) & mask_;
    while (slots_[i].key != kEmpty && slots_[i].key != e.key) i = (i + 1) & mask_;
    slots_[i] = e;  // a repeated pair keeps its last rank, as the reference does
  }
}

void Impl::build_model() {
  const std::string w = where(source);
  int32_t max_id = -1;
  for (const auto& [tok, id] : data.vocab) {
    LOWBIT_CHECK(id >= 0 && id < kMaxId, w, "model.vocab: id ", id, " of '", tok, "' is out of range [0, ", kMaxId, ")");
    max_id = std::max(max_id, id);
  }
  for (const AddedToken& t : added) {
    LOWBIT_CHECK(t.id >= 0 && t.id < kMaxId, w, "added_tokens: id ", t.id, " of '", t.content, "' is out of range");
    LOWBIT_CHECK(!t.content.empty(), w, "added_tokens: token with id ", t.id, " has empty content");
    max_id = std::max(max_id, t.id);
  }
  const size_t n = size_t(max_id + 1);
  id_text.assign(n, {});
  id_raw.assign(n, {});
  id_kind.assign(n, 0);
  for (const auto& [tok, id] : data.vocab) {
    LOWBIT_CHECK(id_kind[id] == 0, w, "model.vocab: id ", id, " is given to both '", id_text[id], "' and '", tok, "'");
    LOWBIT_CHECK(file_vocab.emplace(tok, id).second, w, "model.vocab: token '", tok, "' appears twice");
    id_text[id] = tok;
    id_kind[id] = 1;
    // The ByteLevel decoder's rule: tokens outside the byte alphabet decode to their UTF-8.
    if (!byte_level) {
      id_raw[id] = tok;
    } else if (auto raw = unicode_to_bytes(tok)) {
      raw_vocab.emplace(*raw, id);
      id_raw[id] = std::move(*raw);
    } else {
      id_raw[id] = tok;
    }
  }
  byte_id.assign(256, -1);
  byte_fallback_id.assign(256, -1);
  for (int b = 0; b < 256; ++b) {
    auto it = raw_vocab.find(std::string(1, char(b)));
    if (it != raw_vocab.end()) byte_id[b] = it->second;
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    if (auto f = file_vocab.find(std::string_view(name)); f != file_vocab.end()) byte_fallback_id[b] = f->second;
  }
  LOWBIT_CHECK(!data.byte_fallback || !byte_level, w,
               "model.byte_fallback: not supported together with the ByteLevel pre-tokenizer");
  // SentencePiece-style vocabularies: when '▁' is a token and no token holds a '▁' after another
  // character, no merge can join the text before a '▁' with it, so BPE may run (and cache) per
  // piece starting at such a '▁' with the same result as on the whole pre-token.
  if (!byte_level) {
    constexpr std::string_view kSpace = "\xE2\x96\x81";
    split_at_metaspace = file_vocab.count(kSpace) > 0;
    for (const auto& [tok, id] : data.vocab) {
      size_t lead = 0;
      while (tok.compare(lead, kSpace.size(), kSpace) == 0) lead += kSpace.size();
      if (tok.find(kSpace, lead) != std::string::npos) split_at_metaspace = false;
    }
  }
  if (data.unk_token) {
    auto it = file_vocab.find(*data.unk_token);
    LOWBIT_CHECK(it != file_vocab.end(), w, "model.unk_token: '", *data.unk_token, "' is not in model.vocab");
    unk_id = it->second;
  }

  std::vector<MergeTable::Entry> entries;
  entries.reserve(data.merges.size());
  std::string joined;
  for (size_t r = 0; r < data.merges.size(); ++r) {
    const auto& [a, b] = data.merges[r];
    auto ia = file_vocab.find(a);
    LOWBIT_CHECK(ia != file_vocab.end(), w, "model.merges[", r, "]: '", a, "' is not in model.vocab");
    auto ib = file_vocab.find(b);
    LOWBIT_CHECK(ib != file_vocab.end(), w, "model.merges[", r, "]: '", b, "' is not in model.vocab");
    joined = a + b;
    auto ij = file_vocab.find(joined);
    LOWBIT_CHECK(ij != file_vocab.end(), w, "model.merges[", r, "]: the merged token '", joined,
                 "' is not in model.vocab");
    MergeTable::Entry e;
    e.key = (uint64_t(uint32_t(ia->second)) << 32) | uint32_t(ib->second);
    e.rank = int32_t(r);
    e.id = ij->second;
    entries.push_back(e);
  }
  merges.build(entries);

  std::unordered_set<std::string> seen;
  for (const AddedToken& t : added) {
    LOWBIT_CHECK(seen.insert(t.content).second, w, "added_tokens: '", t.content, "' appears twice");
    auto it = file_vocab.find(t.content);
    LOWBIT_CHECK(it == file_vocab.end() || it->second == t.id, w, "added_tokens: '", t.content, "' has id ", t.id,
                 " but model.vocab gives it id ", it->second);
    LOWBIT_CHECK(id_kind[t.id] != 1 || id_text[t.id] == t.content, w, "added_tokens: id ", t.id, " of '", t.content,
                 "' belongs to model token '", id_text[t.id], "'");
    LOWBIT_CHECK(id_kind[t.id] < 2, w, "added_tokens: id ", t.id, " is used twice");
    id_text[t.id] = t.content;
    auto raw = unicode_to_bytes(t.content);
    id_raw[t.id] = raw ? *raw : t.content;
    id_kind[t.id] = t.special ? 3 : 2;
  }
}

void Impl::build_post_processor() {
  const PostProcessorConfig& pp = data.post_processor;
  if (!pp.has_template) return;
  const std::string w = where(source) + "post_processor.TemplateProcessing: ";
  int sequences = 0;
  for (const TemplatePiece& p : pp.single) {
    if (!p.is_special) {
      LOWBIT_CHECK(p.id == "A", w, "single: sequence '", p.id, "' (only $A is allowed in the single template)");
      ++sequences;
      continue;
    }
    const TemplateSpecial* sp = nullptr;
    for (const TemplateSpecial& s : pp.specials)
      if (s.name == p.id) sp = &s;
    LOWBIT_CHECK(sp, w, "single: special token '", p.id, "' is not in special_tokens");
    for (int32_t id : sp->ids) {
      LOWBIT_CHECK(id >= 0 && size_t(id) < id_kind.size() && id_kind[id] != 0, w, "special_tokens['", sp->name,
                   "']: id ", id, " is not in the vocabulary");
      (sequences == 0 ? template_prefix : template_suffix).push_back(id);
    }
  }
  LOWBIT_CHECK(sequences == 1, w, "single: expected exactly one $A, found ", sequences);
}

void Impl::bpe(std::string_view word, std::vector<int32_t>& out) const {
  if (data.ignore_merges) {
    const auto& vocab = byte_level ? raw_vocab : file_vocab;
    auto it = vocab.find(word);
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> syms;
  syms.reserve(word.size());
  bool last_unk = false;
  auto unknown = [&] {  // without an unk token the reference drops the symbol: so do we
    if (unk_id < 0) return;
    if (!(data.fuse_unk && last_unk)) syms.push_back(unk_id);
    last_unk = true;
  };
  if (byte_level) {
    for (char c : word) {
      const int32_t id = byte_id[uint8_t(c)];
      if (id >= 0) {
        syms.push_back(id);
        last_unk = false;
      } else {
        unknown();
      }
    }
  } else {
    for (size_t i = 0; i < word.size();) {
      uint32_t cp;
      size_t len;
      next_cp(word, i, cp, len);
      const std::string_view ch = word.substr(i, len);
      i += len;
      if (auto it = file_vocab.find(ch); it != file_vocab.end()) {
        syms.push_back(it->second);
        last_unk = false;
        continue;
      }
      if (data.byte_fallback) {
        bool all = true;
        for (char c : ch) all &= byte_fallback_id[uint8_t(c)] >= 0;
        if (all) {
          for (char c : ch) syms.push_back(byte_fallback_id[uint8_t(c)]);
          last_unk = false;
          continue;
        }
      }
      unknown();
    }
  }
  if (syms.size() <= kQuadraticMaxSymbols) {
    // Merge the lowest-ranked adjacent pair, leftmost first, until none is left.
    while (syms.size() >= 2) {
      int32_t best_rank = INT32_MAX, best_id = -1;
      size_t best_i = 0;
      for (size_t i = 0; i + 1 < syms.size(); ++i) {
        const MergeTable::Entry* e = merges.find(syms[i], syms[i + 1]);
        if (e && e->rank < best_rank) {
          best_rank = e->rank;
          best_id = e->id;
          best_i = i;
        }
      }
      if (best_id < 0) break;
      syms[best_i] = best_id;
      syms.erase(syms.begin() + best_i + 1);
    }
    out.insert(out.end(), syms.begin(), syms.end());
    return;
  }
  // Same order with a heap of (rank, position) over a linked list of symbols.
  const int n = int(syms.size());
  std::vector<int> next(n), prev(n);
  for (int i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  using Item = std::pair<int32_t, int>;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap;
  auto push = [&](int i) {
    if (i < 0 || next[i] < 0) return;
    if (const MergeTable::Entry* e = merges.find(syms[i], syms[next[i]])) heap.push({e->rank, i});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const auto [rank, i] = heap.top();
    heap.pop();
    if (syms[i] < 0 || next[i] < 0) continue;
    const MergeTable::Entry* e = merges.find(syms[i], syms[next[i]]);
    if (!e || e->rank != rank) continue;  // stale: the pair at i changed
    const int j = next[i];
    syms[i] = e->id;
    syms[j] = -1;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    push(prev[i]);
    push(i);
  }
  for (int i = 0; i >= 0; i = next[i]) out.push_back(syms[i]);
}

void Impl::encode_text(std::string_view text, std::vector<int32_t>& out) const {
  pre_tokenize(
      text, [&](std::string_view w) { encode_word(w, out); }, [&](int32_t id) { out.push_back(id); });
}

void Impl::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (!split_at_metaspace) {
    encode_cached(word, out);
    return;
  }
  // Pieces that start at a '▁' after another character: no merge crosses their boundaries.
  constexpr std::string_view kSpace = "\xE2\x96\x81";
  size_t begin = 0;
  for (size_t at = word.find(kSpace, 1); at != std::string_view::npos; at = word.find(kSpace, at + kSpace.size())) {
    if (at >= kSpace.size() && word.compare(at - kSpace.size(), kSpace.size(), kSpace) == 0) continue;
    if (at > begin) encode_cached(word.substr(begin, at - begin), out);
    begin = at;
  }
  encode_cached(word.substr(begin), out);
}

void Impl::encode_cached(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > kCacheMaxWordBytes) {
    bpe(word, out);
    return;
  }
  {
    std::shared_lock lock(cache_mutex);
    auto it = cache.find(word);
    if (it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  bpe(word, out);
  std::unique_lock lock(cache_mutex);
  if (cache.size() < kCacheEntries) cache.emplace(std::string(word), std::vector<int32_t>(out.begin() + start, out.end()));
}

}  // namespace detail

using detail::Impl;

Tokenizer::Tokenizer(TokenizerData data, std::string source)
    : impl_(std::make_shared<Impl>(std::move(data), std::move(source))) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(const Tokenizer&) = default;
Tokenizer& Tokenizer::operator=(const Tokenizer&) = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  if (add_special_tokens) out = im.template_prefix;
  if (im.sp) {
    im.sp_encode(text, out);
    if (add_special_tokens) out.insert(out.end(), im.template_suffix.begin(), im.template_suffix.end());
    return out;
  }
  im.encode_text(text, out);
  if (add_special_tokens) out.insert(out.end(), im.template_suffix.begin(), im.template_suffix.end());
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  const Impl& im = *impl_;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    LOWBIT_CHECK(id >= 0 && size_t(id) < im.id_kind.size() && im.id_kind[id] != 0, detail::where(im.source),
                 "decode: id ", id, " at position ", i, " is not in the vocabulary");
  }
  if (im.sp) return im.sp_decode(ids, skip_special_tokens);
  std::string out;
  if (im.byte_level) {
    for (int32_t id : ids)
      if (!(skip_special_tokens && im.id_kind[id] == 3)) out += im.id_raw[id];
    return out;
  }
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids)
    if (!(skip_special_tokens && im.id_kind[id] == 3)) tokens.push_back(im.id_text[id]);
  return im.decode_tokens(std::move(tokens));
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  LOWBIT_CHECK(!impl_->sp, detail::where(impl_->source), "pre_tokenize: not available for a SentencePiece model");
  std::vector<std::string> out;
  impl_->pre_tokenize(
      text, [&](std::string_view w) { out.emplace_back(w); },
      [&](int32_t id) { out.push_back(impl_->id_text[id]); });
  return out;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const int32_t id = impl_->lookup(token);
  return id < 0 ? std::nullopt : std::optional<int32_t>(id);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_kind.size() || impl_->id_kind[id] == 0) return std::nullopt;
  return impl_->id_text[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->id_kind.size() && impl_->id_kind[id] == 3;
}

size_t Tokenizer::vocab_size() const { return impl_->id_kind.size(); }

const TokenizerData& Tokenizer::data() const { return impl_->data; }

// ---------------------------------------------------------------------------------------------
// Trainer.

namespace {

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

struct HeapItem {
  int64_t count;
  uint64_t pair;
  // Max-heap: larger count first, then the smaller (left, right) pair.
  bool operator<(const HeapItem& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};

}  // namespace

Tokenizer train_bpe(std::span<const std::string> texts, const BpeTrainerOptions& options) {
  const std::string source = "<trainer>";
  const size_t n_special = options.special_tokens.size();
  LOWBIT_CHECK(options.vocab_size >= 256 + n_special, "tokenizer: train_bpe: vocab_size ", options.vocab_size,
               " is smaller than the 256 byte tokens plus ", n_special, " special tokens");

  // Byte tokens, and the specials (temporarily numbered after them) so they are cut out.
  TokenizerData base;
  base.pre_tokenizer = options.pre_tokenizer;
  for (int b = 0; b < 256; ++b) base.vocab.emplace_back(byte_to_unicode(uint8_t(b)), b);
  for (size_t i = 0; i < n_special; ++i) {
    AddedToken t;
    t.id = int32_t(256 + i);
    t.content = options.special_tokens[i];
    base.added_tokens.push_back(t);
  }
  const Impl cutter(base, source);

  std::unordered_map<std::string, int64_t> word_counts;
  for (const std::string& text : texts)
    cutter.pre_tokenize(
        text, [&](std::string_view w) { ++word_counts[std::string(w)]; }, [](int32_t) {});

  std::vector<std::vector<int32_t>> words;
  std::vector<int64_t> freq;
  words.reserve(word_counts.size());
  for (const auto& [w, c] : word_counts) {
    std::vector<int32_t> s(w.size());
    for (size_t i = 0; i < w.size(); ++i) s[i] = uint8_t(w[i]);
    words.push_back(std::move(s));
    freq.push_back(c);
  }

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<uint32_t>> pair_words;
  for (uint32_t wi = 0; wi < words.size(); ++wi) {
    const auto& s = words[wi];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += freq[wi];
      pair_words[k].push_back(wi);
    }
  }
  std::priority_queue<HeapItem> heap;
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  std::vector<std::string> tokens(256);  // raw bytes by id
  for (int b = 0; b < 256; ++b) tokens[b] = std::string(1, char(b));
  std::unordered_map<std::string, int32_t> token_ids;
  for (int b = 0; b < 256; ++b) token_ids[tokens[b]] = b;
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<uint32_t> stamp(words.size(), 0);
  const int64_t min_count = int64_t(std::max<size_t>(options.min_frequency, 1));

  for (uint32_t step = 1; tokens.size() + n_special < options.vocab_size && !heap.empty(); ++step) {
    const HeapItem top = heap.top();
    heap.pop();
    auto pc = pair_count.find(top.pair);
    const int64_t current = pc == pair_count.end() ? 0 : pc->second;
    if (current != top.count) {  // stale entry: counts only fall, so re-queue the true count
      if (current >= min_count) heap.push({current, top.pair});
      --step;
      continue;
    }
    if (current < min_count) break;
    const int32_t a = int32_t(top.pair >> 32), b = int32_t(top.pair & 0xFFFFFFFFu);
    std::string joined = tokens[a] + tokens[b];
    int32_t merged;
    if (auto it = token_ids.find(joined); it != token_ids.end()) {
      merged = it->second;  // (ab, c) and (a, bc) both spell "abc": one token, two merges
    } else {
      merged = int32_t(tokens.size());
      token_ids.emplace(joined, merged);
      tokens.push_back(std::move(joined));
    }
    merges.emplace_back(a, b);

    std::vector<uint64_t> touched;
    const std::vector<uint32_t> affected = std::move(pair_words[top.pair]);
    pair_words.erase(top.pair);
    for (uint32_t wi : affected) {
      if (stamp[wi] == step) continue;
      stamp[wi] = step;
      std::vector<int32_t>& s = words[wi];
      bool has = false;
      for (size_t i = 0; i + 1 < s.size() && !has; ++i) has = s[i] == a && s[i + 1] == b;
      if (!has) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) pair_count[pair_key(s[i], s[i + 1])] -= freq[wi];
      std::vector<int32_t> t;
      t.reserve(s.size());
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          t.push_back(merged);
          ++i;
        } else {
          t.push_back(s[i]);
        }
      }
      s.swap(t);
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        pair_count[k] += freq[wi];
        if (s[i] == merged || s[i + 1] == merged) {
          pair_words[k].push_back(wi);
          touched.push_back(k);
        }
      }
    }
    pair_count.erase(top.pair);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched)
      if (pair_count[k] >= min_count) heap.push({pair_count[k], k});
  }

  TokenizerData data;
  data.pre_tokenizer = options.pre_tokenizer;
  data.ignore_merges = options.ignore_merges;
  data.post_processor.has_byte_level = true;
  for (size_t id = 0; id < tokens.size(); ++id) data.vocab.emplace_back(bytes_to_unicode(tokens[id]), int32_t(id));
  for (const auto& [a, b] : merges) data.merges.emplace_back(bytes_to_unicode(tokens[a]), bytes_to_unicode(tokens[b]));
  int32_t next_id = int32_t(tokens.size());
  for (const std::string& s : options.special_tokens) {
    AddedToken t;
    t.content = s;
    auto raw = unicode_to_bytes(s);
    auto it = raw ? token_ids.find(*raw) : token_ids.end();
    t.id = (it != token_ids.end() && bytes_to_unicode(it->first) == s) ? it->second : next_id++;
    data.added_tokens.push_back(t);
  }
  return Tokenizer(std::move(data), source);
}

}  // namespace lowbit::tok
