#!/usr/bin/env bash
# bench/cpu_run.sh: the CPU benchmarks alone (no GPU build), for a short run on the GPU
# machine's 16-core host: MLP and CNN train steps beside PyTorch (alternating, twice), the
# bf16-mixed/f32 step ratio and Fabric's per-step overhead (three times each).
# Usage: bash bench/cpu_run.sh   (THREADS=8 by default; logs under $OUT when set)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T=${THREADS:-8}
meson setup build-cpu -Dcuda=disabled -Dmpi=disabled -Dbuildtype=release >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
ninja -C build-cpu bench/bench_train_step bench/bench_precision bench/bench_fabric_overhead >"$OUT/build.log" 2>&1 \
  || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
export OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T
echo "== train step, CPU, $T threads (weft, then PyTorch)"
for r in 1 2; do
  for m in mlp cnn; do
    steps=1000; [ $m = cnn ] && steps=100
    timeout 120 build-cpu/bench/bench_train_step --model $m --steps $steps 2>&1 | tail -1
    timeout 120 python3 bench/peer_train_step.py --model $m --steps $steps 2>&1 | tail -1
  done
done
echo "== bf16-mixed vs 32-true MLP step"
for r in 1 2 3; do timeout 120 build-cpu/bench/bench_precision --steps 1000 --precisions bf16-mixed 2>/dev/null | tail -1; done
echo "== Fabric overhead over the plain loop"
for r in 1 2 3; do timeout 120 build-cpu/bench/bench_fabric_overhead 2>&1 | tail -1; done
