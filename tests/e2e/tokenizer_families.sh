#!/usr/bin/env bash
# The tools with the tokenizers of real checkpoint families, end to end on tiny models:
#   1. Qwen2-style tokenizer.json (NFC): prepare_data on text, train_llama on the shards,
#      eval_ppl on text.
#   2. Llama-2-style tokenizer.json (SentencePiece BPE, byte fallback): train_llama with
#      data.text, eval_ppl, export_model --format hf (tokenizer_config.json with bos/eos).
#   3. A SentencePiece tokenizer.model alone: prepare_data and eval_ppl.
#   4. Chat: prepare_data --chat (llama2 template) on chat JSONL, train_llama on the packed chat
#      shards, generate --chat.
# Usage: tokenizer_families.sh BIN_DIR REPO_DIR WORKDIR
set -euo pipefail
bin="$1" repo="$2" work="$3"
rm -rf "$work"
mkdir -p "$work"
tok="$repo/tests/data/tokenizer"
sample="$tok/fortunes_sample.txt"
chat="$repo/tests/data/chat/fortunes_chat.jsonl"
tiny=(model.hidden_size=32 model.intermediate_size=64 model.num_hidden_layers=2 model.num_attention_heads=2
      model.num_key_value_heads=2 data.seq_len=64 data.batch_size=4 train.steps=3 train.eval_every=0
      train.eval_batches=1 checkpoint.every=0 log.progress=false)
fail() { echo "FAIL: $*"; exit 1; }
expect() {  # expect LOG PATTERN: the log holds the pattern
  grep -Eq "$2" "$1" || { cat "$1"; fail "$1 lacks /$2/"; }
}

# 1. Qwen2 (NFC normalizer).
"$bin/prepare_data" --tokenizer "$tok/qwen2_style.tokenizer.json" --out "$work/qwen2_data" \
  --doc-separator '\n%\n' --val-fraction 0.1 "$sample" > "$work/qwen2_prepare.log"
expect "$work/qwen2_prepare.log" "train: [1-9][0-9]* documents"
"$bin/train_llama" "$repo/configs/demo.json" "${tiny[@]}" "data.text=[]" "data.train=[\"$work/qwen2_data\"]" \
  "data.val=[\"$work/qwen2_data\"]" "data.tokenizer=$work/qwen2_data" checkpoint.dir="$work/qwen2_run" \
  > "$work/qwen2_train.log"
expect "$work/qwen2_train.log" "done: 3 steps"
"$bin/eval_ppl" "$work/qwen2_run" "$sample" --doc-separator '\n%\n' --limit 8 --window 32 > "$work/qwen2_eval.json" \
  2> "$work/qwen2_eval.log"
expect "$work/qwen2_eval.json" '"token_perplexity": [0-9]'
echo "qwen2: prepare_data, train_llama, eval_ppl ok"

# 2. Llama-2 (SentencePiece BPE in tokenizer.json, byte fallback), data.text path.
mkdir -p "$work/llama2_tok"
cp "$tok/llama2_style.tokenizer.json" "$work/llama2_tok/tokenizer.json"
"$bin/train_llama" "$repo/configs/demo.json" "${tiny[@]}" "data.text=[\"$sample\"]" 'data.doc_separator=\n%\n' \
  "data.tokenizer=$work/llama2_tok" checkpoint.dir="$work/llama2_run" > "$work/llama2_train.log"
expect "$work/llama2_train.log" "done: 3 steps"
[ -f "$work/llama2_run/tokenizer_config.json" ] || fail "the run directory has no tokenizer_config.json"
"$bin/eval_ppl" "$work/llama2_run" "$sample" --doc-separator '\n%\n' --limit 8 --window 32 > "$work/llama2_eval.json" \
  2> "$work/llama2_eval.log"
expect "$work/llama2_eval.json" '"token_perplexity": [0-9]'
"$bin/export_model" "$work/llama2_run" --format hf --dtype f32 --out "$work/llama2_export" > "$work/llama2_export.log"
expect "$work/llama2_export/tokenizer_config.json" '"bos_token": "<s>"'
expect "$work/llama2_export/tokenizer_config.json" '"eos_token": "</s>"'
expect "$work/llama2_export/special_tokens_map.json" '"unk_token": "<unk>"'
echo "llama2: train_llama, eval_ppl, export ok"

# 3. A SentencePiece model alone.
mkdir -p "$work/sp_tok"
cp "$tok/llama2_style.model" "$work/sp_tok/tokenizer.model"
"$bin/prepare_data" --tokenizer "$work/sp_tok" --out "$work/sp_data" --doc-separator '\n%\n' --val-fraction 0.1 \
  "$sample" > "$work/sp_prepare.log"
expect "$work/sp_prepare.log" "train: [1-9][0-9]* documents"
[ -f "$work/sp_data/tokenizer.model" ] || fail "prepare_data did not keep tokenizer.model"
echo "sentencepiece: prepare_data ok"

# 4. Chat fine-tuning data with the Llama-2 template, packed.
"$bin/prepare_data" --chat --tokenizer "$work/llama2_tok" --template llama2 --out "$work/chat_data" --val-fraction 0.1 \
  --max-tokens 200 --overlong truncate "$chat" > "$work/chat_prepare.log"
expect "$work/chat_prepare.log" "template: llama2"
expect "$work/chat_prepare.log" "train: [1-9][0-9]* examples, [1-9][0-9]* tokens \\([1-9][0-9]* trained\\)"
"$bin/train_llama" "$repo/configs/demo.json" "${tiny[@]}" data.seq_len=128 data.pack=true \
  "data.text=[]" "data.train=[\"$work/chat_data\"]" "data.val=[\"$work/chat_data\"]" "data.tokenizer=$work/chat_data" \
  checkpoint.dir="$work/chat_run" > "$work/chat_train.log"
expect "$work/chat_train.log" "data: chat shards, [1-9][0-9]* examples, packed"
expect "$work/chat_train.log" "done: 3 steps"
"$bin/generate" "$work/chat_run" --chat --template llama2 --system "Be brief." --prompt "Hello" --max-new-tokens 6 \
  --seed 1 > "$work/chat_generate.out" 2> "$work/chat_generate.log"
expect "$work/chat_generate.log" "chat template llama2"
expect "$work/chat_generate.log" "prompt [1-9][0-9]* tokens"
echo "chat: prepare_data --chat, train_llama (packed), generate --chat ok"
echo "tokenizer families e2e: ok"
