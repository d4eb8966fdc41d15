// generate: text from a model, streamed to stdout token by token as it is produced.
//
//   generate MODEL_PATH --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K]
//            [--top-p P] [--seed S] [--quant fake|dequantized|real|none] [--preset NAME]
//            [--group-size N] [--tokenizer tokenizer.json] [--echo]
//
// MODEL_PATH: an HF directory, a train_llama run directory or one checkpoint. Decoding stops at
// an end-of-text token or after --max-new-tokens; a one-line summary goes to stderr.
// docs/tools.md describes every option.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>

#include "cli.h"
#include "lowbit/engine/error.h"
#include "lowbit/models/generate.h"
#include "lowbit/train/eval_ppl.h"

namespace {

using namespace lowbit;

// config.json's eos_token_id plus the end-of-text tokens the tokenizer knows.
std::vector<int64_t> stop_tokens(const models::ModelConfig& c, const tok::Tokenizer& t) {
  std::vector<int64_t> out = c.eos_token_ids;
  for (const char* name : {"<|end_of_text|>", "<|endoftext|>", "</s>", "<|im_end|>", "<|eot_id|>"})
    if (const auto id = t.token_to_id(name)) out.push_back(*id);
  return out;
}

int run(int argc, char** argv) {
  const tools::Args args(argc, argv,
                         {"prompt", "max-new-tokens", "temperature", "top-k", "top-p", "seed", "quant", "preset",
                          "group-size", "tokenizer"},
                         {"echo", "help"});
  if (args.flag("help") || args.positional().size() != 1) {
    std::printf(
        "usage: generate MODEL_PATH --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K]\n"
        "                [--top-p P] [--seed S] [--quant fake|dequantized|real|none] [--preset NAME]\n"
        "                [--group-size N] [--tokenizer tokenizer.json] [--echo]\n");
    return args.flag("help") ? 0 : 2;
  }
  const auto prompt = args.get("prompt");
  LOWBIT_CHECK(prompt.has_value(), "option --prompt is required (\"\" starts from the BOS / end-of-text token)");
  models::SamplingOptions so;
  so.max_new_tokens = args.get_int("max-new-tokens", 64);
  so.temperature = args.get_double("temperature", 1.0);
  so.top_k = args.get_int("top-k", 0);
  so.top_p = args.get_double("top-p", 1.0);
  so.seed = static_cast<uint64_t>(args.get_int("seed", 0));
  models::validate(so);

  train::LoadedModel lm = train::load_model(args.positional()[0]);
  models::CausalLM& model = *lm.model;
  model.eval();
  const std::string tok_path = args.get_or("tokenizer", lm.tokenizer);
  LOWBIT_CHECK(!tok_path.empty(), "model path ", args.positional()[0],
               " comes without a tokenizer.json; give one with --tokenizer");
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_file(tok_path);
  const std::string mode = train::apply_quant_choice(
      model, lm.quant, {args.get_or("quant", ""), args.get_or("preset", ""), args.get_int("group-size", 0)});

  const std::vector<int32_t> encoded = tokenizer.encode(*prompt, /*add_special_tokens=*/true);
  std::vector<int64_t> ids(encoded.begin(), encoded.end());
  if (ids.empty()) {
    const auto start = train::default_prefix_token(model.config(), &tokenizer);
    LOWBIT_CHECK(start.has_value(), "the prompt is empty and the model has no known BOS or end-of-text token");
    ids.push_back(*start);
  }
  so.stop_tokens = stop_tokens(model.config(), tokenizer);
  const std::string preset = lm.quant.preset && mode != "none" ? " (" + lm.quant.preset->name + ")" : "";
  std::fprintf(stderr, "generate: %s, quant mode %s%s\n", lm.description.c_str(), mode.c_str(), preset.c_str());

  if (args.flag("echo")) std::fputs(prompt->c_str(), stdout);
  std::string pending;  // decoded bytes not yet printed: the start of an unfinished UTF-8 sequence
  char last = args.flag("echo") && !prompt->empty() ? prompt->back() : '\n';
  bool stopped = false;
  const auto print = [&](size_t n) {
    if (n == 0) return;
    std::fwrite(pending.data(), 1, n, stdout);
    std::fflush(stdout);
    last = pending[n - 1];
    pending.erase(0, n);
  };
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int64_t> out = models::generate(model, ids, so, [&](int64_t id) {
    stopped = std::find(so.stop_tokens.begin(), so.stop_tokens.end(), id) != so.stop_tokens.end();
    if (stopped) return true;  // generate() ends here; the stop token is not printed
    const int32_t one = static_cast<int32_t>(id);
    pending += tokenizer.decode({&one, 1}, /*skip_special_tokens=*/true);
    print(models::utf8_complete_length(pending));
    return true;
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print(pending.size());
  if (last != '\n') std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "generate: %zu tokens in %.2f s (%.1f tokens/s), prompt %zu tokens, stopped at %s\n",
               out.size(), seconds, static_cast<double>(out.size()) / std::max(seconds, 1e-9), ids.size(),
               stopped ? "end of text" : "max tokens");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return lowbit::tools::tool_main("generate", run, argc, argv); }
