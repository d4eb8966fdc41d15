// Chat templates against tests/data/chat/golden_chat.json: the renderings derived by hand from
// each family's published format (cross-checked there against transformers' apply_chat_template
// on a Jinja template of that format), token ids from the family's style tokenizer and the loss
// mask. Also the JSONL record rules and the template choice by checkpoint.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "../test_util.h"
#include "lowbit/engine/error.h"
#include "lowbit/io/chat_template.h"

namespace lowbit::io {
namespace {

using nlohmann::json;

using test::read_bytes;

const std::string kTok = std::string(LOWBIT_TEST_DATA_DIR) + "/tokenizer/";

const tok::Tokenizer& tokenizer(const std::string& file) {
  static std::map<std::string, tok::Tokenizer> cache;
  auto it = cache.find(file);
  if (it == cache.end()) it = cache.emplace(file, tok::Tokenizer::from_file(kTok + file)).first;
  return it->second;
}

std::vector<ChatMessage> messages_of(const json& a) {
  std::vector<ChatMessage> m;
  for (const json& x : a) m.push_back({x["role"], x["content"]});
  return m;
}

// Text and one train flag per byte.
std::pair<std::string, std::vector<int>> flatten(const std::vector<ChatPiece>& pieces) {
  std::pair<std::string, std::vector<int>> r;
  for (const ChatPiece& p : pieces) {
    r.first += p.text;
    r.second.insert(r.second.end(), p.text.size(), p.train ? 1 : 0);
  }
  return r;
}

TEST(ChatTemplate, GoldenRenderingsIdsAndMasks) {
  const json g = json::parse(read_bytes(std::string(LOWBIT_TEST_DATA_DIR) + "/chat/golden_chat.json"));
  std::map<std::string, int> per_template;
  for (const json& c : g["cases"]) {
    const std::string label = c["template"].get<std::string>() + " / " + c["name"].get<std::string>();
    const auto t = parse_chat_template(c["template"].get<std::string>());
    ASSERT_TRUE(t.has_value()) << label;
    ChatOptions o;
    if (c.contains("options") && c["options"].contains("date_string")) o.date_string = c["options"]["date_string"];
    const std::vector<ChatMessage> messages = messages_of(c["messages"]);
    std::vector<ChatPiece> expected;
    for (const json& p : c["pieces"]) expected.push_back({p["text"], p["train"], false});
    const auto want = flatten(expected);
    const std::vector<ChatPiece> pieces = render_chat(messages, *t, o);
    const auto got = flatten(pieces);
    EXPECT_EQ(got.first, want.first) << label;
    EXPECT_EQ(got.second, want.second) << label;
    const tok::Tokenizer& tk = tokenizer(c["tokenizer"]);
    const ChatTokens ct = tokenize_chat(pieces, tk);
    EXPECT_EQ(ct.ids, c["ids"].get<std::vector<int32_t>>()) << label;
    EXPECT_EQ(std::vector<int>(ct.mask.begin(), ct.mask.end()), c["mask"].get<std::vector<int>>()) << label;
    // The generation prompt for the first user turn.
    std::vector<ChatMessage> upto;
    for (const ChatMessage& m : messages) {
      upto.push_back(m);
      if (m.role == "user") break;
    }
    const std::vector<ChatPiece> prompt = render_chat(upto, *t, o, true);
    EXPECT_EQ(flatten(prompt).first, c["generation_prompt"]["text"].get<std::string>()) << label;
    EXPECT_EQ(tokenize_chat(prompt, tk).ids, c["generation_prompt"]["ids"].get<std::vector<int32_t>>()) << label;
    // Llama-2 through the SentencePiece model itself: the same ids as its tokenizer.json.
    if (*t == ChatTemplate::Llama2)
      EXPECT_EQ(tokenize_chat(pieces, tokenizer("llama2_style.model")).ids, ct.ids) << label << " (SentencePiece)";
    ++per_template[c["template"]];
  }
  EXPECT_EQ(per_template.size(), 6u);
  for (const auto& [name, n] : per_template) EXPECT_GE(n, 4) << name;
}

TEST(ChatTemplate, RecordsAndTheirErrors) {
  const auto m = parse_chat_record(R"({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})",
                                   "f.jsonl:1");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[1].content, "yo");
  const auto p = parse_chat_record(R"({"system": "s", "prompt": "q", "response": "a"})", "f.jsonl:2");
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].role, "system");
  EXPECT_EQ(p[2].role, "assistant");
  auto error = [](const std::string& line) {
    try {
      parse_chat_record(line, "data/chat.jsonl:7");
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("data/chat.jsonl:7"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      return msg;
    }
    ADD_FAILURE() << "no error for " << line;
    return std::string();
  };
  EXPECT_NE(error(R"({"messages": [{"content": "x"}]})").find("role' is missing"), std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "bot", "content": "x"}]})").find("unknown role 'bot'"), std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]})")
                .find("empty content"),
            std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": "q"}]})").find("no assistant message"), std::string::npos);
  EXPECT_NE(error(R"({"messages": [{"role": "user", "content": 3}]})").find("must be a string"), std::string::npos);
  EXPECT_NE(error(R"({"prompt": "q"})").find("'prompt' and 'response'"), std::string::npos);
  EXPECT_NE(error("{\"prompt\": \"q\xFF\", \"response\": \"a\"}").find("not valid UTF-8"), std::string::npos);
  EXPECT_NE(error("{\"prompt\": ").find("malformed JSON"), std::string::npos);
  // An empty assistant message is allowed: it trains the end-of-turn token only.
  EXPECT_NO_THROW(parse_chat_record(R"({"prompt": "q", "response": ""})", "x"));
}

TEST(ChatTemplate, RenderRulesAndTemplateChoice) {
  const std::vector<ChatMessage> bad_order = {{"user", "a"}, {"user", "b"}};
  EXPECT_THROW(render_chat(bad_order, ChatTemplate::Llama2), Error);
  EXPECT_NO_THROW(render_chat(bad_order, ChatTemplate::Llama3));
  EXPECT_THROW(render_chat({{"user", "a"}, {"system", "s"}}, ChatTemplate::Llama3), Error);
  const tok::Tokenizer& l3 = tokenizer("llama3_chat_style.tokenizer.json");
  const tok::Tokenizer& l2 = tokenizer("llama2_style.tokenizer.json");
  const tok::Tokenizer& q2 = tokenizer("qwen2_style.tokenizer.json");
  EXPECT_EQ(default_chat_template("llama", l3, ""), ChatTemplate::Llama3);
  EXPECT_EQ(default_chat_template("llama", l2, ""), ChatTemplate::Llama2);
  EXPECT_EQ(default_chat_template("qwen2", q2, ""), ChatTemplate::ChatMLQwen2_5);
  EXPECT_EQ(default_chat_template("qwen3", q2, ""), ChatTemplate::ChatMLQwen3);
  const std::string t31 = read_bytes(std::string(LOWBIT_TEST_DATA_DIR) + "/../reference/chat_templates/llama3.1.jinja");
  EXPECT_EQ(default_chat_template("llama", l3, t31), ChatTemplate::Llama3_1);
  const std::string tq2 = read_bytes(std::string(LOWBIT_TEST_DATA_DIR) + "/../reference/chat_templates/chatml_qwen2.jinja");
  EXPECT_EQ(default_chat_template("qwen2", q2, tq2), ChatTemplate::ChatMLQwen2);
  EXPECT_THROW(default_chat_template("llama", q2, ""), Error);
  // A template whose tokens the tokenizer lacks: one-line error naming the token.
  try {
    tokenize_chat(render_chat({{"user", "q"}, {"assistant", "a"}}, ChatTemplate::Llama3), q2);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("<|begin_of_text|>"), std::string::npos) << e.what();
  }
  EXPECT_EQ(parse_chat_template("qwen"), std::nullopt);
  EXPECT_NE(chat_template_names().find("chatml_qwen2.5"), std::string::npos);
}

}  // namespace
}  // namespace lowbit::io
