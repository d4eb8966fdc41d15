// quantize: post-training quantization. Loads a model, calibrates it on N batches of a text,
// converts it with a preset to packed low-bit weights, evaluates the perplexity before and
// after (the real low-bit matmul: deployed numerics), and exports it.
//
//   quantize MODEL --preset NAME --calib TEXT [--group-size N] [--calib-batches N]
//            [--doc-separator SEP] [--eval TEXT] [--limit DOCS] [--window N] [--batch N]
//            [--format hf|compressed-tensors|gguf --out PATH] [--gguf-type TYPE] [--json FILE]
//
// MODEL: an HF directory, a train_llama run or a checkpoint of an unquantized model.
#include <cstdio>
#include <exception>
#include <filesystem>

#include "cli.h"
#include "lowbit/engine/error.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/prepare_data.h"
#include "lowbit/train/eval_ppl.h"
#include "lowbit/train/export.h"

namespace {

using namespace lowbit;
using ojson = nlohmann::ordered_json;

// A text file named by an option: not a directory, not empty, UTF-8 (errors name both).
std::string text_input(const std::string& path, const char* option) {
  try {
    LOWBIT_CHECK(!std::filesystem::is_directory(path), "input ", path, " is a directory: name a text file");
    return io::read_text_input(path);
  } catch (const Error& e) {
    throw Error(std::string("option --") + option + ": " + error_text(e.what()));
  }
}

int run(int argc, char** argv) {
  const tools::Args args(argc, argv,
                         {"preset", "group-size", "calib", "calib-batches", "doc-separator", "eval", "limit", "window", "batch",
                          "format", "out", "gguf-type", "dtype", "tokenizer", "json"},
                         {"help"});
  if (args.flag("help") || args.positional().size() != 1) {
    std::printf(
        "usage: quantize MODEL --preset NAME --calib TEXT [--group-size N] [--calib-batches N]\n"
        "                [--doc-separator SEP] [--eval TEXT] [--limit DOCS] [--window N] [--batch N]\n"
        "                [--format hf|compressed-tensors|gguf --out PATH] [--gguf-type TYPE] [--json FILE]\n");
    return args.flag("help") ? 0 : 2;
  }
  LOWBIT_CHECK(args.get("preset").has_value(), "option --preset is required (e.g. W4A8, INT4_WEIGHT_ONLY, NVFP4_DEFAULT)");
  LOWBIT_CHECK(args.get("calib").has_value(), "option --calib is required (a text file to calibrate on)");
  LOWBIT_CHECK(args.get("format").has_value() == args.get("out").has_value(), "options --format and --out go together");
  const int64_t calib_batches = args.get_int("calib-batches", 8);
  LOWBIT_CHECK(calib_batches >= 1, "option --calib-batches must be >= 1, got ", calib_batches);
  std::optional<train::ExportOptions> exp;
  if (args.get("format")) {
    exp.emplace();
    exp->format = train::parse_export_format(*args.get("format"));
    exp->out = *args.get("out");
    exp->gguf_type = args.get_or("gguf-type", "q4_0");
    exp->tokenizer = args.get_or("tokenizer", "");
    const std::string dt = args.get_or("dtype", "bf16");
    LOWBIT_CHECK(dt == "bf16" || dt == "f16" || dt == "f32", "option --dtype: '", dt, "' is not one of bf16, f16, f32");
    exp->dtype = dt == "bf16" ? DType::bf16 : dt == "f16" ? DType::f16 : DType::f32;
  }

  train::LoadedModel lm = train::load_model(args.positional()[0]);
  LOWBIT_CHECK(!lm.quant.preset, lm.description, " is already quantized (", lm.quant.description,
               "); quantize an unquantized model, or export this one directly");
  models::CausalLM& model = *lm.model;
  model.eval();
  const std::string tok_path = args.get_or("tokenizer", lm.tokenizer);
  LOWBIT_CHECK(!tok_path.empty(), lm.description, " comes without a tokenizer (tokenizer.json or tokenizer.model); give one with --tokenizer");
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_file(tok_path);
  const std::string sep = tools::unescape(args.get_or("doc-separator", ""));
  const auto calib = train::text_documents(text_input(*args.get("calib"), "calib"), sep, tokenizer);
  LOWBIT_CHECK(!calib.empty(), "option --calib: ", *args.get("calib"), " holds no documents");
  std::vector<train::Document> eval;
  if (args.get("eval")) eval = train::text_documents(text_input(*args.get("eval"), "eval"), sep, tokenizer);
  const int64_t limit = args.get_int("limit", 0);
  LOWBIT_CHECK(limit >= 0, "option --limit must be >= 0, got ", limit);
  if (limit > 0 && static_cast<int64_t>(eval.size()) > limit) eval.resize(static_cast<size_t>(limit));

  train::PplOptions o;
  o.window = args.get_int("window", lm.config ? lm.config->i("data.seq_len") : 512);
  o.batch = args.get_int("batch", 4);
  const auto prefix = train::default_prefix_token(model.config(), &tokenizer);
  LOWBIT_CHECK(prefix.has_value(), "the model has no known BOS or end-of-text token");
  o.prefix_token = *prefix;
  train::validate(o, model.config().vocab_size);

  ojson report;
  report["model"] = args.positional()[0];
  report["source"] = lm.description;
  std::optional<train::PplResult> before;
  if (!eval.empty()) {
    before = train::evaluate_perplexity(model, eval, o);
    std::printf("before: token perplexity %.4f", before->token_perplexity());
    if (before->word_perplexity()) std::printf(", word perplexity %.4f", *before->word_perplexity());
    std::printf("\n");
    report["before"] = train::to_json(*before);
  }
  const std::string mode = train::apply_quant_choice(
      model, lm.quant, {"real", *args.get("preset"), args.get_int("group-size", 0)},
      [&] { train::calibrate_on_documents(model, calib, o, calib_batches); });
  std::printf("quantized: %s, calibrated on %lld batches of %s, mode %s\n", lm.quant.preset->name.c_str(),
              static_cast<long long>(calib_batches), args.get("calib")->c_str(), mode.c_str());
  report["preset"] = lm.quant.preset->name;
  report["quant"] = lm.quant.description;
  report["calib_batches"] = calib_batches;
  if (!eval.empty()) {
    const train::PplResult after = train::evaluate_perplexity(model, eval, o);
    std::printf("after:  token perplexity %.4f", after.token_perplexity());
    if (after.word_perplexity()) std::printf(", word perplexity %.4f", *after.word_perplexity());
    std::printf(" (%+.2f%% token perplexity)\n", 100.0 * (after.token_perplexity() / before->token_perplexity() - 1));
    report["after"] = train::to_json(after);
  }
  if (exp) {
    const std::string what = train::export_model(lm, *exp);
    std::printf("wrote %s\n", what.c_str());
    report["export"] = what;
  }
  if (const auto j = args.get("json")) io::write_file_atomic(*j, report.dump(2) + "\n", "option --json");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return lowbit::tools::tool_main("quantize", run, argc, argv); }
