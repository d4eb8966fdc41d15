#include "lowbit/quant/spec.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "lowbit/engine/error.h"
#include "lowbit/engine/json_text.h"

namespace lowbit::quant {

namespace {

using json = nlohmann::ordered_json;

const std::pair<Format, const char*> kFormats[] = {
    {Format::int8, "int8"},         {Format::int4, "int4"},           {Format::uint4, "uint4"},
    {Format::fp8_e4m3, "fp8_e4m3"}, {Format::fp8_e5m2, "fp8_e5m2"},   {Format::nvfp4, "nvfp4"},
    {Format::mxfp4, "mxfp4"},       {Format::mxfp8, "mxfp8"},         {Format::gguf_q4_0, "gguf_q4_0"},
    {Format::gguf_q8_0, "gguf_q8_0"}};
const std::pair<Granularity, const char*> kGranularities[] = {{Granularity::per_tensor, "per_tensor"},
                                                              {Granularity::per_channel, "per_channel"},
                                                              {Granularity::per_group, "per_group"},
                                                              {Granularity::per_token, "per_token"},
                                                              {Granularity::block2d, "block2d"}};
const std::pair<ScalePolicy, const char*> kPolicies[] = {
    {ScalePolicy::dynamic, "dynamic"}, {ScalePolicy::calibrated, "calibrated"}, {ScalePolicy::learned, "learned"}};
const std::pair<GradRule, const char*> kGrads[] = {{GradRule::ste, "ste"},
                                                   {GradRule::clipped_rounded, "clipped_rounded"},
                                                   {GradRule::clipped_amax, "clipped_amax"},
                                                   {GradRule::lsq, "lsq"}};
const std::pair<Convention, const char*> kConventions[] = {{Convention::torchao, "torchao"},
                                                           {Convention::modelopt, "modelopt"}};
const std::pair<MxScaleRule, const char*> kMxRules[] = {{MxScaleRule::rceil, "rceil"}, {MxScaleRule::floor, "floor"}};

template <class E, size_t N>
const char* name_of(const std::pair<E, const char*> (&table)[N], E v) {
  for (const auto& [e, n] : table)
    if (e == v) return n;
  return "?";
}

template <class E, size_t N>
E parse_enum(const std::pair<E, const char*> (&table)[N], const json& v, const std::string& source, const char* key) {
  LOWBIT_CHECK(v.is_string(), source, ": key '", key, "' must be a string, got ", v.dump());
  const std::string s = v.get<std::string>();
  std::string options;
  for (const auto& [e, n] : table) {
    if (s == n) return e;
    options += (options.empty() ? "" : ", ") + std::string(n);
  }
  LOWBIT_FAIL(source, ": key '", key, "' is '", s, "'; expected one of: ", options);
}

}  // namespace

std::string format_name(Format f) { return name_of(kFormats, f); }

int64_t format_block_size(Format f) {
  switch (f) {
    case Format::nvfp4: return 16;
    case Format::mxfp4:
    case Format::mxfp8:
    case Format::gguf_q4_0:
    case Format::gguf_q8_0: return 32;
    default: return 0;
  }
}

bool is_block_format(Format f) { return format_block_size(f) != 0; }
bool is_integer_format(Format f) { return f == Format::int8 || f == Format::int4 || f == Format::uint4; }

double format_max(Format f) {
  switch (f) {
    case Format::int8: return 127;
    case Format::int4: return 7;
    case Format::uint4: return 15;
    case Format::fp8_e4m3:
    case Format::mxfp8: return 448;
    case Format::fp8_e5m2: return 57344;
    case Format::nvfp4:
    case Format::mxfp4: return 6;
    case Format::gguf_q4_0: return 8;
    case Format::gguf_q8_0: return 127;
  }
  return 0;
}

void validate(const QuantSpec& s) {
  const std::string f = format_name(s.format);
  if (is_block_format(s.format)) {
    LOWBIT_CHECK(s.granularity == Granularity::per_group && s.group_size == format_block_size(s.format),
                 "quant spec: key 'granularity': ", f, " is per_group with group_size ", format_block_size(s.format),
                 " by definition");
    LOWBIT_CHECK(s.symmetric, "quant spec: key 'symmetric': ", f, " has no zero point");
    LOWBIT_CHECK(s.grad != GradRule::lsq && s.scale_policy != ScalePolicy::learned, "quant spec: key 'grad': ", f,
                 " block scales are recomputed per block; learned scales (lsq) need an int format");
  }
  if (s.format == Format::gguf_q4_0 || s.format == Format::gguf_q8_0)
    LOWBIT_CHECK(s.convention == Convention::torchao && s.eps == 0, "quant spec: key 'convention': ", f,
                 " always follows ggml's reference quantizer (no convention or eps option)");
  if (s.format == Format::uint4)
    LOWBIT_CHECK(!s.symmetric, "quant spec: key 'symmetric': uint4 is asymmetric (float zero point)");
  if (!is_integer_format(s.format)) {
    LOWBIT_CHECK(s.symmetric, "quant spec: key 'symmetric': ", f, " is symmetric");
    LOWBIT_CHECK(!s.narrow_range, "quant spec: key 'narrow_range' applies to int formats only");
  }
  if (!s.symmetric)
    LOWBIT_CHECK(s.convention == Convention::torchao, "quant spec: key 'convention': asymmetric quantization ",
                 "follows torchao (modelopt has no zero point)");
  if (s.format == Format::fp8_e5m2)
    LOWBIT_CHECK(s.convention == Convention::torchao, "quant spec: key 'convention': modelopt has no scaled fp8_e5m2");
  if (s.narrow_range)
    LOWBIT_CHECK(s.convention == Convention::modelopt, "quant spec: key 'narrow_range' is a modelopt option");
  if (s.grad == GradRule::lsq) {
    LOWBIT_CHECK(is_integer_format(s.format), "quant spec: key 'grad': lsq needs an int format, got ", f);
    LOWBIT_CHECK(s.scale_policy == ScalePolicy::learned, "quant spec: key 'scale_policy': grad 'lsq' needs ",
                 "scale_policy 'learned'");
  }
  if (s.scale_policy == ScalePolicy::learned)
    LOWBIT_CHECK(s.grad == GradRule::lsq, "quant spec: key 'grad': scale_policy 'learned' needs grad 'lsq'");
  if (s.lsq_grad_scaling) LOWBIT_CHECK(s.grad == GradRule::lsq, "quant spec: key 'lsq_grad_scaling' needs grad 'lsq'");
  if (s.grad == GradRule::clipped_amax)
    LOWBIT_CHECK(s.symmetric, "quant spec: key 'grad': clipped_amax masks |x| <= amax, which needs a symmetric format");
  switch (s.granularity) {
    case Granularity::per_group:
      LOWBIT_CHECK(s.group_size > 0, "quant spec: key 'group_size' must be > 0 for per_group, got ", s.group_size);
      break;
    case Granularity::block2d:
      LOWBIT_CHECK(s.block_rows > 0 && s.block_cols > 0, "quant spec: keys 'block_rows'/'block_cols' must be > 0");
      break;
    case Granularity::per_channel:
      LOWBIT_CHECK(s.axis >= 0, "quant spec: key 'axis' must be >= 0, got ", s.axis);
      break;
    default: break;
  }
  if (s.granularity != Granularity::per_group)
    LOWBIT_CHECK(s.group_size == 0, "quant spec: key 'group_size' is only for per_group granularity");
  LOWBIT_CHECK(s.eps >= 0, "quant spec: key 'eps' must be >= 0, got ", s.eps);
  if (s.scale_policy != ScalePolicy::dynamic && s.granularity == Granularity::per_token)
    LOWBIT_FAIL("quant spec: key 'scale_policy': per_token scales follow the tokens, so they must be dynamic");
}

QuantSpec parse_quant_spec(const std::string& text, const std::string& source) {
  json j = parse_json_text<json>(text, source);
  LOWBIT_CHECK(j.is_object(), source, ": a quant spec must be a JSON object");
  QuantSpec s;
  LOWBIT_CHECK(j.contains("format"), source, ": missing key 'format'");
  s.format = parse_enum(kFormats, j["format"], source, "format");
  if (is_block_format(s.format)) {
    s.granularity = Granularity::per_group;
    s.group_size = format_block_size(s.format);
  }
  if (s.format == Format::uint4) s.symmetric = false;
  auto integer = [&](const json& v, const char* key) {
    LOWBIT_CHECK(v.is_number_integer(), source, ": key '", key, "' must be an integer, got ", v.dump());
    return v.get<int64_t>();
  };
  auto boolean = [&](const json& v, const char* key) {
    LOWBIT_CHECK(v.is_boolean(), source, ": key '", key, "' must be true or false, got ", v.dump());
    return v.get<bool>();
  };
  static const char* kKeys[] = {"format",     "granularity",      "axis",       "group_size",   "block_rows",
                                "block_cols", "symmetric",        "scale_policy", "grad",       "lsq_grad_scaling",
                                "convention", "mx_scale",         "narrow_range", "eps"};
  for (const auto& [key, v] : j.items()) {
    if (key == "format") continue;
    if (key == "granularity") s.granularity = parse_enum(kGranularities, v, source, "granularity");
    else if (key == "axis") s.axis = integer(v, "axis");
    else if (key == "group_size") s.group_size = integer(v, "group_size");
    else if (key == "block_rows") s.block_rows = integer(v, "block_rows");
    else if (key == "block_cols") s.block_cols = integer(v, "block_cols");
    else if (key == "symmetric") s.symmetric = boolean(v, "symmetric");
    else if (key == "scale_policy") s.scale_policy = parse_enum(kPolicies, v, source, "scale_policy");
    else if (key == "grad") s.grad = parse_enum(kGrads, v, source, "grad");
    else if (key == "lsq_grad_scaling") s.lsq_grad_scaling = boolean(v, "lsq_grad_scaling");
    else if (key == "convention") s.convention = parse_enum(kConventions, v, source, "convention");
    else if (key == "mx_scale") s.mx_scale = parse_enum(kMxRules, v, source, "mx_scale");
    else if (key == "narrow_range") s.narrow_range = boolean(v, "narrow_range");
    else if (key == "eps") {
      LOWBIT_CHECK(v.is_number(), source, ": key 'eps' must be a number, got ", v.dump());
      s.eps = v.get<double>();
    } else {
      std::string known;
      for (const char* k : kKeys) known += (known.empty() ? "" : ", ") + std::string(k);
      LOWBIT_FAIL(source, ": unknown key '", key, "' (known: ", known, ")");
    }
  }
  if (s.granularity != Granularity::per_group && j.contains("granularity") && !j.contains("group_size"))
    s.group_size = 0;
  try {
    validate(s);
  } catch (const Error& e) {
    const std::string m = e.what();
    const size_t at = m.find("quant spec: ");
    LOWBIT_FAIL(source, ": ", at == std::string::npos ? m : m.substr(at + 12));
  }
  return s;
}

std::string to_json(const QuantSpec& s) {
  json j;
  j["format"] = format_name(s.format);
  j["granularity"] = name_of(kGranularities, s.granularity);
  j["axis"] = s.axis;
  j["group_size"] = s.group_size;
  j["block_rows"] = s.block_rows;
  j["block_cols"] = s.block_cols;
  j["symmetric"] = s.symmetric;
  j["scale_policy"] = name_of(kPolicies, s.scale_policy);
  j["grad"] = name_of(kGrads, s.grad);
  j["lsq_grad_scaling"] = s.lsq_grad_scaling;
  j["convention"] = name_of(kConventions, s.convention);
  j["mx_scale"] = name_of(kMxRules, s.mx_scale);
  j["narrow_range"] = s.narrow_range;
  j["eps"] = s.eps;
  return j.dump();
}

}  // namespace lowbit::quant
