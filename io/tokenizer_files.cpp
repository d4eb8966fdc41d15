// The files of a model directory's tokenizer for io/tokenizer.h: tokenizer.json or
// tokenizer.model, and transformers' tokenizer_config.json / special_tokens_map.json (read:
// special tokens, add_bos_token / add_eos_token, chat_template; written on export so that
// AutoTokenizer sees the same tokenizer).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "lowbit/engine/error.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/tokenizer_impl.h"

namespace lowbit::tok {

namespace fs = std::filesystem;
using nlohmann::json;
using ojson = nlohmann::ordered_json;

namespace {

// A special token in tokenizer_config.json: a string, or {"content": ..., ...} (AddedToken).
std::optional<std::string> token_field(const json& j, const char* key, const std::string& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  LOWBIT_FAIL("tokenizer config: ", file, ": '", key, "' must be a string or {\"content\": ...}, got ", it->dump());
}

std::optional<bool> bool_field(const json& j, const char* key, const std::string& file) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  LOWBIT_CHECK(it->is_boolean(), "tokenizer config: ", file, ": '", key, "' must be a boolean, got ", it->dump());
  return it->get<bool>();
}

json parse_file(const std::string& path) {
  const std::string text = io::read_file(path, "tokenizer config");
  try {
    json j = json::parse(text);
    LOWBIT_CHECK(j.is_object(), "tokenizer config: ", path, ": expected a JSON object, got ", j.type_name());
    return j;
  } catch (const json::exception& e) {
    LOWBIT_FAIL("tokenizer config: ", path, ": malformed JSON: ", e.what());
  }
}

bool named_like_a_model_file(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  return name == "tokenizer.json" || name == "tokenizer.model";
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& dir) {
  TokenizerConfig c;
  const std::string cfg_path = (fs::path(dir) / "tokenizer_config.json").string();
  const std::string map_path = (fs::path(dir) / "special_tokens_map.json").string();
  for (const std::string& path : {cfg_path, map_path}) {
    if (!fs::is_regular_file(path)) continue;
    const json j = parse_file(path);
    auto fill = [&](std::optional<std::string>& field, const char* key) {
      if (!field) field = token_field(j, key, path);
    };
    fill(c.bos_token, "bos_token");
    fill(c.eos_token, "eos_token");
    fill(c.pad_token, "pad_token");
    fill(c.unk_token, "unk_token");
    if (path != cfg_path) continue;
    c.add_bos_token = bool_field(j, "add_bos_token", path);
    c.add_eos_token = bool_field(j, "add_eos_token", path);
    if (auto it = j.find("chat_template"); it != j.end() && !it->is_null()) {
      if (it->is_string()) {
        c.chat_template = it->get<std::string>();
      } else if (it->is_array()) {  // [{"name": "default", "template": ...}, ...]
        for (const json& t : *it)
          if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
            c.chat_template = t["template"].get<std::string>();
      } else {
        LOWBIT_FAIL("tokenizer config: ", path, ": 'chat_template' must be a string or a list, got ", it->type_name());
      }
    }
  }
  // A chat_template.jinja file (transformers 4.43+ saves the template there).
  const std::string jinja = (fs::path(dir) / "chat_template.jinja").string();
  if (c.chat_template.empty() && fs::is_regular_file(jinja)) c.chat_template = io::read_file(jinja, "tokenizer config");
  return c;
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  if (fs::is_directory(path)) return from_directory(path);
  std::string bytes = io::read_file(path, "tokenizer");
  TokenizerConfig config;
  if (named_like_a_model_file(path)) config = read_tokenizer_config(fs::path(path).parent_path().string());
  if (fs::path(path).extension() == ".model") return from_sentencepiece(std::move(bytes), path, std::move(config));
  TokenizerData d = detail::read_tokenizer_json(bytes, path);
  d.config = std::move(config);
  return Tokenizer(std::move(d), path);
}

Tokenizer Tokenizer::from_directory(const std::string& dir) {
  for (const char* name : {"tokenizer.json", "tokenizer.model"})
    if (fs::is_regular_file(fs::path(dir) / name)) return from_file((fs::path(dir) / name).string());
  LOWBIT_FAIL("tokenizer: ", dir, ": holds neither tokenizer.json nor tokenizer.model");
}

std::string Tokenizer::file_name() const { return impl_->sp ? "tokenizer.model" : "tokenizer.json"; }

void Tokenizer::save(const std::string& path) const {
  if (impl_->sp) {
    io::write_file_atomic(path, impl_->data.sentencepiece_model, "tokenizer");
    return;
  }
  io::write_file_atomic(path, to_json(), "tokenizer");
}

namespace detail {

int32_t Impl::lookup(std::string_view token) const {
  for (const AddedToken& t : added)
    if (t.content == token) return t.id;
  auto it = file_vocab.find(token);
  return it == file_vocab.end() ? -1 : it->second;
}

std::optional<std::string> Impl::known_token(std::initializer_list<const char*> names) const {
  for (const char* n : names)
    if (lookup(n) >= 0) return std::string(n);
  return std::nullopt;
}

// A token the config names, else the template's own, else a well-known name (as transformers 5,
// which takes the tokenizer's tokens when the config lists none).
void Impl::apply_config() {
  const TokenizerConfig& c = data.config;
  auto id_of = [&](const std::optional<std::string>& token, const std::vector<int32_t>& current,
                   std::initializer_list<const char*> names, const char* key) {
    if (!token && !current.empty()) return current.front();
    const std::optional<std::string> name = token ? token : known_token(names);
    LOWBIT_CHECK(name.has_value(), where(source), "tokenizer_config.json: add_", key, "_token is true but there is no ",
                 key, "_token");
    const int32_t id = lookup(*name);
    LOWBIT_CHECK(id >= 0, where(source), "tokenizer_config.json: ", key, "_token '", *name, "' is not in the vocabulary");
    return id;
  };
  if (c.add_bos_token) {
    const int32_t bos = *c.add_bos_token ? id_of(c.bos_token, template_prefix, kBosNames, "bos") : -1;
    template_prefix.clear();
    if (bos >= 0) template_prefix.push_back(bos);
  }
  if (c.add_eos_token) {
    const int32_t eos = *c.add_eos_token ? id_of(c.eos_token, template_suffix, kEosNames, "eos") : -1;
    template_suffix.clear();
    if (eos >= 0) template_suffix.push_back(eos);
  }
}

TokenizerData Impl::json_data() const {
  TokenizerData d;
  if (sp) {
    LOWBIT_CHECK(sp_bpe != nullptr, where(source),
                 "this SentencePiece model has no tokenizer.json form (only identity-normalized BPE models do)");
    d = sp_bpe->data;
    for (size_t id = 0; id < id_kind.size(); ++id) {
      if (id_kind[id] != 3) continue;
      AddedToken t;
      t.id = int32_t(id);
      t.content = id_text[id];
      d.added_tokens.push_back(t);
    }
    // transformers' Llama-2 layout of the decoders.
    DecoderStep replace, fallback, fuse, strip;
    replace.kind = DecoderStep::Kind::Replace;
    replace.pattern = "\xE2\x96\x81";
    replace.content = " ";
    fallback.kind = DecoderStep::Kind::ByteFallback;
    fuse.kind = DecoderStep::Kind::Fuse;
    strip.kind = DecoderStep::Kind::Strip;
    strip.content = " ";
    strip.start = 1;
    d.decoders = {replace, fallback, fuse};
    if (!d.normalizers.empty() && d.normalizers[0].kind == NormalizerStep::Kind::Prepend) d.decoders.push_back(strip);
  } else {
    d = data;
  }
  const bool overridden = sp || data.config.add_bos_token || data.config.add_eos_token;
  d.config = {};
  if (!overridden) return d;
  // The template of what encode adds.
  PostProcessorConfig pp;
  pp.has_byte_level = d.post_processor.has_byte_level;
  pp.has_template = !template_prefix.empty() || !template_suffix.empty();
  auto special = [&](int32_t id, int type_id, std::vector<TemplatePiece>& out) {
    out.push_back({true, id_text[size_t(id)], type_id});
    for (const TemplateSpecial& s : pp.specials)
      if (s.name == id_text[size_t(id)]) return;
    pp.specials.push_back({id_text[size_t(id)], {id}, {id_text[size_t(id)]}});
  };
  for (int32_t id : template_prefix) special(id, 0, pp.single);
  pp.single.push_back({false, "A", 0});
  for (int32_t id : template_suffix) special(id, 0, pp.single);
  pp.pair = pp.single;
  for (int32_t id : template_prefix) special(id, 1, pp.pair);
  pp.pair.push_back({false, "B", 1});
  for (int32_t id : template_suffix) special(id, 1, pp.pair);
  if (!pp.has_template) pp.single.clear(), pp.pair.clear();
  d.post_processor = pp;
  return d;
}

}  // namespace detail

TokenizerConfig Tokenizer::effective_config() const {
  const detail::Impl& im = *impl_;
  TokenizerConfig c = im.data.config;
  if (!c.bos_token && !im.template_prefix.empty()) c.bos_token = im.id_text[im.template_prefix[0]];
  if (!c.bos_token) c.bos_token = im.known_token(detail::kBosNames);
  if (!c.eos_token && !im.template_suffix.empty()) c.eos_token = im.id_text[im.template_suffix[0]];
  if (!c.eos_token) c.eos_token = im.known_token(detail::kEosNames);
  if (!c.unk_token && im.data.unk_token) c.unk_token = im.data.unk_token;
  if (!c.add_bos_token) c.add_bos_token = !im.template_prefix.empty();
  if (!c.add_eos_token) c.add_eos_token = !im.template_suffix.empty();
  return c;
}

void Tokenizer::save_files(const std::string& dir) const {
  const detail::Impl& im = *impl_;
  std::error_code ec;
  fs::create_directories(dir, ec);
  LOWBIT_CHECK(!ec, "tokenizer: cannot create ", dir, ": ", ec.message());
  save((fs::path(dir) / file_name()).string());
  // A SentencePiece model gets its tokenizer.json form too where it has one: transformers 5's own
  // conversion of tokenizer.model (a Metaspace layout) encodes some texts differently.
  const bool json_too = im.sp && im.sp_bpe;
  if (json_too) io::write_file_atomic((fs::path(dir) / "tokenizer.json").string(), to_json(), "tokenizer");
  const TokenizerConfig c = effective_config();
  ojson cfg, map;
  // transformers 5 builds a tokenizers-backed tokenizer from tokenizer.json for this class; a
  // directory with only tokenizer.model needs the Llama class, which converts it.
  cfg["tokenizer_class"] = im.sp && !json_too ? "LlamaTokenizer" : "PreTrainedTokenizerFast";
  for (const auto& [key, value] : {std::pair{"bos_token", &c.bos_token}, std::pair{"eos_token", &c.eos_token},
                                   std::pair{"pad_token", &c.pad_token}, std::pair{"unk_token", &c.unk_token}}) {
    cfg[key] = *value ? ojson(**value) : ojson(nullptr);
    if (*value) map[key] = **value;
  }
  cfg["add_bos_token"] = *c.add_bos_token;
  cfg["add_eos_token"] = *c.add_eos_token;
  if (!c.chat_template.empty()) cfg["chat_template"] = c.chat_template;
  ojson decoder = ojson::object();
  for (size_t id = 0; id < im.id_kind.size(); ++id) {
    if (im.id_kind[id] < 2) continue;
    ojson t;
    t["content"] = im.id_text[id];
    const AddedToken* a = nullptr;
    for (const AddedToken& x : im.added)
      if (x.id == int32_t(id)) a = &x;
    t["lstrip"] = a && a->lstrip;
    t["normalized"] = a && a->normalized;
    t["rstrip"] = a && a->rstrip;
    t["single_word"] = a && a->single_word;
    t["special"] = im.id_kind[id] == 3;
    decoder[std::to_string(id)] = t;
  }
  cfg["added_tokens_decoder"] = decoder;
  try {
    io::write_file_atomic((fs::path(dir) / "tokenizer_config.json").string(), cfg.dump(2) + "\n", "tokenizer");
    io::write_file_atomic((fs::path(dir) / "special_tokens_map.json").string(), map.dump(2) + "\n", "tokenizer");
  } catch (const ojson::exception& e) {
    LOWBIT_FAIL("tokenizer: ", dir, ": a special token is not valid UTF-8: ", e.what());
  }
}

}  // namespace lowbit::tok
