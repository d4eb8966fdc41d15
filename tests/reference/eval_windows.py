"""eval_ppl's documents and rolling windows in Python, for the by-hand checks that score a model
exported by lowbit in another engine (gguf_check.py: llama.cpp; hf_export_check.py:
transformers) and compare with eval_ppl's JSON (docs/tools.md, "eval_ppl")."""
import json

import numpy as np


def documents(text_path, separator, limit):
    """The documents eval_ppl reads from a text file: split at separator, empty ones dropped."""
    with open(text_path, "rb") as f:
        text = f.read().decode("utf-8")
    docs = [d for d in (text.split(separator) if separator else [text]) if d]
    return docs[:limit] if limit else docs


def unescape(separator):
    return separator.replace("\\n", "\n").replace("\\t", "\t")


def load_ours(path):
    """eval_ppl's JSON; the checks mirror only its default stride (= window)."""
    with open(path) as f:
        ours = json.load(f)
    if ours["stride"] != ours["window"]:
        raise SystemExit(f"{path}: run eval_ppl with --stride equal to --window "
                         f"(got {ours['stride']} and {ours['window']})")
    return ours


def rolling_nll(logits_of, ids, prefix, window):
    """-sum log p of ids as eval_ppl scores them with stride == window: the stream [prefix] + ids;
    each window's input is the `window` tokens before its last target (the first starts at the
    prefix, the last slides back to a full window and scores only what is left). logits_of(tokens)
    returns a (len(tokens), vocab) array. Returns (nll, number of windows)."""
    stream = [prefix] + list(ids)
    n, scored, nll, windows = len(ids), 0, 0.0, 0
    while scored < n:
        end = min(scored + window, n)  # index in stream of the window's last target
        start = max(0, end - window)
        logits = np.asarray(logits_of(stream[start:end]), dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        logp = logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True))
        rows = np.arange(scored - start, end - start)  # row r predicts stream[start + r + 1]
        nll -= float(logp[rows, [stream[start + r + 1] for r in rows]].sum())
        scored, windows = end, windows + 1
    return nll, windows


def compare(engine, ours, n_docs, n_tokens, n_windows, ppl, tolerance, fail):
    """Prints the verdict; calls fail(msg) on a count mismatch or a perplexity beyond tolerance."""
    print(f"{engine}: {n_docs} documents, {n_tokens} tokens, {n_windows} windows of {ours['window']}: "
          f"token perplexity {ppl:.6f}")
    if (n_docs, n_tokens, n_windows) != (ours["n_documents"], ours["n_tokens"], ours["n_windows"]):
        fail(f"tokenization differs: {engine} {n_docs} documents / {n_tokens} tokens / {n_windows} windows, "
             f"lowbit {ours['n_documents']} / {ours['n_tokens']} / {ours['n_windows']}")
    rel = abs(ppl - ours["token_perplexity"]) / ours["token_perplexity"]
    verdict = "PASS" if rel <= tolerance else "FAIL"
    print(f"{verdict}: lowbit {ours['token_perplexity']:.6f} vs {engine} {ppl:.6f}: relative difference "
          f"{rel:.4%} (tolerance {tolerance:.4%})")
    if rel > tolerance:
        fail("perplexity differs")
