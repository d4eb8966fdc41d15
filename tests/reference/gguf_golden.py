#!/usr/bin/env python3
"""Golden GGUF files from the `gguf` Python package (llama.cpp's gguf-py) for lowbit's exporter.

Run by hand, never in CI (see tests/reference/README.md for the versions used):

    python3 -m venv /tmp/ggufref && /tmp/ggufref/bin/pip install gguf numpy
    /tmp/ggufref/bin/python tests/reference/gguf_golden.py    # --out DIR to write elsewhere

Input: tests/data/gguf/tiny_llama/ (config.json, model.safetensors in f32, tokenizer.json),
written by lowbit's GgufGolden.DISABLED_WriteInputs test. Output, next to it:

  tiny_llama.{f32,f16,bf16,q8_0,q4_0}.gguf   the model converted the way llama.cpp's
                                             convert_hf_to_gguf.py does it, written by
                                             gguf.GGUFWriter, tensors encoded by gguf.quants
  versions.json                              python, gguf and numpy versions used

This script is an independent second implementation of io/gguf.cpp's conversion rules (tensor
names, the llama q/k permutation, type rules, tokenizer metadata); only the metadata and tensor
order are agreed on, so that lowbit's bytes can be compared with these byte for byte
(tests/io/gguf_test.cpp, GgufGolden). Before writing, every file is read back with
gguf.GGUFReader and each tensor dequantized with gguf.quants and checked against the weights.
"""
import argparse
import json
import os
import platform
import struct
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data", "gguf"))

TYPES = {"f32": QT.F32, "f16": QT.F16, "bf16": QT.BF16, "q8_0": QT.Q8_0, "q4_0": QT.Q4_0}
FILE_TYPE = {QT.F32: 0, QT.F16: 1, QT.Q4_0: 2, QT.Q8_0: 7, QT.BF16: 32}  # llama_ftype
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def read_safetensors(path):
    """{name: np.ndarray} of an F32 safetensors file (parsed by hand: no extra dependency)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<Q", raw, 0)
    header = json.loads(raw[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}; only F32 is read (export the HF directory with --dtype f32)")
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + begin : 8 + n + end], dtype="<f4").reshape(info["shape"])
    return out


def permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute: per head, rotate-half rows -> interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tensor_type(w, requested):
    if w.ndim < 2:
        return QT.F32
    if requested in (QT.Q8_0, QT.Q4_0) and w.shape[-1] % 32 != 0:
        return QT.F32
    return requested


def tensor_order(n_layers):
    """(HF name, GGUF name) in the order lowbit writes them."""
    out = [("model.embed_tokens.weight", "token_embd.weight")]
    per_layer = [
        ("input_layernorm.weight", "attn_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ]
    for i in range(n_layers):
        out += [(f"model.layers.{i}.{hf}", f"blk.{i}.{gg}") for hf, gg in per_layer]
    out += [("model.norm.weight", "output_norm.weight"), ("lm_head.weight", "output.weight")]
    return out


def vocab_metadata(tok, config):
    """tokens, token types, merges, llama.cpp pre-tokenizer name, bos, eos, add_bos, add_eos."""
    model = tok["model"]
    assert model["type"] == "BPE"
    by_id = {i: t for t, i in model["vocab"].items()}
    added = {}
    for a in tok["added_tokens"]:
        by_id[a["id"]] = a["content"]
        added[a["id"]] = a["special"]
    n_vocab = config["vocab_size"]
    assert max(by_id) < n_vocab, "tokenizer ids exceed the model's vocab_size"
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TOKEN_UNUSED)
        else:
            tokens.append(by_id[i])
            types.append(TOKEN_NORMAL if i not in added else TOKEN_CONTROL if added[i] else TOKEN_USER_DEFINED)
    merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in model["merges"]]

    pre = tok["pre_tokenizer"]
    gpt2 = pre == {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": pre.get("trim_offsets"),
                   "use_regex": True}
    llama3 = (pre.get("type") == "Sequence" and len(pre["pretokenizers"]) == 2
              and pre["pretokenizers"][0].get("pattern") == {"Regex": LLAMA3_REGEX}
              and pre["pretokenizers"][0].get("behavior") == "Isolated"
              and not pre["pretokenizers"][0].get("invert")
              and pre["pretokenizers"][1].get("type") == "ByteLevel"
              and not pre["pretokenizers"][1].get("use_regex")
              and not pre["pretokenizers"][1].get("add_prefix_space"))
    if gpt2 and not model.get("ignore_merges"):
        pre_name = "gpt-2"
    elif llama3 and model.get("ignore_merges"):
        pre_name = "llama-bpe"
    else:
        sys.exit("pre-tokenizer is neither GPT-2's nor Llama-3's")

    # Special tokens: the post-processor template, then config.json, then well-known names;
    # bos falls back to eos (GPT-2's convention).
    bos = eos = None
    add_bos = add_eos = False
    post = tok.get("post_processor") or {}
    procs = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for p in procs:
        if p.get("type") != "TemplateProcessing":
            continue
        single = p["single"]
        special_ids = {name: v["ids"][0] for name, v in p["special_tokens"].items()}
        if "SpecialToken" in single[0]:
            bos, add_bos = special_ids[single[0]["SpecialToken"]["id"]], True
        if len(single) > 1 and "SpecialToken" in single[-1]:
            eos, add_eos = special_ids[single[-1]["SpecialToken"]["id"]], True
    ids = {t: i for i, t in by_id.items()}
    if config.get("bos_token_id") is not None:
        bos = config["bos_token_id"]
    e = config.get("eos_token_id")
    if e is not None:
        eos = e[0] if isinstance(e, list) else e
    if eos is None:
        eos = next((ids[n] for n in ("<|endoftext|>", "<|end_of_text|>", "</s>", "<|im_end|>") if n in ids), None)
    assert eos is not None, "no end-of-text token"
    if bos is None:
        bos = next((ids[n] for n in ("<|begin_of_text|>", "<s>") if n in ids), eos)
    return tokens, types, merges, pre_name, bos, eos, add_bos, add_eos


def convert(src, out_path, qtype, name):
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(src, "tokenizer.json"), encoding="utf-8") as f:
        tok = json.load(f)
    assert config["model_type"] == "llama", "this reference handles llama only"
    assert not config.get("rope_scaling") and not config.get("attention_bias")
    weights = read_safetensors(os.path.join(src, "model.safetensors"))
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head

    w = gguf.GGUFWriter(out_path, "llama")  # writes general.architecture first
    w.add_name(name)
    w.add_custom_alignment(32)
    w.add_file_type(FILE_TYPE[qtype])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(config["vocab_size"])
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(config["rope_theta"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    tokens, types, merges, pre_name, bos, eos, add_bos, add_eos = vocab_metadata(tok, config)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre_name)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(add_eos)

    expected = {}
    for hf, gg in tensor_order(config["num_hidden_layers"]):
        if hf not in weights:
            assert hf == "lm_head.weight" and config.get("tie_word_embeddings"), f"missing {hf}"
            continue
        data = weights[hf]
        if hf.endswith("q_proj.weight"):
            data = permute(data, n_head)
        if hf.endswith("k_proj.weight"):
            data = permute(data, n_kv)
        t = tensor_type(data, qtype)
        encoded = gguf.quants.quantize(np.ascontiguousarray(data, dtype=np.float32), t)
        w.add_tensor(gg, encoded, raw_dtype=t if t in (QT.BF16, QT.Q8_0, QT.Q4_0) else None)
        expected[gg] = (data, t)
    assert len(expected) == len(weights), "unmapped weights"
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    check(out_path, expected)


def check(path, expected):
    """Reads the file back with gguf.GGUFReader and compares every tensor with the weights."""
    r = gguf.GGUFReader(path)
    assert [t.name for t in r.tensors] == list(expected)
    for t in r.tensors:
        data, qtype = expected[t.name]
        assert t.tensor_type == qtype, (t.name, t.tensor_type, qtype)
        assert list(reversed(t.shape.tolist())) == list(data.shape), (t.name, t.shape, data.shape)
        got = gguf.quants.dequantize(t.data, qtype).reshape(data.shape)
        if qtype == QT.F32:
            assert np.array_equal(got.view(np.uint32), data.view(np.uint32)), t.name
        else:
            # F16/BF16: half an ulp; Q8_0 / Q4_0: half / one quantization step of the block max.
            tol = {QT.F16: 1e-3, QT.BF16: 4e-3, QT.Q8_0: 0.5 / 127 + 1e-3, QT.Q4_0: 1.0 / 8 + 1e-3}[qtype]
            blocks = np.abs(data).reshape(-1, 32).max(axis=1).repeat(32).reshape(data.shape) if data.size % 32 == 0 \
                else np.abs(data)
            err = np.abs(got - data)
            assert np.all(err <= tol * np.maximum(blocks, 1e-30) + 1e-12), (t.name, float(err.max()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--src", default=os.path.join(DATA, "tiny_llama"))
    ap.add_argument("--out", default=DATA)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for key, qtype in TYPES.items():
        path = os.path.join(a.out, f"tiny_llama.{key}.gguf")
        convert(a.src, path, qtype, "tiny-llama")
        print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    from importlib.metadata import version

    versions = {"python": platform.python_version(), "gguf": version("gguf"), "numpy": np.__version__}
    with open(os.path.join(a.out, "versions.json"), "w") as f:
        json.dump(versions, f, indent=1)
        f.write("\n")
    print(versions)


if __name__ == "__main__":
    main()
