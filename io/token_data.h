// Token datasets: shards of token ids on disk, and a memory-mapped loader that cuts them into
// training windows with a deterministic, seeded, resumable shuffle.
//
// Shard file (little-endian), 64-byte header then the tokens:
//   0  magic "LBTOKENS"            32 vocab_size (u32)
//   8  version (u32) = 1           36 eos_id (u32)
//   12 token_bytes (u32) 2 or 4    40 data_crc32c (u32) of the token bytes
//   16 num_tokens (u64)            44 header_crc32c (u32) of bytes 0..43
//   24 num_documents (u64)         48 zero padding to 64
// Documents are stored back to back, each followed by eos_id. Opening a shard checks the
// header, the size, both checksums and that every id is < vocab_size.
//
// Packing: a shard's token stream is cut into non-overlapping windows of seq_len + 1 tokens
// (inputs = first seq_len, targets = last seq_len), across document boundaries (the EOS
// separates them); the tail shorter than a window is dropped. Windows never cross shards.
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
};

constexpr size_t kTokenShardHeaderBytes = 64;

// Parses and checks a 64-byte header against the file size; throws naming the file.
TokenShardHeader parse_token_shard_header(const uint8_t* bytes, size_t file_size, const std::string& path);

// Writes one shard atomically (temporary file, fsync, rename on close()).
class TokenShardWriter {
 public:
  // token_bytes 2 requires vocab_size <= 65536.
  TokenShardWriter(std::string path, uint32_t vocab_size, uint32_t eos_id);
  ~TokenShardWriter();
  TokenShardWriter(const TokenShardWriter&) = delete;
  TokenShardWriter& operator=(const TokenShardWriter&) = delete;

  // Appends the document's tokens followed by eos_id.
  void add_document(const std::vector<uint32_t>& tokens);
  uint64_t num_tokens() const { return num_tokens_; }
  void close();

 private:
  std::string path_;
  uint32_t vocab_, eos_, token_bytes_;
  uint64_t num_tokens_ = 0, num_docs_ = 0;
  std::vector<uint8_t> data_;
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

 private:
  struct Mapping;
  std::string path_;
  std::shared_ptr<Mapping> map_;
  TokenShardHeader header_;
  const uint8_t* data_ = nullptr;
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
  int64_t rank = 0;     // data parallelism: this rank takes windows rank, rank + world, ...
  int64_t world = 1;
};

class TokenLoader {
 public:
  // paths: shard files (all with the same vocab_size); throws naming a bad shard.
  TokenLoader(const std::vector<std::string>& paths, const LoaderOptions& opts);

  // Next batch: inputs and targets, both (batch, seq_len) i64. Wraps to a new epoch (with a
  // new permutation) when this rank's windows run out.
  std::pair<Tensor, Tensor> next();
  int64_t windows_per_epoch() const;  // for this rank
  int64_t num_windows() const { return static_cast<int64_t>(windows_.size()); }  // all ranks
  uint32_t vocab_size() const { return vocab_; }
  const LoaderPosition& position() const { return pos_; }
  void set_position(const LoaderPosition& p);

 private:
  void shuffle_epoch();
  std::vector<std::unique_ptr<TokenShard>> shards_;
  std::vector<std::pair<uint32_t, uint64_t>> windows_;  // (shard, first token)
  std::vector<uint64_t> order_;                          // this epoch's permutation of windows_
  LoaderOptions opts_;
  LoaderPosition pos_;
  uint64_t order_epoch_ = ~uint64_t{0};
  uint32_t vocab_ = 0;
};

}  // namespace lowbit::io
