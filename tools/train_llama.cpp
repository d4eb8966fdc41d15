// train_llama: config-driven pretraining, fine-tuning and QAT of Llama-family models.
//
//   train_llama CONFIG.json [section.key=value ...] [--print-config] [--dry-run]
//   train_llama --print-config-docs        (the key table of docs/config.md)
//
// Every key, its type, default and meaning: docs/config.md. Ctrl-C (SIGINT) or SIGTERM saves a
// checkpoint and exits; rerunning the same command resumes from it.
#include <cstdio>
#include <cstring>
#include <exception>

#include "cli.h"
#include "lowbit/engine/error.h"
#include "lowbit/train/config.h"
#include "lowbit/train/trainer.h"

namespace {

int run(int argc, char** argv) {
  using namespace lowbit;
  std::vector<std::string> overrides;
  std::string path;
  bool print_config = false, dry_run = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--print-config-docs") {
      std::fputs(train::config_markdown_table().c_str(), stdout);
      return 0;
    }
    if (a == "--print-config") print_config = true;
    else if (a == "--dry-run") dry_run = true;
    else if (a == "--help" || a == "-h") path.clear(), i = argc;
    else if (a.rfind("--", 0) == 0) LOWBIT_FAIL("unknown option ", a, " (options: --print-config, --dry-run, --print-config-docs)");
    else if (path.empty() && a.find('=') == std::string::npos) path = a;
    else overrides.push_back(a);
  }
  if (path.empty()) {
    std::printf("usage: train_llama CONFIG.json [section.key=value ...] [--print-config] [--dry-run]\n"
                "       train_llama --print-config-docs\n");
    return 2;
  }
  const train::Config cfg{train::load_config(path, overrides)};
  if (print_config) {
    std::printf("%s\n", cfg.j.dump(2).c_str());
    return 0;
  }
  tools::print_kernels_line();
  const train::RunResult r = train::run_training(cfg, {.dry_run = dry_run});
  if (r.interrupted) {
    std::printf("interrupted at step %lld; run the same command again to resume\n",
                static_cast<long long>(r.steps_done));
    return 130;
  }
  if (!dry_run)
    std::printf("done: %lld steps, final loss %.4f%s\n", static_cast<long long>(r.steps_done), r.last_loss,
                r.val_loss >= 0 ? (", val loss " + std::to_string(r.val_loss)).c_str() : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return lowbit::tools::tool_main("train_llama", run, argc, argv); }
