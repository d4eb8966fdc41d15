#include "lowbit/io/chat_template.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "lowbit/engine/error.h"

namespace lowbit::io {

namespace {

struct Named {
  ChatTemplate t;
  const char* name;
};
constexpr Named kTemplates[] = {{ChatTemplate::Llama3, "llama3"},           {ChatTemplate::Llama3_1, "llama3.1"},
                                {ChatTemplate::ChatMLQwen2, "chatml_qwen2"}, {ChatTemplate::ChatMLQwen2_5, "chatml_qwen2.5"},
                                {ChatTemplate::ChatMLQwen3, "chatml_qwen3"}, {ChatTemplate::Llama2, "llama2"}};

// Python's str.isspace() (Jinja's trim and the templates' .strip() use it): Unicode White_Space
// plus the separators U+001C..U+001F.
bool py_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

// Code point at s[i] (valid UTF-8, checked when records are parsed) and its length.
uint32_t cp_at(std::string_view s, size_t i, size_t& len) {
  const auto c = uint8_t(s[i]);
  if (c < 0x80) return len = 1, c;
  len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
  uint32_t cp = c & (0x7F >> len);
  for (size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (uint8_t(s[i + k]) & 0x3F);
  return cp;
}

std::string py_strip(std::string_view s) {
  size_t b = 0, e = s.size(), len;
  while (b < e && py_space(cp_at(s, b, len))) b += len;
  while (e > b) {
    size_t k = e - 1;
    while (k > b && (uint8_t(s[k]) & 0xC0) == 0x80) --k;
    if (!py_space(cp_at(s, k, len))) break;
    e = k;
  }
  return std::string(s.substr(b, e - b));
}

struct Builder {
  std::vector<ChatPiece> pieces;
  void text(std::string s, bool train = false) {
    if (s.empty()) return;
    if (!pieces.empty() && !pieces.back().special && pieces.back().train == train) {
      pieces.back().text += s;
      return;
    }
    pieces.push_back({std::move(s), train, false});
  }
  void special(std::string s, bool train = false) { pieces.push_back({std::move(s), train, true}); }
};

void check_roles(const std::vector<ChatMessage>& m, ChatTemplate t) {
  LOWBIT_CHECK(!m.empty(), "chat: a conversation needs at least one message");
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string& r = m[i].role;
    LOWBIT_CHECK(r == "system" || r == "user" || r == "assistant", "chat: message ", i, ": unknown role '", r,
                 "' (system, user or assistant)");
    LOWBIT_CHECK(r != "system" || i == 0, "chat: message ", i, ": a system message may only come first");
  }
  if (t == ChatTemplate::Llama2) {
    const size_t first = m[0].role == "system" ? 1 : 0;
    for (size_t i = first; i < m.size(); ++i)
      LOWBIT_CHECK(m[i].role == ((i - first) % 2 == 0 ? "user" : "assistant"), "chat: message ", i,
                   ": llama2 needs roles alternating user/assistant/user/... (got '", m[i].role, "')");
  }
}

void render_llama3(Builder& b, const std::vector<ChatMessage>& m, bool v31, const ChatOptions& o) {
  b.special("<|begin_of_text|>");
  size_t first = 0;
  auto header = [&](const std::string& role) {
    b.special("<|start_header_id|>");
    b.text(role);
    b.special("<|end_header_id|>");
    b.text("\n\n");
  };
  if (v31) {
    header("system");
    std::string sys = "Cutting Knowledge Date: December 2023\nToday Date: " + o.date_string + "\n\n";
    if (m[0].role == "system") {
      sys += py_strip(m[0].content);
      first = 1;
    }
    b.text(sys);
    b.special("<|eot_id|>");
  }
  for (size_t i = first; i < m.size(); ++i) {
    const bool train = m[i].role == "assistant";
    header(m[i].role);
    b.text(py_strip(m[i].content), train);
    b.special("<|eot_id|>", train);
  }
}

void render_chatml(Builder& b, const std::vector<ChatMessage>& m, ChatTemplate t) {
  const char* default_system = t == ChatTemplate::ChatMLQwen2     ? "You are a helpful assistant."
                               : t == ChatTemplate::ChatMLQwen2_5 ? "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                                                                  : nullptr;
  if (default_system && m[0].role != "system") {
    b.special("<|im_start|>");
    b.text(std::string("system\n") + default_system);
    b.special("<|im_end|>");
    b.text("\n");
  }
  size_t last_user = 0;
  for (size_t i = 0; i < m.size(); ++i)
    if (m[i].role == "user") last_user = i;
  for (size_t i = 0; i < m.size(); ++i) {
    const bool train = m[i].role == "assistant";
    b.special("<|im_start|>");
    b.text(m[i].role + "\n");
    std::string content = m[i].content;
    if (t == ChatTemplate::ChatMLQwen3 && train && i + 1 == m.size() && i > last_user) {
      b.text("<think>\n\n</think>\n\n");
      content.erase(0, content.find_first_not_of('\n') == std::string::npos ? content.size()
                                                                               : content.find_first_not_of('\n'));
    }
    b.text(content, train);
    b.special("<|im_end|>", train);
    b.text("\n");
  }
}

void render_llama2(Builder& b, const std::vector<ChatMessage>& m) {
  size_t first = 0;
  std::string system;
  if (m[0].role == "system") {
    system = m[0].content;
    first = 1;
  }
  for (size_t i = first; i < m.size(); ++i) {
    if (m[i].role == "user") {
      const std::string content =
          i == first && first == 1 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + m[i].content : m[i].content;
      b.special("<s>");
      b.text("[INST] " + py_strip(content) + " [/INST]");
    } else {
      std::string reply(1, ' ');  // built by appends: GCC 12 -Wrestrict misfires on " " + std::string
      reply += py_strip(m[i].content);
      reply += ' ';
      b.text(std::move(reply), true);
      b.special("</s>", true);
    }
  }
}

// The template's special strings, for SentencePiece models (their encoder does not know them).
std::vector<std::string> special_strings(const std::vector<ChatPiece>& pieces) {
  std::vector<std::string> out;
  for (const ChatPiece& p : pieces)
    if (p.special && std::find(out.begin(), out.end(), p.text) == out.end()) out.push_back(p.text);
  return out;
}

}  // namespace

std::optional<ChatTemplate> parse_chat_template(std::string_view name) {
  for (const Named& n : kTemplates)
    if (name == n.name) return n.t;
  return std::nullopt;
}

const char* chat_template_name(ChatTemplate t) {
  for (const Named& n : kTemplates)
    if (n.t == t) return n.name;
  return "?";
}

std::string chat_template_names() {
  std::string s;
  for (const Named& n : kTemplates) s += (s.empty() ? "" : ", ") + std::string(n.name);
  return s;
}

ChatTemplate default_chat_template(const std::string& model_type, const tok::Tokenizer& tokenizer,
                                   const std::string& text) {
  if (!text.empty()) {
    if (text.find("Cutting Knowledge Date") != std::string::npos) return ChatTemplate::Llama3_1;
    if (text.find("<|start_header_id|>") != std::string::npos) return ChatTemplate::Llama3;
    if (text.find("<think>") != std::string::npos) return ChatTemplate::ChatMLQwen3;
    if (text.find("You are Qwen, created by Alibaba Cloud") != std::string::npos) return ChatTemplate::ChatMLQwen2_5;
    if (text.find("<|im_start|>") != std::string::npos) return ChatTemplate::ChatMLQwen2;
    if (text.find("[INST]") != std::string::npos) return ChatTemplate::Llama2;
  }
  if (model_type == "qwen3") return ChatTemplate::ChatMLQwen3;
  if (model_type == "qwen2") return ChatTemplate::ChatMLQwen2_5;
  if (model_type == "llama") {
    if (tokenizer.token_to_id("<|start_header_id|>")) return ChatTemplate::Llama3;
    if (tokenizer.token_to_id("</s>")) return ChatTemplate::Llama2;
  }
  LOWBIT_FAIL("chat: no template fits model_type '", model_type, "'",
              text.empty() ? " (the checkpoint has no chat_template)" : " and its chat_template",
              "; name one (", chat_template_names(), ")");
}

std::vector<ChatPiece> render_chat(const std::vector<ChatMessage>& messages, ChatTemplate t, const ChatOptions& o,
                                   bool add_generation_prompt) {
  check_roles(messages, t);
  Builder b;
  switch (t) {
    case ChatTemplate::Llama3:
    case ChatTemplate::Llama3_1:
      render_llama3(b, messages, t == ChatTemplate::Llama3_1, o);
      if (add_generation_prompt) {
        b.special("<|start_header_id|>");
        b.text("assistant");
        b.special("<|end_header_id|>");
        b.text("\n\n");
      }
      break;
    case ChatTemplate::ChatMLQwen2:
    case ChatTemplate::ChatMLQwen2_5:
    case ChatTemplate::ChatMLQwen3:
      render_chatml(b, messages, t);
      if (add_generation_prompt) {
        b.special("<|im_start|>");
        b.text(t == ChatTemplate::ChatMLQwen3 ? "assistant\n<think>\n\n</think>\n\n" : "assistant\n");
      }
      break;
    case ChatTemplate::Llama2:
      render_llama2(b, messages);
      break;  // the prompt already ends with " [/INST]"
  }
  return b.pieces;
}

ChatTokens tokenize_chat(const std::vector<ChatPiece>& pieces, const tok::Tokenizer& tokenizer) {
  const bool sp = tokenizer.data().is_sentencepiece();
  const std::vector<std::string> specials = special_strings(pieces);
  for (const std::string& s : specials)
    LOWBIT_CHECK(tokenizer.token_to_id(s).has_value(), "chat: the template needs the token '", s,
                 "', which the tokenizer does not have (wrong template for this checkpoint?)");
  // Whole-string encoding; for SentencePiece, special strings cut out first.
  auto encode = [&](std::string_view text) {
    if (!sp) return tokenizer.encode(text);
    std::vector<int32_t> out;
    size_t at = 0;
    while (at < text.size()) {
      size_t best = std::string_view::npos, len = 0;
      for (const std::string& s : specials) {
        const size_t f = text.find(s, at);
        if (f < best || (f == best && s.size() > len)) best = f, len = s.size();
      }
      const size_t stop = best == std::string_view::npos ? text.size() : best;
      if (stop > at) {
        const std::vector<int32_t> part = tokenizer.encode(text.substr(at, stop - at));
        out.insert(out.end(), part.begin(), part.end());
      }
      if (best == std::string_view::npos) break;
      out.push_back(*tokenizer.token_to_id(text.substr(best, len)));
      at = best + len;
    }
    return out;
  };
  std::string text;
  std::vector<std::pair<size_t, size_t>> trained;
  for (const ChatPiece& p : pieces) {
    if (p.train) {
      if (!trained.empty() && trained.back().second == text.size()) trained.back().second += p.text.size();
      else trained.emplace_back(text.size(), text.size() + p.text.size());
    }
    text += p.text;
  }
  ChatTokens r;
  r.ids = encode(text);
  r.mask.assign(r.ids.size(), 0);
  // Tokens of the whole encoding that encoding text[0, at) already yields.
  auto settled = [&](size_t at) {
    const std::vector<int32_t> prefix = encode(std::string_view(text).substr(0, at));
    size_t n = 0;
    while (n < prefix.size() && n < r.ids.size() && prefix[n] == r.ids[n]) ++n;
    return n;
  };
  for (const auto& [b, e] : trained) {
    const size_t from = settled(b), to = e == text.size() ? r.ids.size() : settled(e);
    for (size_t i = from; i < to; ++i) r.mask[i] = 1;
  }
  return r;
}

std::vector<ChatMessage> parse_chat_record(std::string_view line, const std::string& where) {
  using nlohmann::json;
  LOWBIT_CHECK(tok::is_valid_utf8(line), where, ": not valid UTF-8");
  json j;
  try {
    j = json::parse(line.begin(), line.end());
  } catch (const json::exception& e) {
    LOWBIT_FAIL(where, ": malformed JSON: ", e.what());
  }
  LOWBIT_CHECK(j.is_object(), where, ": expected a JSON object, got ", j.type_name());
  auto string_of = [&](const json& v, const std::string& key) {
    LOWBIT_CHECK(v.is_string(), where, ": '", key, "' must be a string, got ", v.type_name());
    return v.get<std::string>();
  };
  std::vector<ChatMessage> m;
  if (auto it = j.find("messages"); it != j.end()) {
    LOWBIT_CHECK(it->is_array(), where, ": 'messages' must be an array, got ", it->type_name());
    for (size_t i = 0; i < it->size(); ++i) {
      const json& msg = (*it)[i];
      const std::string k = "messages[" + std::to_string(i) + "]";
      LOWBIT_CHECK(msg.is_object(), where, ": '", k, "' must be an object, got ", msg.type_name());
      LOWBIT_CHECK(msg.contains("role"), where, ": '", k, ".role' is missing");
      LOWBIT_CHECK(msg.contains("content"), where, ": '", k, ".content' is missing");
      m.push_back({string_of(msg["role"], k + ".role"), string_of(msg["content"], k + ".content")});
    }
  } else {
    LOWBIT_CHECK(j.contains("prompt") && j.contains("response"), where,
                 ": expected 'messages' or both 'prompt' and 'response'");
    if (j.contains("system")) m.push_back({"system", string_of(j["system"], "system")});
    m.push_back({"user", string_of(j["prompt"], "prompt")});
    m.push_back({"assistant", string_of(j["response"], "response")});
  }
  LOWBIT_CHECK(!m.empty(), where, ": 'messages' is empty");
  bool assistant = false;
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string& r = m[i].role;
    LOWBIT_CHECK(r == "system" || r == "user" || r == "assistant", where, ": message ", i, ": unknown role '", r,
                 "' (system, user or assistant)");
    LOWBIT_CHECK(r == "assistant" || !py_strip(m[i].content).empty(), where, ": message ", i, " (", r,
                 "): empty content");
    assistant |= r == "assistant";
  }
  LOWBIT_CHECK(assistant, where, ": no assistant message (nothing to train on)");
  return m;
}

}  // namespace lowbit::io
