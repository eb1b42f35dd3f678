#!/usr/bin/env bash
# bench/ncu_run.sh: Nsight Compute's view of a few kernels of a GPT-2 step (stall reasons,
# pipe and memory throughput, occupancy), for the kernels that the per-kernel split
# (TRACE=1 in bench/gpt2_run.sh) shows to be the largest. Clocks are left alone
# (--clock-control none), as the device notes ask.
#   KERNELS: ncu's -k filter (default regex:sdpa_, the attention kernels); COUNT: launches
#   profiled (default 3); FLAGS: bench_gpt2 flags (default one layer, one step).
# Usage on the device, after a CUDA build in build-gpu: bash bench/ncu_run.sh   (report in $OUT)
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu: not found"; exit 0; }
timeout ${NCU_TIMEOUT:-150} "$NCU" --clock-control none -k "${KERNELS:-regex:sdpa_}" --launch-count "${COUNT:-3}" \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
  --section ComputeWorkloadAnalysis --section LaunchStats \
  build-gpu/bench/bench_gpt2 ${FLAGS:---layers 1 --steps 1 --warmup 0 --fused-loss 1} > "$OUT/ncu.txt" 2>&1
echo "ncu rc=$? (report: $OUT/ncu.txt)"
grep -E "^  [a-z_]+.*\(|Duration|Throughput|Pipe|Achieved Occupancy|Registers Per|Stall|L2 Hit|Warp Cycles Per Issued|Issued Ipc|Block Limit" \
  "$OUT/ncu.txt" | head -${NCU_LINES:-90}
