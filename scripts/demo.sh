#!/usr/bin/env bash
# Installs what is missing, builds lowbit (Release) and runs the demo: train_llama pretrains a
# ~0.8M-parameter Llama on the fortunes sample in tests/data (tokenizer trained on the fly),
# printing loss, validation perplexity and throughput, checkpointing to runs/demo. Extra
# arguments are config overrides (e.g. train.steps=1000 quant.preset=W4A8).
set -euo pipefail
source "$(dirname "$0")/env.sh"
scripts/install_deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$JOBS" --target train_llama
build/release/tools/train_llama configs/demo.json checkpoint.resume=false "$@"
