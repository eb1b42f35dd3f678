#!/usr/bin/env bash
# bench/gpt2_run.sh: GPT-2 training speed, weft against PyTorch + Lightning Fabric (eager and
# torch.compile) in one command on one GPU (issue 15): builds weft with CUDA (library, the
# GPT-2 bench and the optimizer kernel test), checks the fused AdamW / gradient-norm kernels
# against the per-parameter paths (tests/cuda/test_cuda_optim.c), then runs
# bench/bench_gpt2.c, bench/peer_gpt2.py and bench/peer_gpt2.py --compile with the same
# settings and prints each JSON line and weft's ratios (tok/s and peak memory) to each peer.
# With TRACE=1, a per-kernel split of a few weft steps (bench/ktrace.c); PEER_TRACE=compile (or
# eager) adds the same split of the peer's steps; TRACE_FLAGS: weft-only flags for the traced run.
#
# Usage on the device: bash bench/gpt2_run.sh [bench flags...]   (logs under $OUT)
#   e.g. bash bench/gpt2_run.sh --batch 16 --seq 1024 --steps 20 --warmup 5   (the defaults)
#   On a CPU (smoke): CPU=1 bash bench/gpt2_run.sh --layers 2 --heads 2 --width 64 --vocab 512 --batch 4 --seq 64
#   (no peers there, since peer_gpt2.py needs a GPU; the build is build/ with CUDA off).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
ARGS=("$@")
if [ "${CPU:-0}" = 1 ]; then
  [ -d build ] || meson setup build -Dcuda=disabled >"$OUT/setup.log" 2>&1 || { tail -30 "$OUT/setup.log"; exit 1; }
  ninja -C build bench/bench_gpt2 >"$OUT/build.log" 2>&1 || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
  build/bench/bench_gpt2 --accelerator cpu "${ARGS[@]}" | tail -1
  exit $?
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
[ -d build-gpu ] || meson setup build-gpu -Dmpi=disabled -Dcuda=enabled >"$OUT/setup.log" 2>&1 \
  || { tail -30 "$OUT/setup.log"; exit 1; }
# the optimizer check needs the tests, which need Check (CHECK=.carry/check on the GPU machine)
OPTIM_TEST=tests/cuda/test_cuda_optim
ninja -C build-gpu -t targets all 2>/dev/null | grep -q "^$OPTIM_TEST:" || OPTIM_TEST=
ninja -C build-gpu libweft.a bench/bench_gpt2 $OPTIM_TEST >"$OUT/build.log" 2>&1 \
  || { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
echo "== build ok"
if [ -n "$OPTIM_TEST" ]; then
  echo "== fused AdamW and global norm vs the per-parameter paths"
  timeout 200 build-gpu/tests/cuda/test_cuda_optim > "$OUT/optim_check.log" 2>&1; echo "rc=$?"
  grep -E "FAIL|checks" "$OUT/optim_check.log"
else
  echo "== fused AdamW check skipped: the tests are not configured (Check not found)"
fi

run() {   # label, command...: the command's last JSON line, kept in $OUT/<label>.json
  local label=$1; shift
  timeout 500 "$@" > "$OUT/$label.log" 2>&1
  local rc=$?
  grep '^{' "$OUT/$label.log" | tail -1 > "$OUT/$label.json"
  if [ -s "$OUT/$label.json" ]; then cat "$OUT/$label.json"; else echo "$label failed (rc=$rc):"; tail -5 "$OUT/$label.log"; fi
}
# weft's variants (label:flags, "|"-separated; NAME=value words among the flags go to the
# environment) and the peers, each in this command
WEFT_RUNS=${WEFT_RUNS:-"weft_logits:--fused-loss 0|weft:--fused-loss 1|weft_graphs:--fused-loss 1 --cuda-graphs 1"}
PEERS=${PEERS:-"torch_eager torch_compile"}
echo "== GPT-2: weft ($WEFT_RUNS), peers: $PEERS"
IFS='|' read -ra VARIANTS <<< "$WEFT_RUNS"
LABELS=()
for v in "${VARIANTS[@]}"; do
  label=${v%%:*}; read -ra words <<< "${v#*:}"; LABELS+=("$label")
  envs=(); flags=()   # NAME=value words set the environment (A/B switches such as WEFT_BGRAD=colsum)
  for w in "${words[@]}"; do if [[ $w =~ ^[A-Z_][A-Z0-9_]*= ]]; then envs+=("$w"); else flags+=("$w"); fi; done
  run "$label" env "${envs[@]}" build-gpu/bench/bench_gpt2 "${ARGS[@]}" "${flags[@]}"
done
for p in $PEERS; do
  case $p in
    torch_eager) run torch_eager python3 bench/peer_gpt2.py "${ARGS[@]}" ;;
    torch_compile) run torch_compile python3 bench/peer_gpt2.py --compile "${ARGS[@]}" ;;
  esac
done
python3 - "$OUT" "${LABELS[*]}" "$PEERS" <<'PY'
import json, sys, os
out, labels, peers = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
def load(n):
    p = os.path.join(out, n + ".json")
    try: return json.loads(open(p).read())
    except Exception: return None
for label in labels:
    w = load(label)
    for peer in peers:
        p = load(peer)
        if not w or not p: print(f"{label} / {peer}: no ratio (a run failed)"); continue
        print(f"{label} / {peer}: tok/s x{w['tok_s'] / p['tok_s']:.3f}, step {w['step_ms']:.1f} vs {p['step_ms']:.1f} ms, "
              f"mfu {w['mfu']:.3f} vs {p['mfu']:.3f}, peak memory {w['peak_gb']:.2f} vs {p['peak_gb']:.2f} GB "
              f"(x{w['peak_gb'] / p['peak_gb'] if p['peak_gb'] else float('nan'):.2f})")
PY
if [ "${TRACE:-0}" = 1 ]; then
  echo "== weft kernel split (4 steps after 1 warmup; bench/ktrace.c)"
  source bench/ktrace_setup.sh   # /tmp/libktrace.so, the CUPTI library on LD_LIBRARY_PATH
  CUDA_INJECTION64_PATH=/tmp/libktrace.so KTRACE_OUT=$OUT/kt_gpt2.csv timeout 300 \
    build-gpu/bench/bench_gpt2 "${ARGS[@]}" ${TRACE_FLAGS:-} --steps 4 --warmup 1 | tail -1
  python3 bench/ktrace_summary.py "$OUT/kt_gpt2.csv" --label weft --top ${KTOP:-30} | tee "$OUT/kern_gpt2.txt"
  if [ -n "${PEER_TRACE:-}" ]; then
    echo "== PyTorch ($PEER_TRACE) kernel split"
    pf=(); [ "$PEER_TRACE" = compile ] && pf=(--compile)
    CUDA_INJECTION64_PATH=/tmp/libktrace.so KTRACE_OUT=$OUT/kt_peer.csv timeout 300 \
      python3 bench/peer_gpt2.py "${pf[@]}" "${ARGS[@]}" --steps 4 --warmup 3 | tail -1
    python3 bench/ktrace_summary.py "$OUT/kt_peer.csv" --label "torch $PEER_TRACE" --top ${KTOP:-30} | tee "$OUT/kern_peer.txt"
  fi
fi
