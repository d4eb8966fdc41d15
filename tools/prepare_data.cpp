// prepare_data: text files (or folders of them) -> token shards for training; with --chat,
// chat JSONL -> chat shards (loss masked to the assistant tokens).
//
//   prepare_data --out DIR (--tokenizer TOKENIZER | --train-tokenizer VOCAB_SIZE)
//                [--eos TOKEN] [--doc-separator SEP] [--val-fraction F] [--seed N]
//                [--shard-tokens N] INPUT...
//   prepare_data --chat --out DIR --tokenizer TOKENIZER [--template NAME] [--date-string D]
//                [--max-tokens N] [--overlong error|truncate|skip] [--skip-bad-records]
//                [--val-fraction F] [--seed N] [--shard-tokens N] INPUT.jsonl...
//
// TOKENIZER: a tokenizer.json, a SentencePiece .model, or a model directory (its tokenizer.json
// or tokenizer.model, tokenizer_config.json and config.json). With --train-tokenizer a
// byte-level BPE tokenizer is trained on the inputs first and saved in DIR (special token
// <|endoftext|>, the EOS). Documents are whole files, or the pieces between --doc-separator
// strings ("\n%\n" for fortune files; \n and \t escapes work). Whole documents (examples)
// go to validation by a seeded hash of their index. The chat template is --template, else the
// checkpoint's: its chat_template, else its model_type (docs/tools.md).
#include <cstdio>
#include <exception>
#include <filesystem>

#include "cli.h"
#include "lowbit/engine/error.h"
#include "lowbit/io/chat_template.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/prepare_data.h"
#include "lowbit/io/tokenizer.h"
#include "lowbit/models/model_config.h"

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
      LOWBIT_CHECK(!files.empty(), "prepare_data: input directory ", in, " holds no files");
      for (const auto& f : files) texts.push_back(io::read_text_input(f));
    } else {
      texts.push_back(io::read_text_input(in));
    }
  }
  return texts;
}

// The model_type of the checkpoint a tokenizer belongs to (config.json beside it), or "".
std::string model_type_near(const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::is_directory(tokenizer_path) ? fs::path(tokenizer_path) : fs::path(tokenizer_path).parent_path();
  if (!fs::is_regular_file(dir / "config.json")) return "";
  return models::read_model_config((dir / "config.json").string()).model_type;
}

int run_chat(const tools::Args& args, const std::string& out) {
  const auto tok_path = args.get("tokenizer");
  LOWBIT_CHECK(tok_path.has_value(), "option --chat needs --tokenizer (the checkpoint's tokenizer or its directory)");
  LOWBIT_CHECK(!args.get("train-tokenizer") && !args.get("doc-separator"),
               "options --train-tokenizer and --doc-separator do not apply to --chat");
  const tok::Tokenizer t = tok::Tokenizer::from_file(*tok_path);
  io::ChatPrepareOptions o;
  if (const auto name = args.get("template")) {
    const auto parsed = io::parse_chat_template(*name);
    LOWBIT_CHECK(parsed.has_value(), "option --template: unknown template '", *name, "' (", io::chat_template_names(), ")");
    o.chat_template = *parsed;
  } else {
    try {
      o.chat_template = io::default_chat_template(model_type_near(*tok_path), t, t.data().config.chat_template);
    } catch (const Error& e) {
      throw Error("option --template is needed: " + error_text(e.what()));
    }
  }
  o.chat.date_string = args.get_or("date-string", o.chat.date_string);
  o.val_fraction = args.get_double("val-fraction", 0.01);
  o.seed = static_cast<uint64_t>(args.get_int("seed", 0));
  o.max_shard_tokens = static_cast<uint64_t>(args.get_int("shard-tokens", int64_t{1} << 26));
  const int64_t max_tokens = args.get_int("max-tokens", 0);
  LOWBIT_CHECK(max_tokens >= 0, "option --max-tokens must be >= 0, got ", max_tokens);
  o.max_tokens = static_cast<uint64_t>(max_tokens);
  const std::string overlong = args.get_or("overlong", "error");
  if (overlong == "error") o.overlong = io::ChatPrepareOptions::Overlong::Error;
  else if (overlong == "truncate") o.overlong = io::ChatPrepareOptions::Overlong::Truncate;
  else if (overlong == "skip") o.overlong = io::ChatPrepareOptions::Overlong::Skip;
  else LOWBIT_FAIL("option --overlong: '", overlong, "' is not error, truncate or skip");
  o.skip_bad_records = args.flag("skip-bad-records");
  const auto eos = t.effective_config().eos_token;
  LOWBIT_CHECK(eos.has_value(), "the tokenizer has no known end-of-text token (used as padding)");
  const io::ChatPrepareResult r =
      io::prepare_chat(args.positional(), out, t, static_cast<uint32_t>(*t.token_to_id(*eos)), o);
  t.save_files(out);
  std::printf("template: %s\n", io::chat_template_name(o.chat_template));
  std::printf("read %llu bytes\n", static_cast<unsigned long long>(r.input_bytes));
  std::printf("train: %llu examples, %llu tokens (%llu trained), %zu shards\n",
              static_cast<unsigned long long>(r.train_documents), static_cast<unsigned long long>(r.train_tokens),
              static_cast<unsigned long long>(r.trained_tokens), r.train_shards.size());
  std::printf("val: %llu examples, %llu tokens, %zu shards\n", static_cast<unsigned long long>(r.val_documents),
              static_cast<unsigned long long>(r.val_tokens), r.val_shards.size());
  if (r.bad_records || r.overlong_skipped || r.truncated)
    std::printf("skipped %llu bad records and %llu over-long examples; truncated %llu\n",
                static_cast<unsigned long long>(r.bad_records), static_cast<unsigned long long>(r.overlong_skipped),
                static_cast<unsigned long long>(r.truncated));
  return 0;
}

int run(int argc, char** argv) {
  const tools::Args args(argc, argv,
                         {"out", "tokenizer", "train-tokenizer", "eos", "doc-separator", "val-fraction", "seed",
                          "shard-tokens", "template", "date-string", "max-tokens", "overlong"},
                         {"help", "chat", "skip-bad-records"});
  if (args.flag("help") || args.positional().empty()) {
    std::printf(
        "usage: prepare_data --out DIR (--tokenizer TOKENIZER | --train-tokenizer VOCAB_SIZE)\n"
        "                    [--eos TOKEN] [--doc-separator SEP] [--val-fraction F] [--seed N]\n"
        "                    [--shard-tokens N] INPUT...\n"
        "       prepare_data --chat --out DIR --tokenizer TOKENIZER [--template NAME] [--date-string D]\n"
        "                    [--max-tokens N] [--overlong error|truncate|skip] [--skip-bad-records]\n"
        "                    [--val-fraction F] [--seed N] [--shard-tokens N] INPUT.jsonl...\n"
        "templates: %s\n",
        io::chat_template_names().c_str());
    return args.flag("help") ? 0 : 2;
  }
  const auto out = args.get("out");
  LOWBIT_CHECK(out.has_value(), "option --out is required");
  if (args.flag("chat")) return run_chat(args, *out);
  for (const char* chat_only : {"template", "date-string", "max-tokens", "overlong"})
    LOWBIT_CHECK(!args.get(chat_only), "option --", chat_only, " needs --chat");
  LOWBIT_CHECK(!args.flag("skip-bad-records"), "option --skip-bad-records needs --chat");
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
    if (eos.empty()) eos = "<|endoftext|>";
    std::printf("trained tokenizer: %zu ids -> %s/tokenizer.json\n", t->vocab_size(), out->c_str());
  }
  t->save_files(*out);
  if (eos.empty()) {
    if (const auto e = t->effective_config().eos_token) eos = *e;
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
