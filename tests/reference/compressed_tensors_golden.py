#!/usr/bin/env python3
"""compressed-tensors reference for lowbit's export (io/compressed_tensors.h).

Input: the directories the C++ test writes when LOWBIT_CT_EXPORT_DIR is set, one per exportable
preset (<dir>/<PRESET>/config.json, model.safetensors, and lowbit_dequantized.safetensors = our
quant::dequantize(packed_weight()) of every quantized layer, f32). For each preset it

 1. validates our quantization_config with compressed-tensors' own QuantizationConfig and
    serializes it the way ModelCompressor.update_config writes config.json; the C++ test
    compares our config.json with that (quantization_configs.json);
 2. decompresses every quantized layer with the compressor registered for the declared format
    (BaseCompressor.decompress, what ModelCompressor.decompress_model runs per module) and
    compares with our dequantized weights: f32 bit for bit, or after the bf16 cast where
    compressed-tensors returns bf16 (nvfp4 / mx unpack to bf16);
 3. loads the whole directory through transformers (AutoModelForCausalLM.from_pretrained with
    CompressedTensorsConfig(run_compressed=False), dtype float32: ModelCompressor's
    decompress path) and compares every weight with ours;
 4. re-compresses our dequantized model.layers.0.mlp.down_proj weight with our scales through
    compressed-tensors' compressor.compress (its quantize + pack_to_int32 / pack_fp4_to_uint8 /
    e8m0 scale encoding) and stores the result as "<PRESET>/<tensor>" in golden.safetensors;
    the C++ test asserts our export holds exactly these bytes (CI needs no Python).

It prints one line per check and writes tests/data/compressed_tensors/{golden.safetensors,
quantization_configs.json} (--check-only writes nothing). docs/compressed_tensors.md records the
versions and the results observed.

How to run it by hand (CI never runs it):

  python3 -m venv /tmp/ctref
  /tmp/ctref/bin/pip install compressed-tensors torch transformers safetensors
  LOWBIT_CT_EXPORT_DIR=/tmp/ct_export <build>/tests/lowbit_unit_tests \\
      --gtest_filter='CompressedTensors.ExportDecompressesToTheDequantizedWeights'
  /tmp/ctref/bin/python tests/reference/compressed_tensors_golden.py /tmp/ct_export
"""

import argparse
import json
import os
import platform
import sys

import compressed_tensors
import safetensors
import safetensors.torch
import torch
import transformers
from compressed_tensors.compressors import BaseCompressor
from compressed_tensors.compressors.mx_utils import decompress_mx_scale
from compressed_tensors.quantization import QuantizationConfig

PRESETS = ["INT8_DEFAULT", "INT8_PER_CHANNEL_PER_TOKEN", "W4A8", "FP8_DEFAULT", "FP8_PER_CHANNEL_PER_TOKEN",
           "FP8_2D_BLOCKWISE_WEIGHT_ONLY", "NVFP4_DEFAULT", "NVFP4_WEIGHT_ONLY", "MXFP4", "MXFP8"]
GOLDEN_LAYER = "model.layers.0.mlp.down_proj"


def f32_steps(a, b):
    """Element-wise distance in f32 steps (a, b float32 tensors of the same shape)."""
    ka = a.contiguous().view(torch.int32).to(torch.int64)
    kb = b.contiguous().view(torch.int32).to(torch.int64)
    ka = torch.where(ka < 0, -(ka & 0x7FFFFFFF), ka)
    kb = torch.where(kb < 0, -(kb & 0x7FFFFFFF), kb)
    return (ka - kb).abs()


def compare(got, ours):
    """How a decompressed weight relates to ours (f32)."""
    got32 = got.to(torch.float32)
    steps = f32_steps(got32, ours)
    n = (steps > 0).sum().item()
    if n == 0:
        return f"exact in f32 (returned as {got.dtype})"
    if torch.equal(got32, ours.to(torch.bfloat16).float()):
        return f"== ours rounded to bf16 (returned as {got.dtype}; before that cast the values are not ours)"
    return f"{n} of {got.numel()} differ, max {steps.max().item()} f32 steps (returned as {got.dtype})"


def module_names(tensors):
    return sorted(n[: -len(".weight_scale")] for n in tensors if n.endswith(".weight_scale"))


def check_preset(preset, d, goldens, configs):
    with open(os.path.join(d, "config.json")) as f:
        ours_cfg = json.load(f)["quantization_config"]
    qc = QuantizationConfig.model_validate(ours_cfg)
    normalized = {"version": compressed_tensors.__version__, "quant_method": "compressed-tensors",
                  "sparsity_config": {}, "transform_config": {}, **qc.model_dump(exclude=["quant_method"])}
    normalized = json.loads(json.dumps(normalized))
    configs[preset] = normalized
    print(f"{preset}: config validates; ours {'==' if normalized == ours_cfg else '!='} compressed-tensors' "
          f"serialization")
    (scheme,) = qc.config_groups.values()
    compressor = BaseCompressor.get_value_from_registry(scheme.format)
    names = compressor.compression_param_names(scheme)
    tensors = safetensors.torch.load_file(os.path.join(d, "model.safetensors"))
    deq = safetensors.torch.load_file(os.path.join(d, "lowbit_dequantized.safetensors"))

    # 2. per-layer decompression by the format's compressor
    results = {}
    for m in module_names(tensors):
        state = {n: tensors[f"{m}.{n}"] for n in names if f"{m}.{n}" in tensors}
        got = compressor.decompress(state, scheme)["weight"]
        results.setdefault(compare(got, deq[f"{m}.weight"]), []).append(m.split(".")[-1])
    for r, ms in results.items():
        print(f"{preset}: {scheme.format} decompress: {r} [{', '.join(ms)}]")

    # 3. the directory through transformers
    from transformers.utils.quantization_config import CompressedTensorsConfig
    try:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, quantization_config=CompressedTensorsConfig(run_compressed=False),
            output_loading_info=True)
        sd = model.state_dict()
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            leaves = sorted({str(k).split(".")[-1] for k in info.get(kind, [])})
            if leaves:
                print(f"{preset}: transformers from_pretrained {kind}: {', '.join(leaves)}")
        results = {}
        for m in module_names(tensors):
            results.setdefault(compare(sd[f"{m}.weight"].detach(), deq[f"{m}.weight"]), []).append(m.split(".")[-1])
        plain = [n for n in tensors if n.endswith(("norm.weight", "embed_tokens.weight", "lm_head.weight"))]
        same = all(torch.equal(sd[n].float(), tensors[n].float()) for n in plain)
        for r, ms in results.items():
            print(f"{preset}: transformers from_pretrained: {r} [{', '.join(ms)}]")
        print(f"{preset}: transformers from_pretrained: unquantized tensors {'equal' if same else 'DIFFER'}")
    except Exception as e:  # report and go on: the compressor-level check above still stands
        print(f"{preset}: transformers from_pretrained FAILED: {type(e).__name__}: {str(e).splitlines()[0]}")

    # 4. golden: compressed-tensors compresses our dequantized weight with our scales
    state = {"weight": deq[f"{GOLDEN_LAYER}.weight"].clone()}
    for n in names[1:]:
        key = f"{GOLDEN_LAYER}.{n}"
        if key not in tensors or n in ("weight_shape", "input_global_scale"):
            continue
        t = tensors[key]
        if n == "weight_scale" and t.dtype == torch.uint8:  # mx: compress takes the float scale 2^e
            t = decompress_mx_scale(t)
        elif n == "weight_scale" and t.dtype == torch.float8_e4m3fn:  # nvfp4: an f32 scale, cast by compress
            t = t.float()
        state[n] = t
    packed = compressor.compress(state, scheme)
    same = []
    for n, t in packed.items():
        t = t.contiguous()
        goldens[f"{preset}/{n}"] = t
        mine = tensors[f"{GOLDEN_LAYER}.{n}"]
        if mine.dtype != t.dtype or mine.shape != t.shape:
            same.append(f"{n} != ({mine.dtype} {list(mine.shape)} vs {t.dtype} {list(t.shape)})")
            continue
        a, b = mine.view(torch.uint8), t.view(torch.uint8)
        if torch.equal(a, b):
            same.append(f"{n} ==")
        elif n == "weight_packed" and t.dtype == torch.uint8:  # fp4: count nibbles -0 (0x8) vs +0 (0x0)
            na = torch.stack((a & 0xF, a >> 4)).flatten()
            nb = torch.stack((b & 0xF, b >> 4)).flatten()
            neg0 = ((na == 8) & (nb == 0)).sum().item()
            other = ((na != nb) & ~((na == 8) & (nb == 0))).sum().item()
            same.append(f"{n}: {other} codes differ besides {neg0} zeros that are -0 in ours, +0 in compressed-tensors'")
        else:
            same.append(f"{n}: {(a != b).sum().item()} bytes differ")
    print(f"{preset}: compressed-tensors compress of {GOLDEN_LAYER} vs our bytes: {', '.join(same)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export_dir")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                                                  "compressed_tensors"))
    ap.add_argument("--check-only", action="store_true")
    args = ap.parse_args()
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "compressed_tensors": compressed_tensors.__version__, "transformers": transformers.__version__,
                "safetensors": safetensors.__version__}
    print("versions:", json.dumps(versions))
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    goldens, configs = {}, {}
    for preset in PRESETS:
        check_preset(preset, os.path.join(args.export_dir, preset), goldens, configs)
    if args.check_only:
        return
    os.makedirs(args.out, exist_ok=True)
    safetensors.torch.save_file(goldens, os.path.join(args.out, "golden.safetensors"), metadata=versions)
    with open(os.path.join(args.out, "quantization_configs.json"), "w") as f:
        json.dump(configs, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", os.path.normpath(args.out))


if __name__ == "__main__":
    sys.exit(main())
