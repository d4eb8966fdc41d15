// generate: text from a model, streamed to stdout token by token as it is produced.
//
//   generate MODEL_PATH --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K]
//            [--top-p P] [--seed S] [--quant fake|dequantized|real|none] [--preset NAME]
//            [--group-size N] [--tokenizer TOKENIZER] [--echo]
//            [--chat [--system TEXT] [--template NAME] [--date-string D]]
//
// MODEL_PATH: an HF directory, a train_llama run directory or one checkpoint. With --chat the
// prompt is a user message rendered with the chat template (--template, else the checkpoint's)
// and its generation prompt, exactly as prepare_data --chat renders training data. Decoding
// stops at an end-of-text / end-of-turn token or after --max-new-tokens; a one-line summary
// goes to stderr.
// docs/tools.md describes every option.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>

#include "cli.h"
#include "lowbit/engine/error.h"
#include "lowbit/io/chat_template.h"
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
                          "group-size", "tokenizer", "system", "template", "date-string"},
                         {"echo", "help", "chat"});
  if (args.flag("help") || args.positional().size() != 1) {
    std::printf(
        "usage: generate MODEL_PATH --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K]\n"
        "                [--top-p P] [--seed S] [--quant fake|dequantized|real|none] [--preset NAME]\n"
        "                [--group-size N] [--tokenizer TOKENIZER] [--echo]\n"
        "                [--chat [--system TEXT] [--template NAME] [--date-string D]]\n"
        "templates: %s\n",
        io::chat_template_names().c_str());
    return args.flag("help") ? 0 : 2;
  }
  for (const char* chat_only : {"system", "template", "date-string"})
    LOWBIT_CHECK(args.flag("chat") || !args.get(chat_only), "option --", chat_only, " needs --chat");
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
               " comes without a tokenizer (tokenizer.json or tokenizer.model); give one with --tokenizer");
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_file(tok_path);
  const std::string mode = train::apply_quant_choice(
      model, lm.quant, {args.get_or("quant", ""), args.get_or("preset", ""), args.get_int("group-size", 0)});

  std::vector<int32_t> encoded;
  if (args.flag("chat")) {
    io::ChatTemplate t;
    if (const auto name = args.get("template")) {
      const auto parsed = io::parse_chat_template(*name);
      LOWBIT_CHECK(parsed.has_value(), "option --template: unknown template '", *name, "' (", io::chat_template_names(),
                   ")");
      t = *parsed;
    } else {
      t = io::default_chat_template(model.config().model_type, tokenizer, tokenizer.data().config.chat_template);
    }
    std::vector<io::ChatMessage> messages;
    if (const auto system = args.get("system")) messages.push_back({"system", *system});
    messages.push_back({"user", *prompt});
    io::ChatOptions co;
    co.date_string = args.get_or("date-string", co.date_string);
    encoded = io::tokenize_chat(io::render_chat(messages, t, co, /*add_generation_prompt=*/true), tokenizer).ids;
    std::fprintf(stderr, "generate: chat template %s\n", io::chat_template_name(t));
  } else {
    encoded = tokenizer.encode(*prompt, /*add_special_tokens=*/true);
  }
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
  // The generated ids are decoded together (decoders such as Metaspace treat the first token
  // apart) and the new stable text printed: not an unfinished UTF-8 sequence at the end, nor
  // trailing U+FFFD of byte-fallback tokens still waiting for their other bytes.
  std::vector<int32_t> generated;
  std::string text;
  size_t printed = 0;
  char last = args.flag("echo") && !prompt->empty() ? prompt->back() : '\n';
  bool stopped = false;
  const auto print = [&](bool final) {
    size_t stable = final ? text.size() : models::utf8_complete_length(text);
    static const std::string kFffd = "\xEF\xBF\xBD";
    while (!final && stable >= printed + kFffd.size() && text.compare(stable - kFffd.size(), kFffd.size(), kFffd) == 0)
      stable -= kFffd.size();
    if (stable <= printed) return;
    std::fwrite(text.data() + printed, 1, stable - printed, stdout);
    std::fflush(stdout);
    last = text[stable - 1];
    printed = stable;
  };
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int64_t> out = models::generate(model, ids, so, [&](int64_t id) {
    stopped = std::find(so.stop_tokens.begin(), so.stop_tokens.end(), id) != so.stop_tokens.end();
    if (stopped) return true;  // generate() ends here; the stop token is not printed
    generated.push_back(static_cast<int32_t>(id));
    text = tokenizer.decode(generated, /*skip_special_tokens=*/true);
    print(false);
    return true;
  });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print(true);
  if (last != '\n') std::fputc('\n', stdout);
  std::fflush(stdout);
  std::fprintf(stderr, "generate: %zu tokens in %.2f s (%.1f tokens/s), prompt %zu tokens, stopped at %s\n",
               out.size(), seconds, static_cast<double>(out.size()) / std::max(seconds, 1e-9), ids.size(),
               stopped ? "end of text" : "max tokens");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return lowbit::tools::tool_main("generate", run, argc, argv); }
