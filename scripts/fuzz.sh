#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang 14 + ASan/UBSan and runs each for
# FUZZ_SECONDS (default 600) from the committed corpus in tests/data/malformed/. Never run by
# CI. Usage: bash scripts/fuzz.sh [target ...]   (default: every fuzz_* target)
# Findings land in build/fuzz/findings/<target>/; logs in build/fuzz/logs/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
bash scripts/install_deps.sh clang-14 libfuzzer-14-dev libomp-14-dev
B=build/fuzz
CC=clang-14 CXX=clang++-14 cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLOWBIT_FUZZ=ON -DLOWBIT_CUDA=OFF -DLOWBIT_MPI=OFF -DLOWBIT_NATIVE=OFF \
  -DLOWBIT_BUILD_TESTS=OFF -DLOWBIT_BUILD_BENCH=OFF -DLOWBIT_BUILD_EXAMPLES=OFF > /dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
ninja -C "$B" -j "$JOBS" "${targets[@]}"
declare -A seed=([fuzz_safetensors]=safetensors [fuzz_model_config]=model_config
                 [fuzz_token_shard]=token_shard [fuzz_tokenizer_json]=tokenizer_json
                 [fuzz_tokenizer_encode]=tokenizer_text)
mkdir -p "$B/logs"
export OMP_NUM_THREADS=1
for t in "${targets[@]}"; do
  corpus="$B/corpus/$t"; findings="$B/findings/$t"
  mkdir -p "$corpus" "$findings"
  echo "== $t: ${FUZZ_SECONDS:-600} s"
  "$B/fuzz/$t" "$corpus" "tests/data/malformed/${seed[$t]}" -max_total_time="${FUZZ_SECONDS:-600}" \
    -rss_limit_mb=2048 -timeout=10 -max_len=65536 -artifact_prefix="$findings/" -print_final_stats=1 \
    > "$B/logs/$t.log" 2>&1 && status=clean || status="FAILED (see $B/logs/$t.log)"
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$B/logs/$t.log" || true
  echo "$t: $status"
done
