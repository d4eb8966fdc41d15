// Exporting a trained model for deployment, shared by the `export_model` and `quantize` tools:
//   hf                 an HF directory (bf16 / f16 / f32) that transformers loads;
//   compressed-tensors a quantized HF directory in the compressed-tensors layout (vLLM);
//   gguf               a GGUF file (F32 / F16 / BF16 / Q8_0 / Q4_0) with the tokenizer (llama.cpp).
// LoRA adapters are merged into the base first. A quantized model's resolved spec goes with every
// export: compressed-tensors' quantization_config, lowbit_quant.json beside an HF directory, and
// lowbit.quant.* metadata in a GGUF file (whose summary warns when the GGUF type is not the QAT
// format: only GGUF_Q4_0 / GGUF_Q8_0 QAT is reproduced by q4_0 / q8_0).
#pragma once
#include <string>

#include "lowbit/engine/dtype.h"
#include "lowbit/train/model_setup.h"

namespace lowbit::train {

enum class ExportFormat { hf, compressed_tensors, gguf };
// "hf", "compressed-tensors", "gguf" -> format; anything else is an error listing them.
ExportFormat parse_export_format(const std::string& name);

struct ExportOptions {
  ExportFormat format = ExportFormat::hf;
  std::string out;                 // directory (hf, compressed-tensors) or file (gguf)
  DType dtype = DType::bf16;       // hf: weights; compressed-tensors: unquantized tensors
  std::string gguf_type = "f16";   // f32, f16, bf16, q8_0, q4_0
  std::string tokenizer;           // tokenizer.json (or its directory); default: the model's own
};

// Writes m's model as opts asks (m.model is modified: adapters merged; for compressed-tensors
// the prepared layers are converted). Returns a one-line summary of what was written.
std::string export_model(LoadedModel& m, const ExportOptions& opts);

}  // namespace lowbit::train
