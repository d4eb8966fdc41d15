// Text to token shards: reads text files (or every regular file under a directory, in sorted
// path order), splits them into documents, tokenizes each, and writes train and validation
// shards, assigning whole documents to validation by a seeded hash of their index. Chat JSONL
// to chat shards (prepare_chat): each record rendered with a chat template, tokenized, and
// stored with its loss mask. Inputs must be UTF-8 text: a directory without files, an empty
// file or invalid UTF-8 is an error naming the path (and the byte offset).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/io/chat_template.h"
#include "lowbit/io/tokenizer.h"

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

// A text input file: its bytes; a directory, an empty file or invalid UTF-8 is an error naming
// the path.
std::string read_text_input(const std::string& path);

using EncodeFn = std::function<std::vector<uint32_t>(std::string_view text)>;

// Writes out_dir/train_NNNNN.bin and out_dir/val_NNNNN.bin (out_dir is created). Empty
// documents are skipped. Throws naming the input when a path is missing or unreadable.
PrepareResult prepare_data(const std::vector<std::string>& inputs, const std::string& out_dir, const EncodeFn& encode,
                           uint32_t vocab_size, uint32_t eos_id, const PrepareOptions& opts = {});

struct ChatPrepareOptions {
  ChatTemplate chat_template = ChatTemplate::Llama3;
  ChatOptions chat;
  double val_fraction = 0.01;
  uint64_t seed = 0;
  uint64_t max_shard_tokens = 1u << 26;
  uint64_t max_tokens = 0;  // longest example kept (0: no limit)
  enum class Overlong { Error, Truncate, Skip };
  Overlong overlong = Overlong::Error;  // what an example over max_tokens gets
  bool skip_bad_records = false;        // count and skip bad records instead of failing
};

struct ChatPrepareResult : PrepareResult {
  uint64_t bad_records = 0, overlong_skipped = 0, truncated = 0, trained_tokens = 0;
};

// Every non-blank line of every input is one record (io::parse_chat_record); errors name
// FILE:LINE. Writes out_dir/train_NNNNN.bin and val_NNNNN.bin chat shards.
ChatPrepareResult prepare_chat(const std::vector<std::string>& inputs, const std::string& out_dir,
                               const tok::Tokenizer& tokenizer, uint32_t eos_id, const ChatPrepareOptions& opts);

}  // namespace lowbit::io
