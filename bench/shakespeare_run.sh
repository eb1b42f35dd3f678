#!/usr/bin/env bash
# bench/shakespeare_run.sh: issue 15's quality run: examples/gpt's shakespeare-char config
# (nanoGPT's config/train_shakespeare_char.py: 6 layers, 6 heads, 384 wide, block 256,
# dropout 0.2, batch 64, lr 1e-3 -> 1e-4, 5000 iterations, warmup 100) on one GPU in
# bf16-mixed, on the text given (../shared/data/tinyshakespeare.txt in this project; carried to
# the GPU machine). Prints the validation curve; nanoGPT reports 1.4697, its best validation
# loss (the config saves only when it improves: the final line's best_val_loss here).
# Usage: bash bench/shakespeare_run.sh TEXT [BUILD_DIR] [extra gpt flags]
set -uo pipefail
TEXT=${1:?usage: bash bench/shakespeare_run.sh TEXT [BUILD_DIR] [flags]}
B=${2:-build-gpu}
shift 2 2>/dev/null || shift $#
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
ninja -C "$B" examples/gpt/gpt >/dev/null || exit 1
RUN=${RUN_DIR:-/tmp/shakespeare}   # checkpoints: kept out of $OUT, whose files come back
rm -rf "$RUN"
stdbuf -oL "$B"/examples/gpt/gpt --config shakespeare-char --data "$TEXT" --device cuda --precision bf16-mixed \
  --out-dir "$RUN" --logger csv --log-interval 250 "$@" 2>&1 | tee "$OUT/shakespeare.log" |
  grep -E "^step|resumed|error|parameters|^iter (500|1000|2000|3000|4000|5000):|^\{" | cut -c1-240 | tail -40
find "$RUN" -name "*.csv" -exec cp {} "$OUT/shakespeare_metrics.csv" \; 2>/dev/null || true
