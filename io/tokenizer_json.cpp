// Hugging Face tokenizer.json reading and writing for io/tokenizer.h. Reading is strict: every
// key that would change ids and is not implemented here is an error naming the file and key.
#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "lowbit/engine/error.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/tokenizer_impl.h"

namespace lowbit::tok {

namespace {

using nlohmann::json;
using ojson = nlohmann::ordered_json;

struct Reader {
  std::string w;  // "tokenizer: <source>: "

  [[noreturn]] void fail(const std::string& key, const std::string& msg) const { LOWBIT_FAIL(w, key, ": ", msg); }

  static std::string type_name(const json& v) { return v.type_name(); }

  const json& object(const json& v, const std::string& key) const {
    if (!v.is_object()) fail(key, "expected an object, got " + type_name(v));
    return v;
  }
  const json* member(const json& obj, const char* name) const {
    auto it = obj.find(name);
    return it == obj.end() ? nullptr : &*it;
  }
  const json& required(const json& obj, const char* name, const std::string& key) const {
    const json* v = member(obj, name);
    if (!v) fail(key + "." + name, "missing");
    return *v;
  }
  std::string str(const json& v, const std::string& key) const {
    if (!v.is_string()) fail(key, "expected a string, got " + type_name(v));
    return v.get<std::string>();
  }
  bool boolean(const json& obj, const char* name, bool dflt, const std::string& key) const {
    const json* v = member(obj, name);
    if (!v) return dflt;
    if (!v->is_boolean()) fail(key + "." + name, "expected a boolean, got " + type_name(*v));
    return v->get<bool>();
  }
  int64_t integer(const json& v, const std::string& key) const {
    if (!v.is_number_integer()) fail(key, "expected an integer, got " + type_name(v) + " " + v.dump());
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(INT32_MAX)) fail(key, "id " + std::to_string(u) + " is too large");
      return int64_t(u);
    }
    const int64_t i = v.get<int64_t>();
    if (i < 0) fail(key, "id " + std::to_string(i) + " is negative");
    if (i > INT32_MAX) fail(key, "id " + std::to_string(i) + " is too large");
    return i;
  }
  std::string type_of(const json& obj, const std::string& key) const {
    object(obj, key);
    return str(required(obj, "type", key), key + ".type");
  }
  // null or absent, else "not supported".
  void must_be_null(const json& obj, const char* name, const std::string& key, const std::string& why) const {
    const json* v = member(obj, name);
    if (v && !v->is_null()) fail(key.empty() ? name : key + "." + name, why);
  }

  void model(const json& m, TokenizerData& d) const {
    const std::string k = "model";
    object(m, k);
    const json* t = member(m, "type");
    if (!t) fail("model.type", "missing (only BPE models are supported)");
    const std::string type = str(*t, "model.type");
    if (type != "BPE") fail("model.type", "'" + type + "' is not supported (only BPE)");
    if (const json* v = member(m, "dropout"); v && !v->is_null()) {
      if (!v->is_number()) fail("model.dropout", "expected a number or null, got " + type_name(*v));
      if (v->get<double>() != 0.0) fail("model.dropout", "BPE dropout is not supported");
    }
    if (const json* v = member(m, "unk_token"); v && !v->is_null()) d.unk_token = str(*v, "model.unk_token");
    for (const char* name : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json* v = member(m, name);
      if (v && !v->is_null() && !(v->is_string() && v->get<std::string>().empty()))
        fail(std::string("model.") + name, "not supported (the supported BPE families use none)");
    }
    d.fuse_unk = boolean(m, "fuse_unk", false, k);
    d.byte_fallback = boolean(m, "byte_fallback", false, k);
    d.ignore_merges = boolean(m, "ignore_merges", false, k);

    const json& vocab = required(m, "vocab", k);
    if (!vocab.is_object()) fail("model.vocab", "expected an object, got " + type_name(vocab));
    d.vocab.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it)
      d.vocab.emplace_back(it.key(), int32_t(integer(it.value(), "model.vocab['" + it.key() + "']")));

    const json& merges = required(m, "merges", k);
    if (!merges.is_array()) fail("model.merges", "expected an array, got " + type_name(merges));
    d.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& e = merges[i];
      const std::string key = "model.merges[" + std::to_string(i) + "]";
      if (e.is_string()) {  // "a b": exactly one space
        const std::string s = e.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos || sp == 0 || sp + 1 == s.size())
          fail(key, "expected \"left right\" with one space, got \"" + s + "\"");
        d.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (e.is_array()) {
        if (e.size() != 2) fail(key, "expected [left, right], got " + std::to_string(e.size()) + " items");
        d.merges.emplace_back(str(e[0], key + "[0]"), str(e[1], key + "[1]"));
      } else {
        fail(key, "expected a string or an array, got " + type_name(e));
      }
    }
  }

  void added_tokens(const json& a, TokenizerData& d) const {
    if (!a.is_array()) fail("added_tokens", "expected an array, got " + type_name(a));
    for (size_t i = 0; i < a.size(); ++i) {
      const std::string k = "added_tokens[" + std::to_string(i) + "]";
      object(a[i], k);
      AddedToken t;
      t.id = int32_t(integer(required(a[i], "id", k), k + ".id"));
      t.content = str(required(a[i], "content", k), k + ".content");
      t.single_word = boolean(a[i], "single_word", false, k);
      t.lstrip = boolean(a[i], "lstrip", false, k);
      t.rstrip = boolean(a[i], "rstrip", false, k);
      t.normalized = boolean(a[i], "normalized", true, k);
      t.special = boolean(a[i], "special", false, k);
      d.added_tokens.push_back(std::move(t));
    }
  }

  void byte_level(const json& o, const std::string& k, PreTokenizerConfig& pc) const {
    pc.add_prefix_space = boolean(o, "add_prefix_space", true, k);
    pc.trim_offsets = boolean(o, "trim_offsets", true, k);
    pc.byte_level_use_regex = boolean(o, "use_regex", true, k);
  }

  SplitRule split(const json& o, const std::string& k) const {
    SplitRule r;
    r.is_regex = pattern(o, k, r.pattern);
    const std::string b = str(required(o, "behavior", k), k + ".behavior");
    if (b == "Removed") r.behavior = SplitBehavior::Removed;
    else if (b == "Isolated") r.behavior = SplitBehavior::Isolated;
    else if (b == "MergedWithPrevious") r.behavior = SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext") r.behavior = SplitBehavior::MergedWithNext;
    else if (b == "Contiguous") r.behavior = SplitBehavior::Contiguous;
    else fail(k + ".behavior", "unknown behavior '" + b + "'");
    r.invert = boolean(o, "invert", false, k);
    return r;
  }

  PrependScheme prepend_scheme(const json& o, const std::string& k) const {
    if (const json* v = member(o, "prepend_scheme")) {
      const std::string s = str(*v, k + ".prepend_scheme");
      if (s == "first") return PrependScheme::First;
      if (s == "always") return PrependScheme::Always;
      if (s == "never") return PrependScheme::Never;
      fail(k + ".prepend_scheme", "unknown scheme '" + s + "' (first, always or never)");
    }
    // Files older than tokenizers 0.15 say add_prefix_space instead.
    return boolean(o, "add_prefix_space", true, k) ? PrependScheme::Always : PrependScheme::Never;
  }

  std::string replacement(const json& o, const std::string& k) const {
    if (const json* v = member(o, "replacement")) return str(*v, k + ".replacement");
    if (const json* v = member(o, "str_rep")) return str(*v, k + ".str_rep");
    return "\xE2\x96\x81";
  }

  void metaspace(const json& o, const std::string& k, PreTokenizerConfig& pc) const {
    pc.final_step = PreTokenizerConfig::Final::Metaspace;
    pc.metaspace_replacement = replacement(o, k);
    pc.prepend_scheme = prepend_scheme(o, k);
    pc.metaspace_split = boolean(o, "split", true, k);
  }

  // null, ByteLevel, Metaspace, or Sequence[Split..., ByteLevel | Metaspace | (nothing)].
  PreTokenizerConfig pre_tokenizer(const json& p) const {
    const std::string k = "pre_tokenizer";
    PreTokenizerConfig pc;
    if (p.is_null()) {
      pc.final_step = PreTokenizerConfig::Final::None;
      return pc;
    }
    const std::string type = type_of(p, k);
    if (type == "ByteLevel") {
      byte_level(p, k, pc);
      return pc;
    }
    if (type == "Metaspace") {
      metaspace(p, k, pc);
      return pc;
    }
    if (type != "Sequence") fail(k + ".type", "'" + type + "' is not supported");
    const json& list = required(p, "pretokenizers", k);
    if (!list.is_array() || list.empty()) fail(k + ".pretokenizers", "expected a non-empty array");
    pc.final_step = PreTokenizerConfig::Final::None;
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string ki = k + ".pretokenizers[" + std::to_string(i) + "]";
      const std::string ti = type_of(list[i], ki);
      const bool last = i + 1 == list.size();
      if (ti == "Split") {
        pc.splits.push_back(split(list[i], ki));
      } else if (ti == "ByteLevel" && last) {
        byte_level(list[i], ki, pc);
        pc.final_step = PreTokenizerConfig::Final::ByteLevel;
      } else if (ti == "Metaspace" && last) {
        metaspace(list[i], ki, pc);
      } else if (ti == "ByteLevel" || ti == "Metaspace") {
        fail(ki + ".type", "'" + ti + "' here is not supported (expected Split..., then " + ti + " last)");
      } else {
        fail(ki + ".type", "'" + ti + "' is not supported");
      }
    }
    return pc;
  }

  // A Split/Replace pattern: {"String": s} or {"Regex": r}; returns whether it is a regex.
  bool pattern(const json& o, const std::string& k, std::string& out) const {
    const json& pat = required(o, "pattern", k);
    if (!pat.is_object() || pat.size() != 1) fail(k + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    if (const json* v = member(pat, "Regex")) {
      out = str(*v, k + ".pattern.Regex");
      return true;
    }
    if (const json* v = member(pat, "String")) {
      out = str(*v, k + ".pattern.String");
      return false;
    }
    fail(k + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}, got " + pat.dump());
  }

  void normalizer(const json& n, const std::string& k, std::vector<NormalizerStep>& out) const {
    using K = NormalizerStep::Kind;
    const std::string type = type_of(n, k);
    NormalizerStep st;
    if (type == "Sequence") {
      const json& list = required(n, "normalizers", k);
      if (!list.is_array()) fail(k + ".normalizers", "expected an array, got " + type_name(list));
      for (size_t i = 0; i < list.size(); ++i) normalizer(list[i], k + ".normalizers[" + std::to_string(i) + "]", out);
      return;
    }
    if (type == "NFC") st.kind = K::NFC;
    else if (type == "NFD") st.kind = K::NFD;
    else if (type == "NFKC") st.kind = K::NFKC;
    else if (type == "NFKD") st.kind = K::NFKD;
    else if (type == "Lowercase") st.kind = K::Lowercase;
    else if (type == "Strip") {
      st.kind = K::Strip;
      st.strip_left = boolean(n, "strip_left", true, k);
      st.strip_right = boolean(n, "strip_right", true, k);
    } else if (type == "Prepend") {
      st.kind = K::Prepend;
      st.content = str(required(n, "prepend", k), k + ".prepend");
    } else if (type == "Replace") {
      st.kind = K::Replace;
      st.is_regex = pattern(n, k, st.pattern);
      st.content = str(required(n, "content", k), k + ".content");
    } else {
      fail(k + ".type", "'" + type + "' is not supported (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Prepend, Replace, Sequence)");
    }
    out.push_back(std::move(st));
  }

  int count(const json& o, const char* name, const std::string& k) const {
    const json* v = member(o, name);
    if (!v) return 0;
    if (!v->is_number_unsigned() || v->get<uint64_t>() > 1000000) fail(k + "." + name, "expected a small non-negative integer");
    return int(v->get<uint64_t>());
  }

  void decoder(const json& d, const std::string& k, std::vector<DecoderStep>& out) const {
    using K = DecoderStep::Kind;
    const std::string type = type_of(d, k);
    DecoderStep st;
    if (type == "Sequence") {
      const json& list = required(d, "decoders", k);
      if (!list.is_array()) fail(k + ".decoders", "expected an array, got " + type_name(list));
      for (size_t i = 0; i < list.size(); ++i) decoder(list[i], k + ".decoders[" + std::to_string(i) + "]", out);
      return;
    }
    if (type == "ByteLevel") st.kind = K::ByteLevel;
    else if (type == "ByteFallback") st.kind = K::ByteFallback;
    else if (type == "Fuse") st.kind = K::Fuse;
    else if (type == "Metaspace") {
      st.kind = K::Metaspace;
      st.content = replacement(d, k);
      st.prepend_scheme = prepend_scheme(d, k);
      st.split = boolean(d, "split", true, k);
    } else if (type == "Strip") {
      st.kind = K::Strip;
      st.content = str(required(d, "content", k), k + ".content");
      st.start = count(d, "start", k);
      st.stop = count(d, "stop", k);
    } else if (type == "Replace") {
      st.kind = K::Replace;
      if (pattern(d, k, st.pattern)) fail(k + ".pattern", "a Regex pattern is not supported in a decoder (only String)");
      st.content = str(required(d, "content", k), k + ".content");
    } else {
      fail(k + ".type", "'" + type + "' is not supported (ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, Sequence)");
    }
    out.push_back(std::move(st));
  }

  void template_list(const json& a, const std::string& k, std::vector<TemplatePiece>& out) const {
    if (!a.is_array()) fail(k, "expected an array, got " + type_name(a));
    for (size_t i = 0; i < a.size(); ++i) {
      const std::string ki = k + "[" + std::to_string(i) + "]";
      if (!a[i].is_object() || a[i].size() != 1) fail(ki, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
      TemplatePiece p;
      const json* body = member(a[i], "SpecialToken");
      p.is_special = body != nullptr;
      if (!body) body = member(a[i], "Sequence");
      if (!body) fail(ki, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}, got " + a[i].dump());
      const std::string kb = ki + (p.is_special ? ".SpecialToken" : ".Sequence");
      object(*body, kb);
      p.id = str(required(*body, "id", kb), kb + ".id");
      if (const json* t = member(*body, "type_id")) p.type_id = int(integer(*t, kb + ".type_id"));
      out.push_back(std::move(p));
    }
  }

  void post_item(const json& p, const std::string& k, PostProcessorConfig& pp) const {
    const std::string type = type_of(p, k);
    if (type == "ByteLevel") {
      pp.has_byte_level = true;
    } else if (type == "TemplateProcessing") {
      if (pp.has_template) fail(k, "a second TemplateProcessing is not supported");
      pp.has_template = true;
      template_list(required(p, "single", k), k + ".single", pp.single);
      if (const json* pair = member(p, "pair")) template_list(*pair, k + ".pair", pp.pair);
      const json& sp = required(p, "special_tokens", k);
      if (!sp.is_object()) fail(k + ".special_tokens", "expected an object, got " + type_name(sp));
      for (auto it = sp.begin(); it != sp.end(); ++it) {
        const std::string ks = k + ".special_tokens['" + it.key() + "']";
        object(it.value(), ks);
        TemplateSpecial s;
        s.name = it.key();
        const json& ids = required(it.value(), "ids", ks);
        if (!ids.is_array()) fail(ks + ".ids", "expected an array, got " + type_name(ids));
        for (size_t i = 0; i < ids.size(); ++i)
          s.ids.push_back(int32_t(integer(ids[i], ks + ".ids[" + std::to_string(i) + "]")));
        if (const json* toks = member(it.value(), "tokens")) {
          if (!toks->is_array()) fail(ks + ".tokens", "expected an array, got " + type_name(*toks));
          for (size_t i = 0; i < toks->size(); ++i)
            s.tokens.push_back(str((*toks)[i], ks + ".tokens[" + std::to_string(i) + "]"));
        }
        pp.specials.push_back(std::move(s));
      }
    } else {
      fail(k + ".type", "'" + type + "' is not supported");
    }
  }

  PostProcessorConfig post_processor(const json* p) const {
    PostProcessorConfig pp;
    const std::string k = "post_processor";
    if (!p || p->is_null()) return pp;
    if (type_of(*p, k) != "Sequence") {
      post_item(*p, k, pp);
      return pp;
    }
    const json& list = required(*p, "processors", k);
    if (!list.is_array()) fail(k + ".processors", "expected an array, got " + type_name(list));
    for (size_t i = 0; i < list.size(); ++i) post_item(list[i], k + ".processors[" + std::to_string(i) + "]", pp);
    return pp;
  }

  TokenizerData read(std::string_view text) const {
    // A raw NUL ends nlohmann's input early ("{}\0garbage" would pass); no valid JSON holds one.
    if (const void* nul = std::memchr(text.data(), '\0', text.size()))
      fail("JSON", "NUL byte at offset " + std::to_string(static_cast<const char*>(nul) - text.data()));
    json j;
    try {
      j = json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
      fail("JSON", std::string("malformed: ") + e.what());
    }
    if (!j.is_object()) fail("top level", "expected an object, got " + type_name(j));
    TokenizerData d;
    must_be_null(j, "truncation", "", "truncation is not supported (must be null)");
    must_be_null(j, "padding", "", "padding is not supported (must be null)");
    if (const json* n = member(j, "normalizer"); n && !n->is_null()) normalizer(*n, "normalizer", d.normalizers);
    const json* m = member(j, "model");
    if (!m) fail("model", "missing");
    model(*m, d);
    if (const json* a = member(j, "added_tokens"); a && !a->is_null()) added_tokens(*a, d);
    const json* p = member(j, "pre_tokenizer");
    if (!p) fail("pre_tokenizer", "missing");
    d.pre_tokenizer = pre_tokenizer(*p);
    d.post_processor = post_processor(member(j, "post_processor"));
    const json* dec = member(j, "decoder");
    if (!dec || dec->is_null()) fail("decoder", "missing or null (decode needs the file's decoder)");
    d.decoders.clear();
    decoder(*dec, "decoder", d.decoders);
    return d;
  }
};

const char* behavior_name(SplitBehavior b) {
  switch (b) {
    case SplitBehavior::Removed: return "Removed";
    case SplitBehavior::Isolated: return "Isolated";
    case SplitBehavior::MergedWithPrevious: return "MergedWithPrevious";
    case SplitBehavior::MergedWithNext: return "MergedWithNext";
    case SplitBehavior::Contiguous: return "Contiguous";
  }
  return "Isolated";
}

ojson byte_level_json(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  ojson o;
  o["type"] = "ByteLevel";
  o["add_prefix_space"] = add_prefix_space;
  o["trim_offsets"] = trim_offsets;
  o["use_regex"] = use_regex;
  return o;
}

const char* scheme_name(PrependScheme s) {
  switch (s) {
    case PrependScheme::First: return "first";
    case PrependScheme::Always: return "always";
    case PrependScheme::Never: return "never";
  }
  return "always";
}

ojson normalizer_json(const std::vector<NormalizerStep>& steps) {
  using K = NormalizerStep::Kind;
  ojson list = ojson::array();
  for (const NormalizerStep& n : steps) {
    ojson o;
    switch (n.kind) {
      case K::NFC: o["type"] = "NFC"; break;
      case K::NFD: o["type"] = "NFD"; break;
      case K::NFKC: o["type"] = "NFKC"; break;
      case K::NFKD: o["type"] = "NFKD"; break;
      case K::Lowercase: o["type"] = "Lowercase"; break;
      case K::Strip:
        o["type"] = "Strip";
        o["strip_left"] = n.strip_left;
        o["strip_right"] = n.strip_right;
        break;
      case K::Prepend:
        o["type"] = "Prepend";
        o["prepend"] = n.content;
        break;
      case K::Replace:
        o["type"] = "Replace";
        o["pattern"][n.is_regex ? "Regex" : "String"] = n.pattern;
        o["content"] = n.content;
        break;
    }
    list.push_back(o);
  }
  if (list.empty()) return nullptr;
  if (list.size() == 1) return list[0];
  ojson seq;
  seq["type"] = "Sequence";
  seq["normalizers"] = list;
  return seq;
}

ojson decoder_json(const std::vector<DecoderStep>& steps) {
  using K = DecoderStep::Kind;
  ojson list = ojson::array();
  for (const DecoderStep& d : steps) {
    ojson o;
    switch (d.kind) {
      case K::ByteLevel: o = byte_level_json(true, true, true); break;
      case K::ByteFallback: o["type"] = "ByteFallback"; break;
      case K::Fuse: o["type"] = "Fuse"; break;
      case K::Metaspace:
        o["type"] = "Metaspace";
        o["replacement"] = d.content;
        o["prepend_scheme"] = scheme_name(d.prepend_scheme);
        o["split"] = d.split;
        break;
      case K::Strip:
        o["type"] = "Strip";
        o["content"] = d.content;
        o["start"] = d.start;
        o["stop"] = d.stop;
        break;
      case K::Replace:
        o["type"] = "Replace";
        o["pattern"]["String"] = d.pattern;
        o["content"] = d.content;
        break;
    }
    list.push_back(o);
  }
  if (list.size() == 1) return list[0];
  ojson seq;
  seq["type"] = "Sequence";
  seq["decoders"] = list;
  return seq;
}

ojson template_json(const std::vector<TemplatePiece>& list) {
  ojson a = ojson::array();
  for (const TemplatePiece& p : list) {
    ojson body;
    body["id"] = p.id;
    body["type_id"] = p.type_id;
    ojson item;
    item[p.is_special ? "SpecialToken" : "Sequence"] = body;
    a.push_back(item);
  }
  return a;
}

}  // namespace

namespace detail {
TokenizerData read_tokenizer_json(std::string_view json_text, const std::string& source) {
  return Reader{where(source)}.read(json_text);
}
}  // namespace detail

Tokenizer Tokenizer::from_json(std::string_view json_text, const std::string& source) {
  return Tokenizer(detail::read_tokenizer_json(json_text, source), source);
}

std::string Tokenizer::to_json() const {
  const TokenizerData d = impl_->json_data();
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  std::vector<AddedToken> added = d.added_tokens;
  std::sort(added.begin(), added.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
  j["added_tokens"] = ojson::array();
  for (const AddedToken& t : added) {
    ojson o;
    o["id"] = t.id;
    o["content"] = t.content;
    o["single_word"] = t.single_word;
    o["lstrip"] = t.lstrip;
    o["rstrip"] = t.rstrip;
    o["normalized"] = t.normalized;
    o["special"] = t.special;
    j["added_tokens"].push_back(o);
  }
  j["normalizer"] = normalizer_json(d.normalizers);

  const PreTokenizerConfig& pc = d.pre_tokenizer;
  ojson last;
  if (pc.final_step == PreTokenizerConfig::Final::ByteLevel) {
    last = byte_level_json(pc.add_prefix_space, pc.trim_offsets, pc.byte_level_use_regex);
  } else if (pc.final_step == PreTokenizerConfig::Final::Metaspace) {
    last["type"] = "Metaspace";
    last["replacement"] = pc.metaspace_replacement;
    last["prepend_scheme"] = scheme_name(pc.prepend_scheme);
    last["split"] = pc.metaspace_split;
  }
  if (pc.splits.empty()) {
    j["pre_tokenizer"] = last.is_null() ? ojson(nullptr) : last;
  } else {
    ojson seq;
    seq["type"] = "Sequence";
    seq["pretokenizers"] = ojson::array();
    for (const SplitRule& r : pc.splits) {
      ojson s;
      s["type"] = "Split";
      s["pattern"][r.is_regex ? "Regex" : "String"] = r.pattern;
      s["behavior"] = behavior_name(r.behavior);
      s["invert"] = r.invert;
      seq["pretokenizers"].push_back(s);
    }
    if (!last.is_null()) seq["pretokenizers"].push_back(last);
    j["pre_tokenizer"] = seq;
  }

  const PostProcessorConfig& pp = d.post_processor;
  ojson items = ojson::array();
  if (pp.has_byte_level) items.push_back(byte_level_json(true, false, true));
  if (pp.has_template) {
    ojson t;
    t["type"] = "TemplateProcessing";
    t["single"] = template_json(pp.single);
    t["pair"] = template_json(pp.pair);
    t["special_tokens"] = ojson::object();
    for (const TemplateSpecial& s : pp.specials) {
      ojson o;
      o["id"] = s.name;
      o["ids"] = s.ids;
      o["tokens"] = s.tokens;
      t["special_tokens"][s.name] = o;
    }
    items.push_back(t);
  }
  if (items.empty()) {
    j["post_processor"] = nullptr;
  } else if (items.size() == 1) {
    j["post_processor"] = items[0];
  } else {
    j["post_processor"]["type"] = "Sequence";
    j["post_processor"]["processors"] = items;
  }
  j["decoder"] = decoder_json(d.decoders);

  ojson m;
  m["type"] = "BPE";
  m["dropout"] = nullptr;
  m["unk_token"] = d.unk_token ? ojson(*d.unk_token) : ojson(nullptr);
  m["continuing_subword_prefix"] = nullptr;
  m["end_of_word_suffix"] = nullptr;
  m["fuse_unk"] = d.fuse_unk;
  m["byte_fallback"] = d.byte_fallback;
  m["ignore_merges"] = d.ignore_merges;
  std::vector<std::pair<std::string, int32_t>> vocab = d.vocab;
  std::sort(vocab.begin(), vocab.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  m["vocab"] = ojson::object();
  for (const auto& [tok, id] : vocab) m["vocab"][tok] = id;
  m["merges"] = ojson::array();
  for (const auto& [a, b] : d.merges) m["merges"].push_back(ojson::array({a, b}));
  j["model"] = m;
  // Model tokens are valid UTF-8 by construction; an added token given in code may not be.
  try {
    return j.dump(1) + "\n";
  } catch (const ojson::exception& e) {
    LOWBIT_FAIL(detail::where(impl_->source), "to_json: a token is not valid UTF-8: ", e.what());
  }
}

}  // namespace lowbit::tok
