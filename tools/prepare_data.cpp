// prepare_data: text files (or folders of them) -> token shards for training.
//
//   prepare_data --out DIR (--tokenizer tokenizer.json | --train-tokenizer VOCAB_SIZE)
//                [--eos TOKEN] [--doc-separator SEP] [--val-fraction F] [--seed N]
//                [--shard-tokens N] INPUT...
//
// With --train-tokenizer a byte-level BPE tokenizer is trained on the inputs first and saved
// as DIR/tokenizer.json (special token <|endoftext|>, the EOS). Documents are whole files, or
// the pieces between --doc-separator strings ("\n%\n" for fortune files; \n and \t escapes
// work). Whole documents go to validation by a seeded hash of their index.
#include <cstdio>
#include <exception>
#include <filesystem>

#include "cli.h"
#include "lowbit/engine/error.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/prepare_data.h"
#include "lowbit/io/tokenizer.h"

namespace {

using namespace lowbit;

std::vector<std::string> training_texts(const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  std::vector<std::string> texts;
  for (const std::string& in : inputs) {
    if (fs::is_directory(in)) {
      std::vector<std::string> files;
      for (const auto& e : fs::recursive_directory_iterator(in))
        if (e.is_regular_file()) files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      for (const auto& f : files) texts.push_back(io::read_file(f, "prepare_data"));
    } else {
      texts.push_back(io::read_file(in, "prepare_data"));
    }
  }
  return texts;
}

int run(int argc, char** argv) {
  const tools::Args args(argc, argv,
                         {"out", "tokenizer", "train-tokenizer", "eos", "doc-separator", "val-fraction", "seed",
                          "shard-tokens"},
                         {"help"});
  if (args.flag("help") || args.positional().empty()) {
    std::printf(
        "usage: prepare_data --out DIR (--tokenizer tokenizer.json | --train-tokenizer VOCAB_SIZE)\n"
        "                    [--eos TOKEN] [--doc-separator SEP] [--val-fraction F] [--seed N]\n"
        "                    [--shard-tokens N] INPUT...\n");
    return args.flag("help") ? 0 : 2;
  }
  const auto out = args.get("out");
  LOWBIT_CHECK(out.has_value(), "option --out is required");
  LOWBIT_CHECK(args.get("tokenizer").has_value() != args.get("train-tokenizer").has_value(),
               "give exactly one of --tokenizer and --train-tokenizer");
  std::filesystem::create_directories(*out);

  std::optional<tok::Tokenizer> t;
  std::string eos = args.get_or("eos", "");
  if (const auto path = args.get("tokenizer")) {
    t = tok::Tokenizer::from_file(*path);
  } else {
    const int64_t vocab = args.get_int("train-tokenizer", 0);
    LOWBIT_CHECK(vocab > 257, "option --train-tokenizer must be > 257 (256 bytes + EOS), got ", vocab);
    tok::BpeTrainerOptions o;
    o.vocab_size = static_cast<size_t>(vocab);
    o.special_tokens = {"<|endoftext|>"};
    const std::vector<std::string> texts = training_texts(args.positional());
    t = tok::train_bpe(texts, o);
    t->save(*out + "/tokenizer.json");
    if (eos.empty()) eos = "<|endoftext|>";
    std::printf("trained tokenizer: %zu ids -> %s/tokenizer.json\n", t->vocab_size(), out->c_str());
  }
  if (eos.empty()) {
    for (const char* c : {"<|end_of_text|>", "<|endoftext|>", "</s>", "<|im_end|>"})
      if (t->token_to_id(c)) {
        eos = c;
        break;
      }
  }
  LOWBIT_CHECK(!eos.empty(), "the tokenizer has no known end-of-text token; name one with --eos");
  const auto eos_id = t->token_to_id(eos);
  LOWBIT_CHECK(eos_id.has_value(), "option --eos: token '", eos, "' is not in the tokenizer");

  io::PrepareOptions po;
  po.doc_separator = tools::unescape(args.get_or("doc-separator", ""));
  po.val_fraction = args.get_double("val-fraction", 0.01);
  po.seed = static_cast<uint64_t>(args.get_int("seed", 0));
  po.max_shard_tokens = static_cast<uint64_t>(args.get_int("shard-tokens", int64_t{1} << 26));
  const io::EncodeFn encode = [&](std::string_view text) {
    const std::vector<int32_t> ids = t->encode(text);
    return std::vector<uint32_t>(ids.begin(), ids.end());
  };
  const io::PrepareResult r = io::prepare_data(args.positional(), *out, encode,
                                               static_cast<uint32_t>(t->vocab_size()),
                                               static_cast<uint32_t>(*eos_id), po);
  std::printf("read %llu bytes\n", static_cast<unsigned long long>(r.input_bytes));
  std::printf("train: %llu documents, %llu tokens, %zu shards\n", static_cast<unsigned long long>(r.train_documents),
              static_cast<unsigned long long>(r.train_tokens), r.train_shards.size());
  std::printf("val: %llu documents, %llu tokens, %zu shards\n", static_cast<unsigned long long>(r.val_documents),
              static_cast<unsigned long long>(r.val_tokens), r.val_shards.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return tools::tool_main("prepare_data", run, argc, argv); }
