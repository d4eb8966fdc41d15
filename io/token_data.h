// Token datasets: shards of token ids on disk, and a memory-mapped loader that cuts them into
// training windows with a deterministic, seeded, resumable shuffle.
//
// Shard file (little-endian), 64-byte header then the body:
//   0  magic "LBTOKENS"            32 vocab_size (u32)
//   8  version (u32) 1 or 2        36 eos_id (u32)
//   12 token_bytes (u32) 2 or 4    40 data_crc32c (u32) of the body
//   16 num_tokens (u64)            44 header_crc32c (u32) of bytes 0..43 (version 2: and 48..63)
//   24 num_documents (u64)         48 version 2: flags (u32), bit 0 = chat shard; then zeros to 64
// Text shards (version 1, as every earlier build wrote them): the body is the documents back to
// back, each followed by eos_id. Chat shards (version 2, flag bit 0): the body is the examples'
// tokens back to back (no separator: each template ends with its own end-of-turn token), zero
// padding to a multiple of 8 bytes, num_documents + 1 u64 example offsets (the first 0, the last
// num_tokens), then one loss-mask byte per token (1: the token is trained as a target, i.e. an
// assistant token; 0: prompt). Opening a shard checks the header, the size, both checksums,
// that every id is < vocab_size, the offsets and the mask bytes.
//
// Text windows: a shard's token stream is cut into non-overlapping windows of seq_len + 1
// tokens (inputs = first seq_len, targets = last seq_len), across document boundaries (the EOS
// separates them); the tail shorter than a window is dropped. Windows never cross shards.
//
// Chat windows: one example per row (inputs = tokens[0, n-1), targets = tokens[1, n) where the
// mask is 1, else -100; the row padded with eos_id inputs and -100 targets), or with pack = true
// consecutive examples of a shard packed into one row while they fit, with per-example
// positions and segment ids (attention stays inside an example; see models::Packing). An
// example longer than seq_len + 1 tokens is truncated to its first seq_len + 1.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit::io {

struct TokenShardHeader {
  uint32_t token_bytes = 2;
  uint64_t num_tokens = 0;
  uint64_t num_documents = 0;
  uint32_t vocab_size = 0;
  uint32_t eos_id = 0;
  bool chat = false;  // version 2 with flag bit 0: example offsets and a loss mask follow the tokens
};

constexpr size_t kTokenShardHeaderBytes = 64;

// Parses and checks a 64-byte header against the file size; throws naming the file.
TokenShardHeader parse_token_shard_header(const uint8_t* bytes, size_t file_size, const std::string& path);

// Writes one shard atomically (temporary file, fsync, rename on close()): a text shard
// (add_document) or a chat shard (add_example), never both.
class TokenShardWriter {
 public:
  // token_bytes 2 requires vocab_size <= 65536.
  TokenShardWriter(std::string path, uint32_t vocab_size, uint32_t eos_id, bool chat = false);
  ~TokenShardWriter();
  TokenShardWriter(const TokenShardWriter&) = delete;
  TokenShardWriter& operator=(const TokenShardWriter&) = delete;

  // Appends the document's tokens followed by eos_id.
  void add_document(const std::vector<uint32_t>& tokens);
  // Chat shards: one example's tokens and its loss mask (same length, entries 0 or 1).
  void add_example(const std::vector<uint32_t>& tokens, const std::vector<uint8_t>& mask);
  uint64_t num_tokens() const { return num_tokens_; }
  void close();

 private:
  void append_tokens(const std::vector<uint32_t>& tokens);
  std::string path_;
  uint32_t vocab_, eos_, token_bytes_;
  bool chat_;
  uint64_t num_tokens_ = 0, num_docs_ = 0;
  std::vector<uint8_t> data_;
  std::vector<uint64_t> offsets_{0};
  std::vector<uint8_t> mask_;
  bool closed_ = false;
};

// A read-only, memory-mapped shard.
class TokenShard {
 public:
  explicit TokenShard(const std::string& path);
  const std::string& path() const { return path_; }
  const TokenShardHeader& header() const { return header_; }
  uint64_t size() const { return header_.num_tokens; }
  uint32_t operator[](uint64_t i) const;
  std::vector<uint32_t> tokens(uint64_t begin, uint64_t count) const;
  // Chat shards only: example e's tokens are [example_begin(e), example_begin(e + 1)).
  uint64_t example_begin(uint64_t e) const;
  bool trained(uint64_t i) const;  // the loss-mask byte of token i

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  TokenShardHeader header_;
  const uint8_t* data_ = nullptr;
  const uint8_t* offsets_ = nullptr;  // chat: (num_documents + 1) u64, maybe unaligned
  const uint8_t* mask_ = nullptr;     // chat: num_tokens bytes
};

// Where a loader is in its stream: everything needed to resume exactly.
struct LoaderPosition {
  uint64_t epoch = 0;
  uint64_t cursor = 0;  // windows of this rank already handed out in this epoch
};

struct LoaderOptions {
  int64_t seq_len = 256;
  int64_t batch_size = 8;
  uint64_t seed = 0;
  bool shuffle = true;  // else windows in file order (validation)
  bool pack = false;    // chat shards: several examples per row (see the file comment)
  int64_t rank = 0;     // data parallelism: this rank takes windows rank, rank + world, ...
  int64_t world = 1;
};

// One batch: inputs and targets (batch, seq_len) i64; for packed chat rows also the positions
// and segment ids (batch, seq_len) i64 of models::Packing (else undefined).
struct Batch {
  Tensor inputs, targets, positions, segments;
};

class TokenLoader {
 public:
  // paths: shard files (all with the same vocab_size, all text or all chat); throws naming a
  // bad shard.
  TokenLoader(const std::vector<std::string>& paths, const LoaderOptions& opts);

  // Next batch. Wraps to a new epoch (with a new permutation) when this rank's windows run out.
  Batch next_batch();
  // Inputs and targets of next_batch(); not for packed rows (they need their positions).
  std::pair<Tensor, Tensor> next();
  bool chat() const { return chat_; }
  bool packed() const { return chat_ && opts_.pack; }
  // Chat: examples in all windows, and those cut to seq_len + 1 tokens.
  uint64_t num_examples() const { return num_examples_; }
  uint64_t truncated_examples() const { return truncated_; }
  int64_t windows_per_epoch() const;  // for this rank
  int64_t num_windows() const { return static_cast<int64_t>(windows_.size()); }  // all ranks
  uint32_t vocab_size() const { return vocab_; }
  const LoaderPosition& position() const { return pos_; }
  void set_position(const LoaderPosition& p);

 private:
  void shuffle_epoch();
  // Text: tokens [start, start + seq_len + 1) of a shard; chat: its examples [start, end).
  struct Window {
    uint32_t shard;
    uint64_t start, end;
  };
  void fill_chat_row(const Window& w, int64_t row, Batch& out) const;
  std::vector<std::unique_ptr<TokenShard>> shards_;
  std::vector<Window> windows_;
  std::vector<uint64_t> order_;                          // this epoch's permutation of windows_
  LoaderOptions opts_;
  LoaderPosition pos_;
  uint64_t order_epoch_ = ~uint64_t{0};
  uint32_t vocab_ = 0;
  bool chat_ = false;
  uint64_t num_examples_ = 0, truncated_ = 0;
};

}  // namespace lowbit::io
