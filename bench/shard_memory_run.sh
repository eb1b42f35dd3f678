#!/usr/bin/env bash
# bench/shard_memory_run.sh: per-rank memory under FSDP FULL_SHARD at N = 1, 2, 3 ranks (issue
# 14: "per-rank memory falls as 1/N"). Runs bench/bench_ddp_step --model wide (an MLP of
# LAYERS Linear layers WIDTH wide: parameters, gradients and Adam's state dominate) under
# mpirun, the mpi backend, and prints each rank's memory and its ratio to N = 1.
#
#   bash bench/shard_memory_run.sh [--accelerator cpu|cuda] [BUILD_DIR]      (default cpu, build)
#
# cpu: the ranks share the host's cores (mpirun --oversubscribe); memory is the host
#   allocator's: setup_mb after wf_fabric_setup (the shards), peak_mb over the timed steps.
# cuda: every rank on GPU 0 (rank -> cuda:local_rank % GPUs, one GPU), through the mpi backend
#   (NCCL refuses two ranks on one GPU; CUDA tensors are staged through host memory); memory is
#   each process's CUDA allocator: its peak since the process began (the reset is not in this
#   build), which includes setup. BUILD_DIR must be built with -Dcuda=enabled -Dmpi=enabled.
# Settings (environment): RANKS="1 2 3" WIDTH=1024 LAYERS=8 BATCH=16 STEPS=5
# STRATEGY=fsdp SHARDING=FULL_SHARD; logs under $OUT when set (else a temporary folder).
set -uo pipefail
ACCEL=cpu
BUILD=build
while [ $# -gt 0 ]; do
  case "$1" in
    --accelerator) ACCEL=${2:-}; shift 2 ;;
    --accelerator=*) ACCEL=${1#*=}; shift ;;
    -h|--help) sed -n 2,20p "$0"; exit 0 ;;
    -*) echo "shard_memory_run.sh: unknown option $1 (--accelerator cpu|cuda [BUILD_DIR])" >&2; exit 2 ;;
    *) BUILD=$1; shift ;;
  esac
done
RANKS=${RANKS:-1 2 3}; WIDTH=${WIDTH:-1024}; LAYERS=${LAYERS:-8}; BATCH=${BATCH:-16}; STEPS=${STEPS:-5}
STRATEGY=${STRATEGY:-fsdp}; SHARDING=${SHARDING:-FULL_SHARD}
BIN=$BUILD/bench/bench_ddp_step
die() { echo "shard_memory_run.sh: $*" >&2; exit 1; }
case "$ACCEL" in cpu|cuda) ;; *) die "--accelerator $ACCEL: expected cpu or cuda" ;; esac
[ -x "$BIN" ] || die "$BIN not found: build it first (meson setup $BUILD && ninja -C $BUILD bench/bench_ddp_step)"
command -v mpirun >/dev/null || die "mpirun not found: the ranks run under Open MPI (the mpi backend)"
grep -q "WEFT_HAVE_MPI" "$BUILD/weft_config.h" 2>/dev/null || die "$BUILD is built without MPI (meson setup -Dmpi=enabled)"
if [ "$ACCEL" = cuda ]; then
  grep -q "WEFT_HAVE_CUDA" "$BUILD/weft_config.h" 2>/dev/null || die "$BUILD is built without CUDA (meson setup -Dcuda=enabled)"
  command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || die "no GPU visible (nvidia-smi -L failed)"
  nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
  # every rank on GPU 0: one visible device, so local_rank % 1 = 0 for all
  export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0}
  CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES%%,*}
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
       OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
LOG=${OUT:-$(mktemp -d)}/shard_memory; mkdir -p "$LOG"
echo "== $STRATEGY $SHARDING, --model wide --width $WIDTH --layers $LAYERS --batch $BATCH --steps $STEPS, $ACCEL," \
     "mpi backend, load $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
ALL=$LOG/all.jsonl; : > "$ALL"
for n in $RANKS; do
  f=$LOG/np$n.log
  timeout 900 mpirun -np "$n" --oversubscribe --bind-to none "$BIN" --model wide --width "$WIDTH" --layers "$LAYERS" \
    --batch "$BATCH" --steps "$STEPS" --strategy "$STRATEGY" --sharding "$SHARDING" --devices auto \
    --accelerator "$ACCEL" --per-rank >"$f" 2>&1
  rc=$?
  if [ $rc -ne 0 ] || ! grep -q '^{"rank"' "$f"; then
    echo "N=$n failed (exit $rc); the end of $f:" >&2; tail -15 "$f" >&2; exit 1
  fi
  grep '^{"rank"' "$f" >> "$ALL"
done
# one row per rank: peak_mb and setup_mb against N = 1's (rank 0's), and the ideal 1/N
awk -v accel="$ACCEL" '
  function field(s, k,   m) { if (match(s, "\"" k "\":[^,}]*")) { m = substr(s, RSTART + length(k) + 3, RLENGTH - length(k) - 3); gsub(/"/, "", m); return m } return "" }
  { n = field($0, "ranks"); r = field($0, "rank"); setup[n, r] = field($0, "setup_mb"); peak[n, r] = field($0, "peak_mb");
    dev[n, r] = field($0, "device"); params = field($0, "params"); if (!(n in seen)) { seen[n] = 1; order[++k] = n } }
  END {
    if (!((1, 0) in peak)) { print "no N = 1 run: ratios need RANKS to include 1"; base_p = base_s = 0 }
    else { base_p = peak[1, 0]; base_s = setup[1, 0] }
    printf "params %d (%.1f MB f32); peak: %s\n", params, params * 4 / 1048576, accel == "cuda" ? "the CUDA allocator since start (includes setup)" : "host, over the timed steps"
    printf "| N | rank | device | setup MB | setup / N=1 | peak MB | peak / N=1 | 1/N |\n|---|---|---|---|---|---|---|---|\n"
    for (i = 1; i <= k; i++) { n = order[i]
      for (r = 0; r < n; r++)
        printf "| %d | %d | %s | %.2f | %s | %.2f | %s | %.3f |\n", n, r, dev[n, r], setup[n, r],
               base_s ? sprintf("%.3f", setup[n, r] / base_s) : "-", peak[n, r], base_p ? sprintf("%.3f", peak[n, r] / base_p) : "-", 1 / n }
  }' "$ALL"
echo "(logs: $LOG)"
