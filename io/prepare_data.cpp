#include "lowbit/io/prepare_data.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "lowbit/engine/error.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/token_data.h"

namespace lowbit::io {

namespace fs = std::filesystem;

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::vector<std::string> list_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    LOWBIT_CHECK(!ec && fs::exists(st), "prepare_data: input ", in, " does not exist");
    if (fs::is_directory(st)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(in))
        if (e.is_regular_file()) found.push_back(e.path().string());
      LOWBIT_CHECK(!found.empty(), "prepare_data: input directory ", in, " holds no files");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(in);
    }
  }
  return files;
}

}  // namespace

std::string read_text_input(const std::string& path) {
  LOWBIT_CHECK(!fs::is_directory(path), "input ", path, " is a directory: name the text files in it");
  std::string text = read_file(path, "input");
  LOWBIT_CHECK(!text.empty(), "input ", path, " is empty");
  if (!tok::is_valid_utf8(text)) {
    const std::string fixed = tok::replace_invalid_utf8(text);
    size_t at = 0;
    while (at < text.size() && at < fixed.size() && text[at] == fixed[at]) ++at;
    LOWBIT_FAIL("input ", path, " is not valid UTF-8 (first bad byte at offset ", at,
                "); text inputs must be UTF-8");
  }
  return text;
}

namespace {

// Numbered shards of one split, started lazily and rolled over at max_shard_tokens.
class ShardSeries {
 public:
  ShardSeries(std::string dir, std::string prefix, uint32_t vocab, uint32_t eos, uint64_t max_tokens,
              std::vector<std::string>* paths, bool chat = false)
      : dir_(std::move(dir)), prefix_(std::move(prefix)), vocab_(vocab), eos_(eos), max_(max_tokens), paths_(paths),
        chat_(chat) {}
  void add(const std::vector<uint32_t>& doc) {
    if (!w_ || w_->num_tokens() >= max_) roll();
    w_->add_document(doc);
  }
  void add(const std::vector<uint32_t>& ids, const std::vector<uint8_t>& mask) {
    if (!w_ || w_->num_tokens() >= max_) roll();
    w_->add_example(ids, mask);
  }
  void finish() {
    if (w_) w_->close();
    w_.reset();
  }

 private:
  void roll() {
    finish();
    char name[32];
    std::snprintf(name, sizeof name, "_%05zu.bin", paths_->size());
    paths_->push_back(dir_ + "/" + prefix_ + name);
    w_ = std::make_unique<TokenShardWriter>(paths_->back(), vocab_, eos_, chat_);
  }
  std::string dir_, prefix_;
  uint32_t vocab_, eos_;
  uint64_t max_;
  std::vector<std::string>* paths_;
  bool chat_;
  std::unique_ptr<TokenShardWriter> w_;
};

// Checks the options, lists the input files, creates out_dir.
std::vector<std::string> start(const std::vector<std::string>& inputs, const std::string& out_dir, double val_fraction,
                               uint64_t max_shard_tokens) {
  LOWBIT_CHECK(val_fraction >= 0 && val_fraction < 1, "prepare_data: val_fraction must be in [0, 1), got ",
               val_fraction);
  LOWBIT_CHECK(max_shard_tokens > 0, "prepare_data: max_shard_tokens must be positive");
  std::vector<std::string> files = list_inputs(inputs);
  LOWBIT_CHECK(!files.empty(), "prepare_data: no input files");
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  LOWBIT_CHECK(!ec, "prepare_data: cannot create ", out_dir, ": ", ec.message());
  return files;
}

}  // namespace

PrepareResult prepare_data(const std::vector<std::string>& inputs, const std::string& out_dir, const EncodeFn& encode,
                           uint32_t vocab_size, uint32_t eos_id, const PrepareOptions& opts) {
  const std::vector<std::string> files = start(inputs, out_dir, opts.val_fraction, opts.max_shard_tokens);

  PrepareResult r;
  ShardSeries train(out_dir, "train", vocab_size, eos_id, opts.max_shard_tokens, &r.train_shards);
  ShardSeries val(out_dir, "val", vocab_size, eos_id, opts.max_shard_tokens, &r.val_shards);
  const auto threshold = static_cast<uint64_t>(opts.val_fraction * 18446744073709551616.0);
  uint64_t index = 0;
  for (const std::string& f : files) {
    const std::string text = read_text_input(f);
    r.input_bytes += text.size();
    size_t pos = 0;
    while (pos <= text.size()) {
      size_t end = opts.doc_separator.empty() ? std::string::npos : text.find(opts.doc_separator, pos);
      if (end == std::string::npos) end = text.size();
      const std::string_view doc(text.data() + pos, end - pos);
      pos = end + (opts.doc_separator.empty() ? 1 : opts.doc_separator.size());
      if (doc.empty()) continue;
      const std::vector<uint32_t> ids = encode(doc);
      if (ids.empty()) continue;
      const bool to_val = opts.val_fraction > 0 && splitmix64(opts.seed ^ splitmix64(index++)) < threshold;
      (to_val ? val : train).add(ids);
      (to_val ? r.val_documents : r.train_documents) += 1;
      (to_val ? r.val_tokens : r.train_tokens) += ids.size() + 1;
      if (end == text.size()) break;
    }
  }
  train.finish();
  val.finish();
  LOWBIT_CHECK(r.train_documents > 0, "prepare_data: no training documents (", r.val_documents,
               " went to validation, the inputs held ", r.input_bytes, " bytes)");
  return r;
}

ChatPrepareResult prepare_chat(const std::vector<std::string>& inputs, const std::string& out_dir,
                               const tok::Tokenizer& tokenizer, uint32_t eos_id, const ChatPrepareOptions& opts) {
  using Overlong = ChatPrepareOptions::Overlong;
  const std::vector<std::string> files = start(inputs, out_dir, opts.val_fraction, opts.max_shard_tokens);

  ChatPrepareResult r;
  const auto vocab = static_cast<uint32_t>(tokenizer.vocab_size());
  ShardSeries train(out_dir, "train", vocab, eos_id, opts.max_shard_tokens, &r.train_shards, true);
  ShardSeries val(out_dir, "val", vocab, eos_id, opts.max_shard_tokens, &r.val_shards, true);
  const auto threshold = static_cast<uint64_t>(opts.val_fraction * 18446744073709551616.0);
  uint64_t index = 0;
  for (const std::string& f : files) {
    const std::string text = read_file(f, "prepare_data");
    LOWBIT_CHECK(!text.empty(), "prepare_data: input ", f, " is empty");
    r.input_bytes += text.size();
    size_t pos = 0, line_no = 0;
    while (pos < text.size()) {
      size_t end = text.find('\n', pos);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + pos, end - pos);
      pos = end + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      const std::string where = f + ":" + std::to_string(line_no);
      ChatTokens t;
      try {
        const std::vector<ChatMessage> messages = parse_chat_record(line, where);
        try {
          t = tokenize_chat(render_chat(messages, opts.chat_template, opts.chat), tokenizer);
        } catch (const Error& e) {
          throw Error(where + ": " + error_text(e.what()));
        }
      } catch (const Error& e) {
        if (!opts.skip_bad_records) throw;
        ++r.bad_records;
        continue;
      }
      if (opts.max_tokens > 0 && t.ids.size() > opts.max_tokens) {
        LOWBIT_CHECK(opts.overlong != Overlong::Error, where, ": the example has ", t.ids.size(),
                     " tokens, more than the limit of ", opts.max_tokens, " (truncate or skip it by a setting)");
        if (opts.overlong == Overlong::Skip) {
          ++r.overlong_skipped;
          continue;
        }
        t.ids.resize(opts.max_tokens);
        t.mask.resize(opts.max_tokens);
        ++r.truncated;
      }
      const std::vector<uint32_t> ids(t.ids.begin(), t.ids.end());
      const bool to_val = opts.val_fraction > 0 && splitmix64(opts.seed ^ splitmix64(index++)) < threshold;
      (to_val ? val : train).add(ids, t.mask);
      (to_val ? r.val_documents : r.train_documents) += 1;
      (to_val ? r.val_tokens : r.train_tokens) += ids.size();
      for (uint8_t m : t.mask) r.trained_tokens += m;
    }
  }
  train.finish();
  val.finish();
  LOWBIT_CHECK(r.train_documents > 0, "prepare_data: no training examples (", r.val_documents,
               " went to validation, ", r.bad_records, " bad records and ", r.overlong_skipped,
               " over-long examples were skipped)");
  return r;
}

}  // namespace lowbit::io
