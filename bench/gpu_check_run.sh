#!/usr/bin/env bash
# bench/gpu_check_run.sh: the GPU machine's correctness pass, in one call: build weft with
# CUDA, NCCL and MPI (Check carried: CHECK=.carry/check), then
#   - the op harness on CUDA (tests/ops/test_ops --device cuda) and the parity program;
#   - the GPT example stopped and resumed on CUDA with deterministic algorithms, bit for bit
#     (tests/examples/test_gpt, its CUDA case);
#   - a one-rank NCCL communicator through every op, and an NCCL error or timeout aborting
#     the communicator (tests/dist/test_nccl, also two ranks on one GPU refused clearly);
#   - the threading A/B on all cores (bench/threads_run.sh, MLP only unless MODELS is set).
# Usage on the device: CHECK=.carry/check bash bench/gpu_check_run.sh   (logs under $OUT)
set -uo pipefail
export NCCL_NVLS_ENABLE=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -n "${CHECK:-}" ] && export PKG_CONFIG_PATH="$PWD/$CHECK/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
B=${B:-build-gpu}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
[ -f $B/build.ninja ] || meson setup $B -Dcuda=enabled -Dnccl=enabled -Dmpi=enabled >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
# only what the checks run (a whole CUDA build is minutes more)
ninja -C $B tests/ops/test_ops tests/cuda/test_cuda_parity tests/examples/examples_test_gpt examples/gpt/gpt \
  tests/dist/dist_test_nccl bench/bench_train_step >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
echo "== build ok"
echo "== GPT stopped and resumed on CUDA, deterministic"
(cd $B && CK_RUN_CASE=core timeout 400 tests/examples/examples_test_gpt examples/gpt/gpt 2>&1 | tail -5) | tee "$OUT/gpt.log"
echo "== op harness on CUDA"
timeout 300 $B/tests/ops/test_ops --device cuda >"$OUT/ops_cuda.log" 2>&1; echo "rc=$?"
grep -E "^FAIL" "$OUT/ops_cuda.log" | head -30; tail -1 "$OUT/ops_cuda.log"
echo "== parity program"
timeout 200 $B/tests/cuda/test_cuda_parity >"$OUT/parity.log" 2>&1; echo "rc=$?"; grep -E "^FAIL" "$OUT/parity.log" | head; tail -1 "$OUT/parity.log"
echo "== NCCL: one rank, every op; two ranks on one GPU"
timeout 120 $B/tests/dist/dist_test_nccl 2>&1 | tail -6
timeout 60 mpirun --oversubscribe --bind-to none -np 2 $B/tests/dist/dist_test_nccl --same-gpu 2>&1 | tail -3
if [ -n "${SHAKESPEARE:-}" ]; then
  echo "== shakespeare-char (bf16-mixed, one GPU)"
  timeout "${SHAKESPEARE_TIMEOUT:-400}" bash bench/shakespeare_run.sh "$SHAKESPEARE" $B
fi
if [ -n "${THREADS_AB-1}" ]; then
  echo "== threads A/B, all cores"
  CORES=all ROUNDS=2 bash bench/threads_run.sh $B 2>&1 | grep -v "^$" | grep -E "==|weft|pytorch" | sed -E 's/"final_loss[^,]*,//' | cut -c1-150
fi
