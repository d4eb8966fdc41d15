// export_model: a trained model (HF directory, train_llama run or checkpoint) for deployment.
//
//   export_model MODEL --format hf|compressed-tensors|gguf --out PATH
//          [--dtype bf16|f16|f32] [--gguf-type f32|f16|bf16|q8_0|q4_0] [--tokenizer PATH]
//
// LoRA adapters are merged into the base. compressed-tensors needs a quantized model (a QAT run,
// or `quantize`'s output); its layers are converted to packed weights on the way out.
#include <cstdio>
#include <exception>

#include "cli.h"
#include "lowbit/engine/error.h"
#include "lowbit/train/export.h"

namespace {

using namespace lowbit;

DType parse_dtype(const std::string& s) {
  if (s == "bf16") return DType::bf16;
  if (s == "f16") return DType::f16;
  if (s == "f32") return DType::f32;
  LOWBIT_FAIL("option --dtype: '", s, "' is not one of bf16, f16, f32");
}

int run(int argc, char** argv) {
  const tools::Args args(argc, argv, {"format", "out", "dtype", "gguf-type", "tokenizer"}, {"help"});
  if (args.flag("help") || args.positional().size() != 1) {
    std::printf(
        "usage: export_model MODEL --format hf|compressed-tensors|gguf --out PATH\n"
        "                    [--dtype bf16|f16|f32] [--gguf-type f32|f16|bf16|q8_0|q4_0] [--tokenizer PATH]\n"
        "MODEL: an HF directory, a train_llama run directory or a checkpoint directory\n");
    return args.flag("help") ? 0 : 2;
  }
  LOWBIT_CHECK(args.get("format").has_value(), "option --format is required (hf, compressed-tensors, gguf)");
  LOWBIT_CHECK(args.get("out").has_value(), "option --out is required");
  train::ExportOptions o;
  o.format = train::parse_export_format(*args.get("format"));
  o.out = *args.get("out");
  o.dtype = parse_dtype(args.get_or("dtype", "bf16"));
  o.gguf_type = args.get_or("gguf-type", "f16");
  o.tokenizer = args.get_or("tokenizer", "");
  train::LoadedModel m = train::load_model(args.positional()[0]);
  std::printf("model: %s (%s)\n", m.description.c_str(), m.quant.preset ? m.quant.preset->name.c_str() : "unquantized");
  std::printf("wrote %s\n", train::export_model(m, o).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return lowbit::tools::tool_main("export_model", run, argc, argv); }
