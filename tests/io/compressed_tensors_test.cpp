// compressed-tensors export (io/compressed_tensors.h) on a converted tiny llama, per exportable
// preset: decompressing the export gives quant::dequantize(packed_weight()) (bit for bit, or within
// the one-rounding residual of docs/compressed_tensors.md for ModelOpt int8 and NVFP4 scales);
// each layer stores exactly the tensors, dtypes and shapes compressed-tensors expects; config.json
// carries the quantization_config and still reads as the model config; presets without a
// compressed-tensors form are one-line errors naming the preset; malformed directories are
// rejected. The golden test compares our bytes and config with what the real compressed-tensors
// package produced (tests/reference/compressed_tensors_golden.py): its own pack functions applied
// to our scales, and its own QuantizationConfig serialization of our config.
//
// LOWBIT_CT_EXPORT_DIR=<dir> makes ExportDecompressesToTheDequantizedWeights keep each preset's
// export in <dir>/<PRESET>/ plus lowbit_dequantized.safetensors, the input of that script.
#include "../test_util.h"
#include "lowbit/io/compressed_tensors.h"

#include <gtest/gtest.h>

#include <bit>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "lowbit/engine/lowbit.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/quant/linear_quant.h"

namespace lowbit::io {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::vector<std::string> kExportable = {
    "INT8_DEFAULT",  "INT8_PER_CHANNEL_PER_TOKEN", "W4A8",
    "FP8_DEFAULT",   "FP8_PER_CHANNEL_PER_TOKEN",  "FP8_2D_BLOCKWISE_WEIGHT_ONLY",
    "NVFP4_DEFAULT", "NVFP4_WEIGHT_ONLY",          "MXFP4",
    "MXFP8"};
const std::vector<std::string> kRejected = {"INT4_WEIGHT_ONLY", "GGUF_Q4_0", "GGUF_Q8_0"};

std::string temp_dir(const std::string& name) { return test::temp_dir("ct_" + name); }

using test::error_of;

// 128-wide so every linear fits FP8_2D_BLOCKWISE's 128 x 128 tiles; down_proj is (128, 256).
models::ModelConfig tiny_config() {
  models::ModelConfig c;
  c.model_type = "llama";
  c.vocab_size = 128;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.head_dim = 32;
  c.max_position_embeddings = 32;
  return c;
}

// prepare -> calibrate on one batch (static input scales, NVFP4's input global amax) -> convert.
// Deterministic: the golden files were made from exactly this model.
std::unique_ptr<models::CausalLM> converted(const std::string& preset, DType param_dtype = DType::f32,
                                            bool calibrate = true) {
  auto m =
      std::make_unique<models::CausalLM>(tiny_config(), models::ModelOptions{.param_dtype = param_dtype, .seed = 3});
  quant::prepare(*m, quant::resolve_preset(preset), std::make_shared<quant::QuantContext>());
  if (calibrate) {
    Generator g(11);
    NoGradGuard no_grad;
    quant::begin_calibration(*m);
    m->forward(randint({2, 16}, 0, 128, DType::i64, &g));
    quant::finish_calibration(*m);
  }
  quant::convert(*m);
  return m;
}

std::vector<uint32_t> bits_of(const Tensor& t) {
  const std::vector<float> v = t.to(DType::f32).contiguous().to_vector<float>();
  std::vector<uint32_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = std::bit_cast<uint32_t>(v[i]);
  return b;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.raw_data());
  return {p, p + dtype_nbytes(c.dtype(), c.numel())};
}

// Distance in f32 steps between two finite floats of the same sign (or zeros).
int64_t ulps(float a, float b) {
  auto key = [](float f) {
    const auto u = static_cast<int64_t>(std::bit_cast<uint32_t>(f));
    return u & 0x80000000 ? -(u & 0x7FFFFFFF) : u;
  };
  return std::abs(key(a) - key(b));
}

// Presets whose scale convention compressed-tensors cannot express exactly (docs/compressed_tensors.md),
// with the largest difference in f32 steps: ModelOpt int8 weights (we divide by s', it multiplies
// by f32(1/s'): 1 step) and NVFP4 (we multiply by f32(pts * s8), it by f32(s8 / f32(1/pts)): the
// scales differ by at most 1 step, times a code of mantissa 1.5 (1.5, 3, 6) at most 2 steps).
int64_t allowed_steps(const std::string& preset) {
  if (preset == "INT8_DEFAULT") return 1;
  if (preset.rfind("NVFP4", 0) == 0) return 2;
  return 0;
}

TEST(CompressedTensors, ExportDecompressesToTheDequantizedWeights) {
  const char* keep = std::getenv("LOWBIT_CT_EXPORT_DIR");
  for (const std::string& preset : kExportable) {
    SCOPED_TRACE(preset);
    const auto m = converted(preset);
    std::string dir;
    if (keep) {
      dir = std::string(keep) + "/" + preset;
      fs::create_directories(dir);
    } else {
      dir = temp_dir("decompress_" + preset);
    }
    save_compressed_tensors(*m, dir);
    const auto loaded = load_compressed_tensors_weights(dir);

    std::vector<std::pair<std::string, Tensor>> ours;
    int64_t differing = 0, worst = 0, total = 0, differing_bf16 = 0;
    for (const auto& [name, lq] : quant::prepared_layers(*m)) {
      const Tensor ref = quant::dequantize(lq->packed_weight());
      ours.emplace_back(name + ".weight", ref);
      ASSERT_TRUE(loaded.count(name + ".weight")) << name;
      const Tensor got = loaded.at(name + ".weight");
      ASSERT_EQ(got.shape(), ref.shape()) << name;
      const auto a = got.to_vector<float>(), b = ref.to_vector<float>();
      for (size_t i = 0; i < a.size(); ++i) {
        if (std::bit_cast<uint32_t>(a[i]) == std::bit_cast<uint32_t>(b[i])) continue;
        ++differing;
        worst = std::max(worst, ulps(a[i], b[i]));
      }
      // compressed-tensors itself returns nvfp4 / mx weights in bf16: compare there too.
      const auto a16 = bits_of(got.to(DType::bf16)), b16 = bits_of(ref.to(DType::bf16));
      for (size_t i = 0; i < a16.size(); ++i) differing_bf16 += a16[i] != b16[i];
      total += static_cast<int64_t>(a.size());
    }
    EXPECT_LE(worst, allowed_steps(preset)) << differing << " of " << total << " weights differ";
    if (allowed_steps(preset) == 0)
      EXPECT_EQ(differing, 0) << "not bit for bit (signed zeros?)";
    else
      std::printf("[ residual ] %s: %lld of %lld weights differ (max %lld f32 steps), %lld after rounding to bf16\n",
                  preset.c_str(), static_cast<long long>(differing), static_cast<long long>(total),
                  static_cast<long long>(worst), static_cast<long long>(differing_bf16));
    // Everything else is the parameter in the export dtype (bf16).
    for (const auto& [name, p] : m->named_parameters()) {
      if (std::any_of(ours.begin(), ours.end(), [&](const auto& e) { return e.first == name; })) continue;
      ASSERT_TRUE(loaded.count(name)) << name;
      EXPECT_EQ(bits_of(loaded.at(name)), bits_of(p.to(DType::bf16))) << name;
    }
    EXPECT_EQ(loaded.size(), m->named_parameters().size());
    if (keep) save_safetensors(dir + "/lowbit_dequantized.safetensors", ours);
  }
}

struct Entry {
  std::string leaf, dtype;
  Shape shape;
};

TEST(CompressedTensors, EachLayerStoresTheTensorsCompressedTensorsExpects) {
  // model.layers.0.mlp.down_proj: (out 128, in 256).
  const std::map<std::string, std::vector<Entry>> expected = {
      {"INT8_DEFAULT", {{"weight", "I8", {128, 256}}, {"weight_scale", "F32", {128, 1}}, {"input_scale", "F32", {1}}}},
      {"INT8_PER_CHANNEL_PER_TOKEN", {{"weight", "I8", {128, 256}}, {"weight_scale", "F32", {128, 1}}}},
      {"W4A8", {{"weight_packed", "I32", {128, 32}}, {"weight_shape", "I64", {2}}, {"weight_scale", "F32", {128, 8}}}},
      {"FP8_DEFAULT", {{"weight", "F8_E4M3", {128, 256}}, {"weight_scale", "F32", {1}}, {"input_scale", "F32", {1}}}},
      {"FP8_PER_CHANNEL_PER_TOKEN", {{"weight", "F8_E4M3", {128, 256}}, {"weight_scale", "F32", {128, 1}}}},
      {"FP8_2D_BLOCKWISE_WEIGHT_ONLY", {{"weight", "F8_E4M3", {128, 256}}, {"weight_scale", "F32", {1, 2}}}},
      {"NVFP4_DEFAULT",
       {{"weight_packed", "U8", {128, 128}},
        {"weight_scale", "F8_E4M3", {128, 16}},
        {"weight_global_scale", "F32", {1}},
        {"input_global_scale", "F32", {1}}}},
      {"NVFP4_WEIGHT_ONLY",
       {{"weight_packed", "U8", {128, 128}},
        {"weight_scale", "F8_E4M3", {128, 16}},
        {"weight_global_scale", "F32", {1}}}},
      {"MXFP4", {{"weight_packed", "U8", {128, 128}}, {"weight_scale", "U8", {128, 8}}}},
      {"MXFP8", {{"weight", "F8_E4M3", {128, 256}}, {"weight_scale", "U8", {128, 8}}}},
  };
  const std::string layer = "model.layers.0.mlp.down_proj.";
  for (const auto& [preset, entries] : expected) {
    SCOPED_TRACE(preset);
    const std::string dir = temp_dir("names_" + preset);
    const auto m = converted(preset);
    save_compressed_tensors(*m, dir);
    const SafetensorsReader r(dir + "/model.safetensors");
    std::set<std::string> stored;
    for (const std::string& n : r.names())
      if (n.rfind(layer, 0) == 0) stored.insert(n.substr(layer.size()));
    std::set<std::string> want;
    for (const Entry& e : entries) {
      want.insert(e.leaf);
      ASSERT_TRUE(r.has(layer + e.leaf)) << e.leaf;
      EXPECT_EQ(*safetensors_name(r.info(layer + e.leaf).dtype), e.dtype) << e.leaf;
      EXPECT_EQ(r.info(layer + e.leaf).shape, e.shape) << e.leaf;
    }
    EXPECT_EQ(stored, want);
    EXPECT_EQ(r.info("lm_head.weight").dtype, DType::bf16);
    EXPECT_EQ(r.info("model.embed_tokens.weight").dtype, DType::bf16);
    if (preset == "W4A8") {  // pack_to_int32 layout, checked by hand on the first word of row 0
      Tensor codes;
      for (const auto& [name, lq] : quant::prepared_layers(*m))
        if (name + "." == layer) codes = lq->packed_weight().codes.contiguous();
      const auto* c = static_cast<const uint8_t*>(codes.raw_data());
      uint32_t word = 0;
      for (int j = 0; j < 8; ++j) {
        const int nib = (c[j / 2] >> (4 * (j % 2))) & 0xF;
        const int q = nib >= 8 ? nib - 16 : nib;
        word |= static_cast<uint32_t>(q + 8) << (4 * j);
      }
      EXPECT_EQ(static_cast<uint32_t>(r.get(layer + "weight_packed").data<int32_t>()[0]), word);
      EXPECT_EQ(r.get(layer + "weight_shape").to_vector<int64_t>(), (std::vector<int64_t>{128, 256}));
    }
  }
}

TEST(CompressedTensors, ConfigJsonCarriesTheQuantizationConfig) {
  const auto m = converted("W4A8");
  const std::string dir = temp_dir("config"), tok = temp_dir("config_tokenizer");
  const std::string tok_json =
      read_file(std::string(LOWBIT_TEST_DATA_DIR) + "/tokenizer/qwen2_style.tokenizer.json", "test");
  write_file_atomic(tok + "/tokenizer.json", tok_json, "test");
  write_file_atomic(dir + "/model.safetensors.index.json", "{}", "test");  // a stale sharded save
  save_compressed_tensors(*m, dir, {.tokenizer_dir = tok});
  EXPECT_EQ(read_file(dir + "/tokenizer.json", "test"), tok_json);
  EXPECT_TRUE(fs::exists(dir + "/tokenizer_config.json"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors.index.json"));
  const json cfg = json::parse(read_file(dir + "/config.json", "test"));
  const json want = json::parse(R"({
    "config_groups": {"group_0": {
      "targets": ["Linear"],
      "weights": {"num_bits": 4, "type": "int", "symmetric": true, "group_size": 32, "strategy": "group",
                  "dynamic": false},
      "input_activations": {"num_bits": 8, "type": "int", "symmetric": false, "group_size": null,
                            "strategy": "token", "dynamic": true},
      "output_activations": null,
      "format": "pack-quantized"}},
    "format": "pack-quantized", "global_compression_ratio": null, "ignore": ["lm_head"],
    "kv_cache_scheme": null, "moe_sparsity_config": null, "quant_method": "compressed-tensors",
    "quantization_status": "compressed", "sparsity_config": {}, "transform_config": {}, "version": "0.20.0"})");
  EXPECT_EQ(cfg.at("quantization_config"), want) << cfg.at("quantization_config").dump(2);
  // The rest is the plain model config, which still reads back as the model's.
  models::ModelConfig back = models::read_model_config(dir + "/config.json");
  EXPECT_EQ(back.torch_dtype, DType::bf16);
  back.torch_dtype = m->config().torch_dtype;
  EXPECT_EQ(back, m->config());

  // Per preset: format and strategies (the golden test checks every field against compressed-tensors).
  const std::map<std::string, std::vector<std::string>> fmt = {
      {"INT8_DEFAULT", {"int-quantized", "channel", "tensor"}},
      {"INT8_PER_CHANNEL_PER_TOKEN", {"int-quantized", "channel", "token"}},
      {"FP8_DEFAULT", {"float-quantized", "tensor", "tensor"}},
      {"FP8_PER_CHANNEL_PER_TOKEN", {"float-quantized", "channel", "token"}},
      {"FP8_2D_BLOCKWISE_WEIGHT_ONLY", {"naive-quantized", "block", ""}},
      {"NVFP4_DEFAULT", {"nvfp4-pack-quantized", "tensor_group", "tensor_group"}},
      {"NVFP4_WEIGHT_ONLY", {"nvfp4-pack-quantized", "tensor_group", ""}},
      {"MXFP4", {"mxfp4-pack-quantized", "group", "group"}},
      {"MXFP8", {"mxfp8-quantized", "group", "group"}},
  };
  for (const auto& [preset, f] : fmt) {
    const CompressedTensorsScheme s = compressed_tensors_scheme(quant::resolve_preset(preset));
    const json g = json::parse(s.config_group);
    EXPECT_EQ(s.format, f[0]) << preset;
    EXPECT_EQ(g.at("format"), f[0]) << preset;
    EXPECT_EQ(g.at("weights").at("strategy"), f[1]) << preset;
    if (f[2].empty())
      EXPECT_TRUE(g.at("input_activations").is_null()) << preset;
    else
      EXPECT_EQ(g.at("input_activations").at("strategy"), f[2]) << preset;
  }
}

TEST(CompressedTensors, UnsupportedPresetsAreOneLineErrorsNamingThePreset) {
  for (const std::string& preset : kRejected) {
    const std::string msg = error_of([&] { compressed_tensors_scheme(quant::resolve_preset(preset)); });
    EXPECT_NE(msg.find("compressed-tensors: preset " + preset + ": "), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_NE(
      error_of([] { compressed_tensors_scheme(quant::resolve_preset("INT4_WEIGHT_ONLY")); }).find("float zero point"),
      std::string::npos);
  // Through save: the preset is recognised from the layers' specs.
  const std::string msg = error_of([] { save_compressed_tensors(*converted("GGUF_Q4_0"), temp_dir("gguf")); });
  EXPECT_NE(msg.find("preset GGUF_Q4_0: GGUF"), std::string::npos) << msg;
  // A spec no preset has is "custom".
  quant::QuantPreset custom = quant::resolve_preset("FP8_DEFAULT");
  custom.name = "custom";
  custom.weight.format = quant::Format::fp8_e5m2;
  EXPECT_NE(error_of([&] { compressed_tensors_scheme(custom); }).find("preset custom: fp8_e5m2"), std::string::npos);
}

TEST(CompressedTensors, ExportNeedsConvertedAndCalibratedLayers) {
  models::CausalLM plain(tiny_config());
  EXPECT_NE(error_of([&] { save_compressed_tensors(plain, temp_dir("plain")); }).find("no prepared layers"),
            std::string::npos);
  quant::prepare(plain, quant::resolve_preset("W4A8"), std::make_shared<quant::QuantContext>());
  EXPECT_NE(error_of([&] { save_compressed_tensors(plain, temp_dir("unconverted")); }).find("is not converted"),
            std::string::npos);
  // NVFP4 activations without a calibrated global amax have no static input_global_scale.
  const auto nv = converted("NVFP4_DEFAULT", DType::f32, /*calibrate=*/false);
  EXPECT_NE(error_of([&] { save_compressed_tensors(*nv, temp_dir("uncalibrated")); }).find("input_global_scale"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              save_compressed_tensors(*converted("MXFP8"), temp_dir("dtype"), {.dtype = DType::fp8_e4m3});
            }).find("dtype must be bf16, f16 or f32"),
            std::string::npos);
}

TEST(CompressedTensors, ScaleDtypeBf16IsExactOrRefused) {
  // bf16 weights: torchao int scales are computed in the weight dtype, so they store exactly.
  const auto m = converted("W4A8", DType::bf16);
  const std::string dir = temp_dir("bf16_scales");
  save_compressed_tensors(*m, dir, {.scale_dtype = DType::bf16});
  EXPECT_EQ(SafetensorsReader(dir + "/model.safetensors").info("model.layers.0.mlp.down_proj.weight_scale").dtype,
            DType::bf16);
  const auto loaded = load_compressed_tensors_weights(dir);
  for (const auto& [name, lq] : quant::prepared_layers(*m))
    EXPECT_EQ(bits_of(loaded.at(name + ".weight")), bits_of(quant::dequantize(lq->packed_weight()))) << name;
  // ModelOpt fp8 scales (1 / s') are not bf16 values.
  const std::string msg = error_of([] {
    save_compressed_tensors(*converted("FP8_DEFAULT"), temp_dir("bf16_refused"), {.scale_dtype = DType::bf16});
  });
  EXPECT_NE(msg.find("not exactly representable in bf16"), std::string::npos) << msg;
}

TEST(CompressedTensors, ReaderRejectsMalformedDirectories) {
  const std::string dir = temp_dir("malformed");
  save_compressed_tensors(*converted("W4A8"), dir);
  const std::string cfg_text = read_file(dir + "/config.json", "test");
  auto tensors = load_safetensors(dir + "/model.safetensors");
  const std::string packed = "model.layers.0.mlp.down_proj.weight_packed";

  json cfg = json::parse(cfg_text);
  cfg["quantization_config"]["quant_method"] = "gptq";
  write_file_atomic(dir + "/config.json", cfg.dump(), "test");
  EXPECT_NE(error_of([&] { load_compressed_tensors_weights(dir); }).find("quant_method"), std::string::npos);
  cfg = json::parse(cfg_text);
  cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["num_bits"] = 8;
  write_file_atomic(dir + "/config.json", cfg.dump(), "test");
  EXPECT_NE(error_of([&] { load_compressed_tensors_weights(dir); }).find("unsupported format 'pack-quantized'"),
            std::string::npos);
  write_file_atomic(dir + "/config.json", cfg_text, "test");

  for (auto& [n, t] : tensors)
    if (n == packed) t = t.narrow(1, 0, 31).contiguous();
  save_safetensors(dir + "/model.safetensors", tensors);
  const std::string msg = error_of([&] { load_compressed_tensors_weights(dir); });
  EXPECT_NE(msg.find("'" + packed + "' has shape [128, 31], expected [128, 32]"), std::string::npos) << msg;
  std::erase_if(tensors, [&](const auto& e) { return e.first == packed; });
  save_safetensors(dir + "/model.safetensors", tensors);
  EXPECT_NE(error_of([&] { load_compressed_tensors_weights(dir); }).find("'" + packed + "' is missing"),
            std::string::npos);
}

// Golden files of tests/reference/compressed_tensors_golden.py: compressed-tensors' compressor
// applied to our dequantized down_proj weight and our scales ("<PRESET>/<tensor>"), and its
// QuantizationConfig serialization of our config.json's quantization_config.
TEST(CompressedTensors, GoldenBytesAndConfigMatchCompressedTensors) {
  const std::string data = std::string(LOWBIT_TEST_DATA_DIR) + "/compressed_tensors/";
  const SafetensorsReader golden(data + "golden.safetensors");
  const json configs = json::parse(read_file(data + "quantization_configs.json", "test"));
  const std::string layer = "model.layers.0.mlp.down_proj.";
  for (const std::string& preset : kExportable) {
    SCOPED_TRACE(preset);
    const std::string dir = temp_dir("golden_" + preset);
    save_compressed_tensors(*converted(preset), dir);
    const SafetensorsReader ours(dir + "/model.safetensors");
    int compared = 0;
    for (const std::string& g : golden.names()) {
      if (g.rfind(preset + "/", 0) != 0) continue;
      const std::string leaf = g.substr(preset.size() + 1);
      ASSERT_TRUE(ours.has(layer + leaf)) << leaf;
      const SafetensorsInfo &a = ours.info(layer + leaf), &b = golden.info(g);
      ASSERT_EQ(a.dtype, b.dtype) << leaf;
      ASSERT_EQ(a.shape, b.shape) << leaf;
      const std::vector<uint8_t> x = bytes_of(ours.get(layer + leaf)), y = bytes_of(golden.get(g));
      ASSERT_EQ(x.size(), y.size()) << leaf;
      int64_t differ = 0, neg_zero = 0;
      const bool fp4 = leaf == "weight_packed" && a.dtype == DType::u8;
      for (size_t i = 0; i < x.size(); ++i)
        for (int k = 0; k < (fp4 ? 2 : 1); ++k) {
          const int shift = fp4 ? 4 * k : 0, mask = fp4 ? 0xF : 0xFF;
          const int u = (x[i] >> shift) & mask, v = (y[i] >> shift) & mask;
          // compressed-tensors' quantizer turns -0 into +0, so it never writes the E2M1 code 0x8;
          // our codes keep -0 (docs/quantization.md). Both decode to zero.
          if (fp4 && u == 0x8 && v == 0x0)
            ++neg_zero;
          else
            differ += u != v;
        }
      EXPECT_EQ(differ, 0) << leaf << " differs from compressed-tensors' bytes (regenerate with "
                           << "tests/reference/compressed_tensors_golden.py if the quantization itself changed)";
      if (fp4) EXPECT_GT(neg_zero, 0) << "expected some -0 codes in a random weight";
      ++compared;
    }
    EXPECT_GE(compared, 2) << "golden has no tensors for " << preset;
    const json cfg = json::parse(read_file(dir + "/config.json", "test"));
    ASSERT_TRUE(configs.contains(preset));
    EXPECT_EQ(cfg.at("quantization_config"), configs.at(preset)) << cfg.at("quantization_config").dump(2);
  }
}

}  // namespace
}  // namespace lowbit::io
