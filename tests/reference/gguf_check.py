#!/usr/bin/env python3
"""Checks a GGUF file written by lowbit with llama.cpp's own tooling. Run by hand, never in CI.

    python3 -m venv /tmp/ggufref && /tmp/ggufref/bin/pip install gguf numpy
    /tmp/ggufref/bin/pip install llama-cpp-python      # optional: compiles llama.cpp (slow)
    /tmp/ggufref/bin/python tests/reference/gguf_check.py MODEL.gguf \\
        [--hf-dir DIR] [--text FILE [--doc-separator SEP] [--limit N] --ours EVAL.json]

1. Reads the file with gguf.GGUFReader (gguf-py, llama.cpp's Python reader) and checks the
   metadata llama.cpp requires of the architecture and tokenizer, and the tensor names/types.
2. With --hf-dir (the HF directory the model came from, saved in f32): dequantizes every tensor
   with gguf.quants, undoes the llama q/k permutation and compares with the HF weights (exact
   for F32, within the type's rounding otherwise).
3. If llama_cpp (llama-cpp-python) is importable and --text is given: loads the file with
   llama.cpp, splits the text into documents as eval_ppl does, tokenizes them with llama.cpp's
   tokenizer and scores them with eval_ppl's rolling windows (stride = window, the documents'
   prefix token from --ours), then compares the document, token and window counts (a check of
   the tokenizer) and the token perplexity with --ours, eval_ppl's JSON for the same weights:
   PASS when the perplexities are within --tolerance (default 1%).
Exits non-zero on any failed check.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_windows import compare, documents, load_ours, rolling_nll, unescape  # noqa: E402
from gguf_golden import read_safetensors  # noqa: E402

REQUIRED = ["context_length", "embedding_length", "block_count", "feed_forward_length", "attention.head_count",
            "attention.head_count_kv", "rope.freq_base", "attention.layer_norm_rms_epsilon",
            "rope.dimension_count", "vocab_size"]
TOKENIZER = ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
             "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def field(r, key):
    f = r.get_field(key)
    return None if f is None else f.contents()


def unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf.py's permute: interleaved pairs -> rotate-half rows."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def hf_name(gg):
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    if gg in fixed:
        return fixed[gg]
    _, layer, rest = gg.split(".", 2)
    per_layer = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
                 "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
                 "attn_k_norm": "self_attn.k_norm", "ffn_norm": "post_attention_layernorm",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    base, suffix = rest.rsplit(".", 1)
    return f"model.layers.{layer}.{per_layer[base]}.{suffix}"


def check_metadata(r):
    arch = field(r, "general.architecture")
    print(f"architecture {arch}, name {field(r, 'general.name')!r}, file_type {field(r, 'general.file_type')}, "
          f"{len(r.tensors)} tensors")
    for k in REQUIRED:
        if field(r, f"{arch}.{k}") is None:
            fail(f"missing {arch}.{k}")
    for k in TOKENIZER:
        if field(r, k) is None:
            fail(f"missing {k}")
    n_vocab = field(r, f"{arch}.vocab_size")
    if len(field(r, "tokenizer.ggml.tokens")) != n_vocab:
        fail("token count differs from vocab_size")
    types = {}
    for t in r.tensors:
        types.setdefault(t.tensor_type.name, 0)
        types[t.tensor_type.name] += 1
    print("tensor types:", types)
    return arch


def check_weights(r, arch, hf_dir):
    weights = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    n_head = field(r, f"{arch}.attention.head_count")
    n_kv = field(r, f"{arch}.attention.head_count_kv")
    worst = {}
    for t in r.tensors:
        if t.name == "rope_freqs.weight":
            continue
        ref = weights[hf_name(t.name)]
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ref.shape)
        if arch == "llama" and ".attn_q." in t.name:
            got = unpermute(got, n_head)
        if arch == "llama" and ".attn_k." in t.name:
            got = unpermute(got, n_kv)
        if t.tensor_type == QT.F32:
            if not np.array_equal(got.view(np.uint32), ref.view(np.uint32)):
                fail(f"{t.name}: F32 bytes differ from the HF weights")
            continue
        rel = float(np.abs(got - ref).max() / max(float(np.abs(ref).max()), 1e-30))
        worst[t.tensor_type.name] = max(worst.get(t.tensor_type.name, 0.0), rel)
        bound = {QT.F16: 1e-3, QT.BF16: 4e-3, QT.Q8_0: 1e-2, QT.Q4_0: 0.13}[t.tensor_type]
        if rel > bound:
            fail(f"{t.name}: max error {rel:.3g} of the tensor's max exceeds {bound}")
    print("weights match the HF directory (worst error / tensor max by type:",
          {k: f"{v:.3g}" for k, v in worst.items()}, ")")


def check_llama_cpp(path, text_path, separator, limit, ours_path, tolerance):
    try:
        import llama_cpp
    except ImportError as e:
        print(f"llama_cpp not importable ({e}); skipping the llama.cpp load and perplexity check")
        return
    print(f"llama-cpp-python {llama_cpp.__version__}")
    ours = load_ours(ours_path)
    window = ours["window"]
    llm = llama_cpp.Llama(model_path=path, n_ctx=window, n_batch=window, logits_all=True, n_threads=2,
                          verbose=False, seed=0)

    def logits_of(tokens):
        llm.reset()
        llm.eval(tokens)
        return llm.scores[: len(tokens)]

    docs = documents(text_path, separator, limit)
    nll, n_tokens, n_windows = 0.0, 0, 0
    for d in docs:
        ids = llm.tokenize(d.encode("utf-8"), add_bos=False, special=False)
        doc_nll, w = rolling_nll(logits_of, ids, ours["prefix_token"], window)
        nll, n_tokens, n_windows = nll + doc_nll, n_tokens + len(ids), n_windows + w
    compare("llama.cpp", ours, len(docs), n_tokens, n_windows, math.exp(nll / n_tokens), tolerance, fail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("--hf-dir")
    ap.add_argument("--text", help="evaluation text, as given to eval_ppl")
    ap.add_argument("--doc-separator", default="", help="eval_ppl's --doc-separator (escapes \\n, \\t work)")
    ap.add_argument("--limit", type=int, default=0, help="eval_ppl's --limit")
    ap.add_argument("--ours", help="eval_ppl's JSON output (--out) for the same model, text and settings")
    ap.add_argument("--tolerance", type=float, default=0.01)
    a = ap.parse_args()
    from importlib.metadata import version

    print(f"gguf {version('gguf')}, numpy {np.__version__}")
    r = gguf.GGUFReader(a.gguf)
    arch = check_metadata(r)
    if a.hf_dir:
        check_weights(r, arch, a.hf_dir)
    if a.text:
        if not a.ours:
            ap.error("--text needs --ours")
        check_llama_cpp(a.gguf, a.text, unescape(a.doc_separator), a.limit, a.ours, a.tolerance)
    print("all checks passed" if not failures else f"{len(failures)} check(s) failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
