#!/usr/bin/env bash
# Installs what is missing, builds lowbit (Release) and runs the demo.
set -euo pipefail
source "$(dirname "$0")/env.sh"
scripts/install_deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$JOBS" --target mlp_demo
build/release/examples/mlp_demo "$@"
