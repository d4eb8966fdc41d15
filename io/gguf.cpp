#include "lowbit/io/gguf.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "lowbit/engine/autograd/grad_mode.h"
#include "lowbit/engine/scalar_types.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/tokenizer.h"
#include "lowbit/quant/qtensor.h"

namespace lowbit::io {

namespace fs = std::filesystem;

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr size_t kMaxNameBytes = 63;     // GGML_MAX_NAME - 1
constexpr int kMaxArrayDepth = 8;        // nested arrays (the spec allows them; real files never nest)
constexpr uint64_t kMaxArrayItems = uint64_t{1} << 24;  // per array; vocabularies are < 1M tokens
constexpr uint32_t kQuantVersion = 2;    // GGML_QNT_VERSION
constexpr int64_t kBlock = 32;           // Q4_0 / Q8_0 elements per block

// ggml's (elements per block, bytes per block) by type number; {0, 0} = no such type.
struct TypeSize {
  int64_t block = 0, bytes = 0;
};
TypeSize type_size(uint32_t t) {
  static const std::map<uint32_t, TypeSize> sizes = {
      {0, {1, 4}},     {1, {1, 2}},     {2, {32, 18}},   {3, {32, 20}},   {6, {32, 22}},   {7, {32, 24}},
      {8, {32, 34}},   {9, {32, 40}},   {10, {256, 84}}, {11, {256, 110}}, {12, {256, 144}}, {13, {256, 176}},
      {14, {256, 210}}, {15, {256, 292}}, {16, {256, 66}}, {17, {256, 74}}, {18, {256, 98}}, {19, {256, 50}},
      {20, {32, 18}},  {21, {256, 110}}, {22, {256, 82}}, {23, {256, 136}}, {24, {1, 1}},    {25, {1, 2}},
      {26, {1, 4}},    {27, {1, 8}},    {28, {1, 8}},    {29, {256, 56}}, {30, {1, 2}},    {34, {256, 54}},
      {35, {256, 66}}, {39, {32, 17}},  {40, {64, 36}},  {41, {128, 18}}};
  const auto it = sizes.find(t);
  return it == sizes.end() ? TypeSize{} : it->second;
}

// Bytes of a tensor of shape ne and type t, or nullopt for a negative dim, a row that is not whole
// blocks, or an overflow.
std::optional<uint64_t> tensor_nbytes(const std::vector<int64_t>& ne, GgmlType t) {
  const TypeSize ts = type_size(static_cast<uint32_t>(t));
  if (ts.block == 0 || ne.empty() || ne[0] % ts.block != 0) return std::nullopt;
  int64_t n = ts.bytes;
  for (size_t i = 0; i < ne.size(); ++i)
    if (ne[i] < 0 || __builtin_mul_overflow(n, i == 0 ? ne[0] / ts.block : ne[i], &n)) return std::nullopt;
  return static_cast<uint64_t>(n);
}

uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

// A name from the file as it appears in an error: non-printable bytes escaped, at most 80 bytes,
// so a hostile name can neither break the one-line message nor flood it.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 80; ++i) {
    const auto ch = static_cast<unsigned char>(s[i]);
    if (ch >= 0x20 && ch < 0x7F) {
      out += static_cast<char>(ch);
    } else {
      char b[5];
      std::snprintf(b, sizeof b, "\\x%02x", ch);
      out += b;
    }
  }
  return s.size() > 80 ? out + "..." : out;
}

std::string ne_str(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

// ---- reading ----

// Bounds-checked little-endian reads over the mapped file; errors name the file, the item being
// read (`what`) and the offset.
class Cursor {
 public:
  Cursor(const uint8_t* data, uint64_t size, const std::string& path) : p_(data), size_(size), path_(path) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    LOWBIT_CHECK(n <= remaining(), "gguf: ", path_, ": truncated: ", what, " needs ", n, " bytes at offset ", pos_,
                 " but the file has ", remaining(), " left");
  }
  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    const uint64_t n = read<uint64_t>(what + " (string length)");
    need(n, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

// Smallest encoding of one value of type t (so a count can be checked against the bytes left).
uint64_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::u8:
    case GgufType::i8:
    case GgufType::boolean: return 1;
    case GgufType::u16:
    case GgufType::i16: return 2;
    case GgufType::u32:
    case GgufType::i32:
    case GgufType::f32: return 4;
    case GgufType::array: return 12;  // element type + count
    default: return 8;                // u64, i64, f64, string length
  }
}

GgufType read_type(Cursor& c, const std::string& what, const std::string& path) {
  const uint32_t t = c.read<uint32_t>(what);
  LOWBIT_CHECK(t <= static_cast<uint32_t>(GgufType::f64), "gguf: ", path, ": ", what, " ", t,
               " is not a GGUF value type (0..12)");
  return static_cast<GgufType>(t);
}

GgufValue read_value(Cursor& c, GgufType t, const std::string& what, const std::string& path, int depth) {
  switch (t) {
    case GgufType::u8: return {t, uint64_t{c.read<uint8_t>(what)}};
    case GgufType::u16: return {t, uint64_t{c.read<uint16_t>(what)}};
    case GgufType::u32: return {t, uint64_t{c.read<uint32_t>(what)}};
    case GgufType::u64: return {t, c.read<uint64_t>(what)};
    case GgufType::i8: return {t, int64_t{c.read<int8_t>(what)}};
    case GgufType::i16: return {t, int64_t{c.read<int16_t>(what)}};
    case GgufType::i32: return {t, int64_t{c.read<int32_t>(what)}};
    case GgufType::i64: return {t, c.read<int64_t>(what)};
    case GgufType::f32: return {t, double{c.read<float>(what)}};
    case GgufType::f64: return {t, c.read<double>(what)};
    case GgufType::boolean: {
      const uint8_t b = c.read<uint8_t>(what);
      LOWBIT_CHECK(b <= 1, "gguf: ", path, ": ", what, ": bool byte must be 0 or 1, got ", int{b});
      return {t, b == 1};
    }
    case GgufType::string: return {t, c.read_string(what)};
    case GgufType::array: {
      LOWBIT_CHECK(depth < kMaxArrayDepth, "gguf: ", path, ": ", what, ": arrays nested deeper than ", kMaxArrayDepth);
      GgufArray a;
      a.type = read_type(c, what + " (array element type)", path);
      const uint64_t n = c.read<uint64_t>(what + " (array length)");
      LOWBIT_CHECK(n <= kMaxArrayItems, "gguf: ", path, ": ", what, ": array of ", n, " values is longer than the ",
                   kMaxArrayItems, " read");
      LOWBIT_CHECK(n <= c.remaining() / min_value_bytes(a.type), "gguf: ", path, ": ", what, ": array of ", n, " ",
                   gguf_type_name(a.type), " values cannot fit in the ", c.remaining(), " bytes left");
      a.items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) a.items.push_back(read_value(c, a.type, what, path, depth + 1));
      return {t, std::move(a)};
    }
  }
  LOWBIT_FAIL("gguf: ", path, ": ", what, ": bad value type");
}

// ---- writing ----

class Buffer {
 public:
  template <class T>
  void put(T v) {
    const size_t n = s_.size();
    s_.resize(n + sizeof(T));
    std::memcpy(s_.data() + n, &v, sizeof(T));
  }
  void put_string(const std::string& v) {
    put<uint64_t>(v.size());
    s_ += v;
  }
  void put_value(const GgufValue& v) {
    switch (v.type) {
      case GgufType::u8: put(static_cast<uint8_t>(v.as_uint())); break;
      case GgufType::u16: put(static_cast<uint16_t>(v.as_uint())); break;
      case GgufType::u32: put(static_cast<uint32_t>(v.as_uint())); break;
      case GgufType::u64: put(v.as_uint()); break;
      case GgufType::i8: put(static_cast<int8_t>(v.as_int())); break;
      case GgufType::i16: put(static_cast<int16_t>(v.as_int())); break;
      case GgufType::i32: put(static_cast<int32_t>(v.as_int())); break;
      case GgufType::i64: put(v.as_int()); break;
      case GgufType::f32: put(static_cast<float>(v.as_float())); break;
      case GgufType::f64: put(v.as_float()); break;
      case GgufType::boolean: put(static_cast<uint8_t>(v.as_bool() ? 1 : 0)); break;
      case GgufType::string: put_string(v.as_string()); break;
      case GgufType::array: {
        const GgufArray& a = v.as_array();
        put(static_cast<uint32_t>(a.type));
        put<uint64_t>(a.items.size());
        for (const GgufValue& item : a.items) put_value(item);
        break;
      }
    }
  }
  void pad_to(uint64_t alignment) { s_.resize(align_up(s_.size(), alignment), '\0'); }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

// What a value holds (its variant alternative), for errors.
std::string held(const GgufValue& v) {
  static const char* const names[] = {"an unsigned integer", "a signed integer", "a float", "a bool", "a string",
                                      "an array"};
  return names[v.value.index()];
}

// The variant alternative each value type is held in.
size_t alternative(GgufType t) {
  switch (t) {
    case GgufType::u8:
    case GgufType::u16:
    case GgufType::u32:
    case GgufType::u64: return 0;
    case GgufType::i8:
    case GgufType::i16:
    case GgufType::i32:
    case GgufType::i64: return 1;
    case GgufType::f32:
    case GgufType::f64: return 2;
    case GgufType::boolean: return 3;
    case GgufType::string: return 4;
    case GgufType::array: return 5;
  }
  return 6;
}

// A value written by put_value must hold its declared type's alternative with an in-range payload.
void check_value(const GgufValue& v, const std::string& key) {
  LOWBIT_CHECK(v.value.index() == alternative(v.type), "gguf: key '", key, "': a ", gguf_type_name(v.type),
               " value holding ", held(v));
  const auto fits = [&](uint64_t max) {
    LOWBIT_CHECK(v.as_uint() <= max, "gguf: key '", key, "': ", v.as_uint(), " does not fit ", gguf_type_name(v.type));
  };
  const auto fits_signed = [&](int64_t lo, int64_t hi) {
    LOWBIT_CHECK(v.as_int() >= lo && v.as_int() <= hi, "gguf: key '", key, "': ", v.as_int(), " does not fit ",
                 gguf_type_name(v.type));
  };
  switch (v.type) {
    case GgufType::u8: fits(UINT8_MAX); break;
    case GgufType::u16: fits(UINT16_MAX); break;
    case GgufType::u32: fits(UINT32_MAX); break;
    case GgufType::i8: fits_signed(INT8_MIN, INT8_MAX); break;
    case GgufType::i16: fits_signed(INT16_MIN, INT16_MAX); break;
    case GgufType::i32: fits_signed(INT32_MIN, INT32_MAX); break;
    case GgufType::array:
      for (const GgufValue& item : v.as_array().items) {
        LOWBIT_CHECK(item.type == v.as_array().type, "gguf: key '", key, "': array of ",
                     gguf_type_name(v.as_array().type), " holds a ", gguf_type_name(item.type));
        check_value(item, key);
      }
      break;
    default: break;  // u64, i64, f32, f64, bool, string: any payload fits
  }
}

// ---- export ----

// f32 weights -> the bytes of one ggml type (row-major, rows of w.size(-1)).
std::vector<uint8_t> encode_tensor(const Tensor& w, GgmlType type) {
  std::vector<uint8_t> out;
  const auto copy_raw = [&](const Tensor& t) {
    const auto* p = static_cast<const uint8_t*>(t.raw_data());
    out.assign(p, p + t.numel() * (traits(t.dtype()).bits / 8));
  };
  switch (type) {
    case GgmlType::f32: copy_raw(w); break;
    case GgmlType::f16: copy_raw(w.to(DType::f16).contiguous()); break;
    case GgmlType::bf16: copy_raw(w.to(DType::bf16).contiguous()); break;
    case GgmlType::q8_0:
    case GgmlType::q4_0: {
      quant::QuantSpec spec;
      spec.format = type == GgmlType::q8_0 ? quant::Format::gguf_q8_0 : quant::Format::gguf_q4_0;
      spec.granularity = quant::Granularity::per_group;
      spec.group_size = kBlock;
      const quant::QTensor q = quant::quantize(w, spec);
      // Our codes are already ggml's per-block payload (Q4_0 nibbles in ggml's order); ggml puts
      // the f16 d in front of each block.
      const int64_t nblocks = q.scales.numel(), code_bytes = type == GgmlType::q8_0 ? kBlock : kBlock / 2;
      const auto* codes = static_cast<const uint8_t*>(q.codes.raw_data());
      const auto* scales = static_cast<const uint16_t*>(q.scales.raw_data());
      out.resize(static_cast<size_t>(nblocks * (2 + code_bytes)));
      uint8_t* dst = out.data();
      for (int64_t b = 0; b < nblocks; ++b) {
        std::memcpy(dst, &scales[b], 2);
        std::memcpy(dst + 2, codes + b * code_bytes, static_cast<size_t>(code_bytes));
        dst += 2 + code_bytes;
      }
      break;
    }
  }
  return out;
}

// convert_hf_to_gguf.py's rule: 1-D tensors stay F32; a quantized type needs whole blocks per row.
GgmlType tensor_type(const Shape& shape, GgmlType requested) {
  if (shape.size() < 2) return GgmlType::f32;
  if ((requested == GgmlType::q8_0 || requested == GgmlType::q4_0) && shape.back() % kBlock != 0) return GgmlType::f32;
  return requested;
}

uint32_t file_type(GgmlType t) {  // llama_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q4_0, MOSTLY_Q8_0, MOSTLY_BF16
  switch (t) {
    case GgmlType::f32: return 0;
    case GgmlType::f16: return 1;
    case GgmlType::q4_0: return 2;
    case GgmlType::q8_0: return 7;
    case GgmlType::bf16: return 32;
  }
  return 0;
}

bool same_splits(const std::vector<tok::SplitRule>& a, const std::vector<tok::SplitRule>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].pattern != b[i].pattern || a[i].is_regex != b[i].is_regex || a[i].behavior != b[i].behavior ||
        a[i].invert != b[i].invert)
      return false;
  return true;
}
bool same_pre_tokenizer(const tok::PreTokenizerConfig& a, const tok::PreTokenizerConfig& b) {
  return same_splits(a.splits, b.splits) && a.byte_level_use_regex == b.byte_level_use_regex &&
         a.add_prefix_space == b.add_prefix_space;
}

// Qwen2's Split regex: Llama-3's with single digits (\p{N} instead of \p{N}{1,3}).
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// llama.cpp's name for the tokenizer's pre-tokenization (tokenizer.ggml.pre). The name also
// fixes llama.cpp's ignore_merges, so that must match too; anything else would tokenize
// differently there and is refused.
std::string pre_tokenizer_name(const tok::Tokenizer& t, const std::string& where) {
  struct Known {
    const char* name;
    tok::PreTokenizerConfig config;
    bool ignore_merges;
  };
  tok::PreTokenizerConfig qwen2 = tok::PreTokenizerConfig::llama3();
  qwen2.splits.at(0).pattern = kQwen2Regex;
  const Known known[] = {{"gpt-2", tok::PreTokenizerConfig::gpt2(), false},
                         {"llama-bpe", tok::PreTokenizerConfig::llama3(), true},
                         {"qwen2", qwen2, false}};
  const tok::TokenizerData& d = t.data();
  for (const Known& k : known) {
    if (!same_pre_tokenizer(d.pre_tokenizer, k.config)) continue;
    LOWBIT_CHECK(d.ignore_merges == k.ignore_merges, where, "llama.cpp's '", k.name, "' pre-tokenizer has ignore_merges ",
                 k.ignore_merges ? "true" : "false", ", the tokenizer ", d.ignore_merges ? "true" : "false");
    return k.name;
  }
  LOWBIT_FAIL(where, "the pre-tokenizer is none of GPT-2's, Llama-3's or Qwen2's, so llama.cpp would tokenize ",
              "differently");
}

// Whether llama.cpp's SentencePiece tokenizer ("llama": no normalizer; ' ' -> '▁'; a '▁' before
// the text and after each special token when add_space_prefix; merges by highest score; byte
// fallback through <0xXX> tokens) encodes like this non-byte-level tokenizer, and its
// add_space_prefix. Refuses with the reason otherwise.
bool spm_add_space_prefix(const tok::Tokenizer& t, const std::string& where) {
  const tok::TokenizerData& d = t.data();
  if (d.is_sentencepiece()) {
    // The model's own normalizer must be the identity (Llama-2's), as llama.cpp applies none.
    for (const char* probe : {"\xEF\xAC\x81", "\xEF\xBC\xA1", "a  b"})
      LOWBIT_CHECK(t.decode(t.encode(probe)) == probe, where, "the SentencePiece model normalizes its input ('", probe,
                   "' does not round-trip), which llama.cpp's tokenizer does not");
    const std::vector<int32_t> ids = t.encode("a");
    return !ids.empty() && t.id_to_token(ids[0])->rfind("\xE2\x96\x81", 0) == 0;
  }
  using K = tok::NormalizerStep::Kind;
  const auto& n = d.normalizers;
  const tok::PreTokenizerConfig& pc = d.pre_tokenizer;
  const bool legacy = n.size() == 2 && n[0].kind == K::Prepend && n[0].content == "\xE2\x96\x81" && n[1].kind == K::Replace &&
                      !n[1].is_regex && n[1].pattern == " " && n[1].content == "\xE2\x96\x81" &&
                      pc.final_step == tok::PreTokenizerConfig::Final::None && pc.splits.empty();
  if (legacy) return true;
  LOWBIT_CHECK(n.empty(), where, "llama.cpp's SentencePiece tokenizer applies no normalizer, but the tokenizer has ",
               n.size(), " (only Llama-2's Prepend + Replace pair is equivalent)");
  LOWBIT_CHECK(pc.final_step == tok::PreTokenizerConfig::Final::Metaspace && pc.splits.empty() &&
                   pc.metaspace_replacement == "\xE2\x96\x81",
               where, "a tokenizer without the ByteLevel pre-tokenizer needs Llama-2's normalizers or a Metaspace ",
               "pre-tokenizer for llama.cpp");
  return pc.prepend_scheme != tok::PrependScheme::Never;
}

// Special-token ids and whether encoding adds them: config.json's ids, else the tokenizer's
// (its tokenizer_config.json, its template, well-known names); bos falls back to eos (GPT-2's
// convention).
struct SpecialIds {
  int64_t bos = 0, eos = 0;
  bool add_bos = false, add_eos = false;
};
SpecialIds special_ids(const models::ModelConfig& c, const tok::Tokenizer& t, const std::string& where) {
  const tok::TokenizerConfig tc = t.effective_config();
  const auto id_of = [&](const std::optional<std::string>& name) -> std::optional<int64_t> {
    if (!name) return std::nullopt;
    if (const auto id = t.token_to_id(*name)) return *id;
    return std::nullopt;
  };
  SpecialIds s;
  s.add_bos = tc.add_bos_token.value_or(false);
  s.add_eos = tc.add_eos_token.value_or(false);
  std::optional<int64_t> bos = c.bos_token_id ? std::optional<int64_t>(*c.bos_token_id) : id_of(tc.bos_token);
  std::optional<int64_t> eos = !c.eos_token_ids.empty() ? std::optional<int64_t>(c.eos_token_ids[0]) : id_of(tc.eos_token);
  LOWBIT_CHECK(eos.has_value(), where, "no end-of-text token: the config has no eos_token_id and the tokenizer has ",
               "none of <|end_of_text|>, <|endoftext|>, </s>, <|im_end|>, <|eot_id|>");
  s.eos = *eos;
  s.bos = bos.value_or(*eos);
  return s;
}

// HF parameter name -> GGUF tensor name, in the order the file lists them.
std::vector<std::pair<std::string, std::string>> tensor_names(int64_t layers) {
  std::vector<std::pair<std::string, std::string>> out = {{"model.embed_tokens.weight", "token_embd.weight"}};
  static const std::pair<const char*, const char*> per_layer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.o_proj.bias", "attn_output.bias"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
  };
  for (int64_t l = 0; l < layers; ++l)
    for (const auto& [hf, gg] : per_layer)
      out.emplace_back("model.layers." + std::to_string(l) + "." + hf, "blk." + std::to_string(l) + "." + gg);
  out.emplace_back("model.norm.weight", "output_norm.weight");
  out.emplace_back("lm_head.weight", "output.weight");
  return out;
}

// llama.cpp's rope_freqs for Llama-3 rope scaling: per frequency, the divisor that turns the
// plain frequency into the scaled one the model uses.
std::vector<float> llama3_rope_factors(const models::ModelConfig& c) {
  std::vector<double> inv(static_cast<size_t>(c.head_dim / 2));
  for (size_t i = 0; i < inv.size(); ++i)
    inv[i] = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(c.head_dim));
  const std::vector<double> scaled = models::llama3_scaled_inv_freq(inv, *c.rope_scaling);
  std::vector<float> f(inv.size());
  for (size_t i = 0; i < inv.size(); ++i) f[i] = static_cast<float>(inv[i] / scaled[i]);
  return f;
}

std::vector<int64_t> ggml_ne(const Shape& shape) { return std::vector<int64_t>(shape.rbegin(), shape.rend()); }

void check_architecture(const models::ModelConfig& c, const std::string& where) {
  const std::string& a = c.model_type;
  LOWBIT_CHECK(a == "llama" || a == "qwen2" || a == "qwen3", where, "model_type '", a,
               "' has no GGUF export (llama, qwen2, qwen3)");
  LOWBIT_CHECK(!c.rope_scaling || (a == "llama" && c.rope_scaling->rope_type == "llama3"), where,
               "rope_scaling is exported for llama (rope_type llama3) only");
  // What llama.cpp's loader requires of each architecture's tensors.
  LOWBIT_CHECK(a != "qwen2" || c.attention_bias, where, "llama.cpp's qwen2 needs q/k/v biases (attention_bias)");
  LOWBIT_CHECK(a == "llama" || a == "qwen2" || !c.attention_bias, where, "llama.cpp's qwen3 has no attention biases");
  LOWBIT_CHECK((a == "qwen3") == c.qk_norm, where, "q/k norms (qk_norm) are qwen3's and only qwen3's in llama.cpp");
}

}  // namespace

// ---- values ----

std::string gguf_type_name(GgufType t) {
  static const char* const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                      "bool", "string", "array", "u64", "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : "type " + std::to_string(i);
}

std::string ggml_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::f32: return "F32";
    case GgmlType::f16: return "F16";
    case GgmlType::q4_0: return "Q4_0";
    case GgmlType::q8_0: return "Q8_0";
    case GgmlType::bf16: return "BF16";
  }
  return "type " + std::to_string(static_cast<uint32_t>(t));
}

GgufValue GgufValue::strings(const std::vector<std::string>& v) {
  GgufArray a{GgufType::string, {}};
  a.items.reserve(v.size());
  for (const std::string& s : v) a.items.push_back(string(s));
  return {GgufType::array, std::move(a)};
}

GgufValue GgufValue::f32s(const std::vector<float>& v) {
  GgufArray a{GgufType::f32, {}};
  a.items.reserve(v.size());
  for (float x : v) a.items.push_back(f32(x));
  return {GgufType::array, std::move(a)};
}

GgufValue GgufValue::i32s(const std::vector<int32_t>& v) {
  // Items assigned in place: GCC 12 -Wmaybe-uninitialized misfires on pushing i32 variants.
  GgufArray a{GgufType::i32, std::vector<GgufValue>(v.size())};
  for (size_t i = 0; i < v.size(); ++i) {
    a.items[i].type = GgufType::i32;
    a.items[i].value = int64_t{v[i]};
  }
  return {GgufType::array, std::move(a)};
}

uint64_t GgufValue::as_uint() const {
  if (const auto* u = std::get_if<uint64_t>(&value)) return *u;
  const auto* i = std::get_if<int64_t>(&value);
  LOWBIT_CHECK(i != nullptr && *i >= 0, "gguf value: expected a non-negative integer, got ",
               i ? std::to_string(*i) : held(*this));
  return static_cast<uint64_t>(*i);
}
int64_t GgufValue::as_int() const {
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  const auto* u = std::get_if<uint64_t>(&value);
  LOWBIT_CHECK(u != nullptr && *u <= static_cast<uint64_t>(INT64_MAX), "gguf value: expected an integer, got ",
               u ? std::to_string(*u) : held(*this));
  return static_cast<int64_t>(*u);
}
double GgufValue::as_float() const {
  const auto* d = std::get_if<double>(&value);
  LOWBIT_CHECK(d != nullptr, "gguf value: expected a float, got ", held(*this));
  return *d;
}
bool GgufValue::as_bool() const {
  const auto* b = std::get_if<bool>(&value);
  LOWBIT_CHECK(b != nullptr, "gguf value: expected a bool, got ", held(*this));
  return *b;
}
const std::string& GgufValue::as_string() const {
  const auto* s = std::get_if<std::string>(&value);
  LOWBIT_CHECK(s != nullptr, "gguf value: expected a string, got ", held(*this));
  return *s;
}
const GgufArray& GgufValue::as_array() const {
  const auto* a = std::get_if<GgufArray>(&value);
  LOWBIT_CHECK(a != nullptr, "gguf value: expected an array, got ", held(*this));
  return *a;
}

Shape GgufTensorInfo::shape() const { return Shape(ne.rbegin(), ne.rend()); }

// ---- reader ----

const GgufValue* GgufFile::find(const std::string& key) const {
  for (const auto& [k, v] : metadata_)
    if (k == key) return &v;
  return nullptr;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  LOWBIT_CHECK(v != nullptr, "gguf: ", path_, ": no metadata key '", key, "'");
  return *v;
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  for (const GgufTensorInfo& t : tensors_)
    if (t.name == name) return t;
  LOWBIT_FAIL("gguf: ", path_, ": no tensor '", name, "'");
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo& t) const {
  return {map_->data() + data_offset_ + t.offset, static_cast<size_t>(t.nbytes)};
}

GgufFile read_gguf(const std::string& path) {
  GgufFile f;
  f.path_ = path;
  f.map_ = std::make_shared<const MappedFile>(path, "gguf");
  const uint64_t size = f.map_->size();
  Cursor c(f.map_->data(), size, path);

  const uint32_t magic = c.read<uint32_t>("magic");
  LOWBIT_CHECK(magic == kMagic, "gguf: ", path, ": not a GGUF file (bad magic 0x", [&] {
    char b[9];
    std::snprintf(b, sizeof b, "%08x", magic);
    return std::string(b);
  }(), ")");
  f.version_ = c.read<uint32_t>("version");
  LOWBIT_CHECK(f.version_ == 2 || f.version_ == 3, "gguf: ", path, ": unsupported GGUF version ", f.version_,
               " (2 and 3 are read)");
  const uint64_t n_tensors = c.read<uint64_t>("tensor count");
  const uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key-value pair takes >= 13 bytes, each tensor info >= 32: bound the counts by the file.
  LOWBIT_CHECK(n_kv <= c.remaining() / 13, "gguf: ", path, ": metadata count ", n_kv, " cannot fit in the ",
               c.remaining(), " bytes after the header");
  LOWBIT_CHECK(n_tensors <= c.remaining() / 32, "gguf: ", path, ": tensor count ", n_tensors, " cannot fit in the ",
               c.remaining(), " bytes after the header");

  std::set<std::string> keys;
  f.metadata_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key #" + std::to_string(i));
    const std::string what = "key '" + printable(key) + "'";
    LOWBIT_CHECK(keys.insert(key).second, "gguf: ", path, ": duplicate metadata ", what);
    const GgufType t = read_type(c, what + " value type", path);
    f.metadata_.emplace_back(std::move(key), read_value(c, t, what, path, 0));
  }
  if (const GgufValue* a = f.find("general.alignment")) {
    LOWBIT_CHECK(a->type == GgufType::u32, "gguf: ", path, ": general.alignment must be u32, got ",
                 gguf_type_name(a->type));
    const uint64_t al = a->as_uint();
    LOWBIT_CHECK(al != 0 && (al & (al - 1)) == 0, "gguf: ", path, ": general.alignment ", al,
                 " is not a power of two");
    f.alignment_ = al;
  }

  std::set<std::string> names;
  f.tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string("tensor #" + std::to_string(i) + " name");
    LOWBIT_CHECK(t.name.size() <= kMaxNameBytes, "gguf: ", path, ": tensor #", i, " name of ", t.name.size(),
                 " bytes is longer than ", kMaxNameBytes);
    const std::string what = "tensor '" + printable(t.name) + "'";
    LOWBIT_CHECK(names.insert(t.name).second, "gguf: ", path, ": duplicate ", what);
    const uint32_t n_dims = c.read<uint32_t>(what + " n_dims");
    LOWBIT_CHECK(n_dims >= 1 && n_dims <= kMaxDims, "gguf: ", path, ": ", what, ": n_dims ", n_dims,
                 " outside 1..", kMaxDims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t n = c.read<uint64_t>(what + " dims");
      LOWBIT_CHECK(n <= static_cast<uint64_t>(INT64_MAX), "gguf: ", path, ": ", what, ": dim ", d, " = ", n,
                   " is too large");
      t.ne.push_back(static_cast<int64_t>(n));
    }
    const uint32_t type = c.read<uint32_t>(what + " type");
    t.type = static_cast<GgmlType>(type);
    LOWBIT_CHECK(type_size(type).block != 0, "gguf: ", path, ": ", what, ": unknown ggml type ", type);
    const auto nbytes = tensor_nbytes(t.ne, t.type);
    LOWBIT_CHECK(nbytes.has_value(), "gguf: ", path, ": ", what, ": shape ", ne_str(t.ne), " is not a whole number of ",
                 ggml_type_name(t.type), " blocks (", type_size(type).block, " per row block) or overflows");
    t.nbytes = *nbytes;
    t.offset = c.read<uint64_t>(what + " offset");
    LOWBIT_CHECK(t.offset % f.alignment_ == 0, "gguf: ", path, ": ", what, ": offset ", t.offset,
                 " is not a multiple of the alignment ", f.alignment_);
    f.tensors_.push_back(std::move(t));
  }

  f.data_offset_ = align_up(c.pos(), f.alignment_);
  // Tensor byte ranges must lie inside the data section and not overlap.
  const uint64_t data_size = size >= f.data_offset_ ? size - f.data_offset_ : 0;
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : f.tensors_) {
    LOWBIT_CHECK(t.offset <= data_size && t.nbytes <= data_size - t.offset, "gguf: ", path, ": tensor '", printable(t.name),
                 "': bytes [", t.offset, ", ", t.offset + t.nbytes, ") of the data section run past the end of the file (",
                 data_size, " data bytes at offset ", f.data_offset_, ")");
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    LOWBIT_CHECK(by_offset[i]->offset >= by_offset[i - 1]->offset + by_offset[i - 1]->nbytes, "gguf: ", path,
                 ": tensor '", printable(by_offset[i]->name), "' overlaps tensor '", printable(by_offset[i - 1]->name),
                 "'");
  return f;
}

Tensor gguf_tensor_to_f32(const GgufFile& file, const std::string& name) {
  const GgufTensorInfo& t = file.tensor(name);
  const std::span<const uint8_t> src = file.tensor_data(t);
  const Shape shape = t.shape();
  Tensor out = empty(shape, DType::f32);
  float* o = out.data<float>();
  const int64_t n = out.numel();
  switch (t.type) {
    case GgmlType::f32: std::memcpy(o, src.data(), src.size()); return out;
    case GgmlType::f16:
    case GgmlType::bf16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src.data() + 2 * i, 2);
        o[i] = t.type == GgmlType::f16 ? f16_bits_to_f32(h) : bf16_bits_to_f32(h);
      }
      return out;
    case GgmlType::q8_0:
    case GgmlType::q4_0: {
      // Split ggml's blocks (f16 d, codes) into our QTensor's codes and scales, then decode.
      const bool q8 = t.type == GgmlType::q8_0;
      quant::QTensor q;
      q.spec.format = q8 ? quant::Format::gguf_q8_0 : quant::Format::gguf_q4_0;
      q.spec.granularity = quant::Granularity::per_group;
      q.spec.group_size = kBlock;
      q.shape = shape;
      Shape code_shape = shape, scale_shape = shape;
      const int64_t code_bytes = q8 ? kBlock : kBlock / 2;
      if (!q8) code_shape.back() /= 2;
      scale_shape.back() /= kBlock;
      q.codes = empty(code_shape, q8 ? DType::i8 : DType::u8);
      q.scales = empty(scale_shape, DType::f16);
      auto* codes = static_cast<uint8_t*>(q.codes.raw_data());
      auto* scales = static_cast<uint16_t*>(q.scales.raw_data());
      const uint8_t* p = src.data();
      for (int64_t b = 0; b < n / kBlock; ++b) {
        std::memcpy(&scales[b], p, 2);
        std::memcpy(codes + b * code_bytes, p + 2, static_cast<size_t>(code_bytes));
        p += 2 + code_bytes;
      }
      return quant::dequantize(q);
    }
  }
  LOWBIT_FAIL("gguf: ", file.path(), ": tensor '", name, "': cannot convert ", ggml_type_name(t.type),
              " to f32 (F32, F16, BF16, Q8_0, Q4_0 are supported)");
}

// ---- writer ----

void write_gguf(const std::string& path, const std::vector<std::pair<std::string, GgufValue>>& metadata,
                const std::vector<GgufTensorBytes>& tensors) {
  uint64_t alignment = kDefaultAlignment;
  Buffer head;
  head.put(kMagic);
  head.put(kVersion);
  head.put<uint64_t>(tensors.size());
  head.put<uint64_t>(metadata.size());
  std::set<std::string> keys;
  for (const auto& [key, value] : metadata) {
    LOWBIT_CHECK(keys.insert(key).second, "gguf: ", path, ": duplicate metadata key '", key, "'");
    check_value(value, key);
    if (key == "general.alignment") {
      alignment = value.as_uint();
      LOWBIT_CHECK(value.type == GgufType::u32 && alignment != 0 && (alignment & (alignment - 1)) == 0, "gguf: ", path,
                   ": general.alignment must be a u32 power of two, got ", alignment);
    }
    head.put_string(key);
    head.put(static_cast<uint32_t>(value.type));
    head.put_value(value);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const GgufTensorBytes& t : tensors) {
    const std::string what = "gguf: " + path + ": tensor '" + t.name + "': ";
    LOWBIT_CHECK(!t.name.empty() && t.name.size() <= kMaxNameBytes, what, "name must be 1..", kMaxNameBytes, " bytes");
    LOWBIT_CHECK(names.insert(t.name).second, what, "duplicate name");
    LOWBIT_CHECK(!t.ne.empty() && t.ne.size() <= kMaxDims, what, "needs 1..", kMaxDims, " dims, got ", t.ne.size());
    const auto nbytes = tensor_nbytes(t.ne, t.type);
    LOWBIT_CHECK(nbytes.has_value() && *nbytes == t.bytes.size(), what, ggml_type_name(t.type), " shape ",
                 ne_str(t.ne), " does not match its ", t.bytes.size(), " bytes");
    head.put_string(t.name);
    head.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) head.put<uint64_t>(static_cast<uint64_t>(d));
    head.put(static_cast<uint32_t>(t.type));
    head.put<uint64_t>(offset);
    offset += align_up(t.bytes.size(), alignment);
  }
  head.pad_to(alignment);
  AtomicFile out(path, "gguf");
  out.write(head.str());
  const std::string zeros(alignment, '\0');
  for (const GgufTensorBytes& t : tensors) {
    out.write(t.bytes.data(), t.bytes.size());
    out.write(zeros.data(), align_up(t.bytes.size(), alignment) - t.bytes.size());
  }
  out.commit();
}

// ---- q/k permutation ----

namespace {
// Row r of w -> row perm(r) of the result, where within each head of head_dim rows the
// rotate-half index h * half + i (h in {0, 1}) maps to the interleaved index 2 * i + h.
Tensor permute_rows(const Tensor& w, int64_t n_head, bool forward) {
  LOWBIT_CHECK(n_head > 0 && w.dim() >= 1 && w.size(0) % (2 * n_head) == 0, "gguf_permute_qk: ", w.str(),
               " does not split into ", n_head, " heads of an even head_dim");
  const int64_t head_dim = w.size(0) / n_head, half = head_dim / 2;
  Shape s = w.shape();
  // (n_head, 2, half, rest) <-> (n_head, half, 2, rest)
  Shape split = {n_head, 2, half};
  split.insert(split.end(), s.begin() + 1, s.end());
  if (!forward) std::swap(split[1], split[2]);
  return w.detach().reshape(split).transpose(1, 2).contiguous().reshape(s);
}
}  // namespace

Tensor gguf_permute_qk(const Tensor& w, int64_t n_head) { return permute_rows(w, n_head, true); }
Tensor gguf_unpermute_qk(const Tensor& w, int64_t n_head) { return permute_rows(w, n_head, false); }

// ---- export ----

GgmlType parse_gguf_save_type(const std::string& name) {
  std::string n = name;
  for (char& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (n == "f32") return GgmlType::f32;
  if (n == "f16") return GgmlType::f16;
  if (n == "bf16") return GgmlType::bf16;
  if (n == "q8_0") return GgmlType::q8_0;
  if (n == "q4_0") return GgmlType::q4_0;
  LOWBIT_FAIL("gguf: unknown tensor type '", name, "' (f32, f16, bf16, q8_0, q4_0)");
}

void save_gguf(const models::CausalLM& model, const std::string& path, const GgufSaveOptions& opts) {
  const std::string where = "gguf export " + path + ": ";
  const models::ModelConfig& c = model.config();
  check_architecture(c, where);
  const std::string& arch = c.model_type;
  const GgmlType type = opts.type;
  LOWBIT_CHECK(type == GgmlType::f32 || type == GgmlType::f16 || type == GgmlType::bf16 || type == GgmlType::q8_0 ||
                   type == GgmlType::q4_0,
               where, "tensor type ", ggml_type_name(type), " is not written (F32, F16, BF16, Q8_0, Q4_0)");
  LOWBIT_CHECK(!opts.tokenizer.empty(), where, "a tokenizer (tokenizer.json, tokenizer.model or their directory) is required");
  const std::string& tok_path = opts.tokenizer;
  const tok::Tokenizer tokenizer = tok::Tokenizer::from_file(tok_path);
  const std::string tok_where = where + "tokenizer " + tok_path + ": ";
  LOWBIT_CHECK(static_cast<int64_t>(tokenizer.vocab_size()) <= c.vocab_size, tok_where, tokenizer.vocab_size(),
               " ids do not fit the model's vocab_size ", c.vocab_size);

  // ---- metadata (order: general, architecture, tokenizer) ----
  std::vector<std::pair<std::string, GgufValue>> kv;
  const auto u32 = [&](const std::string& key, int64_t v) {
    LOWBIT_CHECK(v >= 0 && v <= UINT32_MAX, where, key, " = ", v, " does not fit u32");
    kv.emplace_back(key, GgufValue::u32(static_cast<uint32_t>(v)));
  };
  kv.emplace_back("general.architecture", GgufValue::string(arch));
  kv.emplace_back("general.name", GgufValue::string(opts.name.empty() ? fs::path(path).stem().string() : opts.name));
  u32("general.alignment", kDefaultAlignment);
  u32("general.file_type", file_type(type));
  u32("general.quantization_version", kQuantVersion);
  kv.insert(kv.end(), opts.extra.begin(), opts.extra.end());
  u32(arch + ".vocab_size", c.vocab_size);
  u32(arch + ".context_length", c.max_position_embeddings);
  u32(arch + ".embedding_length", c.hidden_size);
  u32(arch + ".block_count", c.num_hidden_layers);
  u32(arch + ".feed_forward_length", c.intermediate_size);
  u32(arch + ".attention.head_count", c.num_attention_heads);
  u32(arch + ".attention.head_count_kv", c.num_key_value_heads);
  u32(arch + ".attention.key_length", c.head_dim);
  u32(arch + ".attention.value_length", c.head_dim);
  u32(arch + ".rope.dimension_count", c.head_dim);
  kv.emplace_back(arch + ".rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta)));
  kv.emplace_back(arch + ".attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_norm_eps)));

  std::map<int32_t, bool> added;  // id -> special
  for (const tok::AddedToken& a : tokenizer.data().added_tokens) added[a.id] = a.special;
  const tok::TokenizerData& td = tokenizer.data();
  const bool spm = !td.is_byte_level() || td.is_sentencepiece();
  std::vector<std::string> tokens;
  // llama.cpp: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
  std::vector<int32_t> token_types;
  std::vector<float> scores;
  std::map<std::string, float> merge_score;  // SentencePiece-style tokenizer.json: -rank of the first merge
  if (spm && !td.is_sentencepiece())
    for (size_t r = td.merges.size(); r-- > 0;) merge_score[td.merges[r].first + td.merges[r].second] = -float(r);
  int64_t unk = -1;  // a plain value: GCC 12 -Wmaybe-uninitialized misfires on an optional here
  if (td.unk_token)
    if (const auto id = tokenizer.token_to_id(*td.unk_token)) unk = *id;
  for (int64_t id = 0; id < c.vocab_size; ++id) {
    const auto t = tokenizer.id_to_token(static_cast<int32_t>(id));
    const auto a = added.find(static_cast<int32_t>(id));
    tokens.push_back(t ? *t : "[PAD" + std::to_string(id) + "]");
    if (td.is_sentencepiece() && t) {
      token_types.push_back(static_cast<int32_t>(td.piece_types[static_cast<size_t>(id)]));
      scores.push_back(td.scores[static_cast<size_t>(id)]);
      continue;
    }
    const bool byte = t && t->size() == 6 && t->rfind("<0x", 0) == 0 && (*t)[5] == '>';
    token_types.push_back(!t                                 ? 5
                          : unk == id && spm                 ? 2
                          : a != added.end()                 ? (a->second ? 3 : 4)
                          : spm && byte && td.byte_fallback  ? 6
                                                             : 1);
    // Merged tokens in merge order; what no merge makes (single characters, added tokens) last.
    const auto ms = t ? merge_score.find(*t) : merge_score.end();
    scores.push_back(ms != merge_score.end() ? ms->second : -1e9f);
  }
  std::vector<std::string> merges;
  for (const auto& [l, r] : tokenizer.data().merges) merges.push_back(l + " " + r);
  const SpecialIds sp = special_ids(c, tokenizer, tok_where);
  LOWBIT_CHECK(sp.bos >= 0 && sp.bos < c.vocab_size && sp.eos >= 0 && sp.eos < c.vocab_size, tok_where,
               "bos/eos ids ", sp.bos, "/", sp.eos, " outside the vocabulary of ", c.vocab_size);
  if (spm) {
    const bool space_prefix = spm_add_space_prefix(tokenizer, tok_where);
    kv.emplace_back("tokenizer.ggml.model", GgufValue::string("llama"));
    kv.emplace_back("tokenizer.ggml.tokens", GgufValue::strings(tokens));
    kv.emplace_back("tokenizer.ggml.scores", GgufValue::f32s(scores));
    kv.emplace_back("tokenizer.ggml.token_type", GgufValue::i32s(token_types));
    kv.emplace_back("tokenizer.ggml.add_space_prefix", GgufValue::boolean(space_prefix));
    if (unk >= 0) u32("tokenizer.ggml.unknown_token_id", unk);
  } else {
    kv.emplace_back("tokenizer.ggml.model", GgufValue::string("gpt2"));
    kv.emplace_back("tokenizer.ggml.pre", GgufValue::string(pre_tokenizer_name(tokenizer, tok_where)));
    kv.emplace_back("tokenizer.ggml.tokens", GgufValue::strings(tokens));
    kv.emplace_back("tokenizer.ggml.token_type", GgufValue::i32s(token_types));
    if (!merges.empty()) kv.emplace_back("tokenizer.ggml.merges", GgufValue::strings(merges));
  }
  u32("tokenizer.ggml.bos_token_id", sp.bos);
  u32("tokenizer.ggml.eos_token_id", sp.eos);
  kv.emplace_back("tokenizer.ggml.add_bos_token", GgufValue::boolean(sp.add_bos));
  kv.emplace_back("tokenizer.ggml.add_eos_token", GgufValue::boolean(sp.add_eos));

  // ---- tensors ----
  NoGradGuard no_grad;
  std::map<std::string, Tensor> params;
  for (const auto& [n, p] : model.named_parameters()) params.emplace(n, p);
  std::vector<GgufTensorBytes> out;
  const auto add = [&](const std::string& name, const Tensor& w32) {
    const GgmlType t = tensor_type(w32.shape(), type);
    out.push_back({name, ggml_ne(w32.shape()), t, encode_tensor(w32, t)});
  };
  if (c.rope_scaling) {
    const std::vector<float> f = llama3_rope_factors(c);
    add("rope_freqs.weight", from_vector(f, {static_cast<int64_t>(f.size())}));
  }
  const std::vector<std::pair<std::string, std::string>> names = tensor_names(c.num_hidden_layers);
  std::set<std::string> known;
  for (const auto& [hf, gg] : names) known.insert(hf);
  for (const auto& [n, p] : params) LOWBIT_CHECK(known.count(n), where, "parameter '", n, "' has no GGUF tensor name");
  for (const auto& [hf, gg] : names) {
    const auto it = params.find(hf);
    if (it == params.end()) continue;
    Tensor w = it->second.detach().to(kCPU).to(DType::f32).contiguous();
    if (arch == "llama" && (hf.ends_with("q_proj.weight") || hf.ends_with("q_proj.bias")))
      w = gguf_permute_qk(w, c.num_attention_heads);
    if (arch == "llama" && (hf.ends_with("k_proj.weight") || hf.ends_with("k_proj.bias")))
      w = gguf_permute_qk(w, c.num_key_value_heads);
    add(gg, w);
  }
  write_gguf(path, kv, out);
}

}  // namespace lowbit::io
