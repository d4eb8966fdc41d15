#!/usr/bin/env bash
# Installs what is missing, then builds and runs every test:
#   1. an AddressSanitizer + UBSan build (CUDA off, no benchmarks or tools): the `unit` label;
#   2. the Release build (CUDA when nvcc is found): every label, benchmarks as smoke runs.
set -euo pipefail
source "$(dirname "$0")/env.sh"
scripts/install_deps.sh
# ctest runs two tests at once on two cores: OpenMP threads sleep instead of spinning at barriers.
export OMP_WAIT_POLICY=PASSIVE

cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DLOWBIT_SANITIZE=ON -DLOWBIT_CUDA=OFF -DLOWBIT_BUILD_BENCH=OFF -DLOWBIT_BUILD_EXAMPLES=OFF
cmake --build build/asan -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build/asan -L unit -j"$JOBS" --output-on-failure

cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j"$JOBS"
ctest --test-dir build/release -j"$JOBS" --output-on-failure
