#!/usr/bin/env bash
# SIGTERM mid-run, then the same command again, reaches the same weights and optimizer state,
# byte for byte, as an uninterrupted run. Usage: sigterm_resume.sh TRAIN_LLAMA CONFIG WORKDIR
set -euo pipefail
train_llama="$1" config="$2" work="$3"
rm -rf "$work"
mkdir -p "$work"
args=(train.steps=1000 checkpoint.every=0 train.eval_every=0 log.progress=false)
"$train_llama" "$config" "${args[@]}" checkpoint.dir="$work/straight" > "$work/straight.log"

"$train_llama" "$config" "${args[@]}" checkpoint.dir="$work/stopped" > "$work/stopped.log" &
pid=$!
# Wait until a few steps are done (metrics.jsonl has lines), then stop it mid-run: 1000 steps of
# ~3 ms leave seconds of margin over the 0.1 s polling.
for _ in $(seq 1 600); do
  [ -s "$work/stopped/metrics.jsonl" ] && [ "$(wc -l < "$work/stopped/metrics.jsonl")" -ge 20 ] && break
  sleep 0.1
done
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
[ "$status" -eq 130 ] || { echo "expected exit status 130 after SIGTERM, got $status"; cat "$work/stopped.log"; exit 1; }
grep -q "stopping on signal 15" "$work/stopped.log" || { echo "no 'stopping on signal 15' line"; exit 1; }
stopped_at=$(ls "$work/stopped/checkpoints")
echo "stopped and saved: $stopped_at"
[ "$stopped_at" != "step_00001000" ] || { echo "the run finished before the signal; nothing was tested"; exit 1; }

"$train_llama" "$config" "${args[@]}" checkpoint.dir="$work/stopped" > "$work/resumed.log"
grep -q "resumed from" "$work/resumed.log" || { echo "the second run did not resume"; exit 1; }
for f in model.safetensors optimizer.safetensors data.json; do
  cmp "$work/straight/checkpoints/step_00001000/$f" "$work/stopped/checkpoints/step_00001000/$f"
done
echo "SIGTERM + resume == uninterrupted (model, optimizer, data position)"
