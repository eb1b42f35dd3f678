#!/usr/bin/env bash
# bench/fp8_run.sh: issue 15's fp8 ("transformer-engine") checks on one Hopper GPU, in one call:
#   1. tests/cuda/test_cuda_fp8 (casts, scaling, the cuBLASLt fp8 GEMM, the Linear node);
#   2. the kernel split of GPT-2 124M steps under transformer-engine (bench/ktrace.c), beside
#      the same steps in bf16-mixed (step ms of both from bench_gpt2);
#   3. with TEXT set: the shakespeare-char quality run in bf16-mixed and in transformer-engine,
#      the two at once on the GPU (their curves, not their speed, are the point), each
#      MAX_ITERS iterations (default 2500: the bf16 run's best validation loss came at 1750)
#      on the full run's schedule (--lr-decay-iters 5000), then both curves side by side.
# Usage on the device: CHECK=.carry/check TEXT=.carry/tinyshakespeare.txt bash bench/fp8_run.sh
# Output: a few lines per part; logs under $OUT (keep them few: the device returns a handful).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
[ -n "${CHECK:-}" ] && export PKG_CONFIG_PATH="$PWD/$CHECK/lib/pkgconfig:${PKG_CONFIG_PATH:-}"
B=${B:-build-gpu}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
[ -f $B/build.ninja ] || meson setup $B -Dcuda=enabled -Dmpi=disabled >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
T=tests/cuda/test_cuda_fp8
ninja -C $B -t targets all 2>/dev/null | grep -q "^$T:" || T=
ninja -C $B bench/bench_gpt2 examples/gpt/gpt $T >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
echo "== [${SECONDS}s] build ok"
if [ -n "${TEXT:-}" ]; then   # the curves first, in the background: they take longest
  IT=${MAX_ITERS:-2500}
  for p in bf16-mixed transformer-engine; do
    RUN_DIR=/tmp/shakespeare_$p OUT=/tmp/fp8_curves_$p timeout 500 bash bench/shakespeare_run.sh "$TEXT" $B \
      --precision $p --max-iters $IT --lr-decay-iters 5000 >/dev/null 2>&1 &
  done
fi
if [ -n "$T" ]; then
  timeout 120 $B/$T >"$OUT/fp8_test.log" 2>&1; echo "== test_cuda_fp8 rc=$?"
  grep -E "^FAIL" "$OUT/fp8_test.log" | head -20; tail -1 "$OUT/fp8_test.log"
fi
ARGS=(--batch 16 --seq 1024 --fused-loss 1)
echo "== [${SECONDS}s] GPT-2 124M step, bf16-mixed and transformer-engine$([ -n "${TEXT:-}" ] && echo " (the curves share the GPU: ms not comparable with other calls)")"
for p in bf16-mixed transformer-engine; do
  timeout 200 $B/bench/bench_gpt2 "${ARGS[@]}" --precision $p --steps 6 --warmup 2 2>&1 | tail -1
done
echo "== [${SECONDS}s] kernel split under transformer-engine"
source bench/ktrace_setup.sh
CUDA_INJECTION64_PATH=/tmp/libktrace.so KTRACE_OUT=/tmp/kt_fp8.csv timeout 200 \
  $B/bench/bench_gpt2 "${ARGS[@]}" --precision transformer-engine --steps 4 --warmup 1 | tail -1
python3 bench/ktrace_summary.py /tmp/kt_fp8.csv --label weft_fp8 --top ${KTOP:-30} > "$OUT/kern_fp8.txt"
head -${KTOP:-30} "$OUT/kern_fp8.txt" | cut -c1-160
if [ -n "${TEXT:-}" ]; then
  wait
  echo "== [${SECONDS}s] shakespeare-char curves ($IT iterations), val loss by step"
  for p in bf16-mixed transformer-engine; do
    cp /tmp/fp8_curves_$p/shakespeare.log "$OUT/shakespeare_$p.log" 2>/dev/null
    echo "-- $p"; grep -E "val" /tmp/fp8_curves_$p/shakespeare.log | grep -E "^step|^iter" | cut -c1-160 | tail -14
    tail -1 /tmp/fp8_curves_$p/shakespeare.log | cut -c1-300
  done
fi
echo "== [${SECONDS}s] done"
