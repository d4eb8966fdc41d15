#!/usr/bin/env python3
"""Checks an HF directory written by `export_model --format hf` with transformers. By hand, never in CI.

    /tmp/hfref/bin/pip install torch transformers tokenizers numpy
    eval_ppl RUN TEXT [--doc-separator SEP] [--limit N] --window W --out ours.json
    export_model RUN --format hf --dtype f32 --out HF_DIR
    /tmp/hfref/bin/python tests/reference/hf_export_check.py HF_DIR --text TEXT \\
        [--doc-separator SEP] [--limit N] --ours ours.json

Loads HF_DIR with AutoModelForCausalLM (f32, eager attention) and its tokenizer.json with the
`tokenizers` library, splits and tokenizes the text as eval_ppl does, scores it with eval_ppl's
rolling windows and compares the document, token and window counts and the token perplexity
with eval_ppl's JSON: PASS within --tolerance (default 1e-4 relative: both are f32 models and
differ only in summation order). Exits non-zero on a failed check.
"""
import argparse
import math
import os
import sys

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_windows import compare, documents, load_ours, rolling_nll, unescape  # noqa: E402

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hf_dir")
    ap.add_argument("--text", required=True)
    ap.add_argument("--doc-separator", default="")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--ours", required=True, help="eval_ppl's JSON (--out) for the same model, text and settings")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()
    import tokenizers
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")
    torch.set_num_threads(2)
    ours = load_ours(a.ours)
    model = AutoModelForCausalLM.from_pretrained(a.hf_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    tok = Tokenizer.from_file(os.path.join(a.hf_dir, "tokenizer.json"))

    @torch.no_grad()
    def logits_of(tokens):
        return model(torch.tensor([tokens])).logits[0].double().numpy()

    docs = documents(a.text, unescape(a.doc_separator), a.limit)
    nll, n_tokens, n_windows = 0.0, 0, 0
    for d in docs:
        ids = tok.encode(d, add_special_tokens=False).ids
        doc_nll, w = rolling_nll(logits_of, ids, ours["prefix_token"], ours["window"])
        nll, n_tokens, n_windows = nll + doc_nll, n_tokens + len(ids), n_windows + w
    compare("transformers", ours, len(docs), n_tokens, n_windows, math.exp(nll / n_tokens), a.tolerance, fail)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
