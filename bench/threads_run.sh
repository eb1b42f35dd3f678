#!/usr/bin/env bash
# bench/threads_run.sh: the threading A/B for small machines. The Fashion-MNIST MLP and CNN
# train steps (batch 64, Adam) with no thread variables set, on 2 cores (taskset) and on all
# cores, for each way of running weft's GEMMs, beside one thread and PyTorch, in one command:
#   - "team": the default, BLAS single-threaded inside weft's OpenMP team (tensor/cpu/threads.c);
#   - "whole team every region": WF_PAR_GRAIN_SCALE=0.0001, every region wakes every thread
#     (before regions took one thread per grain of work, tensor/cpu/threads.c);
#   - "blas threads": WF_GEMM_THREADING=blas, OpenBLAS's own pool beside the team (before);
#   - the same with OMP_WAIT_POLICY=passive, and with OpenBLAS's OpenMP build (one runtime),
#     when OPENBLAS_OPENMP names a folder holding that build's libopenblas.so.0.
# Usage: bash bench/threads_run.sh [build-dir]   (CORES="0,1 all", ROUNDS=2)
set -uo pipefail
B=${1:-build}
unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS OMP_WAIT_POLICY GOMP_SPINCOUNT WF_GEMM_THREADING
have_torch=0; python3 -c "import torch" 2>/dev/null && have_torch=1
for c in ${CORES:-0,1 all}; do
  TS=""; [ "$c" = all ] || TS="taskset -c $c"
  echo "== cores: $c ($($TS nproc) usable)"
  for m in mlp cnn; do
    steps=400; [ $m = cnn ] && steps=40
    for r in $(seq "${ROUNDS:-2}"); do
      run() {
        local label=$1; shift
        printf '%-36s ' "$label"
        env "$@" timeout 300 $TS "$B/bench/bench_train_step" --model $m --steps $steps 2>&1 | tail -1
      }
      run "weft, team (default)"
      run "weft, 1 thread" OMP_NUM_THREADS=1
      run "weft, whole team every region" WF_PAR_GRAIN_SCALE=0.0001
      run "weft, blas threads" WF_GEMM_THREADING=blas
      run "weft, blas threads, passive wait" WF_GEMM_THREADING=blas OMP_WAIT_POLICY=passive
      [ -n "${OPENBLAS_OPENMP:-}" ] && run "weft, blas threads, openblas-openmp" WF_GEMM_THREADING=blas \
        LD_LIBRARY_PATH="$OPENBLAS_OPENMP"
      if [ $have_torch = 1 ]; then
        printf '%-36s ' "pytorch"
        timeout 300 $TS python3 bench/peer_train_step.py --model $m --steps $steps 2>&1 | tail -1
      fi
    done
  done
done
