#!/usr/bin/env python3
"""Checks the tokenizer files that `export_model --format hf` writes with transformers' AutoTokenizer. By hand,
never in CI.

    python3 -m venv /tmp/tokref
    /tmp/tokref/bin/pip install tokenizers transformers sentencepiece protobuf jinja2 gguf
    /tmp/tokref/bin/python tests/reference/tokenizer_export_check.py --bin build/release/tools --work /tmp/tokexp

For each source in tests/data/tokenizer/ (Llama-3 with chat specials, the same with a tokenizer_config.json that
sets eos_token <|eot_id|>, add_bos_token and chat_template, Qwen2, Llama-2, Mistral, and llama2_style.model alone
as tokenizer.model) it trains a tiny model with train_llama (data.tokenizer=SRC, two steps on
fortunes_sample.txt), exports it with export_model --format hf --dtype f32 and loads the export with
AutoTokenizer.from_pretrained. Checks: bos/eos/unk tokens as the source implies; encode() with and without
special tokens equals the `tokenizers` library on SRC/tokenizer.json (for tokenizer.model: sentencepiece's ids,
<s> first with special tokens); chat_template present exactly when the source had one, and apply_chat_template
renders it and tokenizes it as the source does. It also tries export_model --format gguf on every run and reports
the tokenizer keys gguf-py reads (never a failure). Prints PASS/FAIL per check; exits non-zero on a failure.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import sentencepiece as spm
import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TOK = os.path.join("tests", "data", "tokenizer")
SAMPLE = os.path.join(TOK, "fortunes_sample.txt")
TEMPLATE = os.path.join(REPO, "tests", "reference", "chat_templates", "llama3.jinja")
TINY = ["model.hidden_size=32", "model.intermediate_size=64", "model.num_hidden_layers=2",
        "model.num_attention_heads=2", "model.num_key_value_heads=2", "data.seq_len=64", "data.batch_size=4",
        "train.steps=2", "train.eval_every=0", "checkpoint.every=0", "log.progress=false"]
TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog.", " a leading space", "two  spaces\tand a tab",
         "line one\nline two\n", "Café naïve résumé 12345",
         "rare \U0001d518 \u2603 chars", ""]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there!"},
            {"role": "assistant", "content": " Hi. "}]
LLAMA3 = ("<|begin_of_text|>", "<|end_of_text|>", None)
SPM = ("<s>", "</s>", "<unk>")
EOT_CONFIG = {"eos_token": "<|eot_id|>", "add_bos_token": True, "chat_template": "TEMPLATE"}
# name, source file, tokenizer_config.json for SRC (or None), expected (bos, eos, unk); bos "?" = reported only.
CASES = [
    ("llama3", "llama3_chat_style.tokenizer.json", None, LLAMA3),
    ("llama3_config", "llama3_chat_style.tokenizer.json", {"bos_token": "<|begin_of_text|>", **EOT_CONFIG},
     ("<|begin_of_text|>", "<|eot_id|>", None)),
    # Without bos_token, with add_bos_token true: transformers 5 loads it (bos None), 4 refuses; reported only.
    ("llama3_config_nobos", "llama3_chat_style.tokenizer.json", EOT_CONFIG, ("<|begin_of_text|>", "<|eot_id|>", None)),
    ("llama3_add_bos_false", "llama3_chat_style.tokenizer.json",
     {"bos_token": "<|begin_of_text|>", "add_bos_token": False}, LLAMA3),
    ("qwen2", "qwen2_style.tokenizer.json", None, ("?", "<|endoftext|>", None)),
    ("llama2", "llama2_style.tokenizer.json", None, SPM),
    ("llama2_add_eos", "llama2_style.tokenizer.json", {"eos_token": "</s>", "add_eos_token": True}, SPM),
    ("mistral", "mistral_style.tokenizer.json", None, SPM),
    ("sentencepiece", "llama2_style.model", None, SPM),
]
REPORT_ONLY_TRAIN = {"llama3_config_nobos"}

failures = []


def check(ok, what, detail=""):
    print(("PASS: " if ok else "FAIL: ") + what + ("" if ok or not detail else f": {detail}"))
    if not ok:
        failures.append(what)


def run(cmd, log):
    with open(log, "w") as f:
        r = subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        with open(log) as f:
            tail = f.read().strip().splitlines()[-3:]
        return " | ".join(tail) or f"exit {r.returncode}"
    return None


def brief(path):
    if not os.path.exists(path):
        return f"{os.path.basename(path)}: (absent)"
    with open(path) as f:
        j = json.load(f)
    out = {}
    for k, v in j.items():
        if k == "chat_template":
            v = f"<{len(v)} chars>"
        elif k == "added_tokens_decoder":
            v = {i: (t["content"], "special" if t["special"] else "added") for i, t in v.items()}
        out[k] = v
    return f"{os.path.basename(path)}: {json.dumps(out, ensure_ascii=False)}"


def reference(src, file, config, expect):
    """encode(text, add_special) -> ids of the source: `tokenizers` (its template, or bos/eos as add_bos_token /
    add_eos_token in the source config say) or sentencepiece with <s> first."""
    if file.endswith(".model"):
        sp = spm.SentencePieceProcessor(model_file=os.path.join(src, "tokenizer.model"))
        return lambda t, special: ([sp.bos_id()] if special else []) + sp.encode(t)
    tk = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    config = config or {}
    if "add_bos_token" not in config and "add_eos_token" not in config:
        return lambda t, special: tk.encode(t, add_special_tokens=special).ids
    bos = [tk.token_to_id(expect[0])] if config.get("add_bos_token", bool(tk.encode("").ids)) else []
    eos = [tk.token_to_id(expect[1])] if config.get("add_eos_token") else []
    return lambda t, special: (bos if special else []) + tk.encode(t, add_special_tokens=False).ids + (
        eos if special else [])


def check_case(a, name, file, config, expect):
    work = os.path.join(a.work, name)
    src, rdir, export = (os.path.join(work, d) for d in ("src", "run", "export"))
    os.makedirs(src)
    shutil.copy(os.path.join(REPO, TOK, file), os.path.join(src, "tokenizer.model" if file.endswith(".model")
                                                            else "tokenizer.json"))
    template = None
    if config:
        config = dict(config)
        if config.get("chat_template") == "TEMPLATE":
            with open(TEMPLATE) as f:
                template = config["chat_template"] = f.read()
        with open(os.path.join(src, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=2)
    err = run([os.path.join(a.bin, "train_llama"), "configs/demo.json", *TINY, f'data.text=["{SAMPLE}"]',
               "data.doc_separator=\\n%\\n", f"data.tokenizer={src}", f"checkpoint.dir={rdir}"],
              os.path.join(work, "train.log"))
    if err and name in REPORT_ONLY_TRAIN:
        print(f"  REPORT: train_llama refuses this source: {err.split(' | ')[-1]}")
        return
    check(err is None, f"{name}: train_llama", err)
    if err:
        return
    err = run([os.path.join(a.bin, "export_model"), rdir, "--format", "hf", "--dtype", "f32", "--out", export],
              os.path.join(work, "export.log"))
    check(err is None, f"{name}: export_model --format hf", err)
    if err:
        return
    print(f"  files: {sorted(os.listdir(export))}")
    for f in ("tokenizer_config.json", "special_tokens_map.json"):
        print("  " + brief(os.path.join(export, f)))
    with open(os.path.join(export, "config.json")) as f:
        cj = json.load(f)
    print(f"  config.json: bos_token_id {cj.get('bos_token_id')!r}, eos_token_id {cj.get('eos_token_id')!r}")
    try:
        tok = AutoTokenizer.from_pretrained(export)
    except Exception as e:  # noqa: BLE001 -- reported as a failed check
        check(False, f"{name}: AutoTokenizer.from_pretrained", f"{type(e).__name__}: {e}")
        return
    print(f"  AutoTokenizer: {type(tok).__name__}, pad_token {tok.pad_token!r}, "
          f"add_bos_token {getattr(tok, 'add_bos_token', '(none)')!r}")
    for key, want in zip(("bos_token", "eos_token", "unk_token"), expect):
        got = getattr(tok, key)
        if want == "?":
            print(f"  {key}: {got!r} (reported, not checked)")
        else:
            check(got == want, f"{name}: {key} == {want!r}", f"AutoTokenizer has {got!r}")
    encode = reference(src, file, config, expect)
    for special in (False, True):
        bad = [(t, tok.encode(t, add_special_tokens=special), encode(t, special)) for t in TEXTS]
        bad = [b for b in bad if b[1] != b[2]]
        detail = "; ".join(f"{t!r}: AutoTokenizer {g} vs source {w}" for t, g, w in bad[:3])
        check(not bad, f"{name}: encode(add_special_tokens={special}) on {len(TEXTS)} texts",
              f"{len(bad)} differ: {detail}")
    check((tok.chat_template is not None) == (template is not None),
          f"{name}: chat_template {'present' if template else 'absent'}",
          f"AutoTokenizer has {'a template' if tok.chat_template else 'none'}")
    if template is not None:
        check(tok.chat_template == template, f"{name}: chat_template equals the source's")
        try:
            text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
            ids = tok.apply_chat_template(MESSAGES, tokenize=True, add_generation_prompt=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        except Exception as e:  # noqa: BLE001
            check(False, f"{name}: apply_chat_template", f"{type(e).__name__}: {e}")
            return
        want = (f"{expect[0]}<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                "<|start_header_id|>user<|end_header_id|>\n\nHello there!<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\nHi.<|eot_id|>"
                "<|start_header_id|>assistant<|end_header_id|>\n\n")
        check(text == want, f"{name}: apply_chat_template text", f"{text!r} vs {want!r}")
        ref = encode(want, False)
        check(list(ids) == ref, f"{name}: apply_chat_template ids == source encode(text, add_special_tokens=False)",
              f"{list(ids)[:12]}... vs {ref[:12]}...")
    gguf_report(a, name, rdir, work)


def gguf_report(a, name, rdir, work):
    out = os.path.join(work, "export.gguf")
    err = run([os.path.join(a.bin, "export_model"), rdir, "--format", "gguf", "--out", out],
              os.path.join(work, "gguf.log"))
    if err:
        print(f"  GGUF: refused: {err}")
        return
    import gguf
    r = gguf.GGUFReader(out)

    def val(key):
        f = r.get_field(key)
        return None if f is None else f.contents()

    tokens, scores, types = val("tokenizer.ggml.tokens"), val("tokenizer.ggml.scores"), val("tokenizer.ggml.token_type")
    keys = ("add_space_prefix", "pre", "bos_token_id", "eos_token_id", "unknown_token_id", "add_bos_token",
            "add_eos_token")
    extra = ", ".join(f"{k} {val('tokenizer.ggml.' + k)!r}" for k in keys if val("tokenizer.ggml." + k) is not None)
    print(f"  GGUF: tokenizer.ggml.model {val('tokenizer.ggml.model')!r}, {len(tokens) if tokens else 0} tokens, "
          f"scores {'present' if scores is not None else 'absent'}, "
          f"token_type {'present (' + str(sorted(set(types))) + ')' if types is not None else 'absent'}, {extra}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", required=True, help="the directory with train_llama and export_model")
    ap.add_argument("--work", required=True, help="scratch directory (emptied first)")
    ap.add_argument("--only", nargs="*", help="case names to run (default: all)")
    a = ap.parse_args()
    a.bin, a.work = os.path.abspath(a.bin), os.path.abspath(a.work)
    print(f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}, "
          f"sentencepiece {spm.__version__}")
    shutil.rmtree(a.work, ignore_errors=True)
    for name, file, config, expect in CASES:
        if a.only and name not in a.only:
            continue
        print(f"== {name} ({file}{' + tokenizer_config.json' if config else ''})")
        check_case(a, name, file, config, expect)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
