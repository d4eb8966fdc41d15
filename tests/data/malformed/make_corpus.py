#!/usr/bin/env python3
"""Writes the malformed-input corpus replayed by tests/io/malformed_corpus_test.cpp and used as
the seed corpus of the fuzz targets (scripts/fuzz.sh). Files named bad_* must be rejected with
a lowbit::Error; ok_* must be accepted. Run by hand from this directory; the output is committed.
Findings of fuzz runs (minimized) are added to the same folders by hand."""
import json, os, struct, zlib

def w(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# ---- safetensors -------------------------------------------------------------------------
def st(header, data=b"", raw_len=None, pad=True):
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        h += b" " * ((8 - len(h) % 8) % 8)
    n = len(h) if raw_len is None else raw_len
    return struct.pack("<Q", n) + h + data

f32 = struct.pack("<4f", 1, 2, 3, 4)
S = "safetensors/"
w(S + "ok_two_tensors.safetensors", st({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                                         "b": {"dtype": "I64", "shape": [], "data_offsets": [16, 24]},
                                         "__metadata__": {"k": "v"}}, f32 + struct.pack("<q", 7)))
w(S + "ok_empty.safetensors", st({}))
w(S + "bad_short.safetensors", b"\x01\x02\x03")
w(S + "bad_header_len_too_big.safetensors", st({}, raw_len=1 << 40))
w(S + "bad_header_len_past_end.safetensors", struct.pack("<Q", 100) + b"{}")
w(S + "bad_json.safetensors", st(b'{"a": {"dtype": "F32", '))
w(S + "bad_not_object.safetensors", st(b"[1, 2, 3]"))
w(S + "bad_nul_in_header.safetensors", st(b"{}\x00garbage"))
w(S + "bad_unknown_dtype.safetensors", st({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16)))
w(S + "bad_negative_dim.safetensors", st({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)))
w(S + "bad_size_mismatch.safetensors", st({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}, f32))
w(S + "bad_offsets_reversed.safetensors", st({"a": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}, f32))
w(S + "bad_offsets_out_of_range.safetensors", st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, f32[:8]))
w(S + "bad_overlap.safetensors", st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                     "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, f32))
w(S + "bad_gap.safetensors", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, f32))
w(S + "bad_trailing_bytes.safetensors", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, f32))
w(S + "bad_missing_shape.safetensors", st({"a": {"dtype": "F32", "data_offsets": [0, 16]}}, f32))
w(S + "bad_shape_overflow.safetensors", st({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16],
                                                  "data_offsets": [0, 16]}}, f32))
w(S + "bad_metadata_not_string.safetensors", st({"__metadata__": {"k": 1}}))
w(S + "bad_duplicate_name.safetensors", st(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                                           b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}', bytes(8)))

# ---- config.json -------------------------------------------------------------------------
C = "model_config/"
base = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
def cfg(name, **kw):
    d = dict(base)
    for k, v in kw.items():
        if v is None and k.startswith("drop_"):
            d.pop(k[5:], None)
        else:
            d[k] = v
    w(C + name + ".json", json.dumps(d))
cfg("ok_llama")
cfg("ok_rope_parameters", rope_parameters={"rope_type": "llama3", "rope_theta": 100.0, "factor": 4.0,
                                           "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                           "original_max_position_embeddings": 32})
cfg("bad_model_type", model_type="gpt2")
cfg("bad_missing_hidden", drop_hidden_size=None)
cfg("bad_kv_heads", num_key_value_heads=3)
cfg("bad_string_size", hidden_size="32")
cfg("bad_negative_layers", num_hidden_layers=-2)
cfg("bad_odd_head_dim", head_dim=7)
cfg("bad_rope_type", rope_scaling={"rope_type": "yarn", "factor": 2.0})
cfg("bad_rope_factors", rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 4.0,
                                      "high_freq_factor": 1.0, "original_max_position_embeddings": 32})
cfg("bad_dtype", torch_dtype="int3")
cfg("bad_eos_list", eos_token_id=[1, "x"])
w(C + "bad_not_json.json", "{model_type: llama")
w(C + "bad_array.json", "[]")

# ---- token shards ------------------------------------------------------------------------
T = "token_shard/"
def shard(tokens, vocab=100, eos=0, token_bytes=2, ndocs=1, version=1, magic=b"LBTOKENS",
          fix_data_crc=True, fix_header_crc=True, num_tokens=None):
    fmt = "<%dH" % len(tokens) if token_bytes == 2 else "<%dI" % len(tokens)
    data = struct.pack(fmt, *tokens)
    crc = crc32c(data) if fix_data_crc else 0
    h = magic + struct.pack("<IIQQIII", version, token_bytes, len(tokens) if num_tokens is None else num_tokens,
                            ndocs, vocab, eos, crc)
    h += struct.pack("<I", crc32c(h) if fix_header_crc else 0)
    h += bytes(64 - len(h))
    return h + data

def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
    return c ^ 0xFFFFFFFF

w(T + "ok_small.bin", shard([5, 6, 7, 0]))
w(T + "ok_u32.bin", shard([70000, 0], vocab=80000, token_bytes=4))
w(T + "bad_short.bin", b"LBTOKENS")
w(T + "bad_magic.bin", shard([1, 0], magic=b"XXTOKENS"))
w(T + "bad_header_crc.bin", shard([1, 0], fix_header_crc=False))
w(T + "bad_data_crc.bin", shard([1, 0], fix_data_crc=False))
w(T + "bad_version.bin", shard([1, 0], version=3))
w(T + "bad_token_bytes.bin", shard([1, 0], token_bytes=2)[:12] + b"\x03\x00\x00\x00" + shard([1, 0])[16:])
w(T + "bad_token_out_of_vocab.bin", shard([150, 0], vocab=100))
w(T + "bad_count_mismatch.bin", shard([1, 2, 0], num_tokens=5))
w(T + "bad_eos_out_of_vocab.bin", shard([1, 0], eos=100))
w(T + "bad_vocab_too_big_for_u16.bin", shard([1, 0], vocab=70000))
w(T + "bad_count_overflow.bin", shard([1, 0], num_tokens=(1 << 63)))

# Chat shards (version 2): tokens, padding to 8 bytes, example offsets (u64), loss mask bytes;
# the header checksum also covers bytes 48..63 (the flags).
def chat_shard(tokens, offsets, mask, vocab=100, eos=0, flags=1, num_tokens=None, ndocs=None):
    data = struct.pack("<%dH" % len(tokens), *tokens)
    data += bytes(-len(data) % 8)
    data += struct.pack("<%dQ" % len(offsets), *offsets) + bytes(mask)
    n = len(tokens) if num_tokens is None else num_tokens
    docs = len(offsets) - 1 if ndocs is None else ndocs
    h = b"LBTOKENS" + struct.pack("<IIQQIII", 2, 2, n, docs, vocab, eos, crc32c(data))
    tail = struct.pack("<I", flags) + bytes(12)
    return h + struct.pack("<I", crc32c(h + tail)) + tail + data

w(T + "ok_chat.bin", chat_shard([1, 5, 6, 1, 7], [0, 3, 5], [0, 1, 1, 0, 1]))
w(T + "bad_chat_mask_value.bin", chat_shard([1, 5, 6], [0, 3], [0, 2, 1]))
w(T + "bad_chat_offsets.bin", chat_shard([1, 5, 6, 7], [0, 3, 2], [0, 1, 1, 1]))
w(T + "bad_chat_flags.bin", chat_shard([1, 5], [0, 2], [0, 1], flags=3))
w(T + "bad_chat_size.bin", chat_shard([1, 5, 6], [0, 3], [0, 1, 1], num_tokens=4))

# ---- tokenizer.json ----------------------------------------------------------------------
import copy
K = "tokenizer_json/"
# A valid byte-level BPE tokenizer over the GPT-2 byte alphabet with two merges, then variants.
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
cs = bs[:]
extra = 0
for b in range(256):
    if b not in bs:
        bs.append(b)
        cs.append(256 + extra)
        extra += 1
alpha = {b: chr(c) for b, c in zip(bs, cs)}
vocab = {alpha[b]: b for b in range(256)}
vocab["\u0120t"] = 256
vocab["he"] = 257
tk = {"version": "1.0", "truncation": None, "padding": None,
      "added_tokens": [{"id": 258, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                        "rstrip": False, "normalized": False, "special": True}],
      "normalizer": None,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
      "post_processor": None,
      "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
      "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                "vocab": vocab, "merges": ["\u0120 t", "h e"]}}

def tok(name, edit=None, raw=None):
    t = copy.deepcopy(tk)
    if edit:
        edit(t)
    w(K + name + ".json", raw if raw is not None else json.dumps(t, ensure_ascii=False))

tok("ok_small")
tok("ok_array_merges", lambda t: t["model"].__setitem__("merges", [["\u0120", "t"], ["h", "e"]]))
tok("bad_not_json", raw='{"model": {"type": "BPE", ')
tok("bad_array", raw="[]")
tok("bad_missing_model", lambda t: t.pop("model"))
tok("bad_wordpiece", lambda t: t["model"].__setitem__("type", "WordPiece"))
tok("bad_merge_unknown_token", lambda t: t["model"].__setitem__("merges", ["\u0120 zz"]))
tok("bad_normalizer", lambda t: t.__setitem__("normalizer", {"type": "Precompiled", "precompiled_charsmap": "AAAA"}))
tok("bad_vocab_type", lambda t: t["model"].__setitem__("vocab", [1, 2]))
tok("bad_dropout", lambda t: t["model"].__setitem__("dropout", 0.1))
tok("bad_decoder", lambda t: t.__setitem__("decoder", {"type": "WordPiece"}))
tok("bad_added_token_id", lambda t: t["added_tokens"][0].__setitem__("id", "x"))
tok("bad_regex", lambda t: t.__setitem__("pre_tokenizer", {"type": "Split", "pattern": {"Regex": "(unclosed"},
                                                          "behavior": "Isolated", "invert": False}))
