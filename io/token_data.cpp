#include "lowbit/io/token_data.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <random>

#include "lowbit/engine/error.h"
#include "lowbit/io/crc32c.h"
#include "lowbit/io/file_io.h"

namespace lowbit::io {

static_assert(std::endian::native == std::endian::little, "token shards are little-endian");

namespace {

constexpr char kMagic[8] = {'L', 'B', 'T', 'O', 'K', 'E', 'N', 'S'};
constexpr uint32_t kTextVersion = 1;
constexpr uint32_t kChatVersion = 2;
constexpr uint32_t kFlagChat = 1;

uint64_t align8(uint64_t n) { return (n + 7) / 8 * 8; }

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

template <class T>
void store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

uint32_t read_token(const uint8_t* data, uint32_t token_bytes, uint64_t i) {
  return token_bytes == 2 ? load<uint16_t>(data + 2 * i) : load<uint32_t>(data + 4 * i);
}

}  // namespace

TokenShardHeader parse_token_shard_header(const uint8_t* b, size_t file_size, const std::string& path) {
  const std::string where = "token shard " + path + ": ";
  LOWBIT_CHECK(file_size >= kTokenShardHeaderBytes, where, "file is ", file_size, " bytes, shorter than the ",
               kTokenShardHeaderBytes, "-byte header");
  LOWBIT_CHECK(std::memcmp(b, kMagic, 8) == 0, where, "bad magic (not a lowbit token shard)");
  const uint32_t version = load<uint32_t>(b + 8);
  const uint32_t crc = version >= kChatVersion ? crc32c(b + 48, 16, crc32c(b, 44)) : crc32c(b, 44);
  LOWBIT_CHECK(load<uint32_t>(b + 44) == crc, where, "header checksum mismatch (corrupted header)");
  LOWBIT_CHECK(version == kTextVersion || version == kChatVersion, where, "unsupported version ", version,
               " (this build reads ", kTextVersion, " and ", kChatVersion, ")");
  TokenShardHeader h;
  if (version == kChatVersion) {
    const uint32_t flags = load<uint32_t>(b + 48);
    LOWBIT_CHECK(flags == kFlagChat, where, "unknown flags ", flags, " (this build knows the chat flag 1 only)");
    h.chat = true;
  }
  h.token_bytes = load<uint32_t>(b + 12);
  h.num_tokens = load<uint64_t>(b + 16);
  h.num_documents = load<uint64_t>(b + 24);
  h.vocab_size = load<uint32_t>(b + 32);
  h.eos_id = load<uint32_t>(b + 36);
  LOWBIT_CHECK(h.token_bytes == 2 || h.token_bytes == 4, where, "token_bytes must be 2 or 4, got ", h.token_bytes);
  LOWBIT_CHECK(h.vocab_size > 0 && (h.token_bytes == 4 || h.vocab_size <= 65536), where, "vocab_size ",
               h.vocab_size, " does not fit ", h.token_bytes, "-byte tokens");
  LOWBIT_CHECK(h.eos_id < h.vocab_size, where, "eos_id ", h.eos_id, " >= vocab_size ", h.vocab_size);
  LOWBIT_CHECK(h.num_documents <= h.num_tokens, where, "num_documents ", h.num_documents, " > num_tokens ",
               h.num_tokens);
  const uint64_t data_bytes = file_size - kTokenShardHeaderBytes;
  if (!h.chat) {
    LOWBIT_CHECK(h.num_tokens <= data_bytes / h.token_bytes && h.num_tokens * h.token_bytes == data_bytes, where,
                 "header says ", h.num_tokens, " tokens of ", h.token_bytes, " bytes but the file holds ", data_bytes,
                 " data bytes");
    return h;
  }
  // Chat: tokens, padding, offsets, mask; every count bounded by the file size before multiplying.
  const bool fits = h.num_tokens <= data_bytes / (h.token_bytes + 1) && h.num_documents < data_bytes / 8;
  LOWBIT_CHECK(fits && align8(h.num_tokens * h.token_bytes) + 8 * (h.num_documents + 1) + h.num_tokens == data_bytes,
               where, "header says ", h.num_tokens, " tokens and ", h.num_documents,
               " examples but the file holds ", data_bytes, " data bytes");
  return h;
}

// ---------------------------------------------------------------------------------------------

TokenShardWriter::TokenShardWriter(std::string path, uint32_t vocab_size, uint32_t eos_id, bool chat)
    : path_(std::move(path)), vocab_(vocab_size), eos_(eos_id), token_bytes_(vocab_size <= 65536 ? 2 : 4), chat_(chat) {
  LOWBIT_CHECK(vocab_size > 0 && eos_id < vocab_size, "token shard ", path_, ": eos_id ", eos_id,
               " must be < vocab_size ", vocab_size);
}

TokenShardWriter::~TokenShardWriter() = default;

void TokenShardWriter::append_tokens(const std::vector<uint32_t>& tokens) {
  for (uint32_t t : tokens)
    LOWBIT_CHECK(t < vocab_, "token shard ", path_, ": token id ", t, " >= vocab_size ", vocab_);
  const size_t old = data_.size();
  data_.resize(old + tokens.size() * token_bytes_);
  uint8_t* p = data_.data() + old;
  for (uint32_t t : tokens) {
    if (token_bytes_ == 2) store<uint16_t>(p, static_cast<uint16_t>(t));
    else store<uint32_t>(p, t);
    p += token_bytes_;
  }
  num_tokens_ += tokens.size();
}

void TokenShardWriter::add_document(const std::vector<uint32_t>& tokens) {
  LOWBIT_CHECK(!closed_, "token shard ", path_, ": add_document after close");
  LOWBIT_CHECK(!chat_, "token shard ", path_, ": add_document on a chat shard (use add_example)");
  append_tokens(tokens);  // checks every id before it writes any
  append_tokens({eos_});
  ++num_docs_;
}

void TokenShardWriter::add_example(const std::vector<uint32_t>& tokens, const std::vector<uint8_t>& mask) {
  LOWBIT_CHECK(!closed_, "token shard ", path_, ": add_example after close");
  LOWBIT_CHECK(chat_, "token shard ", path_, ": add_example on a text shard (use add_document)");
  LOWBIT_CHECK(mask.size() == tokens.size(), "token shard ", path_, ": mask of ", mask.size(), " entries for ",
               tokens.size(), " tokens");
  for (uint8_t m : mask) LOWBIT_CHECK(m <= 1, "token shard ", path_, ": mask entries must be 0 or 1, got ", int(m));
  append_tokens(tokens);
  mask_.insert(mask_.end(), mask.begin(), mask.end());
  offsets_.push_back(num_tokens_);
  ++num_docs_;
}

void TokenShardWriter::close() {
  LOWBIT_CHECK(!closed_, "token shard ", path_, ": closed twice");
  if (chat_) {
    data_.resize(align8(data_.size()), 0);
    const size_t at = data_.size();
    data_.resize(at + 8 * offsets_.size());
    for (size_t i = 0; i < offsets_.size(); ++i) store<uint64_t>(data_.data() + at + 8 * i, offsets_[i]);
    data_.insert(data_.end(), mask_.begin(), mask_.end());
  }
  uint8_t h[kTokenShardHeaderBytes] = {};
  std::memcpy(h, kMagic, 8);
  store<uint32_t>(h + 8, chat_ ? kChatVersion : kTextVersion);
  store<uint32_t>(h + 12, token_bytes_);
  store<uint64_t>(h + 16, num_tokens_);
  store<uint64_t>(h + 24, num_docs_);
  store<uint32_t>(h + 32, vocab_);
  store<uint32_t>(h + 36, eos_);
  store<uint32_t>(h + 40, crc32c(data_.data(), data_.size()));
  if (chat_) store<uint32_t>(h + 48, kFlagChat);
  store<uint32_t>(h + 44, chat_ ? crc32c(h + 48, 16, crc32c(h, 44)) : crc32c(h, 44));
  AtomicFile f(path_, "token shard");
  f.write(h, sizeof h);
  f.write(data_.data(), data_.size());
  f.commit();
  closed_ = true;
  data_.clear();
  data_.shrink_to_fit();
  mask_.clear();
  offsets_.clear();
}

// ---------------------------------------------------------------------------------------------

struct TokenShard::Mapping : MappedFile {
  using MappedFile::MappedFile;
};

TokenShard::TokenShard(const std::string& path) : path_(path) {
  map_ = std::make_shared<Mapping>(path, "token shard");
  header_ = parse_token_shard_header(map_->data(), map_->size(), path);
  data_ = map_->data() + kTokenShardHeaderBytes;
  const size_t nbytes = map_->size() - kTokenShardHeaderBytes;
  LOWBIT_CHECK(crc32c(data_, nbytes) == load<uint32_t>(map_->data() + 40), "token shard ", path,
               ": data checksum mismatch (corrupted tokens)");
  for (uint64_t i = 0; i < header_.num_tokens; ++i) {
    const uint32_t t = read_token(data_, header_.token_bytes, i);
    LOWBIT_CHECK(t < header_.vocab_size, "token shard ", path, ": token ", i, " is ", t, " >= vocab_size ",
                 header_.vocab_size);
  }
  if (!header_.chat) return;
  offsets_ = data_ + align8(header_.num_tokens * header_.token_bytes);
  mask_ = offsets_ + 8 * (header_.num_documents + 1);
  uint64_t prev = 0;
  for (uint64_t e = 0; e <= header_.num_documents; ++e) {
    const uint64_t o = load<uint64_t>(offsets_ + 8 * e);
    LOWBIT_CHECK(o >= prev && o <= header_.num_tokens && (e > 0 || o == 0) &&
                     (e < header_.num_documents || o == header_.num_tokens),
                 "token shard ", path, ": example offset ", e, " is ", o, " (offsets must rise from 0 to num_tokens ",
                 header_.num_tokens, ")");
    prev = o;
  }
  for (uint64_t i = 0; i < header_.num_tokens; ++i)
    LOWBIT_CHECK(mask_[i] <= 1, "token shard ", path, ": loss-mask byte ", i, " is ", int(mask_[i]), " (must be 0 or 1)");
}

uint64_t TokenShard::example_begin(uint64_t e) const {
  LOWBIT_CHECK(header_.chat && e <= header_.num_documents, "token shard ", path_, ": example ", e, " out of range");
  return load<uint64_t>(offsets_ + 8 * e);
}

bool TokenShard::trained(uint64_t i) const {
  LOWBIT_CHECK(header_.chat && i < header_.num_tokens, "token shard ", path_, ": mask index ", i, " out of range");
  return mask_[i] != 0;
}

uint32_t TokenShard::operator[](uint64_t i) const {
  LOWBIT_CHECK(i < header_.num_tokens, "token shard ", path_, ": index ", i, " out of range");
  return read_token(data_, header_.token_bytes, i);
}

std::vector<uint32_t> TokenShard::tokens(uint64_t begin, uint64_t count) const {
  LOWBIT_CHECK(begin <= header_.num_tokens && count <= header_.num_tokens - begin, "token shard ", path_,
               ": range [", begin, ", ", begin + count, ") out of range");
  std::vector<uint32_t> out(count);
  for (uint64_t i = 0; i < count; ++i) out[i] = read_token(data_, header_.token_bytes, begin + i);
  return out;
}

// ---------------------------------------------------------------------------------------------

TokenLoader::TokenLoader(const std::vector<std::string>& paths, const LoaderOptions& opts) : opts_(opts) {
  LOWBIT_CHECK(!paths.empty(), "data: no token shards given");
  LOWBIT_CHECK(opts.seq_len > 0 && opts.batch_size > 0, "data: seq_len and batch_size must be positive, got ",
               opts.seq_len, " and ", opts.batch_size);
  LOWBIT_CHECK(opts.world > 0 && opts.rank >= 0 && opts.rank < opts.world, "data: rank ", opts.rank,
               " outside world ", opts.world);
  const auto window = static_cast<uint64_t>(opts.seq_len + 1);
  for (const std::string& p : paths) {
    shards_.push_back(std::make_unique<TokenShard>(p));
    const TokenShardHeader& h = shards_.back()->header();
    if (shards_.size() == 1) vocab_ = h.vocab_size;
    LOWBIT_CHECK(h.vocab_size == vocab_, "data: shard ", p, " has vocab_size ", h.vocab_size, " but ", paths[0],
                 " has ", vocab_);
    if (shards_.size() == 1) chat_ = h.chat;
    LOWBIT_CHECK(h.chat == chat_, "data: shard ", p, " is a ", h.chat ? "chat" : "text", " shard but ", paths[0],
                 " is a ", chat_ ? "chat" : "text", " shard");
    const auto s = static_cast<uint32_t>(shards_.size() - 1);
    if (!chat_) {
      for (uint64_t start = 0; start + window <= h.num_tokens; start += window) windows_.push_back({s, start, 0});
      continue;
    }
    // Examples of one token train nothing; the rest fill rows of seq_len (input, target) pairs.
    const TokenShard& sh = *shards_.back();
    uint64_t row_start = 0, used = 0;
    bool open = false;
    for (uint64_t e = 0; e < h.num_documents; ++e) {
      const uint64_t n = sh.example_begin(e + 1) - sh.example_begin(e);
      if (n < 2) continue;
      ++num_examples_;
      if (n > window) ++truncated_;
      const uint64_t pairs = std::min(n, window) - 1;
      if (open && (!opts.pack || used + pairs > static_cast<uint64_t>(opts.seq_len))) {
        windows_.push_back({s, row_start, e});
        open = false;
      }
      if (!open) {
        // Skipped one-token examples between rows belong to no row.
        row_start = e;
        used = 0;
        open = true;
      }
      used += pairs;
    }
    if (open) windows_.push_back({s, row_start, h.num_documents});
  }
  LOWBIT_CHECK(windows_per_epoch() > 0, "data: the shards hold ", windows_.size(), " windows of ", window,
               " tokens; rank ", opts.rank, " of ", opts.world, " gets none (more data or a shorter seq_len needed)");
}

int64_t TokenLoader::windows_per_epoch() const {
  const auto n = static_cast<int64_t>(windows_.size());
  return n / opts_.world + (opts_.rank < n % opts_.world ? 1 : 0);
}

void TokenLoader::shuffle_epoch() {
  if (order_epoch_ == pos_.epoch) return;
  order_.resize(windows_.size());
  for (uint64_t i = 0; i < order_.size(); ++i) order_[i] = i;
  if (opts_.shuffle) {
    // Fisher-Yates with an explicitly specified generator and bounded draws, so the order is
    // the same on every platform and standard library.
    std::mt19937_64 rng(opts_.seed * 0x9E3779B97F4A7C15ull + pos_.epoch);
    for (uint64_t i = order_.size(); i > 1; --i) {
      const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % i);
      uint64_t r;
      do r = rng();
      while (r >= limit);
      std::swap(order_[i - 1], order_[r % i]);
    }
  }
  order_epoch_ = pos_.epoch;
}

void TokenLoader::set_position(const LoaderPosition& p) {
  LOWBIT_CHECK(p.cursor <= static_cast<uint64_t>(windows_per_epoch()), "data: resume cursor ", p.cursor,
               " exceeds the ", windows_per_epoch(), " windows of an epoch (different data or world size?)");
  pos_ = p;
}

std::pair<Tensor, Tensor> TokenLoader::next() {
  LOWBIT_CHECK(!packed(), "data: packed chat rows need their positions and segments (use next_batch)");
  Batch b = next_batch();
  return {b.inputs, b.targets};
}

// Row `row` of out from the examples of w: inputs, targets (masked: -100), positions inside the
// example, segment = the example's index in the row; the rest is padding (eos_id inputs, -100
// targets, segment -1).
void TokenLoader::fill_chat_row(const Window& w, int64_t row, Batch& out) const {
  const int64_t T = opts_.seq_len;
  const TokenShard& sh = *shards_[w.shard];
  int64_t* ids = out.inputs.data<int64_t>() + row * T;
  int64_t* tgt = out.targets.data<int64_t>() + row * T;
  int64_t* pos = out.positions.defined() ? out.positions.data<int64_t>() + row * T : nullptr;
  int64_t* seg = out.segments.defined() ? out.segments.data<int64_t>() + row * T : nullptr;
  int64_t o = 0, index = 0;
  for (uint64_t e = w.start; e < w.end; ++e) {
    const uint64_t b = sh.example_begin(e), n = std::min<uint64_t>(sh.example_begin(e + 1) - b, uint64_t(T + 1));
    if (n < 2) continue;
    const std::vector<uint32_t> x = sh.tokens(b, n);
    for (uint64_t j = 0; j + 1 < n; ++j, ++o) {
      ids[o] = x[j];
      tgt[o] = sh.trained(b + j + 1) ? int64_t(x[j + 1]) : int64_t(-100);
      if (pos) pos[o] = int64_t(j);
      if (seg) seg[o] = index;
    }
    ++index;
  }
  for (int64_t p = 0; o < T; ++o, ++p) {
    ids[o] = shards_[w.shard]->header().eos_id;
    tgt[o] = -100;
    if (pos) pos[o] = p;
    if (seg) seg[o] = -1;
  }
}

Batch TokenLoader::next_batch() {
  const int64_t B = opts_.batch_size, T = opts_.seq_len;
  Batch out;
  std::vector<int64_t> ids, tgt;
  if (chat_) {
    out.inputs = empty({B, T}, DType::i64);
    out.targets = empty({B, T}, DType::i64);
    if (opts_.pack) {
      out.positions = empty({B, T}, DType::i64);
      out.segments = empty({B, T}, DType::i64);
    }
  } else {
    ids.resize(static_cast<size_t>(B * T));
    tgt.resize(static_cast<size_t>(B * T));
  }
  for (int64_t b = 0; b < B; ++b) {
    if (pos_.cursor == static_cast<uint64_t>(windows_per_epoch())) {
      ++pos_.epoch;
      pos_.cursor = 0;
    }
    shuffle_epoch();
    const uint64_t k = pos_.cursor * static_cast<uint64_t>(opts_.world) + static_cast<uint64_t>(opts_.rank);
    if (chat_) {
      fill_chat_row(windows_[order_[k]], b, out);
      ++pos_.cursor;
      continue;
    }
    const Window& win = windows_[order_[k]];
    const std::vector<uint32_t> w = shards_[win.shard]->tokens(win.start, static_cast<uint64_t>(T + 1));
    for (int64_t t = 0; t < T; ++t) {
      ids[static_cast<size_t>(b * T + t)] = w[static_cast<size_t>(t)];
      tgt[static_cast<size_t>(b * T + t)] = w[static_cast<size_t>(t + 1)];
    }
    ++pos_.cursor;
  }
  if (!chat_) {
    out.inputs = from_vector(ids, {B, T});
    out.targets = from_vector(tgt, {B, T});
  }
  return out;
}

}  // namespace lowbit::io
