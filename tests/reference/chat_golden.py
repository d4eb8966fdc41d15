#!/usr/bin/env python3
"""Golden chat renderings, token ids and loss masks for the Llama-2, Llama-3, Llama-3.1 and ChatML (Qwen2,
Qwen2.5, Qwen3) chat formats.

Run by hand, never in CI (see tests/reference/README.md for the versions used), after
tokenizer_styles_golden.py (it uses the tokenizers that script writes):

    python3 -m venv /tmp/tokref
    /tmp/tokref/bin/pip install tokenizers transformers sentencepiece protobuf jinja2
    /tmp/tokref/bin/python tests/reference/chat_golden.py    # --out DIR, --tokenizers DIR to use other places

It writes tests/data/chat/golden_chat.json. For every family and conversation:

  pieces             the expected rendering, written by hand below (one builder per family, from the published
                     format, not from the template), as [{"text", "train"}]: train marks the assistant content
                     and the assistant turn's end token, nothing else.
  ids, mask          the ids of the whole rendering (add_special_tokens false) with the family's style tokenizer,
                     and mask[i] = 1 iff token i's offset span overlaps a train piece.
  generation_prompt  the rendering of the messages up to the first user message with add_generation_prompt,
                     and its ids.

It checks that transformers' apply_chat_template with the template in tests/reference/chat_templates/ renders
exactly "".join(pieces) (and the hand-built generation prompt), and that no token straddles a piece boundary.
"""
import argparse
import json
import os
import sys

import jinja2
import tokenizers
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = os.path.join(HERE, "chat_templates")
TOKENIZER_DATA = os.path.normpath(os.path.join(HERE, "..", "data", "tokenizer"))
CHAT_DATA = os.path.normpath(os.path.join(HERE, "..", "data", "chat"))

F, T = False, True


def sys_msg(c):
    return {"role": "system", "content": c}


def user(c):
    return {"role": "user", "content": c}


def asst(c):
    return {"role": "assistant", "content": c}


CONVERSATIONS = [
    ("with_system", [sys_msg("You are a terse assistant."), user("What is the capital of France?"),
                     asst("Paris is the capital of France.")]),
    ("no_system", [user("Name a prime number."), asst("Seven is prime.")]),
    ("multi_turn", [user("Hello there."), asst("Hi! How can I help?"), user("Tell me a joke."),
                    asst("Why did the chicken cross the road? To get to the other side.")]),
    ("multi_turn_system", [sys_msg("Answer in one word."), user("Sky color?"), asst("Blue."),
                           user("Grass color?"), asst("Green.")]),
    ("empty_final_assistant", [user("Say nothing."), asst("")]),
    # Whitespace around the contents: Llama-2 strips it, Llama-3 trims it, ChatML keeps it.
    ("untrimmed_content", [sys_msg(" Be brief.\n"), user("  Hi there.  "), asst(" Sure, hello.  ")]),
]

# ---------------------------------------------------------------------------------------------------------------
# Expected renderings, by hand. Each returns [(text, train)].


def llama3_pieces(messages, with_bos=True):
    # Meta's llama3 ChatFormat: <|begin_of_text|>, then per message the header, "\n\n", content.strip(),
    # <|eot_id|>. Trained: the assistant's content and its <|eot_id|>.
    p = [("<|begin_of_text|>", F)] if with_bos else []
    for m in messages:
        a = m["role"] == "assistant"
        p += [(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n", F), (m["content"].strip(), a),
              ("<|eot_id|>", a)]
    return p


def llama31_pieces(messages, date_string):
    # Llama-3.1: the system turn is always there, starting with the knowledge cutoff and the date.
    p = [("<|begin_of_text|>", F), ("<|start_header_id|>system<|end_header_id|>\n\n", F),
         (f"Cutting Knowledge Date: December 2023\nToday Date: {date_string}\n\n", F)]
    if messages[0]["role"] == "system":
        p.append((messages[0]["content"].strip(), F))
        messages = messages[1:]
    p.append(("<|eot_id|>", F))
    return p + llama3_pieces(messages, with_bos=False)


def chatml_pieces(messages, default_system):
    # ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n", content as is. Trained: the assistant's content and
    # its <|im_end|>; the "\n" after <|im_end|> is not (it is not part of the turn the model ends).
    p = []
    if default_system is not None and messages[0]["role"] != "system":
        p += [("<|im_start|>system\n", F), (default_system, F), ("<|im_end|>", F), ("\n", F)]
    for m in messages:
        a = m["role"] == "assistant"
        p += [(f"<|im_start|>{m['role']}\n", F), (m["content"], a), ("<|im_end|>", a), ("\n", F)]
    return p


def qwen3_pieces(messages):
    # Qwen3 without reasoning content: no default system; the final assistant message after the last user
    # message gets an empty think block after its header. The think block is not trained: it is what the
    # non-thinking generation prompt (enable_thinking=False) already contains.
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    p = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            p += [(f"<|im_start|>{m['role']}\n", F), (m["content"], F), ("<|im_end|>", F), ("\n", F)]
        elif i > last_user and i == len(messages) - 1:
            p += [("<|im_start|>assistant\n", F), ("<think>\n\n</think>\n\n", F), (m["content"].lstrip("\n"), T),
                  ("<|im_end|>", T), ("\n", F)]
        else:
            p += [("<|im_start|>assistant\n", F), (m["content"], T), ("<|im_end|>", T), ("\n", F)]
    return p


def llama2_pieces(messages):
    # Meta's Llama-2 chat_completion: the system text folded into the first user turn between <<SYS>> markers;
    # per pair "<s>[INST] {user.strip()} [/INST] {answer.strip()} </s>". Trained: " {answer} " (both spaces)
    # and </s>, as in Meta's encoding, where the pair is one encode() call with bos and eos.
    system = None
    if messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    p = []
    for i, m in enumerate(messages):
        if m["role"] == "user":
            content = m["content"]
            if i == 0 and system is not None:
                content = f"<<SYS>>\n{system}\n<</SYS>>\n\n{content}"
            # The space after [INST] starts the content's first SentencePiece token ("▁word"), so it goes with
            # the content piece.
            p += [("<s>", F), ("[INST]", F), (" " + content.strip(), F), (" [/INST]", F)]
        else:
            p += [(" " + m["content"].strip() + " ", T), ("</s>", T)]
    return p


# The text the generation prompt adds after the rendering of the messages so far.
LLAMA3_PROMPT = "<|start_header_id|>assistant<|end_header_id|>\n\n"
FAMILIES = {
    "llama3": dict(tokenizer="llama3_chat_style.tokenizer.json", bos="<|begin_of_text|>", eos="<|eot_id|>",
                   pieces=lambda ms, o: llama3_pieces(ms), prompt=LLAMA3_PROMPT),
    "llama3.1": dict(tokenizer="llama3_chat_style.tokenizer.json", bos="<|begin_of_text|>", eos="<|eot_id|>",
                     pieces=lambda ms, o: llama31_pieces(ms, o["date_string"]), prompt=LLAMA3_PROMPT),
    "chatml_qwen2": dict(tokenizer="qwen2_style.tokenizer.json", bos=None, eos="<|im_end|>",
                         pieces=lambda ms, o: chatml_pieces(ms, "You are a helpful assistant."),
                         prompt="<|im_start|>assistant\n"),
    "chatml_qwen2.5": dict(tokenizer="qwen2_style.tokenizer.json", bos=None, eos="<|im_end|>",
                           pieces=lambda ms, o: chatml_pieces(
                               ms, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
                           prompt="<|im_start|>assistant\n"),
    "chatml_qwen3": dict(tokenizer="qwen2_style.tokenizer.json", bos=None, eos="<|im_end|>",
                         pieces=lambda ms, o: qwen3_pieces(ms),
                         prompt="<|im_start|>assistant\n<think>\n\n</think>\n\n"),
    "llama2": dict(tokenizer="llama2_style.tokenizer.json", bos="<s>", eos="</s>",
                   pieces=lambda ms, o: llama2_pieces(ms), prompt=""),
}


def options_for(template, name):
    if template == "llama3.1":
        # The template's default date for all but one conversation, which passes another one.
        return {"date_string": "03 Feb 2025" if name == "multi_turn" else "26 Jul 2024"}
    if template == "chatml_qwen3":
        # Non-thinking mode: its generation prompt ends with the empty think block.
        return {"enable_thinking": False}
    return {}


def mask_of(offsets, pieces):
    """mask[i] = 1 iff token i's span overlaps a train piece; also returns the tokens that straddle a piece
    boundary and those with an empty span."""
    bounds, pos = [], 0
    for text, train in pieces:
        bounds.append((pos, pos + len(text), train))
        pos += len(text)
    mask, straddle, empty = [], [], []
    for i, (s, e) in enumerate(offsets):
        if s >= e:
            empty.append(i)
        mask.append(int(any(train and s < pe and e > ps for ps, pe, train in bounds)))
        if any(s < pe < e for _, pe, _ in bounds):
            straddle.append(i)
    return mask, straddle, empty


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=CHAT_DATA)
    ap.add_argument("--tokenizers", default=TOKENIZER_DATA, help="directory of the *_style.tokenizer.json files")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    toks = {}
    cases = []
    failures = []
    for template, fam in FAMILIES.items():
        with open(os.path.join(TEMPLATES, template + ".jinja"), encoding="utf-8") as f:
            chat_template = f.read()
        key = (fam["tokenizer"], fam["bos"], fam["eos"])
        if key not in toks:
            toks[key] = transformers.PreTrainedTokenizerFast(
                tokenizer_file=os.path.join(args.tokenizers, fam["tokenizer"]),
                bos_token=fam["bos"], eos_token=fam["eos"])
        tok = toks[key]
        backend = tok.backend_tokenizer

        def render(messages, gen, options):
            return tok.apply_chat_template(messages, chat_template=chat_template, tokenize=False,
                                           add_generation_prompt=gen, **options)

        def encode(text):
            enc = backend.encode(text, add_special_tokens=False)
            ids = tok.encode(text, add_special_tokens=False)
            assert ids == enc.ids, (template, text)
            return enc

        for name, messages in CONVERSATIONS:
            options = options_for(template, name)
            pieces = [(t, train) for t, train in fam["pieces"](messages, options) if t]
            full = "".join(t for t, _ in pieces)
            rendered = render(messages, False, options)
            if rendered != full:
                sys.exit(f"{template}/{name}: template renders\n{rendered!r}\n"
                         f"but the hand-written pieces give\n{full!r}")
            enc = encode(full)
            mask, straddle, empty = mask_of(enc.offsets, pieces)
            if straddle or empty:
                failures.append(f"{template}/{name}: tokens straddling a boundary {[enc.tokens[i] for i in straddle]}, "
                                f"with an empty span {[enc.tokens[i] for i in empty]}")
            # The generation prompt for the first user turn.
            first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
            head = messages[:first_user + 1]
            prompt = render(head, True, options)
            expected_prompt = "".join(t for t, _ in fam["pieces"](head, options)) + fam["prompt"]
            if prompt != expected_prompt:
                sys.exit(f"{template}/{name}: generation prompt\n{prompt!r}\nexpected\n{expected_prompt!r}")
            prompt_ids = encode(prompt).ids
            # Determinism of rendering and encoding.
            assert render(messages, False, options) == rendered and encode(full).ids == enc.ids
            case = {
                "template": template,
                "tokenizer": fam["tokenizer"],
                "name": name,
                "messages": messages,
            }
            if options:
                case["options"] = options
            case.update({
                "pieces": [{"text": t, "train": train} for t, train in pieces],
                "ids": enc.ids,
                "mask": mask,
                "generation_prompt": {"text": prompt, "ids": prompt_ids,
                                      "is_prefix_of_rendering": full.startswith(prompt)},
            })
            cases.append(case)
            trained = "".join(enc.tokens[i] for i in range(len(mask)) if mask[i])
            print(f"{template:15} {name:22} {len(enc.ids):3} tokens, {sum(mask):3} trained: {trained!r}")
    if failures:
        sys.exit("\n".join(failures))

    golden = {
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "jinja2": jinja2.__version__, "python": sys.version.split()[0]},
        "cases": cases,
    }
    with open(os.path.join(args.out, "golden_chat.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("cases:", len(cases))


if __name__ == "__main__":
    main()
