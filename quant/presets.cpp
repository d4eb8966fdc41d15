#include "lowbit/quant/presets.h"

#include <algorithm>

#include "lowbit/engine/error.h"
#include "lowbit/engine/text.h"

namespace lowbit::quant {

namespace {

QuantSpec spec(Format f, Granularity g, int64_t group = 0) {
  QuantSpec s;
  s.format = f;
  s.granularity = g;
  s.group_size = g == Granularity::per_group ? group : 0;
  if (f == Format::uint4) s.symmetric = false;
  return s;
}

QuantSpec calibrated_modelopt(QuantSpec s) {
  s.convention = Convention::modelopt;
  s.scale_policy = ScalePolicy::calibrated;
  return s;
}

QuantSpec per_token_asym_int8() {
  QuantSpec s = spec(Format::int8, Granularity::per_token);
  s.symmetric = false;
  return s;
}

QuantSpec block(Format f) { return spec(f, Granularity::per_group, format_block_size(f)); }

}  // namespace

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {
      "INT8_DEFAULT",  "INT8_PER_CHANNEL_PER_TOKEN", "W4A8",  "INT4_WEIGHT_ONLY",
      "FP8_DEFAULT",   "FP8_PER_CHANNEL_PER_TOKEN",  "FP8_2D_BLOCKWISE_WEIGHT_ONLY",
      "NVFP4_DEFAULT", "NVFP4_WEIGHT_ONLY",          "MXFP4", "MXFP8", "GGUF_Q4_0", "GGUF_Q8_0"};
  return names;
}

QuantPreset resolve_preset(const std::string& name, const PresetOptions& o) {
  LOWBIT_CHECK(o.group_size >= 0, "quant preset: group_size must be >= 0, got ", o.group_size);
  QuantPreset p;
  p.name = name;
  if (name == "INT8_DEFAULT") {  // ModelOpt INT8_DEFAULT_CFG: calibrated per-channel W, per-tensor A
    p.weight = calibrated_modelopt(spec(Format::int8, Granularity::per_channel));
    p.input = calibrated_modelopt(spec(Format::int8, Granularity::per_tensor));
  } else if (name == "INT8_PER_CHANNEL_PER_TOKEN") {  // dynamic per-channel W, per-token asymmetric A
    p.weight = spec(Format::int8, Granularity::per_channel);
    p.input = per_token_asym_int8();
  } else if (name == "W4A8") {  // torchao 8da4w: int4 symmetric groups, int8 per-token asymmetric A
    p.weight = spec(Format::int4, Granularity::per_group, o.group_size ? o.group_size : 32);
    p.input = per_token_asym_int8();
  } else if (name == "INT4_WEIGHT_ONLY") {  // torchao Int4WeightOnlyConfig: uint4 + float zero, group 128
    p.weight = spec(Format::uint4, Granularity::per_group, o.group_size ? o.group_size : 128);
  } else if (name == "FP8_DEFAULT") {  // ModelOpt FP8_DEFAULT_CFG: calibrated per-tensor e4m3
    p.weight = calibrated_modelopt(spec(Format::fp8_e4m3, Granularity::per_tensor));
    p.input = calibrated_modelopt(spec(Format::fp8_e4m3, Granularity::per_tensor));
  } else if (name == "FP8_PER_CHANNEL_PER_TOKEN") {  // calibrated per-channel W, dynamic per-token A
    p.weight = calibrated_modelopt(spec(Format::fp8_e4m3, Granularity::per_channel));
    p.input = spec(Format::fp8_e4m3, Granularity::per_token);
    p.input->convention = Convention::modelopt;
  } else if (name == "FP8_2D_BLOCKWISE_WEIGHT_ONLY") {  // 128 x 128 tiles
    p.weight = calibrated_modelopt(spec(Format::fp8_e4m3, Granularity::block2d));
  } else if (name == "NVFP4_DEFAULT") {
    p.weight = block(Format::nvfp4);
    p.input = block(Format::nvfp4);
  } else if (name == "NVFP4_WEIGHT_ONLY") {
    p.weight = block(Format::nvfp4);
  } else if (name == "MXFP4") {
    p.weight = block(Format::mxfp4);
    p.input = block(Format::mxfp4);
  } else if (name == "MXFP8") {
    p.weight = block(Format::mxfp8);
    p.input = block(Format::mxfp8);
  } else if (name == "GGUF_Q4_0") {
    p.weight = block(Format::gguf_q4_0);
  } else if (name == "GGUF_Q8_0") {
    p.weight = block(Format::gguf_q8_0);
  } else {
    std::string list;
    for (const std::string& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
    LOWBIT_FAIL("quant preset: unknown preset '", name, "' (did you mean ", closest_match(name, preset_names()),
                "? all: ", list, ")");
  }
  LOWBIT_CHECK(o.group_size == 0 || name == "W4A8" || name == "INT4_WEIGHT_ONLY", "quant preset: group_size applies ",
               "to W4A8 and INT4_WEIGHT_ONLY only, not ", name);
  validate(p.weight);
  if (p.input) validate(*p.input);
  return p;
}

std::string describe(const QuantPreset& p) {
  std::string s = p.name + ": weight " + to_json(p.weight);
  if (p.input) s += " input " + to_json(*p.input);
  if (p.output) s += " output " + to_json(*p.output);
  return s;
}

}  // namespace lowbit::quant
