#!/usr/bin/env bash
# bench/memory_run.sh: peak resident memory of one-epoch Fashion-MNIST runs, weft beside
# PyTorch, for the MLP and the CNN (bench_memory.c and peer_memory.py: the same data, model,
# batches and optimizer), then the start-up time and the .gz loading speed.
# Usage: bash bench/memory_run.sh [BUILD_DIR]   (default build; the peer is skipped without torch)
# CNN_STEPS=N trains the CNN N steps instead of the epoch (its peak is the test pass at batch 1000).
# SMAPS=1 also prints weft's resident memory per mapping at each phase (bench_memory --smaps 1).
# Both sides load the test split after training, once the train split is freed.
set -uo pipefail
B=${1:-build}
ninja -C "$B" bench/bench_memory bench/bench_startup bench/bench_idx_load >/dev/null || exit 1
PY=${PYTHON:-python3}   # a python3 with torch (Debian's python3-torch: PYTHON=/usr/bin/python3)
have_torch=0; "$PY" -c "import torch" 2>/dev/null && have_torch=1
for m in mlp cnn; do
  steps=0; [ "$m" = cnn ] && steps=${CNN_STEPS:-0}
  echo "== $m, one epoch$([ "$steps" != 0 ] && echo " ($steps training steps)")"
  if [ "${SMAPS:-0}" = 1 ]; then "$B"/bench/bench_memory --model $m --steps "$steps" --smaps 1 2>&1
  else "$B"/bench/bench_memory --model $m --steps "$steps" 2>&1 | tail -1; fi
  [ $have_torch = 1 ] && "$PY" "$(dirname "$0")"/peer_memory.py --model $m --steps "$steps" 2>&1 | tail -1
done
echo "== start-up (process start to the end of the first step)"
"$B"/bench/bench_startup 2>&1 | tail -1
echo "== Fashion-MNIST .gz loading, weft vs zlib"
"$B"/bench/bench_idx_load 2>&1 | tail -1
