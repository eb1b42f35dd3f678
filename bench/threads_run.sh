#!/usr/bin/env bash
# bench/threads_run.sh: the threading A/B for small machines. The Fashion-MNIST MLP and CNN
# train steps (batch 64, Adam) with no thread variables set, on 2 cores (taskset) and on all
# cores, beside one thread and PyTorch, in one command:
#   - "pool (default)": weft's own thread pool (tensor/cpu/thread_pool.c), BLAS single-threaded
#     on slices of C;
#   - "1 thread": OMP_NUM_THREADS=1 (the pool has no helpers);
#   - "pool, no spin": WF_POOL_SPIN_US=0, helpers sleep as soon as their loop is done;
#   - with BASE=<build dir of an older weft> (OpenMP team, before the pool), that build's
#     default and one thread in the same minutes.
# Usage: bash bench/threads_run.sh [build-dir]   (CORES="0,1 all", ROUNDS=2, BASE=)
set -uo pipefail
B=${1:-build}
unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS OMP_WAIT_POLICY GOMP_SPINCOUNT WF_POOL_SPIN_US
have_torch=0; python3 -c "import torch" 2>/dev/null && have_torch=1
for c in ${CORES:-0,1 all}; do
  TS=""; [ "$c" = all ] || TS="taskset -c $c"
  echo "== cores: $c ($($TS nproc) usable)"
  for m in mlp cnn; do
    steps=400; [ $m = cnn ] && steps=40
    for r in $(seq "${ROUNDS:-2}"); do
      run() {
        local label=$1 build=$2; shift 2
        printf '%-36s ' "$label"
        env "$@" timeout 300 $TS "$build/bench/bench_train_step" --model $m --steps $steps 2>&1 | tail -1
      }
      run "weft, pool (default)" "$B"
      run "weft, 1 thread" "$B" OMP_NUM_THREADS=1
      run "weft, pool, no spin" "$B" WF_POOL_SPIN_US=0
      if [ -n "${BASE:-}" ]; then
        run "base, default" "$BASE"
        run "base, 1 thread" "$BASE" OMP_NUM_THREADS=1
      fi
      if [ $have_torch = 1 ]; then
        printf '%-36s ' "pytorch"
        timeout 300 $TS python3 bench/peer_train_step.py --model $m --steps $steps 2>&1 | tail -1
      fi
    done
  done
done
