#!/usr/bin/env bash
# Training-step time with and without a competing process, per OpenMP wait policy
# (bench/README.md "Contention"). The competitor is one busy loop (`yes > /dev/null`), i.e. one
# of two cores taken. Each cell: the median of 3 repetitions of train_step_bench's mean step
# time (each repetition >= 2 s of steps), f32, 2 threads.
#   bench/contention.sh BUILD_DIR [FILTER]      (FILTER default: 'train_step/(1M|10M)/f32')
set -euo pipefail
build="${1:?usage: bench/contention.sh BUILD_DIR [FILTER]}"
filter="${2:-train_step/(1M|10M)/f32}"
bench="$build/bench/train_step_bench"
policies=("libgomp default:" "GOMP_SPINCOUNT=3000 (the tools' setting):GOMP_SPINCOUNT=3000"
          "OMP_WAIT_POLICY=PASSIVE:OMP_WAIT_POLICY=PASSIVE")
steps() { env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT ${1:+"$1"} "$bench" --benchmark_filter="$filter" \
            --benchmark_min_time=2 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true 2> /dev/null |
            awk '/^train_step.*_median/ {printf "%s %s ms  ", $1, $2}'; }
for p in "${policies[@]}"; do
  name="${p%%:*}" setting="${p#*:}"
  echo "$name | idle: $(steps "$setting")"
  yes > /dev/null &
  competitor=$!
  echo "$name | one core taken: $(steps "$setting")"
  kill "$competitor"
  wait "$competitor" 2> /dev/null || true
done
