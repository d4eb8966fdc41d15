#!/usr/bin/env bash
# The demo pipeline on built tools (scripts/demo.sh installs and builds first):
#   1. pretrain a tiny Llama on the Debian `fortunes` corpus (tokenizer trained on the fly);
#   2. fine-tune it without quantization (the baseline), then PTQ: calibrate and convert that
#      to W4A8 (int4 group-32 weights, int8 per-token activations), evaluated through the real
#      int4 x int8 matmul;
#   3. QAT: the same fine-tune from the same pretrained model with W4A8 fake quantization,
#      then evaluate it the same way;
#   4. export the QAT model in the compressed-tensors layout;
#   5. print the perplexity table on held-out text (the `wisdom` fortunes, never trained on).
# Usage: scripts/demo_run.sh BUILD_DIR [OUT_DIR]. DEMO_STEPS / DEMO_QAT_STEPS shrink the run
# (CI runs it small); extra settings via DEMO_ARGS (train_llama overrides for both runs).
# DEMO_CHECK=1 fails unless QAT's deployed perplexity is no worse than PTQ's; DEMO_EVAL_LIMIT=N
# evaluates the first N held-out documents only; DEMO_PRESET picks another preset than W4A8
# (docs/quantization.md) for PTQ and QAT alike.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build="${1:?usage: scripts/demo_run.sh BUILD_DIR [OUT_DIR]}"
out="${2:-runs/demo}"
tools="$build/tools"
pt_steps="${DEMO_STEPS:-1000}"
qat_steps="${DEMO_QAT_STEPS:-300}"
corpus=/usr/share/games/fortunes
heldout="$corpus/wisdom"
[ -f "$heldout" ] || { echo "demo: $heldout is missing: install the Debian package 'fortunes'" >&2; exit 1; }
sep='\n%\n'
preset="${DEMO_PRESET:-W4A8}"
ptq_gs=() qat_gs=(quant.group_size=0) deployed="real $preset matmul"
if [ "$preset" = W4A8 ]; then
  ptq_gs=(--group-size 32) qat_gs=(quant.group_size=32) deployed="real int4 x int8 matmul"
fi
rm -rf "$out"
mkdir -p "$out"
# shellcheck disable=SC2206
extra=(${DEMO_ARGS:-})
limit=()
[ -n "${DEMO_EVAL_LIMIT:-}" ] && limit=(--limit "$DEMO_EVAL_LIMIT")

echo "== 1. pretrain ($pt_steps steps)"
"$tools/train_llama" configs/demo.json checkpoint.dir="$out/pretrain" checkpoint.resume=false \
  train.steps="$pt_steps" "${extra[@]}"

echo "== 2. fine-tune without quantization ($qat_steps steps), then PTQ: $preset, calibrated on 8 batches of training text"
"$tools/train_llama" configs/demo_qat.json model.hf_dir="$out/pretrain" data.tokenizer="$out/pretrain/tokenizer.json" \
  quant.preset= quant.group_size=0 checkpoint.dir="$out/finetune" checkpoint.resume=false train.steps="$qat_steps" "${extra[@]}"
"$tools/quantize" "$out/finetune" --preset "$preset" "${ptq_gs[@]}" --calib "$corpus/fortunes" --doc-separator "$sep" \
  --calib-batches 8 --eval "$heldout" "${limit[@]}" --json "$out/ptq.json"

echo "== 3. QAT: $preset fake quantization ($qat_steps steps)"
"$tools/train_llama" configs/demo_qat.json model.hf_dir="$out/pretrain" data.tokenizer="$out/pretrain/tokenizer.json" \
  quant.preset="$preset" "${qat_gs[@]}" checkpoint.dir="$out/qat" checkpoint.resume=false train.steps="$qat_steps" "${extra[@]}"
"$tools/eval_ppl" "$out/qat" "$heldout" --doc-separator "$sep" --quant real "${limit[@]}" --out "$out/eval_qat.json" > /dev/null

echo "== 4. export the QAT model (compressed-tensors: packed codes and scales)"
"$tools/export_model" "$out/qat" --format compressed-tensors --out "$out/qat_compressed_tensors"

# "key": value from a JSON file (the first occurrence; after the "after" key for ptq.json).
value() { sed -n "/$3/,\$p" "$1" | grep -m1 "\"$2\"" | sed 's/.*: *\([^,]*\),*/\1/'; }
row() { printf '| %-44s | %15.3f | %14.3f | %13.4f |\n' "$1" "$(value "$2" token_perplexity "$3")" \
          "$(value "$2" word_perplexity "$3")" "$(value "$2" bits_per_byte "$3")"; }
echo
echo "Held-out perplexity ($heldout, $(value "$out/eval_qat.json" n_documents .) documents), after $pt_steps pretraining"
echo "and $qat_steps fine-tuning steps:"
echo
printf '| %-44s | %15s | %14s | %13s |\n' model "token perplexity" "word perplexity" "bits per byte"
echo "|----------------------------------------------|-----------------|----------------|---------------|"
row "no quantization (f32)" "$out/ptq.json" '"before"'
row "PTQ $preset ($deployed)" "$out/ptq.json" '"after"'
row "QAT $preset ($deployed)" "$out/eval_qat.json" .

if [ "${DEMO_CHECK:-0}" = 1 ]; then
  ptq=$(value "$out/ptq.json" token_perplexity '"after"') qat=$(value "$out/eval_qat.json" token_perplexity .)
  awk -v q="$qat" -v p="$ptq" 'BEGIN { exit !(q <= p) }' || { echo "FAIL: QAT perplexity $qat > PTQ $ptq"; exit 1; }
  echo "check: QAT token perplexity $qat <= PTQ $ptq"
fi
