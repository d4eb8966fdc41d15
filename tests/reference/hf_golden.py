#!/usr/bin/env python3
"""Golden reference data from Hugging Face transformers for lowbit's model tests.

What it does: builds four tiny float64 models with transformers' own classes (eager
attention) -- llama, llama3_rope_scaling, qwen2, qwen3 -- gives every parameter a seeded,
non-trivial value, runs a fixed (2, 12) batch of token ids through each, takes the mean
next-token cross-entropy and backpropagates. For each model it writes, under
tests/data/hf_golden/<name>/:

  config.json          as save_pretrained writes it
  model.safetensors    float64 weights as save_pretrained writes them (a tied lm_head is
                       omitted, as in real checkpoints)
  golden.safetensors   input_ids (I64, (2, 12)), logits (F64, (2, 12, vocab)), loss (F64, ()),
                       grad.<parameter name> (F64) for every named parameter; __metadata__
                       holds the python/torch/transformers/safetensors versions and the seed

Before writing golden.safetensors it reloads the saved directory with from_pretrained and
checks the reloaded model gives bitwise the same logits.

How to run it by hand (CI never runs it; the C++ tests only read the files it wrote):

  python3 -m venv /tmp/hfref
  /tmp/hfref/bin/pip install torch transformers safetensors numpy
  /tmp/hfref/bin/python tests/reference/hf_golden.py            # from the repository root

tests/reference/README.md records the versions used for the checked-in files.
"""

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile

import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

SEED = 20240601
BATCH, SEQ = 2, 12

# Sizes shared by every model.
COMMON = dict(
    vocab_size=64,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    attn_implementation="eager",
)

# llama3 rope scaling. With head_dim 8 the four RoPE wavelengths are 2*pi*theta^(k/4); the
# llama3 rule leaves wavelengths below original_max/high_freq_factor alone, divides the
# frequency by `factor` above original_max/low_freq_factor and interpolates in between. With
# Llama 3's theta 500000 and original_max 32 no wavelength falls between 8 and 32, so theta is
# 100 here: wavelengths 6.3 (high), 19.9 (medium), 62.8 and 198.7 (low). original_max stays
# below max_position_embeddings as transformers requires.
LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 4.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32,
}
LLAMA3_THETA = 100.0


def model_specs():
    return [
        ("llama", LlamaForCausalLM,
         LlamaConfig(**COMMON, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                     attention_bias=False)),
        ("llama3_rope_scaling", LlamaForCausalLM,
         LlamaConfig(**COMMON, rms_norm_eps=1e-5, rope_theta=LLAMA3_THETA, tie_word_embeddings=True,
                     attention_bias=False, rope_scaling=dict(LLAMA3_SCALING))),
        ("qwen2", Qwen2ForCausalLM,
         Qwen2Config(**COMMON, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False)),
        ("qwen3", Qwen3ForCausalLM,
         Qwen3Config(**COMMON, head_dim=16, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True)),
    ]


def rope_params(config):
    """rope_theta and the scaling dict, from either config layout (transformers 4 or 5)."""
    params = getattr(config, "rope_parameters", None)
    if params:
        return params["rope_theta"], params
    return config.rope_theta, (getattr(config, "rope_scaling", None) or {})


def check_llama3_bands(config):
    """Prints the llama3 band of each RoPE frequency and insists all three bands occur."""
    theta, s = rope_params(config)
    head_dim = config.hidden_size // config.num_attention_heads
    orig = s["original_max_position_embeddings"]
    low_wavelen = orig / s["low_freq_factor"]
    high_wavelen = orig / s["high_freq_factor"]
    bands = []
    print(f"llama3 rope bands: theta={theta} head_dim={head_dim} high if wavelength < {high_wavelen}, "
          f"low if > {low_wavelen}")
    for i in range(head_dim // 2):
        inv_freq = theta ** (-2.0 * i / head_dim)
        wavelen = 2 * math.pi / inv_freq
        band = "high" if wavelen < high_wavelen else ("low" if wavelen > low_wavelen else "medium")
        bands.append(band)
        print(f"  freq {i}: inv_freq {inv_freq:.6g} wavelength {wavelen:.4g} -> {band}")
    # transformers' own llama3 frequencies must agree: high unchanged, low divided by factor.
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    for i, band in enumerate(bands):
        ratio = scaled[i].item() / theta ** (-2.0 * i / head_dim)
        ok = {"high": abs(ratio - 1) < 1e-6, "low": abs(ratio - 1 / s["factor"]) < 1e-6,
              "medium": 1 / s["factor"] + 1e-6 < ratio < 1 - 1e-6}[band]
        print(f"  freq {i}: transformers scales it by {ratio:.6g} ({band})")
        if not ok:
            raise SystemExit(f"llama3 band of frequency {i} disagrees with transformers (ratio {ratio})")
    missing = {"high", "medium", "low"} - set(bands)
    if missing:
        raise SystemExit(f"llama3 rope scaling leaves bands {sorted(missing)} empty; adjust theta/original_max")


def randomize_parameters(model, gen):
    """Norm weights 1 + N(0, 0.1), biases N(0, 0.1), every other weight N(0, 0.2)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.2 * noise)


def loss_of(logits, input_ids):
    vocab = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, vocab), input_ids[:, 1:].reshape(-1))


def build(name, cls, config, index):
    torch.manual_seed(SEED + index)
    model = cls(config)
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    model = model.double().eval()
    gen = torch.Generator().manual_seed(SEED + 100 * (index + 1))
    randomize_parameters(model, gen)
    input_ids = torch.randint(0, config.vocab_size, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    return model, input_ids


def versions():
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
    }


def write_model(out_root, name, cls, config, index):
    model, input_ids = build(name, cls, config, index)
    logits = model(input_ids).logits
    loss = loss_of(logits, input_ids)
    loss.backward()
    assert logits.dtype == torch.float64 and logits.shape == (BATCH, SEQ, config.vocab_size)

    golden = {"input_ids": input_ids.contiguous(), "logits": logits.detach().contiguous(),
              "loss": loss.detach().reshape(())}
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        golden["grad." + pname] = p.grad.detach().contiguous()

    out_dir = os.path.join(out_root, name)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        # Sanity: the saved checkpoint reloads to the same function.
        reloaded = cls.from_pretrained(tmp, attn_implementation="eager", dtype=torch.float64).eval()
        with torch.no_grad():
            again = reloaded(input_ids).logits
        if not torch.equal(again, logits.detach()):
            raise SystemExit(f"{name}: reloaded model differs by {(again - logits).abs().max().item()}")
        weights = safetensors.torch.load_file(os.path.join(tmp, "model.safetensors"))
        grads = {k[len("grad."):] for k in golden if k.startswith("grad.")}
        if set(weights) != grads:
            raise SystemExit(f"{name}: checkpoint keys {sorted(set(weights) ^ grads)} differ from the parameters")
        if any(w.dtype != torch.float64 for w in weights.values()):
            raise SystemExit(f"{name}: checkpoint is not float64")

        shutil.rmtree(out_dir, ignore_errors=True)
        os.makedirs(out_dir)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(os.path.join(tmp, f), os.path.join(out_dir, f))
        extra = sorted(set(os.listdir(tmp)) - {"config.json", "model.safetensors"})

    meta = dict(versions(), seed=str(SEED), model=name, loss="mean next-token cross-entropy")
    safetensors.torch.save_file(golden, os.path.join(out_dir, "golden.safetensors"), metadata=meta)
    for f in os.listdir(out_dir):
        os.chmod(os.path.join(out_dir, f), 0o644)
    print(f"{name}: loss {loss.item():.12g}, {len(golden) - 3} grads, dropped {extra}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(here, "..", "data", "hf_golden"))
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    print("versions:", json.dumps(versions()))
    for index, (name, cls, config) in enumerate(model_specs()):
        if name == "llama3_rope_scaling":
            check_llama3_bands(config)
        write_model(os.path.abspath(args.out), name, cls, config, index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
