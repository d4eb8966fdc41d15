// eval_ppl: perplexity of a model on text or token shards, as lm-evaluation-harness's wikitext
// task computes it (token, word and byte perplexity, bits per byte); train/eval_ppl.h has the
// exact definitions. The result is one JSON document on stdout.
//
//   eval_ppl MODEL_PATH INPUT... [--doc-separator SEP] [--tokenizer tokenizer.json]
//            [--window N] [--stride N] [--batch N] [--limit N] [--prefix-token TOKEN]
//            [--quant fake|dequantized|real|none] [--preset NAME] [--group-size N]
//            [--calib-batches N] [--out FILE]
//
// MODEL_PATH: an HF directory, a train_llama run directory or one checkpoint. INPUT: text files
// (split at --doc-separator, tokenized with the model's tokenizer or --tokenizer) or token shards
// from prepare_data (recognized by their header; split at their EOS; token perplexity only).
// docs/tools.md describes every option and the output.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "cli.h"
#include "lowbit/engine/error.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/prepare_data.h"
#include "lowbit/train/eval_ppl.h"

namespace {

using namespace lowbit;

bool is_token_shard(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LOWBIT_CHECK(in.good(), "input ", path, ": cannot open");
  char magic[8] = {};
  in.read(magic, sizeof magic);
  return in.gcount() == 8 && std::string(magic, 8) == "LBTOKENS";
}

int run(int argc, char** argv) {
  const tools::Args args(argc, argv,
                         {"doc-separator", "tokenizer", "window", "stride", "batch", "limit", "prefix-token", "quant",
                          "preset", "group-size", "calib-batches", "out"},
                         {"help"});
  if (args.flag("help") || args.positional().size() < 2) {
    std::printf(
        "usage: eval_ppl MODEL_PATH INPUT... [--doc-separator SEP] [--tokenizer tokenizer.json]\n"
        "                [--window N] [--stride N] [--batch N] [--limit N] [--prefix-token TOKEN]\n"
        "                [--quant fake|dequantized|real|none] [--preset NAME] [--group-size N]\n"
        "                [--calib-batches N] [--out FILE]\n");
    return args.flag("help") ? 0 : 2;
  }
  const std::string model_path = args.positional()[0];
  const std::vector<std::string> inputs(args.positional().begin() + 1, args.positional().end());
  const int64_t limit = args.get_int("limit", 0), calib_batches = args.get_int("calib-batches", 0);
  LOWBIT_CHECK(limit >= 0, "option --limit must be >= 0, got ", limit);
  LOWBIT_CHECK(calib_batches >= 0, "option --calib-batches must be >= 0, got ", calib_batches);
  LOWBIT_CHECK(calib_batches == 0 || args.get("preset"), "option --calib-batches needs --preset");
  std::vector<bool> shard(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) shard[i] = is_token_shard(inputs[i]);

  train::LoadedModel lm = train::load_model(model_path);
  models::CausalLM& model = *lm.model;
  model.eval();
  const std::string tok_path = args.get_or("tokenizer", lm.tokenizer);
  std::optional<tok::Tokenizer> tokenizer;
  if (!tok_path.empty()) tokenizer = tok::Tokenizer::from_file(tok_path);
  const bool any_text = std::find(shard.begin(), shard.end(), false) != shard.end();
  LOWBIT_CHECK(!any_text || tokenizer, "model path ", model_path,
               " comes without a tokenizer (tokenizer.json or tokenizer.model); give one with --tokenizer to read text");

  std::vector<train::Document> docs;
  std::optional<int64_t> shard_eos;
  const std::string sep = tools::unescape(args.get_or("doc-separator", ""));
  for (size_t i = 0; i < inputs.size(); ++i) {
    LOWBIT_CHECK(!std::filesystem::is_directory(inputs[i]), "input ", inputs[i],
                 " is a directory: name the text files or token shards (.bin) in it");
    std::vector<train::Document> d;
    if (shard[i]) {
      const io::TokenShard s(inputs[i]);
      shard_eos = s.header().eos_id;
      d = train::shard_documents(s);
    } else {
      d = train::text_documents(io::read_text_input(inputs[i]), sep, *tokenizer);
    }
    docs.insert(docs.end(), std::make_move_iterator(d.begin()), std::make_move_iterator(d.end()));
  }
  if (limit > 0 && static_cast<int64_t>(docs.size()) > limit) docs.resize(static_cast<size_t>(limit));
  if (docs.empty()) {
    std::string names;
    for (const std::string& in : inputs) names += (names.empty() ? "" : ", ") + in;
    LOWBIT_FAIL("the inputs hold no documents: ", names);
  }

  train::PplOptions o;
  const models::ModelConfig& mc = model.config();
  o.window = args.get_int("window", lm.config ? lm.config->i("data.seq_len")
                                              : std::min<int64_t>(mc.max_position_embeddings, 2048));
  o.stride = args.get_int("stride", 0);
  LOWBIT_CHECK(!args.get("stride") || o.stride >= 1, "option --stride must be >= 1, got ", o.stride);
  o.batch = args.get_int("batch", 4);
  if (const auto p = args.get("prefix-token")) {
    std::optional<int64_t> id;
    if (!p->empty() && p->find_first_not_of("0123456789") == std::string::npos) id = args.get_int("prefix-token", 0);
    else if (tokenizer) id = tokenizer->token_to_id(*p);
    LOWBIT_CHECK(id.has_value(), "option --prefix-token: '", *p, "' is neither an id nor a token of the tokenizer");
    o.prefix_token = *id;
  } else {
    const auto id = train::default_prefix_token(mc, tokenizer ? &*tokenizer : nullptr);
    LOWBIT_CHECK(id || shard_eos, "the model has no known BOS or end-of-text token; name one with --prefix-token");
    o.prefix_token = id ? *id : *shard_eos;
  }
  train::validate(o, mc.vocab_size);

  const train::QuantChoice choice{args.get_or("quant", ""), args.get_or("preset", ""), args.get_int("group-size", 0)};
  const std::string mode = train::apply_quant_choice(model, lm.quant, choice, [&] {
    train::calibrate_on_documents(model, docs, o, calib_batches);
  });
  const std::string preset = lm.quant.preset && mode != "none" ? " (" + lm.quant.preset->name + ")" : "";
  tools::print_kernels_line(stderr);  // stdout is the JSON result
  std::fprintf(stderr, "eval_ppl: %s, quant mode %s%s; %zu documents, window %lld, stride %lld\n",
               lm.description.c_str(), mode.c_str(), preset.c_str(), docs.size(),
               static_cast<long long>(o.window), static_cast<long long>(o.stride ? o.stride : o.window));
  if (isatty(2))
    o.progress = [](int64_t done, int64_t total) {
      std::fprintf(stderr, "\reval_ppl: window %lld / %lld", static_cast<long long>(done),
                   static_cast<long long>(total));
      if (done == total) std::fputc('\n', stderr);
    };

  const train::PplResult r = train::evaluate_perplexity(model, docs, o);
  nlohmann::ordered_json j;
  j["model"] = model_path;
  j["source"] = lm.description;
  j["inputs"] = inputs;
  j["mode"] = mode;
  j["preset"] = lm.quant.preset ? nlohmann::ordered_json(lm.quant.preset->name) : nlohmann::ordered_json(nullptr);
  j["quant"] = lm.quant.description;
  j["window"] = o.window;
  j["stride"] = o.stride ? o.stride : o.window;
  j["batch"] = o.batch;
  j["prefix_token"] = o.prefix_token;
  j.update(train::to_json(r));
  const std::string text = j.dump(2) + "\n";
  std::fputs(text.c_str(), stdout);
  if (const auto out = args.get("out")) io::write_file_atomic(*out, text, "eval_ppl");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return lowbit::tools::tool_main("eval_ppl", run, argc, argv); }
