// Export of a converted (quant::convert) model as a Hugging Face directory in the
// compressed-tensors layout (what vLLM reads; transformers + compressed-tensors load it, checked
// by tests/reference/compressed_tensors_golden.py): config.json with a
// "quantization_config" block (quant_method "compressed-tensors", one config group targeting
// Linear, the unquantized linears in "ignore") and model.safetensors holding, per quantized
// linear, the packed codes and scales compressed-tensors expects for the format
// (weight_packed / weight / weight_scale / weight_shape / weight_global_scale / input_scale /
// input_global_scale). The stored codes are the packed QTensor's codes, never re-quantized, so
// compressed-tensors' dequantize reproduces quant::dequantize(packed_weight()) - bit for bit
// except where a scale convention cannot be expressed (docs/compressed_tensors.md states the
// exact residuals: ModelOpt int8 <= 1 f32 step, NVFP4 <= 2 f32 steps). Presets with no
// compressed-tensors form (GGUF, uint4 with float zero points, e5m2, ...) are one-line errors
// naming the preset.
#pragma once
#include <map>
#include <string>

#include "lowbit/models/llama.h"
#include "lowbit/quant/presets.h"

namespace lowbit::io {

struct CompressedTensorsOptions {
  DType dtype = DType::bf16;  // unquantized tensors (embeddings, norms, lm_head, biases): bf16, f16 or f32
  // int / fp8 weight and static input scales: f32 (exact), or bf16 / f16 as llm-compressor
  // stores them - then every scale must convert exactly, else the export fails naming the layer.
  DType scale_dtype = DType::f32;
  std::string tokenizer_dir = {};  // copy tokenizer.json etc. (io::hf_tokenizer_files) from here when set
};

// How a preset is stored: the compressed-tensors format ("pack-quantized", "int-quantized",
// "float-quantized", "naive-quantized", "nvfp4-pack-quantized", "mxfp4-pack-quantized",
// "mxfp8-quantized") and its config group (JSON object text: targets ["Linear"], weights,
// input_activations, output_activations, format). Throws "compressed-tensors: preset NAME: why"
// when the preset cannot be represented exactly, so a CLI can reject it before any work.
struct CompressedTensorsScheme {
  std::string format;
  std::string config_group;
};
CompressedTensorsScheme compressed_tensors_scheme(const quant::QuantPreset& preset);

// Writes dir (created if needed): config.json, model.safetensors (stale model files of an earlier
// save there are removed) and, when opts.tokenizer_dir is set, the tokenizer files. Every prepared
// layer must be converted and all must share one scheme; static activation scales (INT8_DEFAULT,
// FP8_DEFAULT) and NVFP4's input_global_scale need calibrated input quantizers.
void save_compressed_tensors(const models::CausalLM& model, const std::string& dir,
                             const CompressedTensorsOptions& opts = {});

// Reads a directory written in this layout (config.json + model.safetensors, one config group)
// and decompresses it the way compressed-tensors does, in f32: w = (code - 0) * scale with the
// scale grid of the strategy, NVFP4's scale being f32(block_scale) / weight_global_scale and
// MX's 2^(byte - 127). Returns every tensor by name: "<layer>.weight" dequantized for quantized
// layers (their compression tensors consumed), the others converted to f32. Malformed
// directories give one-line errors naming the file and tensor.
std::map<std::string, Tensor> load_compressed_tensors_weights(const std::string& dir);

}  // namespace lowbit::io
