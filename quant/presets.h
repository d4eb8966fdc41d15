// Quantization presets named as users know them from ModelOpt, torchao and llama.cpp, each a
// weight spec plus optional input (activation) and output specs for a linear layer.
// docs/quantization.md lists what each resolves to; resolve_preset prints nothing, describe()
// gives the one-line summary stored with checkpoints and shown to users.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "lowbit/quant/spec.h"

namespace lowbit::quant {

struct QuantPreset {
  std::string name;
  QuantSpec weight;
  std::optional<QuantSpec> input, output;
};

struct PresetOptions {
  int64_t group_size = 0;  // W4A8 / INT4_WEIGHT_ONLY group size; 0 = the preset's default (32 / 128)
};

// INT8_DEFAULT, INT8_PER_CHANNEL_PER_TOKEN, W4A8, INT4_WEIGHT_ONLY, FP8_DEFAULT,
// FP8_PER_CHANNEL_PER_TOKEN, FP8_2D_BLOCKWISE_WEIGHT_ONLY, NVFP4_DEFAULT, NVFP4_WEIGHT_ONLY,
// MXFP4, MXFP8, GGUF_Q4_0, GGUF_Q8_0. Unknown names list the valid ones (closest first).
QuantPreset resolve_preset(const std::string& name, const PresetOptions& opts = {});
const std::vector<std::string>& preset_names();
// "W4A8: weight {...} input {...}" with every spec in JSON.
std::string describe(const QuantPreset& p);

}  // namespace lowbit::quant
