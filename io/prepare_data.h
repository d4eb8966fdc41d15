// Text to token shards: reads text files (or every regular file under a directory, in sorted
// path order), splits them into documents, tokenizes each, and writes train and validation
// shards, assigning whole documents to validation by a seeded hash of their index.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace lowbit::io {

struct PrepareOptions {
  std::string doc_separator;          // empty: one document per file; else split files at it
  double val_fraction = 0.01;         // share of documents for validation, in [0, 1)
  uint64_t seed = 0;                  // for the split
  uint64_t max_shard_tokens = 1u << 26;  // start a new shard past this many tokens
};

struct PrepareResult {
  std::vector<std::string> train_shards, val_shards;
  uint64_t train_documents = 0, val_documents = 0, train_tokens = 0, val_tokens = 0, input_bytes = 0;
};

using EncodeFn = std::function<std::vector<uint32_t>(std::string_view text)>;

// Writes out_dir/train_NNNNN.bin and out_dir/val_NNNNN.bin (out_dir is created). Empty
// documents are skipped. Throws naming the input when a path is missing or unreadable.
PrepareResult prepare_data(const std::vector<std::string>& inputs, const std::string& out_dir, const EncodeFn& encode,
                           uint32_t vocab_size, uint32_t eos_id, const PrepareOptions& opts = {});

}  // namespace lowbit::io
