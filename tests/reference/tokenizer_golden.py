#!/usr/bin/env python3
"""Golden token ids from Hugging Face `tokenizers` for lowbit's byte-level BPE tokenizer.

Run by hand, never in CI (see tests/reference/README.md for the versions used):

    python3 -m venv /tmp/tokref && /tmp/tokref/bin/pip install tokenizers
    /tmp/tokref/bin/python tests/reference/tokenizer_golden.py    # --out DIR to write elsewhere

It writes, into tests/data/tokenizer/:

  gpt2_style.tokenizer.json    BPE trained by the library, GPT-2 layout: ByteLevel(use_regex=true)
                               pre-tokenizer, ByteLevel post-processor and decoder, "a b" string
                               merges (the older form), special <|endoftext|>, plus two added
                               tokens exercising lstrip (<mask>) and single_word (xyzzy).
  llama3_style.tokenizer.json  BPE trained by the library, Llama-3 layout: Sequence[Split(Llama-3
                               regex, Isolated), ByteLevel(use_regex=false)], ignore_merges=true,
                               [a, b] array merges, TemplateProcessing that prepends
                               <|begin_of_text|>, special <|begin_of_text|> and <|end_of_text|>.
  golden_ids.json              ids of a varied text list, of 300 seeded random mixes of tricky
                               pieces and of fortunes_sample.txt, encoded by the library with both
                               tokenizers (add_special_tokens false, and true for the Llama-3 one
                               on the varied texts).

Both tokenizers are trained on fortunes_sample.txt (split at the fortune separator) plus the
varied texts, so that accented Latin, Greek and CJK get some merges of their own.
"""
import argparse
import json
import os
import random
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data", "tokenizer"))

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Varied inputs: each stresses one part of pre-tokenization or added-token matching.
CASES = [
    ("english", "The quick brown fox jumps over the lazy dog. It wasn't me, said the cat!"),
    ("punctuation", "Hello,world!!! (nested [brackets] {and} <angles>) -- em—dash; semi:colon... ?!?"),
    ("numbers", "Pi is 3.14159265358979, e=2.718281828459045; 1234567890123 and 12 345 678, 0x7fff, 1e-10."),
    ("contractions", "I'm you're he's she'd we'll they've it's DON'T I'M YOU'RE HE'S WE'LL THEY'VE It'S dOn'T"),
    ("whitespace", "a  b   c    d\n\n\ne\t\tf \t g   \n  h\r\n\r\ni     \n\n   j  "),
    ("leading_trailing_space", "   leading and trailing   "),
    ("accented_latin", "Café naïve façade coöperate résumé Ångström Žluťoučký kůň úpěl ďábelské ódy. Straße"),
    ("greek", "Η γρήγορη καφέ αλεπού πηδάει πάνω από τον τεμπέλη σκύλο. ΑΒΓΔ αβγδ"),
    ("cjk", "我能吞下玻璃而不伤身体。日本語のテキスト、カタカナとひらがな。한국어 텍스트도 있습니다."),
    ("emoji", "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✨ and text🙂after"),
    ("specials_gpt2", "first doc<|endoftext|>second doc <mask>  masked <|endoftext|><|endoftext|>"),
    ("single_word", "xyzzy is magic, but xyzzyx and axyzzy are not; (xyzzy) is."),
    ("specials_llama3", "<|begin_of_text|>Hello<|end_of_text|> <|begin_of_text|> spaced <|end_of_text|>\n"),
    ("partial_specials", "<|begin_of_tex <|endoftext <| |> <|end_of_text"),
    ("mixed", "Rust's `fn main() { println!(\"{}\", 42); }` vs C++'s std::cout << 1'000'000;\n\tdone."),
    ("long_runs", "=" * 150 + " " * 200 + "x" + "abracadabra" * 20 + "\n" * 70 + "9" * 40 + "!?" * 60),
    ("word_boundaries", "xyzzy① ①xyzzy ٣xyzzy xyzzy_ x\u0301xyzzy \u3000<mask>\u00a0<mask>\u2003 <mask>"),
    ("empty", ""),
    ("only_spaces", "     "),
    ("newlines_only", "\n\n\n"),
]

SEPARATOR = "\n%\n"

# Building blocks of the seeded random mix: Unicode whitespace and word/non-word characters of
# every kind that \s, \w, \p{L} and \p{N} treat differently, specials, contractions.
MIX_PIECES = [
    "a", "the", " ", "  ", "\n", "\t", "'s", "'LL", "'Re", "123", "99999", "é", "Ω", "語", "😀", "\u00a0",
    "\u2003", "\u3000", "\u0085", "\u200b", "\r\n", "\r", "<|end_of_text|>", "<|begin_of_text|>",
    "<|endoftext|>", "<mask>", "xyzzy", "!?", "Ġ", "ß", "İ", "ǅ", "٣", "①", "Ⅻ", "\u0301", "x\u0301",
    "\U0001F1EB\U0001F1F7", "\x00", "\x0b", "\x0c", "_", "-", "$", "K", "ſ", "'", "’s",
]


def random_mix(count, seed):
    rng = random.Random(seed)
    return ["".join(rng.choice(MIX_PIECES) for _ in range(rng.randint(0, 30))) for _ in range(count)]


def train(tok, corpus, vocab_size, specials):
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)


def build_gpt2(corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    train(tok, corpus, 2000, ["<|endoftext|>"])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.add_tokens([AddedToken("xyzzy", single_word=True, normalized=True, special=False)])
    return tok


def build_llama3(corpus):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>"]
    train(tok, corpus, 2000, specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A",
            pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
            special_tokens=[("<|begin_of_text|>", bos)],
        ),
    ])
    return tok


def string_merges(path):
    """Rewrites a saved tokenizer.json with "a b" string merges (older files, e.g. GPT-2's)."""
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    merges = j["model"]["merges"]
    assert all(" " not in a and " " not in b for a, b in merges)
    j["model"]["merges"] = [f"{a} {b}" for a, b in merges]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DATA)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    with open(os.path.join(DATA, "fortunes_sample.txt"), encoding="utf-8", newline="") as f:
        sample = f.read()
    corpus = [s for s in sample.split(SEPARATOR) if s] + [text for _, text in CASES]

    gpt2 = build_gpt2(corpus)
    llama3 = build_llama3(corpus)
    gpt2_path = os.path.join(args.out, "gpt2_style.tokenizer.json")
    llama3_path = os.path.join(args.out, "llama3_style.tokenizer.json")
    gpt2.save(gpt2_path, pretty=True)
    llama3.save(llama3_path, pretty=True)
    string_merges(gpt2_path)

    # Encode with the tokenizers as reloaded from disk, so the ids belong to the files.
    gpt2 = Tokenizer.from_file(gpt2_path)
    llama3 = Tokenizer.from_file(llama3_path)

    # lstrip makes <mask> absorb the spaces before it, so that case does not round-trip.
    def enc(tok, text, special):
        ids = tok.encode(text, add_special_tokens=special).ids
        back = tok.decode(ids, skip_special_tokens=False)
        if not special and "<mask>" not in text and back != text:
            sys.exit(f"library round trip failed for {text!r}: {back!r}")
        return ids

    cases = []
    for name, text in CASES:
        cases.append({
            "name": name,
            "text": text,
            "gpt2": enc(gpt2, text, False),
            "llama3": enc(llama3, text, False),
            "llama3_with_special": enc(llama3, text, True),
        })
    golden = {
        "versions": {"tokenizers": tokenizers.__version__, "python": sys.version.split()[0]},
        "cases": cases,
        "random_mix": [
            {"text": t, "gpt2": enc(gpt2, t, False), "llama3": enc(llama3, t, False)} for t in random_mix(300, 5)
        ],
        "sample_file": "fortunes_sample.txt",
        "sample": {"gpt2": enc(gpt2, sample, False), "llama3": enc(llama3, sample, False)},
    }
    with open(os.path.join(args.out, "golden_ids.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print("vocab sizes:", gpt2.get_vocab_size(), llama3.get_vocab_size())
    print("sample tokens:", len(golden["sample"]["gpt2"]), len(golden["sample"]["llama3"]))


if __name__ == "__main__":
    main()
