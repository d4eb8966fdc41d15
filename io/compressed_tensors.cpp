#include "lowbit/io/compressed_tensors.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/json_text.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/hf_model.h"
#include "lowbit/io/safetensors.h"
#include "lowbit/quant/block_codecs.h"
#include "lowbit/quant/linear_quant.h"
#include "lowbit/quant/scaled_codecs.h"

namespace lowbit::io {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;
using quant::Format;
using quant::Granularity;
using quant::QuantPreset;
using quant::QuantSpec;

namespace {

// The compressed-tensors release whose layout this exporter was checked against
// (tests/reference/compressed_tensors_golden.py); written as quantization_config.version.
constexpr const char* kCtVersion = "0.20.0";
constexpr const char* kWeights = "model.safetensors";

// One QuantizationArgs object, keys in compressed-tensors' serialization order.
struct Args {
  int bits = 8;
  const char* type = "int";
  bool symmetric = true;
  int64_t group_size = 0;  // 0 = null
  const char* strategy = "tensor";
  std::vector<int64_t> block = {};  // block_structure, strategy "block" only
  ojson dynamic = false;            // false, true or "local"
  const char* scale_dtype = nullptr;
  const char* observer = nullptr;

  ojson json() const {
    ojson a;
    a["num_bits"] = bits;
    a["type"] = type;
    a["symmetric"] = symmetric;
    a["group_size"] = group_size > 0 ? ojson(group_size) : ojson(nullptr);
    a["strategy"] = strategy;
    if (!block.empty()) a["block_structure"] = block;
    a["dynamic"] = dynamic;
    if (scale_dtype) a["scale_dtype"] = scale_dtype;
    if (observer) a["observer"] = observer;
    return a;
  }
};

// Which per-layer activation tensor the scheme stores.
enum class InputParam { none, scale, global_scale };

struct Scheme {
  std::string format;
  ojson weights, input;  // input null when the preset is weight-only
  InputParam input_param = InputParam::none;

  ojson config_group() const {
    ojson g;
    g["targets"] = {"Linear"};
    g["weights"] = weights;
    g["input_activations"] = input;
    g["output_activations"] = nullptr;
    g["format"] = format;
    return g;
  }
};

[[noreturn]] void reject(const QuantPreset& p, const std::string& why) {
  LOWBIT_FAIL("compressed-tensors: preset ", p.name, ": ", why);
}

// int / fp8 args from a scaled-format spec: tensor, channel (axis 0), group, or (fp8) block.
Args scaled_args(const QuantPreset& p, const QuantSpec& s, int bits, const char* type, const char* role) {
  Args a{.bits = bits, .type = type};
  switch (s.granularity) {
    case Granularity::per_tensor: a.strategy = "tensor"; break;
    case Granularity::per_channel:
      if (s.axis != 0)
        reject(p, std::string(role) + " scales per channel of axis " + std::to_string(s.axis) +
                      " have no compressed-tensors strategy (channel means axis 0)");
      a.strategy = "channel";
      break;
    case Granularity::per_group:
      a.strategy = "group";
      a.group_size = s.group_size;
      break;
    case Granularity::block2d:
      if (std::string(type) != "float")
        reject(p, std::string(role) + " int block2d scales have no compressed-tensors export (block is fp8 only)");
      a.strategy = "block";
      a.block = {s.block_rows, s.block_cols};
      break;
    case Granularity::per_token: reject(p, std::string(role) + " per_token scales are for activations");
  }
  return a;
}

Args weight_args(const QuantPreset& p, std::string* format) {
  const QuantSpec& w = p.weight;
  const std::optional<Format> in = p.input ? std::optional<Format>(p.input->format) : std::nullopt;
  switch (w.format) {
    case Format::int8:
    case Format::int4: {
      if (!w.symmetric) reject(p, "asymmetric int weights are not exported (only symmetric int weights map exactly)");
      const bool int4 = w.format == Format::int4;
      if (in && *in != Format::int8)
        reject(p, "int weights with " + quant::format_name(*in) + " activations have no compressed-tensors format");
      if (!int4 && !in) reject(p, "int8 weight-only (W8A16) is not exported");
      *format = int4 ? "pack-quantized" : "int-quantized";
      return scaled_args(p, w, int4 ? 4 : 8, "int", "weight");
    }
    case Format::fp8_e4m3:
      if (in && *in != Format::fp8_e4m3)
        reject(p, "fp8 weights with " + quant::format_name(*in) + " activations have no compressed-tensors format");
      *format = in ? "float-quantized" : "naive-quantized";
      return scaled_args(p, w, 8, "float", "weight");
    case Format::nvfp4:
      if (in && *in != Format::nvfp4) reject(p, "nvfp4 weights export with nvfp4 activations or none");
      *format = "nvfp4-pack-quantized";
      return {.bits = 4,
              .type = "float",
              .group_size = 16,
              .strategy = "tensor_group",
              .scale_dtype = "torch.float8_e4m3fn"};
    case Format::mxfp4:
    case Format::mxfp8: {
      const bool fp4 = w.format == Format::mxfp4;
      if (in && *in != Format::mxfp4 && *in != Format::mxfp8)
        reject(p, "mx weights export with mx activations or none");
      *format = fp4 ? "mxfp4-pack-quantized" : "mxfp8-quantized";
      return {
          .bits = fp4 ? 4 : 8, .type = "float", .group_size = 32, .strategy = "group", .scale_dtype = "torch.uint8"};
    }
    case Format::uint4:
      reject(p,
             "uint4 with a float zero point (torchao Int4WeightOnly) has no exact compressed-tensors form: its "
             "zero points are integers, so (q - 8) * s + zp cannot be stored as (q - z) * s");
    case Format::fp8_e5m2: reject(p, "fp8_e5m2 has no compressed-tensors type (float 8 bits means e4m3)");
    case Format::gguf_q4_0:
    case Format::gguf_q8_0: reject(p, "GGUF block formats have no compressed-tensors form (export GGUF instead)");
  }
  reject(p, "unknown weight format");
}

Args input_args(const QuantPreset& p, InputParam* param) {
  const QuantSpec& s = *p.input;
  switch (s.format) {
    case Format::int8:
    case Format::fp8_e4m3: {
      Args a{.bits = 8, .type = s.format == Format::int8 ? "int" : "float", .symmetric = s.symmetric};
      if (s.granularity == Granularity::per_token) {
        a.strategy = "token";
        a.dynamic = true;
      } else if (s.granularity != Granularity::per_tensor) {
        reject(p, "activation scales must be per_token or per_tensor");
      } else if (s.scale_policy == quant::ScalePolicy::dynamic) {
        a.dynamic = true;
      } else {
        if (s.scale_policy != quant::ScalePolicy::calibrated) reject(p, "learned activation scales are not exported");
        if (!s.symmetric) reject(p, "static asymmetric activations (input_zero_point) are not exported");
        a.observer = "static_minmax";
        *param = InputParam::scale;
      }
      return a;
    }
    case Format::nvfp4:
      *param = InputParam::global_scale;
      return {.bits = 4,
              .type = "float",
              .group_size = 16,
              .strategy = "tensor_group",
              .dynamic = "local",
              .scale_dtype = "torch.float8_e4m3fn",
              .observer = "static_minmax"};
    case Format::mxfp4:
    case Format::mxfp8:
      return {.bits = s.format == Format::mxfp4 ? 4 : 8,
              .type = "float",
              .group_size = 32,
              .strategy = "group",
              .dynamic = true,
              .scale_dtype = "torch.uint8"};
    default: reject(p, "activations in " + quant::format_name(s.format) + " are not exported");
  }
}

Scheme scheme_of(const QuantPreset& p) {
  if (p.output) reject(p, "output quantization is not exported");
  Scheme s;
  s.weights = weight_args(p, &s.format).json();
  s.input = p.input ? input_args(p, &s.input_param).json() : ojson(nullptr);
  return s;
}

// The preset a prepared layer was made with: its specs matched against the named presets
// (W4A8 / INT4_WEIGHT_ONLY with the layer's group size), "custom" when none matches.
QuantPreset preset_of(quant::LinearQuant& lq) {
  QuantPreset p;
  p.name = "custom";
  p.weight = lq.weight().spec();
  if (lq.input()) p.input = lq.input()->spec();
  if (lq.output()) p.output = lq.output()->spec();
  for (const std::string& name : quant::preset_names()) {
    quant::PresetOptions o;
    if ((name == "W4A8" || name == "INT4_WEIGHT_ONLY") && p.weight.granularity == Granularity::per_group)
      o.group_size = p.weight.group_size;
    const QuantPreset cand = quant::resolve_preset(name, o);
    if (cand.weight == p.weight && cand.input == p.input && cand.output == p.output) {
      p.name = name;
      break;
    }
  }
  return p;
}

// The scale grid shape compressed-tensors uses for an int / fp8 weight of shape (out, in).
Shape ct_scale_shape(const QuantSpec& s, int64_t out, int64_t in) {
  switch (s.granularity) {
    case Granularity::per_channel: return {out, 1};
    case Granularity::per_group: return {out, in / s.group_size};
    case Granularity::block2d: return {out / s.block_rows, in / s.block_cols};
    default: return {1};
  }
}

// f32 scale values as a tensor of `dtype`, failing unless every value converts exactly.
Tensor exact_scales(const std::vector<float>& v, const Shape& shape, DType dtype, const std::string& name) {
  const Tensor f = from_vector(v, shape, DType::f32);
  if (dtype == DType::f32) return f;
  const Tensor t = f.to(dtype);
  const std::vector<float> back = t.to(DType::f32).to_vector<float>();
  for (size_t i = 0; i < v.size(); ++i)
    LOWBIT_CHECK(back[i] == v[i], "compressed-tensors: ", name, "[", i, "] = ", v[i],
                 " is not exactly representable in ", dtype, "; export with scale_dtype f32");
  return t;
}

// int4 codes (two's complement nibbles, element 2i low) -> compressed-tensors' pack_to_int32:
// value + 8 as an unsigned nibble, element j of a row at bits 4 (j % 8) of word j / 8, the
// last word of a row zero-padded.
Tensor pack_int4(const Tensor& codes, int64_t out, int64_t in) {
  const int64_t words = (in + 7) / 8;
  Tensor packed = zeros({out, words}, DType::i32);
  const Tensor c = codes.contiguous();
  const auto* cp = static_cast<const uint8_t*>(c.raw_data());
  auto* wp = packed.data<int32_t>();
  for (int64_t r = 0; r < out; ++r)
    for (int64_t j = 0; j < in; ++j) {
      const int64_t i = r * in + j;
      const uint32_t nib = ((cp[i / 2] >> (4 * (i % 2))) & 0xFu) ^ 0x8u;  // two's complement q -> q + 8
      int32_t& w = wp[r * words + j / 8];
      w = static_cast<int32_t>(static_cast<uint32_t>(w) | (nib << (4 * (j % 8))));
    }
  return packed;
}

// The dequantization multiplier of a calibrated per-tensor activation quantizer, as the real
// forward computes it for activations of `act_dtype`.
float static_input_scale(const quant::Quantizer& q, DType act_dtype, const std::string& layer) {
  LOWBIT_CHECK(q.has_params() && q.params().amax.defined() && q.params().amax.numel() == 1,
               "compressed-tensors: layer '", layer,
               "': the input quantizer is not calibrated (compressed-tensors stores a static input_scale)");
  const float a = q.params().amax.to(DType::f32).to_vector<float>()[0];
  const quant::ScaledParams sp = quant::params_from_stats(q.spec(), {-a, a, a}, act_dtype);
  // ModelOpt int keeps s' = qmax / amax and divides; every other kind multiplies by scale.
  return quant::kind_of(q.spec()) == quant::Kind::int_modelopt ? 1.0f / sp.scale : sp.scale;
}

void append_layer(std::vector<std::pair<std::string, Tensor>>& out, const std::string& name, quant::LinearQuant& lq,
                  const Scheme& scheme, const CompressedTensorsOptions& opts, DType act_dtype) {
  const quant::QTensor& q = lq.packed_weight();
  LOWBIT_CHECK(q.shape.size() == 2, "compressed-tensors: layer '", name, "' weight must be 2-D, got ",
               shape_str(q.shape));
  const int64_t rows = q.shape[0], cols = q.shape[1];
  auto add = [&](const char* leaf, const Tensor& t) { out.emplace_back(name + "." + leaf, t); };
  auto scaled = [&]() {
    std::vector<float> v = q.scales.to(DType::f32).contiguous().to_vector<float>();
    // ModelOpt int stores s' and dequantizes q / s'; compressed-tensors multiplies: 1 / s'.
    if (quant::kind_of(q.spec) == quant::Kind::int_modelopt)
      for (float& s : v) s = 1.0f / s;
    return exact_scales(v, ct_scale_shape(q.spec, rows, cols), opts.scale_dtype, name + ".weight_scale");
  };
  switch (q.spec.format) {
    case Format::int4:
      add("weight_packed", pack_int4(q.codes, rows, cols));
      add("weight_shape", from_vector(std::vector<int64_t>{rows, cols}, {2}, DType::i64));
      add("weight_scale", scaled());
      break;
    case Format::int8:
    case Format::fp8_e4m3:
      add("weight", q.codes);
      add("weight_scale", scaled());
      break;
    case Format::nvfp4:
      add("weight_packed", q.codes);
      add("weight_scale", q.scales);
      // compressed-tensors divides the block scale by a global scale (448 * 6 / amax); ours
      // multiplies by pts = amax / (448 * 6): the reciprocal, as our quantize uses it.
      add("weight_global_scale", from_vector(std::vector<float>{1.0f / q.global_scale}, {1}));
      break;
    case Format::mxfp4:
      add("weight_packed", q.codes);
      add("weight_scale", q.scales);
      break;
    case Format::mxfp8:
      add("weight", q.codes);
      add("weight_scale", q.scales);
      break;
    default:
      LOWBIT_FAIL("compressed-tensors: layer '", name, "': format ", quant::format_name(q.spec.format),
                  " has no compressed-tensors export");
  }
  if (scheme.input_param == InputParam::scale) {
    add("input_scale",
        exact_scales({static_input_scale(*lq.input(), act_dtype, name)}, {1}, opts.scale_dtype, name + ".input_scale"));
  } else if (scheme.input_param == InputParam::global_scale) {
    const quant::Quantizer& iq = *lq.input();
    LOWBIT_CHECK(
        iq.has_params() && iq.params().global_amax > 0, "compressed-tensors: layer '", name,
        "': nvfp4 activations take their global amax from each batch here, compressed-tensors stores a static ",
        "input_global_scale: calibrate (quant::begin_calibration / finish_calibration) before exporting");
    add("input_global_scale",
        from_vector(std::vector<float>{1.0f / quant::nvfp4_tensor_scale(iq.params().global_amax)}, {1}));
  }
}

ojson quantization_config(const Scheme& s, const std::vector<std::string>& ignore) {
  ojson q;  // sorted keys, as compressed-tensors' update_config writes them
  q["config_groups"] = {{"group_0", s.config_group()}};
  q["format"] = s.format;
  q["global_compression_ratio"] = nullptr;
  q["ignore"] = ignore;
  q["kv_cache_scheme"] = nullptr;
  q["moe_sparsity_config"] = nullptr;
  q["quant_method"] = "compressed-tensors";
  q["quantization_status"] = "compressed";
  q["sparsity_config"] = ojson::object();
  q["transform_config"] = ojson::object();
  q["version"] = kCtVersion;
  return q;
}

}  // namespace

CompressedTensorsScheme compressed_tensors_scheme(const QuantPreset& preset) {
  const Scheme s = scheme_of(preset);
  return {s.format, s.config_group().dump()};
}

void save_compressed_tensors(const models::CausalLM& model, const std::string& dir,
                             const CompressedTensorsOptions& opts) {
  LOWBIT_CHECK(opts.dtype == DType::bf16 || opts.dtype == DType::f16 || opts.dtype == DType::f32,
               "compressed-tensors: dtype must be bf16, f16 or f32, got ", opts.dtype);
  LOWBIT_CHECK(opts.scale_dtype == DType::f32 || opts.scale_dtype == DType::bf16 || opts.scale_dtype == DType::f16,
               "compressed-tensors: scale_dtype must be f32, bf16 or f16, got ", opts.scale_dtype);
  // prepared_layers / named_modules hand out mutable pointers; the export only reads through them.
  auto& m = const_cast<models::CausalLM&>(model);
  const auto layers = quant::prepared_layers(m);
  LOWBIT_CHECK(!layers.empty(), "compressed-tensors: ", dir, ": the model has no prepared layers ",
               "(quant::prepare and quant::convert it first)");
  const auto named = m.named_modules();
  const std::map<std::string, nn::Module*> modules(named.begin(), named.end());
  std::optional<Scheme> scheme;
  std::string first;
  std::map<std::string, quant::LinearQuant*> by_name;
  for (const auto& [name, lq] : layers) {
    LOWBIT_CHECK(dynamic_cast<const nn::Linear*>(modules.at(name)), "compressed-tensors: layer '", name,
                 "' is not a Linear; the config group targets Linear layers only (prepare without embeddings)");
    const QuantPreset p = preset_of(*lq);
    const Scheme s = scheme_of(p);
    LOWBIT_CHECK(lq->converted(), "compressed-tensors: layer '", name, "' (preset ", p.name,
                 ") is not converted: call quant::convert before exporting");
    LOWBIT_CHECK(!lq->input() || lq->input()->enabled(), "compressed-tensors: layer '", name,
                 "': its input quantizer is disabled, the export would claim quantized activations");
    if (!scheme) {
      scheme = s;
      first = name;
    }
    LOWBIT_CHECK(s.format == scheme->format && s.weights == scheme->weights && s.input == scheme->input,
                 "compressed-tensors: layers '", first, "' and '", name,
                 "' use different schemes; an export holds one config group");
    by_name[name] = lq;
  }

  std::vector<std::string> ignore;
  for (const auto& [name, mod] : named) {
    const auto* l = dynamic_cast<const nn::Linear*>(mod);
    if (l && !l->quant) ignore.push_back(name);
  }
  // A tied model has no lm_head module here, but the transformers model it loads into does.
  if (std::find(ignore.begin(), ignore.end(), "lm_head") == ignore.end() && !model.lm_head) ignore.push_back("lm_head");

  std::vector<std::pair<std::string, Tensor>> tensors;
  {
    NoGradGuard no_grad;
    for (const auto& [pname, p] : model.named_parameters()) {
      const size_t dot = pname.rfind('.');
      const auto it = dot == std::string::npos ? by_name.end() : by_name.find(pname.substr(0, dot));
      if (it != by_name.end() && pname.substr(dot + 1) == "weight") {
        append_layer(tensors, it->first, *it->second, *scheme, opts, model.options().compute_dtype);
      } else {
        tensors.emplace_back(pname, p.detach().to(opts.dtype));
      }
    }
  }

  std::error_code ec;
  fs::create_directories(dir, ec);
  LOWBIT_CHECK(!ec, "compressed-tensors: cannot create ", dir, ": ", ec.message());
  for (const auto& e : fs::directory_iterator(dir)) {  // a stale index would point loaders at old shards
    const std::string n = e.path().filename().string();
    if (n == "model.safetensors.index.json" || (n.rfind("model-", 0) == 0 && n.ends_with(".safetensors")))
      fs::remove(e.path());
  }
  save_safetensors(dir + "/" + kWeights, tensors, {{"format", "pt"}});
  ojson cfg = parse_json_text<ojson>(models::model_config_to_json(model.config(), opts.dtype), "config.json");
  cfg["quantization_config"] = quantization_config(*scheme, ignore);
  write_file_atomic(dir + "/config.json", cfg.dump(2) + "\n", "compressed-tensors");
  if (!opts.tokenizer_dir.empty()) copy_hf_tokenizer_files(opts.tokenizer_dir, dir, "compressed-tensors");
}

// ---- reading ----

namespace {

using json = nlohmann::json;

const json& member(const json& obj, const char* key, const std::string& where) {
  LOWBIT_CHECK(obj.is_object() && obj.contains(key), where, ": missing '", key, "'");
  return obj[key];
}

// What a config group says about its weights, checked against the format.
struct WeightLayout {
  std::string format, type, strategy;
  int bits = 0;
  int64_t group = 0, block_rows = 0, block_cols = 0;
};

WeightLayout read_layout(const json& qc, const std::string& where) {
  LOWBIT_CHECK(member(qc, "quant_method", where) == "compressed-tensors", where,
               ": quant_method must be \"compressed-tensors\"");
  LOWBIT_CHECK(member(qc, "quantization_status", where) == "compressed", where,
               ": quantization_status must be \"compressed\"");
  const json& groups = member(qc, "config_groups", where);
  LOWBIT_CHECK(groups.is_object() && groups.size() == 1, where, ": exactly one config group is supported");
  const json& g = groups.begin().value();
  LOWBIT_CHECK(member(g, "targets", where) == json::array({"Linear"}), where,
               ": the config group must target [\"Linear\"]");
  const json& w = member(g, "weights", where);
  WeightLayout L;
  const json& fmt = g.contains("format") && !g["format"].is_null() ? g["format"] : member(qc, "format", where);
  LOWBIT_CHECK(fmt.is_string(), where, ": format must be a string");
  L.format = fmt.get<std::string>();
  const json &bits = member(w, "num_bits", where), &type = member(w, "type", where),
             &strat = member(w, "strategy", where);
  LOWBIT_CHECK(bits.is_number_integer() && type.is_string() && strat.is_string(), where,
               ": weights need integer num_bits and string type / strategy");
  L.bits = bits.get<int>();
  L.type = type.get<std::string>();
  L.strategy = strat.get<std::string>();
  LOWBIT_CHECK(member(w, "symmetric", where) == true, where, ": only symmetric weights are supported");
  if (L.strategy == "group" || L.strategy == "tensor_group") {
    const json& gs = member(w, "group_size", where);
    LOWBIT_CHECK(gs.is_number_integer() && gs.get<int64_t>() > 0, where, ": group_size must be a positive integer");
    L.group = gs.get<int64_t>();
  } else if (L.strategy == "block") {
    const json& b = member(w, "block_structure", where);
    LOWBIT_CHECK(b.is_array() && b.size() == 2 && b[0].is_number_integer() && b[1].is_number_integer() &&
                     b[0].get<int64_t>() > 0 && b[1].get<int64_t>() > 0,
                 where, ": block_structure must be two positive integers");
    L.block_rows = b[0].get<int64_t>();
    L.block_cols = b[1].get<int64_t>();
  } else {
    LOWBIT_CHECK(L.strategy == "tensor" || L.strategy == "channel", where, ": unsupported weight strategy '",
                 L.strategy, "'");
  }
  const std::string kind = L.type + std::to_string(L.bits);
  const bool ok =
      (L.format == "pack-quantized" && kind == "int4") ||
      ((L.format == "int-quantized" || L.format == "naive-quantized") && (kind == "int8" || kind == "float8")) ||
      (L.format == "float-quantized" && kind == "float8") ||
      (L.format == "nvfp4-pack-quantized" && kind == "float4" && L.strategy == "tensor_group" && L.group == 16) ||
      (L.format == "mxfp4-pack-quantized" && kind == "float4" && L.strategy == "group" && L.group == 32) ||
      (L.format == "mxfp8-quantized" && kind == "float8" && L.strategy == "group" && L.group == 32);
  LOWBIT_CHECK(ok, where, ": unsupported format '", L.format, "' with ", L.type, " ", L.bits, "-bit ", L.strategy,
               " weights");
  return L;
}

// Decompresses layer `m` of reader r; records the tensors it consumed.
Tensor decompress(const SafetensorsReader& r, const std::string& m, const WeightLayout& L,
                  std::set<std::string>& used) {
  const std::string& file = r.path();
  auto take = [&](const char* leaf, DType dtype) {
    const std::string n = m + "." + leaf;
    LOWBIT_CHECK(r.has(n), "compressed-tensors: ", file, ": '", n, "' is missing");
    LOWBIT_CHECK(r.info(n).dtype == dtype, "compressed-tensors: ", file, ": '", n, "' must be ", dtype, ", got ",
                 r.info(n).dtype);
    used.insert(n);
    return r.get(n).contiguous();
  };
  auto check_shape = [&](const Tensor& t, const Shape& want, const char* leaf) {
    LOWBIT_CHECK(t.shape() == want, "compressed-tensors: ", file, ": '", m, ".", leaf, "' has shape ",
                 shape_str(t.shape()), ", expected ", shape_str(want));
  };
  const bool fp4 = L.format == "nvfp4-pack-quantized" || L.format == "mxfp4-pack-quantized";
  // Codes as f32 values, row-major (rows, cols).
  int64_t rows = 0, cols = 0;
  std::vector<float> codes;
  if (L.format == "pack-quantized") {
    const Tensor shape = take("weight_shape", DType::i64);
    LOWBIT_CHECK(shape.numel() == 2, "compressed-tensors: ", file, ": '", m, ".weight_shape' must hold 2 values");
    rows = shape.data<int64_t>()[0];
    cols = shape.data<int64_t>()[1];
    LOWBIT_CHECK(rows > 0 && cols > 0 && rows < (int64_t{1} << 31) && cols < (int64_t{1} << 31),
                 "compressed-tensors: ", file, ": '", m, ".weight_shape' is out of range");
    const Tensor packed = take("weight_packed", DType::i32);
    check_shape(packed, {rows, (cols + 7) / 8}, "weight_packed");
    const auto* wp = packed.data<int32_t>();
    codes.resize(static_cast<size_t>(rows * cols));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const auto w = static_cast<uint32_t>(wp[i * ((cols + 7) / 8) + j / 8]);
        codes[static_cast<size_t>(i * cols + j)] =
            static_cast<float>(static_cast<int>((w >> (4 * (j % 8))) & 0xFu) - 8);
      }
  } else if (fp4) {
    const Tensor packed = take("weight_packed", DType::u8);
    LOWBIT_CHECK(packed.dim() == 2, "compressed-tensors: ", file, ": '", m, ".weight_packed' must be 2-D");
    rows = packed.shape()[0];
    cols = packed.shape()[1] * 2;
    const auto* bp = packed.data<uint8_t>();
    codes.resize(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = fp4_e2m1_bits_to_f32((bp[i / 2] >> (4 * (i % 2))) & 0xF);
  } else {
    const bool is_int = L.type == "int";
    const Tensor w = take("weight", is_int ? DType::i8 : DType::fp8_e4m3);
    LOWBIT_CHECK(w.dim() == 2, "compressed-tensors: ", file, ": '", m, ".weight' must be 2-D");
    rows = w.shape()[0];
    cols = w.shape()[1];
    const auto* bp = static_cast<const uint8_t*>(w.raw_data());
    codes.resize(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < codes.size(); ++i)
      codes[i] = is_int ? static_cast<float>(static_cast<int8_t>(bp[i])) : fp8_e4m3_bits_to_f32(bp[i]);
  }

  // Scales on the strategy's grid, as f32 multipliers.
  const std::string sname = m + ".weight_scale";
  LOWBIT_CHECK(r.has(sname), "compressed-tensors: ", file, ": '", sname, "' is missing");
  std::vector<float> scales;
  int64_t grid_cols = 1;
  if (L.format == "nvfp4-pack-quantized" || L.format == "mxfp4-pack-quantized" || L.format == "mxfp8-quantized") {
    LOWBIT_CHECK(cols % L.group == 0, "compressed-tensors: ", file, ": '", m, "' has ", cols,
                 " columns, not a multiple of the group size ", L.group);
    grid_cols = cols / L.group;
    const bool nv = L.format == "nvfp4-pack-quantized";
    const Tensor s = take("weight_scale", nv ? DType::fp8_e4m3 : DType::u8);
    check_shape(s, {rows, grid_cols}, "weight_scale");
    const auto* sp = static_cast<const uint8_t*>(s.raw_data());
    scales.resize(static_cast<size_t>(s.numel()));
    if (nv) {
      const Tensor gs = take("weight_global_scale", DType::f32);
      LOWBIT_CHECK(gs.numel() == 1, "compressed-tensors: ", file, ": '", m,
                   ".weight_global_scale' must hold one value");
      const float g = gs.data<float>()[0];
      for (size_t i = 0; i < scales.size(); ++i) scales[i] = fp8_e4m3_bits_to_f32(sp[i]) / g;
    } else {
      for (size_t i = 0; i < scales.size(); ++i) scales[i] = std::ldexp(1.0f, static_cast<int>(sp[i]) - 127);
    }
  } else {
    const DType sd = r.info(sname).dtype;
    LOWBIT_CHECK(sd == DType::f32 || sd == DType::bf16 || sd == DType::f16, "compressed-tensors: ", file, ": '", sname,
                 "' must be F32, BF16 or F16, got ", sd);
    const Tensor s = take("weight_scale", sd);
    if (L.strategy == "tensor") {
      LOWBIT_CHECK(s.numel() == 1, "compressed-tensors: ", file, ": '", sname,
                   "' must hold one value (strategy tensor)");
    } else if (L.strategy == "channel") {
      check_shape(s, {rows, 1}, "weight_scale");
    } else if (L.strategy == "group") {
      LOWBIT_CHECK(cols % L.group == 0, "compressed-tensors: ", file, ": '", m, "' has ", cols,
                   " columns, not a multiple of the group size ", L.group);
      grid_cols = cols / L.group;
      check_shape(s, {rows, grid_cols}, "weight_scale");
    } else {
      grid_cols = (cols + L.block_cols - 1) / L.block_cols;
      check_shape(s, {(rows + L.block_rows - 1) / L.block_rows, grid_cols}, "weight_scale");
    }
    scales = s.to(DType::f32).to_vector<float>();
  }

  Tensor out = empty({rows, cols}, DType::f32);
  float* op = out.data<float>();
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      int64_t g = 0;
      if (L.strategy == "channel")
        g = i;
      else if (L.strategy == "group" || L.strategy == "tensor_group")
        g = i * grid_cols + j / L.group;
      else if (L.strategy == "block")
        g = (i / L.block_rows) * grid_cols + j / L.block_cols;
      op[i * cols + j] = codes[static_cast<size_t>(i * cols + j)] * scales[static_cast<size_t>(g)];
    }
  return out;
}

}  // namespace

std::map<std::string, Tensor> load_compressed_tensors_weights(const std::string& dir) {
  const std::string cfg_path = dir + "/config.json";
  const json cfg = parse_json_text(read_file(cfg_path, "compressed-tensors"), cfg_path);
  const std::string where = "compressed-tensors: " + cfg_path + ": quantization_config";
  const WeightLayout L = read_layout(member(cfg, "quantization_config", cfg_path), where);
  const SafetensorsReader r(dir + "/" + kWeights);
  // Quantized layers are the modules with a weight_scale.
  constexpr std::string_view kScale = ".weight_scale";
  std::set<std::string> used;
  std::map<std::string, Tensor> out;
  for (const std::string& n : r.names())
    if (n.ends_with(kScale)) {
      const std::string m = n.substr(0, n.size() - kScale.size());
      out[m + ".weight"] = decompress(r, m, L, used);
    }
  for (const std::string& n : r.names()) {
    if (used.count(n)) continue;
    const SafetensorsInfo& info = r.info(n);
    const bool activation = n.ends_with(".input_scale") || n.ends_with(".input_global_scale");
    LOWBIT_CHECK(is_float(info.dtype), "compressed-tensors: ", r.path(), ": tensor '", n, "' has non-float dtype ",
                 info.dtype, " and belongs to no quantized layer");
    LOWBIT_CHECK(!out.count(n), "compressed-tensors: ", r.path(), ": '", n, "' is both stored and decompressed");
    if (!activation) out[n] = r.get(n).to(DType::f32);
  }
  return out;
}

}  // namespace lowbit::io
