#!/usr/bin/env bash
# Installs what is missing (including the Debian `fortunes` corpus), builds lowbit (Release) and
# runs the demo (scripts/demo_run.sh): pretrain a tiny Llama on fortunes with a tokenizer trained
# on the fly, quantize it to W4A8 after training (PTQ) and during training (QAT), export the QAT
# model, and print the held-out perplexity table.
set -euo pipefail
source "$(dirname "$0")/env.sh"
scripts/install_deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$JOBS" --target train_llama eval_ppl quantize export_model
scripts/demo_run.sh build/release runs/demo
