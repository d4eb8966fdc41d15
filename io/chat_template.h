// Chat templates of the supported families, written in code from each family's published
// format (tests/data/chat/README.md has the derivation), and chat-format fine-tuning records.
//
//   llama3          Llama-3 / 3.0: <|begin_of_text|>, then per message
//                   <|start_header_id|>ROLE<|end_header_id|>\n\n CONTENT.strip() <|eot_id|>
//   llama3.1        Llama-3.1 and later (plain chat, no tools): as llama3, but a system turn always
//                   comes first, starting "Cutting Knowledge Date: December 2023\nToday Date:
//                   DATE\n\n" (DATE: ChatOptions::date_string) before the system message, if any
//   chatml_qwen2    Qwen2 ChatML: <|im_start|>ROLE\nCONTENT<|im_end|>\n, default system prompt
//                   "You are a helpful assistant." when the first message is not a system one
//   chatml_qwen2.5  the same with Qwen2.5's default "You are Qwen, created by Alibaba Cloud. You
//                   are a helpful assistant."
//   chatml_qwen3    Qwen3 without thinking content: no default system prompt; a final assistant
//                   message after the last user message gets the empty think block
//                   "<think>\n\n</think>\n\n" (not trained: it is the non-thinking prompt)
//   llama2          Llama-2 chat: per user/assistant pair "<s>[INST] USER.strip() [/INST]
//                   ASSISTANT.strip() </s>"; a system message goes into the first user turn as
//                   "<<SYS>>\nSYSTEM\n<</SYS>>\n\n"; roles must alternate
//
// Trained tokens: only assistant tokens, as in torchtune: the assistant content and the
// assistant turn's end token (<|eot_id|>, <|im_end|> without the newline after it, " ... </s>"
// for llama2). Unlike torchtune, which also trains the assistant header, headers and role
// markers are prompt (the spans TRL's assistant_only_loss takes from {% generation %} blocks).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lowbit/io/tokenizer.h"

namespace lowbit::io {

enum class ChatTemplate { Llama3, Llama3_1, ChatMLQwen2, ChatMLQwen2_5, ChatMLQwen3, Llama2 };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct ChatOptions {
  std::string date_string = "26 Jul 2024";  // llama3.1's "Today Date" (its template's default)
};

// By name (the list above); nullopt for an unknown name.
std::optional<ChatTemplate> parse_chat_template(std::string_view name);
const char* chat_template_name(ChatTemplate t);
std::string chat_template_names();  // "llama3, llama3.1, ..." for error messages

// The family's template for a checkpoint: from its tokenizer_config.json chat_template text when
// there is one (recognized by each format's markers), else from model_type and the tokenizer's
// special tokens (llama: llama3 with <|start_header_id|>, llama2 with </s>; qwen2: chatml_qwen2.5;
// qwen3: chatml_qwen3). Throws naming what it looked at when nothing fits.
ChatTemplate default_chat_template(const std::string& model_type, const tok::Tokenizer& tokenizer,
                                   const std::string& chat_template_text);

// A rendered conversation: text pieces in order, each trained or not, and whether it is one
// special token of the template (bos, header, end-of-turn).
struct ChatPiece {
  std::string text;
  bool train = false;
  bool special = false;
};

// Renders messages (checked: roles known, a system message only first, llama2's alternation).
// add_generation_prompt appends the assistant header a reply would follow.
std::vector<ChatPiece> render_chat(const std::vector<ChatMessage>& messages, ChatTemplate t, const ChatOptions& o = {},
                                   bool add_generation_prompt = false);

// Token ids of the rendered text, as the family's tokenizer encodes the whole string (HF
// apply_chat_template(tokenize=True)); SentencePiece models encode the text between special
// tokens piece by piece, as transformers' slow LlamaTokenizer does. mask[i] = 1 for tokens of a
// trained piece: token i is trained when encoding the text before the piece does not already
// produce it and encoding the text through the piece does.
struct ChatTokens {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
};
ChatTokens tokenize_chat(const std::vector<ChatPiece>& pieces, const tok::Tokenizer& tokenizer);

// One training record of a JSONL file: {"messages": [{"role", "content"}, ...]} or
// {"prompt", "response"} (optionally "system"). Throws a one-line error naming `where`
// (FILE:LINE) for a missing or unknown role, a missing or non-string content, an empty system
// or user message, a conversation without an assistant message, or non-UTF-8 text.
std::vector<ChatMessage> parse_chat_record(std::string_view line, const std::string& where);

}  // namespace lowbit::io
